"""Small golden-case fixtures for the hostile-file tests, built by hand (no oracle), and the
edits that damage them.

``write_fixture`` writes a bwd case (inline), a fwd case whose arrays live in the sidecar, or
an err case. ``mutate`` parses the body with the test's own safe loader, lets a function
change the document, re-emits it and re-seals the final sha256 line, so the damage gets past
the digest check and must be caught by the field checks behind it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import yaml

from bnspec.flags import Flags, case_id, error_case_id
from oracle.api import Expected
from oracle.casefile import Case, ErrorSpec, write_case

FLAGS = Flags(training=True, fix_gamma=False, use_global_stats=False, output_mean_var=False)


def _expected(name: str, dtype: str, shape) -> Expected:
    hi = (np.arange(int(np.prod(shape)), dtype=np.float64) * 0.5 - 1.0).reshape(shape)
    return Expected(name, dtype, hi, np.zeros_like(hi), hi.copy(), np.abs(hi) + 1.0)


def make(op: str = "bwd", shape=(4, 3), dtype: str = "float32") -> Case:
    """Return a hand-made case: x = k/4 - 1, gamma/beta/running stats 1..C, dy = -x."""
    n, channels = int(np.prod(shape)), shape[1]
    x = (np.arange(n) * 0.25 - 1.0).astype(dtype).reshape(shape)
    inputs = {"x": x}
    for k, name in enumerate(("gamma", "beta", "running_mean", "running_var")):
        inputs[name] = (np.arange(channels) + 1.0 + k).astype(dtype)
    if op == "err":
        return Case(id=error_case_id("gamma_length", dtype, shape), op="err", family="normal",
                    summary="hand-made error case", path=None, dtype=dtype, shape=shape,
                    axis=1, flags=FLAGS, eps=1e-3, momentum=0.9, cudnn_off=False,
                    inputs={**inputs, "gamma": inputs["gamma"][:-1].copy()},
                    error=ErrorSpec("ValueError", "gamma"))
    if op == "bwd":
        inputs["dy"] = -x
        names = ("dx", "dgamma", "dbeta", "running_mean", "running_var")
    else:
        names = ("y", "running_mean", "running_var")
    expected = {name: _expected(name, dtype, shape if name in ("y", "dx") else (channels,))
                for name in names}
    return Case(id=case_id(op, FLAGS, 1, dtype, shape, "normal"), op=op, family="normal",
                summary="hand-made case", path=None, dtype=dtype, shape=shape, axis=1,
                flags=FLAGS, eps=1e-3, momentum=0.9, cudnn_off=False, inputs=inputs,
                expected=expected)


def write_fixture(directory: Path, kind: str = "bwd") -> Path:
    """Write one fixture: "bwd" (inline), "sidecar" (fwd, 2100x2 float64: arrays in the .bin)
    or "err"; return the path of its YAML file."""
    if kind == "sidecar":
        return write_case(make("fwd", shape=(2100, 2), dtype="float64"), directory)
    return write_case(make(kind), directory)


def body_of(path: Path) -> str:
    """Return the file's text without its final sha256 line."""
    text = path.read_text()
    return text[: text.rindex("sha256: ")]


def reseal(path: Path, body: str) -> None:
    """Write body plus a correct final sha256 line."""
    data = body.encode("utf-8", "surrogateescape")
    path.write_bytes(data + f"sha256: {hashlib.sha256(data).hexdigest()}\n".encode())


def get_path(doc: dict, dotted: str):
    """Return (the mapping holding the last key, the last key) of a dotted path."""
    *parents, last = dotted.split(".")
    node = doc
    for key in parents:
        node = node[key]
    return node, last


def mutate(path: Path, edit) -> None:
    """Apply edit(doc) to the parsed body, re-emit it and re-seal the file."""
    doc = yaml.safe_load(body_of(path))
    edit(doc)
    reseal(path, yaml.safe_dump(doc, sort_keys=False, width=4096))


def set_field(path: Path, dotted: str, value) -> None:
    def edit(doc):
        node, key = get_path(doc, dotted)
        node[key] = value
    mutate(path, edit)


def delete_field(path: Path, dotted: str) -> None:
    def edit(doc):
        node, key = get_path(doc, dotted)
        del node[key]
    mutate(path, edit)


def insert_after_first(path: Path, anchor: str, text: str) -> None:
    """Insert raw text (YAML the emitter would never write) after the first line starting
    with anchor, and re-seal."""
    body = body_of(path)
    lines = body.splitlines(keepends=True)
    i = next(k for k, line in enumerate(lines) if line.startswith(anchor))
    reseal(path, "".join(lines[: i + 1]) + text + "".join(lines[i + 1:]))


def replace_once(path: Path, old: str, new: str) -> None:
    body = body_of(path)
    if old not in body:
        raise ValueError(f"{old!r} is not in {path.name}")
    reseal(path, body.replace(old, new, 1))
