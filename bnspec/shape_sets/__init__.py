"""Named problem sets of batch-norm shapes taken from real networks, one YAML data file each.

    from bnspec.shape_sets import load_shape_set, shape_set_names
    resnet = load_shape_set("resnet50")        # a shipped set, by name
    mine = load_shape_set("path/to/mynet.yaml")  # or the user's own file, same format
    for problem in resnet.problems():          # one per shape x layout x dtype
        problem.shape, problem.axis, problem.dtype

A set file (``bnspec/shape_sets/<name>.yaml``, beside this module) holds facts only: its ``name`` (the file
stem), a one-line ``summary``, the ``source`` the shapes were taken from, the ``layouts`` and
``dtypes`` to run them in, and ``shapes``: logical ``[N, C, *spatial]`` shapes, each with the
number of ``layers`` of the network that have it and ``where`` they sit. A layout turns a
logical shape into the shape and axis the operator is called with:

    channel_first  [N, C, *S] -> x of shape [N, C, *S], axis = 1     (NCHW, NCDHW)
    channel_last   [N, C, *S] -> x of shape [N, *S, C], axis = -1    (NHWC, NDHWC)

so the per-channel element count M = N * prod(S) is the same in both. A malformed file is
refused with a ValueError naming the file, the field and the value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from ..flags import DTYPES

LAYOUTS = ("channel_first", "channel_last")
_SET_KEYS = {"name", "summary", "source", "layouts", "dtypes", "shapes"}
_ENTRY_KEYS = {"shape", "layers", "where"}


@dataclass(frozen=True)
class Problem:
    """One operator call of a set: the tensor shape, the channel axis and the data dtype."""

    shape: tuple[int, ...]
    axis: int
    layout: str
    dtype: str
    layers: int
    where: str

    @property
    def elements(self) -> int:
        """Return the number of elements of x."""
        return math.prod(self.shape)

    @property
    def per_channel(self) -> int:
        """Return M, the number of elements each channel's statistics reduce over."""
        return self.elements // self.shape[self.axis]


@dataclass(frozen=True)
class ShapeEntry:
    """One logical [N, C, *spatial] shape of a set, with where the network has it."""

    shape: tuple[int, ...]
    layers: int
    where: str

    def laid_out(self, layout: str) -> tuple[tuple[int, ...], int]:
        """Return (shape of x, axis) of this logical shape in a layout."""
        if layout == "channel_first":
            return self.shape, 1
        n, c, *spatial = self.shape
        return (n, *spatial, c), -1


@dataclass(frozen=True)
class ShapeSet:
    """A named problem set read from its data file."""

    name: str
    summary: str
    source: str
    layouts: tuple[str, ...]
    dtypes: tuple[str, ...]
    shapes: tuple[ShapeEntry, ...]
    path: Path

    def problems(self, dtypes=None, layouts=None) -> list[Problem]:
        """Return every (shape, layout, dtype) problem of the set, in file order.

        ``dtypes`` / ``layouts`` narrow the set's own lists; a name outside them is refused.
        """
        dtypes = self._narrow("dtypes", self.dtypes, dtypes)
        layouts = self._narrow("layouts", self.layouts, layouts)
        problems = []
        for entry in self.shapes:
            seen = set()
            for layout in layouts:
                shape, axis = entry.laid_out(layout)
                if (shape, axis % len(shape)) in seen:   # rank 2: both layouts are one call
                    continue
                seen.add((shape, axis % len(shape)))
                problems.extend(Problem(shape, axis, layout, dtype, entry.layers, entry.where)
                                for dtype in dtypes)
        return problems

    def _narrow(self, field: str, allowed: tuple[str, ...], wanted) -> tuple[str, ...]:
        if wanted is None:
            return allowed
        wanted = tuple(wanted)
        outside = [w for w in wanted if w not in allowed]
        if outside:
            raise ValueError(f"shape set {self.name!r}: {field}={outside!r} not among the "
                             f"set's {field} {list(allowed)!r}")
        return wanted


def shape_set_names() -> list[str]:
    """Return the names of the shape sets shipped with the package, sorted."""
    folder = resources.files(__package__)
    return sorted(p.name[:-len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_shape_set(name_or_path: str | Path) -> ShapeSet:
    """Return the shipped set of that name, or the set in that file (a path or *.yaml)."""
    text = str(name_or_path)
    if text in shape_set_names():
        resource = resources.files(__package__) / f"{text}.yaml"
        with resources.as_file(resource) as path:
            return _parse(Path(path), resource.read_text(encoding="utf-8"))
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"shapes={text!r}: neither a shipped shape set "
                         f"({', '.join(shape_set_names())}) nor a file")
    return _parse(path, path.read_text(encoding="utf-8"))


def _parse(path: Path, text: str) -> ShapeSet:
    def refuse(field: str, value, why: str) -> ValueError:
        return ValueError(f"shape set {path}: {field}={value!r}: {why}")

    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise refuse("<document>", type(data).__name__, "must be a mapping")
    if set(data) != _SET_KEYS:
        raise refuse("<keys>", sorted(set(data) ^ _SET_KEYS), f"the keys are {sorted(_SET_KEYS)}")
    for field in ("name", "summary", "source"):
        if not isinstance(data[field], str) or not data[field].strip():
            raise refuse(field, data[field], "must be a non-empty string")
    if data["name"] != path.stem:
        raise refuse("name", data["name"], f"must equal the file's stem {path.stem!r}")
    layouts = _names(data["layouts"], LAYOUTS, "layouts", refuse)
    dtypes = _names(data["dtypes"], DTYPES, "dtypes", refuse)
    if not isinstance(data["shapes"], list) or not data["shapes"]:
        raise refuse("shapes", data["shapes"], "must be a non-empty list")
    entries = tuple(_entry(i, raw, refuse) for i, raw in enumerate(data["shapes"]))
    return ShapeSet(data["name"], data["summary"], data["source"], layouts, dtypes, entries, path)


def _names(value, allowed, field, refuse) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(set(value)) != len(value):
        raise refuse(field, value, "must be a non-empty list without repeats")
    for name in value:
        if name not in allowed:
            raise refuse(field, name, f"must be one of {list(allowed)}")
    return tuple(value)


def _entry(index: int, raw, refuse) -> ShapeEntry:
    field = f"shapes[{index}]"
    if not isinstance(raw, dict) or set(raw) != _ENTRY_KEYS:
        raise refuse(field, raw, f"must be a mapping with the keys {sorted(_ENTRY_KEYS)}")
    shape = raw["shape"]
    if (not isinstance(shape, list) or len(shape) < 2
            or not all(type(n) is int and n >= 1 for n in shape)):
        raise refuse(f"{field}.shape", shape, "must list at least 2 positive integers [N, C, ...]")
    if type(raw["layers"]) is not int or raw["layers"] < 1:
        raise refuse(f"{field}.layers", raw["layers"], "must be a positive integer")
    if not isinstance(raw["where"], str) or not raw["where"].strip():
        raise refuse(f"{field}.where", raw["where"], "must be a non-empty string")
    return ShapeEntry(tuple(shape), raw["layers"], raw["where"])
