"""The hardened case file reader: ``load_case``, ``load_cases``, ``iter_case_paths``.

``load_case`` checks, in this order and before it allocates anything large: the file size, the
final digest line, the absence of YAML anchors/aliases (alias bombs), a safe parse (no
``!!python`` tags), every field's presence and type, the schema version, declared sizes against
``MAX_ELEMENTS``, data lengths against shapes, the sidecar's size and digest, then what it can
of the meaning (``meaning``: each ``rounded`` a correct rounding of its ``value``, ``cond``
finite and >= 0). Every failure raises ``CaseFileError`` naming the file and the field.

Memory: the sidecar is hashed a slice at a time and never read whole. Arrays of more than
``COMPACT_FROM`` elements (large cases) are not copied: inputs and hi, lo, cond are
read-only memory maps of the sidecar (an input's own ``sha256`` is checked first), and
``rounded`` is held in the output dtype (derived from hi + lo in the compact layout,
``compact``); so a loaded large case costs about one copy of its tensor per array in the
page cache and one in memory, not eight bytes per element and field.
"""
from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import yaml

from bnspec.flags import DTYPES, QUANTIZED_DTYPES, Flags, numpy_dtype
from bnspec.formats import FORMATS, round_float64

from ..results import Expected, QuantizedExpected, output_dtype
from .compact import COMPACT_FROM, SLICE, derived_rounding, release
from .meaning import check_expected
from .model import (DIST_SIDECAR_BYTES, EXCEPTIONS, EXPECTED_SIDECAR_BYTES, EXTRA_DTYPES,
                    INPUT_NAMES, QUANTIZED_PARAMS, SCHEMA, TOKEN, Case, ErrorSpec,
                    expected_names, id_matches, quantized_output_dtype)
from .number_text import hex_float, is_hex, parse_hex, parse_value

#: Largest element count accepted for one array (a 2 GiB float64 sidecar block); larger
#: declared sizes are rejected before anything is allocated.
MAX_ELEMENTS = 1 << 28
MAX_RANK = 32
#: Largest case file / sidecar accepted (bytes).
MAX_FILE_BYTES = 1 << 30
MAX_SIDECAR_BYTES = 1 << 34

_DIGEST_LINE = re.compile(rb"sha256: ([0-9a-f]{64})\n\Z")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CaseFileError(ValueError):
    """A case file that is unreadable, corrupted, hand-edited or not of this schema."""

    def __init__(self, path, field_name: str, problem: str):
        self.path = str(path)
        self.field = field_name
        super().__init__(f"{self.path}: field {field_name!r}: {problem}")


def iter_case_paths(directory, pattern: str | None = None) -> Iterator[Path]:
    """Yield the case files (``<id>.yaml`` with a valid id) in directory, sorted by id,
    whose id matches pattern (see ``id_matches``)."""
    for path in sorted(Path(directory).glob("*.yaml")):
        if TOKEN.match(path.stem) and id_matches(pattern, path.stem):
            yield path


def load_cases(directory, pattern: str | None = None) -> list[Case]:
    """Return the validated cases of directory whose ids match pattern, sorted by id."""
    return sorted((load_case(p) for p in iter_case_paths(directory, pattern)),
                  key=lambda c: c.id)


def load_case(path) -> Case:
    """Return the validated Case stored at path; raise CaseFileError naming file and field."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CaseFileError(path, "<file>", f"cannot be read: {exc}") from None
    if size > MAX_FILE_BYTES:
        raise CaseFileError(path, "<file>", f"size={size} exceeds {MAX_FILE_BYTES} bytes")
    data = path.read_bytes()
    doc = _parse(path, data)
    return _Reader(path, doc).case()


#: Deepest bracket nesting accepted (the schema needs 3); checked before parsing because
#: libyaml's composer recurses once per level and a deep enough file overflows the C stack.
MAX_NESTING = 32


def _bracket_depth(data: bytes) -> int:
    """Return the deepest nesting of [ and { in data (brackets inside strings count too,
    which can only overestimate)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    step = (np.isin(raw, (0x5B, 0x7B)).astype(np.int64)
            - np.isin(raw, (0x5D, 0x7D)).astype(np.int64))
    return int(np.cumsum(step).max(initial=0))


def _parse(path: Path, data: bytes) -> dict:
    """Return the parsed YAML mapping after the digest, alias and tag checks."""
    cut = data.rfind(b"\nsha256: ")
    match = _DIGEST_LINE.match(data, cut + 1) if cut >= 0 else None
    if match is None:
        raise CaseFileError(path, "sha256", "the file does not end with a 'sha256: <hex>' line")
    actual = hashlib.sha256(data[: cut + 1]).hexdigest()
    if actual != match.group(1).decode():
        raise CaseFileError(path, "sha256", f"digest mismatch: the file hashes to {actual}, "
                            "so it was edited or corrupted; regenerate it")
    if b"&" in data or b"*" in data or b"!" in data:
        _reject_anchors_and_tags(path, data)
    depth = _bracket_depth(data)
    if depth > MAX_NESTING:
        raise CaseFileError(path, "<yaml>", f"brackets nest {depth} deep; a case file nests at "
                            f"most {MAX_NESTING} (libyaml would recurse once per level)")
    try:
        doc = yaml.load(data, Loader=_Loader)  # a safe loader: CSafeLoader or SafeLoader
    except yaml.YAMLError as exc:
        raise CaseFileError(path, "<yaml>", f"not valid safe YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise CaseFileError(path, "<top>", f"must be a mapping, got {type(doc).__name__}")
    return doc


def _reject_anchors_and_tags(path: Path, data: bytes) -> None:
    """Raise CaseFileError if the YAML uses an anchor, alias or explicit tag (never written)."""
    try:
        for event in yaml.parse(data, Loader=_Loader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise CaseFileError(path, "<yaml>", "anchors and aliases are not allowed")
            if getattr(event, "tag", None) is not None:
                raise CaseFileError(path, "<yaml>", f"explicit tag {event.tag!r} is not allowed")
    except yaml.YAMLError as exc:
        raise CaseFileError(path, "<yaml>", f"not valid YAML: {exc}") from None


class _Reader:
    """Field-by-field validation of a parsed case document."""

    def __init__(self, path: Path, doc: dict):
        self.path, self.doc = path, doc

    def fail(self, field_name: str, problem: str):
        raise CaseFileError(self.path, field_name, problem)

    def get(self, mapping, key: str, kind, where: str):
        """Return mapping[key], checking presence and type (bool is not an int here)."""
        if not isinstance(mapping, dict):
            self.fail(where, f"must be a mapping, got {type(mapping).__name__}")
        if key not in mapping:
            self.fail(f"{where}.{key}" if where else key, "is missing")
        value = mapping[key]
        name = f"{where}.{key}" if where else key
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            self.fail(name, f"must be {_kind_names(kinds)}, got {value!r}")
        if not isinstance(value, kinds):
            self.fail(name, f"must be {_kind_names(kinds)}, got {type(value).__name__} {value!r:.60}")
        return value

    def keys(self, mapping: dict, allowed, required, where: str):
        extra = set(mapping) - set(allowed)
        if extra:
            self.fail(where or "<top>", f"unknown keys {sorted(map(str, extra))}")
        for key in required:
            if key not in mapping:
                self.fail(f"{where}.{key}" if where else key, "is missing")

    def case(self) -> Case:
        doc = self.doc
        schema = self.get(doc, "schema", int, "")
        if schema != SCHEMA:
            self.fail("schema", f"schema={schema!r} is not supported (this loader reads {SCHEMA})")
        op = self.get(doc, "op", str, "")
        if op not in ("fwd", "bwd", "err", "qnt"):
            self.fail("op", f"op={op!r} must be fwd, bwd, err or qnt")
        body = "error" if op == "err" or (op == "qnt" and "error" in doc) else "expected"
        if op == "qnt" and "error" in doc and "expected" in doc:
            self.fail("<top>", "a qnt case has either expected or error, not both")
        invalid = body == "error"
        top = ("schema", "id", "op", "family", "summary", "oracle", "params", "inputs", body,
               "sha256")
        self.keys(doc, top + ("sidecar",), top, "")
        case_id = self.get(doc, "id", str, "")
        if case_id != self.path.stem:
            self.fail("id", f"id={case_id!r} differs from the file name {self.path.name!r}")
        family = self.get(doc, "family", str, "")
        summary = self.get(doc, "summary", str, "")
        oracle_info = self.get(doc, "oracle", dict, "")
        self.keys(oracle_info, ("version", "precision_bits"), ("version", "precision_bits"),
                  "oracle")
        self.get(oracle_info, "version", str, "oracle")
        self.get(oracle_info, "precision_bits", int, "oracle")
        params = self.params(self.get(doc, "params", dict, ""), op, invalid)
        sidecar = self.sidecar(doc.get("sidecar"), case_id)
        inputs = self.inputs(self.get(doc, "inputs", dict, ""), op, params, sidecar, invalid)
        expected, error = {}, None
        if invalid:
            err = self.get(doc, "error", dict, "")
            self.keys(err, ("exception", "match"), ("exception", "match"), "error")
            exc = self.get(err, "exception", str, "error")
            if exc not in EXCEPTIONS:
                self.fail("error.exception", f"exception={exc!r} is not one of {EXCEPTIONS}")
            error = ErrorSpec(exc, self.get(err, "match", str, "error"))
        else:
            expected = self.expected(self.get(doc, "expected", dict, ""), op, params, sidecar)
        return Case(id=case_id, op=op, family=family, summary=summary, path=self.path,
                    dtype=params["dtype"], shape=params["shape"], axis=params["axis"],
                    flags=params["flags"], eps=params["eps"], momentum=params["momentum"],
                    cudnn_off=params["cudnn_off"], inputs=inputs, expected=expected,
                    error=error, quantized=params["quantized"])

    def params(self, p: dict, op: str, invalid: bool) -> dict:
        names = ("dtype", "shape", "axis", "training", "fix_gamma", "use_global_stats",
                 "output_mean_var", "eps", "momentum", "cudnn_off")
        if op == "qnt":
            names += QUANTIZED_PARAMS
        self.keys(p, names, names, "params")
        dtype = self.dtype(self.get(p, "dtype", str, "params"), "params.dtype")
        shape = self.shape(self.get(p, "shape", list, "params"), "params.shape")
        flags = Flags(*(self.get(p, k, bool, "params") for k in names[3:7]))
        quantized = None
        if op == "qnt":
            quantized = {}
            for key in QUANTIZED_PARAMS:
                if p.get(key, "") is None and invalid and "calib" in key:
                    quantized[key] = None  # an invalid call may leave a calibration value out
                else:
                    quantized[key] = self.hex_scalar(p, key)
        return {"dtype": dtype, "shape": shape, "axis": self.get(p, "axis", int, "params"),
                    "flags": flags, "eps": self.hex_scalar(p, "eps"),
                    "momentum": self.hex_scalar(p, "momentum"),
                    "cudnn_off": self.get(p, "cudnn_off", bool, "params"),
                    "quantized": quantized}

    def hex_scalar(self, p: dict, key: str) -> float:
        text = self.get(p, key, str, "params")
        try:
            return parse_hex(text)
        except ValueError:
            self.fail(f"params.{key}", f"{key}={text!r} is not a hex float, nan, inf or -inf")

    def dtype(self, name: str, where: str) -> str:
        if name not in DTYPES and name not in EXTRA_DTYPES:
            self.fail(where, f"dtype={name!r} is not one of {list(DTYPES) + list(EXTRA_DTYPES)}")
        return name

    def shape(self, dims: list, where: str) -> tuple:
        if len(dims) > MAX_RANK:
            self.fail(where, f"rank {len(dims)} exceeds {MAX_RANK}")
        for n in dims:
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                self.fail(where, f"shape={dims!r:.80} must be a list of integers >= 0")
            if n > MAX_ELEMENTS:
                self.fail(where, f"dimension {n} exceeds {MAX_ELEMENTS}")
        count = math.prod(dims)
        if count > MAX_ELEMENTS:
            self.fail(where, f"shape={dims!r} has {count} elements, more than {MAX_ELEMENTS}")
        return tuple(dims)

    def sidecar(self, spec, case_id: str):
        if spec is None:
            return None
        where = "sidecar"
        if not isinstance(spec, dict):
            self.fail(where, "must be a mapping {file, sha256}")
        self.keys(spec, ("file", "sha256"), ("file", "sha256"), where)
        name = self.get(spec, "file", str, where)
        if name != f"{case_id}.bin":
            self.fail("sidecar.file", f"file={name!r} must be {case_id + '.bin'!r}")
        digest = self.get(spec, "sha256", str, where)
        bin_path = self.path.with_name(name)
        try:
            size = bin_path.stat().st_size
        except OSError as exc:
            self.fail("sidecar.file", f"{bin_path} cannot be read: {exc}")
        declared = self.declared_sidecar_bytes()
        if size != declared or size > MAX_SIDECAR_BYTES:
            self.fail("sidecar.file", f"{bin_path} has {size} bytes, the arrays declare "
                      f"{declared} (at most {MAX_SIDECAR_BYTES})")
        actual = _file_digest(bin_path, 0, size)
        if actual != digest:
            self.fail("sidecar.sha256", f"{bin_path} hashes to {actual}, the file says {digest}")
        return {"path": bin_path, "size": size}

    def declared_sidecar_bytes(self) -> int:
        """Return the bytes the sidecar arrays declare (shapes checked, nothing allocated)."""
        total = 0
        for section, per_element in (("inputs", 0), ("expected", EXPECTED_SIDECAR_BYTES)):
            arrays = self.doc.get(section)
            if not isinstance(arrays, dict):
                continue
            for name, spec in arrays.items():
                if isinstance(spec, dict) and "sidecar" in spec:
                    where = f"{section}.{name}"
                    dtype, _, count = self.array_head(spec, where, ("data", "rounded", "value",
                                                                    "cond", "dist", "sha256",
                                                                    "rounded_exceptions"))
                    extra = DIST_SIDECAR_BYTES if self.has_dist(section, name) else 0
                    rounded = numpy_dtype(dtype).itemsize
                    if section == "expected" and self.compact(spec, where, count):
                        rounded = 0
                    total += count * (per_element + extra + rounded)
        return total

    def compact(self, spec: dict, where: str, count: int) -> bool:
        """Return whether a sidecar expected array has the compact layout (compact.py):
        exactly those of more than COMPACT_FROM elements, with layout: hi_lo_cond."""
        ref = spec.get("sidecar")
        layout = ref.get("layout") if isinstance(ref, dict) else None
        large = count > COMPACT_FROM and not self.has_dist("expected", where.split(".")[-1])
        if layout is None and large:
            self.fail(f"{where}.sidecar.layout", f"is missing: an array of {count} > "
                      f"{COMPACT_FROM} elements has layout hi_lo_cond")
        if layout is not None and (layout != "hi_lo_cond" or not large):
            self.fail(f"{where}.sidecar.layout", f"layout={layout!r}: only an array of more "
                      f"than {COMPACT_FROM} elements has one, and it is 'hi_lo_cond'")
        return layout is not None

    def has_dist(self, section: str, name: str) -> bool:
        """Return True for the expected array that carries a boundary distance (qnt out)."""
        return section == "expected" and name == "out" and self.doc.get("op") == "qnt"

    def array_head(self, spec, where: str, payload_keys) -> tuple[str, tuple, int]:
        if not isinstance(spec, dict):
            self.fail(where, f"must be a mapping, got {type(spec).__name__}")
        self.keys(spec, ("dtype", "shape", "sidecar") + payload_keys, ("dtype", "shape"), where)
        dtype = self.dtype(self.get(spec, "dtype", str, where), f"{where}.dtype")
        shape = self.shape(self.get(spec, "shape", list, where), f"{where}.shape")
        return dtype, shape, math.prod(shape)

    def block(self, spec, where, sidecar, count: int, nbytes: int) -> tuple[int, int]:
        """Return (offset, nbytes) of an array's sidecar bytes after checking its position."""
        if sidecar is None:
            self.fail(f"{where}.sidecar", "refers to a sidecar, but the file names none")
        ref = self.get(spec, "sidecar", dict, where)
        self.keys(ref, ("offset", "count", "layout"), ("offset", "count"), f"{where}.sidecar")
        offset = self.get(ref, "offset", int, f"{where}.sidecar")
        declared = self.get(ref, "count", int, f"{where}.sidecar")
        if declared != count:
            self.fail(f"{where}.sidecar.count", f"count={declared} but the shape has {count}")
        size = sidecar["size"]
        if offset < 0 or offset + nbytes > size:
            self.fail(f"{where}.sidecar.offset",
                      f"offset={offset} + {nbytes} bytes exceeds the sidecar's {size}")
        return offset, nbytes

    def raw(self, sidecar, offset: int, nbytes: int) -> bytes:
        """Return nbytes of the sidecar at offset (a small array's block)."""
        with open(sidecar["path"], "rb") as f:
            f.seek(offset)
            data = f.read(nbytes)
        if len(data) != nbytes:
            self.fail("sidecar.file", f"{sidecar['path']} ended while reading {nbytes} bytes "
                      f"at {offset}: it changed after its digest was checked")
        return data

    def mapped(self, sidecar, offset: int, count: int, dtype) -> np.ndarray:
        """Return count values of dtype (little endian) at offset: a read-only memory map."""
        return np.memmap(sidecar["path"], dtype=np.dtype(dtype), mode="r", offset=offset,
                         shape=(count,))

    def input_digest(self, spec, where: str, sidecar, offset: int, nbytes: int) -> None:
        """Check a large input's own sha256 (required above COMPACT_FROM elements)."""
        digest = self.get(spec, "sha256", str, where)
        actual = _file_digest(sidecar["path"], offset, nbytes)
        if actual != digest:
            self.fail(f"{where}.sha256", f"the input's {nbytes} bytes in {sidecar['path']} "
                      f"hash to {actual}, the file says {digest}")

    def inputs(self, spec: dict, op: str, params: dict, sidecar, invalid: bool) -> dict:
        names = INPUT_NAMES[:5] + (("dy",) if op == "bwd" else ())
        if invalid:
            self.keys(spec, INPUT_NAMES if op == "err" else names, ("x",), "inputs")
        else:
            self.keys(spec, names, names, "inputs")
        out = {}
        for name in INPUT_NAMES:
            if name in spec:
                out[name] = self.input_array(spec[name], f"inputs.{name}", sidecar)
        if not invalid:
            self.check_call_shapes(out, params, op)
        return out

    def input_array(self, spec, where: str, sidecar) -> np.ndarray:
        dtype, shape, count = self.array_head(spec, where, ("data", "sha256"))
        np_dtype = numpy_dtype(dtype)
        if "sha256" in spec and not ("sidecar" in spec and count > COMPACT_FROM):
            self.fail(f"{where}.sha256", f"only an input of more than {COMPACT_FROM} elements "
                      "in the sidecar has its own digest")
        if "data" in spec:
            data = self.get(spec, "data", list, where)
            if len(data) != count:
                self.fail(f"{where}.data", f"has {len(data)} values, the shape {list(shape)} "
                          f"needs {count}")
            if np_dtype.kind in "biu":
                return self.int_data(data, np_dtype, where).reshape(shape)
            values = self.float_data(data, f"{where}.data")
            self.representable(values, dtype, f"{where}.data")
            return values.astype(np_dtype).reshape(shape)
        offset, nbytes = self.block(spec, where, sidecar, count, count * np_dtype.itemsize)
        if count > COMPACT_FROM:
            self.input_digest(spec, where, sidecar, offset, nbytes)
            if np_dtype.kind == "b":
                self.fail(f"{where}.dtype", "a large input is a float array")
            little = (np_dtype.newbyteorder("<") if np_dtype.kind in "iu"
                      else np.dtype(f"<u{np_dtype.itemsize}"))
            return self.mapped(sidecar, offset, count, little).view(np_dtype).reshape(shape)
        raw = self.raw(sidecar, offset, nbytes)
        if np_dtype.kind == "b":
            bits = np.frombuffer(raw, dtype=np.uint8)
            if np.any(bits > 1):
                self.fail(f"{where}.sidecar", "bool data must be 0 or 1")
            return bits.astype(bool).reshape(shape)
        if np_dtype.kind in "iu":
            return np.frombuffer(raw, dtype=np_dtype.newbyteorder("<")).astype(np_dtype).reshape(shape)
        bits = np.frombuffer(raw, dtype=f"<u{np_dtype.itemsize}").astype(f"u{np_dtype.itemsize}")
        return bits.view(np_dtype).reshape(shape).copy()

    def int_data(self, data: list, np_dtype: np.dtype, where: str) -> np.ndarray:
        info = (0, 1) if np_dtype.kind == "b" else (np.iinfo(np_dtype).min, np.iinfo(np_dtype).max)
        for v in data:
            ok = isinstance(v, int) and not (isinstance(v, bool) and np_dtype.kind != "b")
            if not ok or not info[0] <= int(v) <= info[1]:
                self.fail(f"{where}.data", f"value {v!r:.40} is not a {np_dtype.name} integer")
        return np.array([int(v) for v in data], dtype=np.int64).astype(np_dtype)

    def float_data(self, data: list, where: str) -> np.ndarray:
        try:
            return np.array([parse_hex(v) for v in data], dtype=np.float64)
        except (TypeError, ValueError, AttributeError):
            bad = next(v for v in data if not is_hex(v))
            self.fail(where, f"value {bad!r:.40} is not a hex float, nan, inf or -inf")

    def representable(self, values: np.ndarray, dtype: str, where: str) -> None:
        if dtype not in FORMATS:
            return
        finite = np.isfinite(values)
        bad = finite & (round_float64(values, FORMATS[dtype]) != values)
        if np.any(bad):
            v = float(values[np.flatnonzero(bad)[0]])
            self.fail(where, f"value {hex_float(v)} is not representable in {dtype}")

    def check_call_shapes(self, inputs: dict, params: dict, op: str) -> None:
        shape, dtype = params["shape"], params["dtype"]
        data_dtypes = QUANTIZED_DTYPES if op == "qnt" else DTYPES
        if dtype not in data_dtypes:
            self.fail("params.dtype", f"dtype={dtype!r}: a {op} case needs a data dtype of "
                      f"{list(data_dtypes)}")
        x = inputs["x"]
        if x.shape != shape or x.dtype != numpy_dtype(dtype):
            self.fail("inputs.x", f"x is {x.dtype.name}{list(x.shape)}, params say "
                      f"{dtype}{list(shape)}")
        if len(shape) < 2 or not -len(shape) <= params["axis"] < len(shape):
            self.fail("params.axis", f"axis={params['axis']} is invalid for shape {list(shape)}")
        channels = shape[params["axis"]]
        pdtype = numpy_dtype(data_dtypes[dtype].param)
        for name in ("gamma", "beta", "running_mean", "running_var"):
            a = inputs[name]
            if a.shape != (channels,) or a.dtype != pdtype:
                self.fail(f"inputs.{name}", f"{name} is {a.dtype.name}{list(a.shape)}, must be "
                          f"{pdtype.name}[{channels}]")
        if "dy" in inputs and (inputs["dy"].shape != shape or inputs["dy"].dtype != x.dtype):
            self.fail("inputs.dy", f"dy is {inputs['dy'].dtype.name}{list(inputs['dy'].shape)}, "
                      f"must be {dtype}{list(shape)}")

    def expected(self, spec: dict, op: str, params: dict, sidecar) -> dict:
        names = expected_names(op, params["flags"])
        self.keys(spec, names, names, "expected")
        out = {}
        channels = params["shape"][params["axis"]]
        for name in names:
            where = f"expected.{name}"
            dist = self.has_dist("expected", name)
            dtype, shape, count = self.array_head(spec[name], where, ("rounded", "value", "cond",
                                                                      "rounded_exceptions")
                                                  + (("dist",) if dist else ()))
            if op == "qnt":
                want_dtype = quantized_output_dtype(name)
                want_shape = params["shape"] if name == "out" else (1,)
            else:
                want_dtype = output_dtype(name, params["dtype"])
                want_shape = params["shape"] if name in ("y", "dx") else (channels,)
            if dtype != want_dtype or shape != tuple(want_shape):
                self.fail(where, f"is {dtype}{list(shape)}, must be {want_dtype}{list(want_shape)}")
            out[name] = self.expected_array(spec[name], name, where, dtype, shape, count, sidecar,
                                            dist)
        check_expected(self.fail, out)  # rounded vs value, cond (meaning.py)
        return out

    def expected_array(self, spec, name, where, dtype, shape, count, sidecar,
                       with_dist: bool = False) -> Expected:
        keys = ("rounded", "value", "cond") + (("dist",) if with_dist else ())
        np_dtype = numpy_dtype(dtype)
        if "rounded_exceptions" in spec and not ("sidecar" in spec
                                                 and self.compact(spec, where, count)):
            self.fail(f"{where}.rounded_exceptions", "only a compact array has them")
        if "sidecar" in spec and self.compact(spec, where, count):
            if any(k in spec for k in keys):
                self.fail(where, "has both a sidecar and inline data")
            offset, _ = self.block(spec, where, sidecar, count, 20 * count)
            hi, lo = (self.mapped(sidecar, offset + 8 * count * i, count, "<f8").reshape(shape)
                      for i in (0, 1))
            cond = self.mapped(sidecar, offset + 16 * count, count, "<f4").reshape(shape)
            rounded = self.derive_rounded(spec, where, dtype, hi, lo)
            dist = None
        elif "sidecar" in spec:
            if any(k in spec for k in keys):
                self.fail(where, "has both a sidecar and inline data")
            size = np_dtype.itemsize
            extra = DIST_SIDECAR_BYTES if with_dist else 0
            offset, nbytes = self.block(spec, where, sidecar, count,
                                        (size + EXPECTED_SIDECAR_BYTES + extra) * count)
            raw = self.raw(sidecar, offset, nbytes)
            if np_dtype.kind in "iu":
                rounded = np.frombuffer(raw[:size * count], dtype=np_dtype.newbyteorder("<"))
            else:
                bits = np.frombuffer(raw[:size * count], dtype=f"<u{size}").astype(f"u{size}")
                rounded = bits.view(np_dtype)
            rounded = rounded.astype(np.float64).reshape(shape)
            hi, lo = (np.frombuffer(raw[size * count + 8 * count * i:
                                        size * count + 8 * count * (i + 1)], dtype="<f8")
                      .astype(np.float64).reshape(shape) for i in (0, 1))
            cond = np.frombuffer(raw[(size + 16) * count:(size + 20) * count], dtype="<f4").astype(
                np.float64).reshape(shape)
            dist = (np.frombuffer(raw[(size + 20) * count:], dtype="<f8").astype(np.float64)
                    .reshape(shape) if with_dist else None)
        else:
            for key in keys:
                items = self.get(spec, key, list, where)
                if len(items) != count:
                    self.fail(f"{where}.{key}", f"has {len(items)} values, the shape "
                              f"{list(shape)} needs {count}")
            if np_dtype.kind in "iu":
                rounded = self.int_data(spec["rounded"], np_dtype, f"{where}.rounded")
                rounded = rounded.astype(np.float64).reshape(shape)
            else:
                rounded = self.float_data(spec["rounded"], f"{where}.rounded").reshape(shape)
            hi, lo = self.values(spec["value"], f"{where}.value")
            hi, lo = hi.reshape(shape), lo.reshape(shape)
            cond = self.conds(spec["cond"], f"{where}.cond").reshape(shape)
            dist = (self.conds(spec["dist"], f"{where}.dist").reshape(shape)
                    if with_dist else None)
        for start in range(0, count, SLICE):
            part = np.ravel(rounded)[start:start + SLICE].astype(np.float64)
            self.representable(part, dtype, f"{where}.rounded")
            if np.any(np.ravel(cond)[start:start + SLICE] < 0):
                self.fail(f"{where}.cond", "condition scales must be >= 0")
            release(cond, start, start + SLICE)
        if with_dist:
            if not np.all(dist >= 0):
                self.fail(f"{where}.dist", "boundary distances must be >= 0")
            return QuantizedExpected(name=name, dtype=dtype, hi=hi, lo=lo, rounded=rounded,
                                     cond=cond, dist=dist)
        return Expected(name=name, dtype=dtype, hi=hi, lo=lo, rounded=rounded, cond=cond)

    def derive_rounded(self, spec, where: str, dtype: str, hi, lo) -> np.ndarray:
        """Return rounded of a compact array, in the output dtype: the correct rounding of
        hi + lo, a slice at a time, with the listed exceptions put back (compact.py)."""
        flat_hi, flat_lo = np.ravel(hi), np.ravel(lo)
        rounded = np.empty(flat_hi.size, dtype=numpy_dtype(dtype))
        for start in range(0, flat_hi.size, SLICE):
            stop = start + SLICE
            rounded[start:stop] = derived_rounding(flat_hi[start:stop], flat_lo[start:stop],
                                                   dtype)
            release(flat_hi, start, stop)
            release(flat_lo, start, stop)
        items = self.get(spec, "rounded_exceptions", list, where)
        last = -1
        for item in items:
            ok = (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int)
                  and not isinstance(item[0], bool) and last < item[0] < flat_hi.size
                  and is_hex(item[1]))
            if not ok:
                self.fail(f"{where}.rounded_exceptions", f"item {item!r:.60} is not [flat "
                          f"index, hex float] with indices increasing below {flat_hi.size}")
            last = item[0]
            rounded[item[0]] = parse_hex(item[1])
        return rounded.reshape(hi.shape)

    def values(self, items: list, where: str) -> tuple[np.ndarray, np.ndarray]:
        hi = np.empty(len(items))
        lo = np.empty(len(items))
        for i, text in enumerate(items):
            try:
                hi[i], lo[i] = parse_value(text)
            except (TypeError, ValueError, ArithmeticError):
                self.fail(where, f"value {text!r:.60} is not a decimal number, nan, inf or -inf")
        return hi, lo

    def conds(self, items: list, where: str) -> np.ndarray:
        for v in items:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                self.fail(where, f"value {v!r:.40} is not a number")
        return np.array(items, dtype=np.float64)


def _file_digest(path: Path, offset: int, nbytes: int) -> str:
    """Return the sha256 of nbytes of the file at offset, read a slice at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        left = nbytes
        while left > 0:
            piece = f.read(min(left, SLICE))
            if not piece:
                break
            digest.update(piece)
            left -= len(piece)
    return digest.hexdigest()


def _kind_names(kinds) -> str:
    return " or ".join({dict: "a mapping", list: "a list", str: "a string", int: "an integer",
                        bool: "a boolean", float: "a number"}.get(k, k.__name__) for k in kinds)
