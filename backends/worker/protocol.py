"""The wire format between a parent and a worker child: length-prefixed npz messages.

One message is an 8-byte little-endian unsigned length, then that many bytes of an ``.npz``
archive written by ``np.savez`` into a BytesIO. The archive holds a ``__meta__`` entry (the
UTF-8 bytes of a JSON object, as a uint8 array) and one entry per array, named ``a0``,
``a1``, ... in the order the meta lists them. Archives are loaded with
``allow_pickle=False``: no object arrays, nothing executable crosses the pipe.

Values in meta are JSON: numbers, bools, strings, lists, dicts. A float goes through
``repr`` and back, so a double (eps) arrives bit-exact; NaN and +-inf are written as
``NaN``/``Infinity`` (Python's json accepts them both ways). numpy scalars are sent as the
Python value of the same number (``np.float32(0.9)`` as the double 0.8999999761581421).

Arrays keep their dtype and shape, including 0-d, empty, bool and integer arrays. dtypes
numpy's npz cannot name (``ml_dtypes.bfloat16`` and the other ml_dtypes floats) travel as
the unsigned integer view of their bits with the dtype's name in meta, and are rebuilt with
ml_dtypes on the other side (a TypeError names the array when that side lacks ml_dtypes).

Only numpy and the standard library are imported here: the module runs in the child's
interpreter too, which may be another Python with another numpy (the MXNet venv has
numpy 1.23).
"""
from __future__ import annotations

import io
import json
import struct
from types import SimpleNamespace

import numpy as np

HEADER = struct.Struct("<Q")
META_KEY = "__meta__"
#: Refuse a length prefix above this (a corrupt stream, not a real message): 16 GiB.
MAX_MESSAGE = 1 << 34


class ProtocolError(Exception):
    """A message that cannot be framed, encoded or decoded."""


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"value={value!r} of type {type(value).__name__} cannot be sent to a "
                    "worker (JSON values and numpy arrays only)")


def _foreign_dtype_name(dtype: np.dtype) -> str | None:
    """Return the ml_dtypes name of dtype (e.g. 'bfloat16'), or None for a numpy dtype."""
    module = getattr(dtype.type, "__module__", "") or ""
    return dtype.name if module.startswith("ml_dtypes") else None


def _rebuild_foreign(bits: np.ndarray, dtype_name: str, what: str) -> np.ndarray:
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError(f"{what} has dtype {dtype_name}, but ml_dtypes is not installed in "
                        "this interpreter to rebuild it") from None
    return bits.view(np.dtype(getattr(ml_dtypes, dtype_name)))


def encode(meta: dict, arrays: dict[str, np.ndarray] | None = None) -> bytes:
    """Return one framed message (length prefix + npz) carrying meta and the named arrays.

    meta must not have an ``arrays`` key: it is filled in with the array names and dtypes.
    """
    arrays = arrays or {}
    entries, payload = [], {}
    for i, (name, array) in enumerate(arrays.items()):
        array = np.asarray(array)
        key = f"a{i}"
        foreign = _foreign_dtype_name(array.dtype)
        if foreign is not None:
            array = array.view(np.dtype(f"u{array.dtype.itemsize}"))
        elif array.dtype.hasobject or array.dtype.kind == "V":
            raise ProtocolError(f"array {name!r} has dtype {array.dtype}, which cannot be "
                                "sent without pickling")
        entries.append({"name": name, "key": key, "dtype": foreign})
        payload[key] = array
    full = dict(meta, arrays=entries)
    text = json.dumps(full, default=_json_default, allow_nan=True).encode("utf-8")
    payload[META_KEY] = np.frombuffer(text, dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **payload)
    body = buffer.getvalue()
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """Return (meta, {name: array}) of one message body (the bytes after the prefix)."""
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as archive:
            meta = json.loads(archive[META_KEY].tobytes().decode("utf-8"))
            arrays = {}
            for entry in meta.pop("arrays", []):
                array = archive[entry["key"]]
                if entry.get("dtype"):
                    array = _rebuild_foreign(array, entry["dtype"], f"array {entry['name']!r}")
                arrays[entry["name"]] = array
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"undecodable worker message: {exc}") from exc
    return meta, arrays


def body_length(header: bytes) -> int:
    """Return the body length of a length prefix, or raise ProtocolError if implausible."""
    (length,) = HEADER.unpack(header)
    if length > MAX_MESSAGE:
        raise ProtocolError(f"message length={length} exceeds {MAX_MESSAGE}: corrupt stream")
    return length


def read_message(stream) -> tuple[dict, dict[str, np.ndarray]] | None:
    """Return the next (meta, arrays) from a blocking binary stream, or None at a clean EOF
    (no byte of a new message). A message cut short raises ProtocolError."""
    body = read_body(stream)
    return None if body is None else decode(body)


def read_body(stream) -> bytes | None:
    """Return the body of the next message from a blocking binary stream (to decode), or
    None at a clean EOF. A message cut short raises ProtocolError."""
    header = _read_exact(stream, HEADER.size, allow_eof=True)
    if header is None:
        return None
    return _read_exact(stream, body_length(header), allow_eof=False)


def _read_exact(stream, n: int, *, allow_eof: bool) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            if allow_eof and got == 0:
                return None
            raise ProtocolError(f"stream ended after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


# --- arguments and cases ----------------------------------------------------------------


def pack_call(method: str, args, kwargs,
              names: tuple[str, ...] = ()) -> tuple[dict, dict[str, np.ndarray]]:
    """Return (meta, arrays) of a call: ndarray arguments travel as arrays, everything else
    as JSON values. A positional array is keyed by its parameter name from names (so that
    messages about it name it), else ``arg<i>``; a keyword array by ``kw:<name>``."""
    meta_args, arrays = [], {}
    for i, value in enumerate(args):
        if isinstance(value, np.ndarray):
            key = names[i] if i < len(names) else f"arg{i}"
            arrays[key] = value
            meta_args.append({"array": key})
        else:
            meta_args.append({"value": value})
    meta_kwargs = {}
    for name, value in kwargs.items():
        if isinstance(value, np.ndarray):
            arrays[f"kw:{name}"] = value
            meta_kwargs[name] = {"array": f"kw:{name}"}
        else:
            meta_kwargs[name] = {"value": value}
    return {"kind": "call", "method": method, "args": meta_args,
            "kwargs": meta_kwargs}, arrays


def unpack_call(meta: dict, arrays: dict[str, np.ndarray]) -> tuple[list, dict]:
    """Return (args, kwargs) of a call packed by pack_call."""
    def value_of(item):
        return arrays[item["array"]] if "array" in item else item["value"]

    return ([value_of(item) for item in meta["args"]],
            {name: value_of(item) for name, item in meta["kwargs"].items()})


CASE_FIELDS = ("id", "op", "family", "summary", "dtype", "axis", "eps", "momentum",
               "cudnn_off")
FLAG_FIELDS = ("training", "fix_gamma", "use_global_stats", "output_mean_var")


def pack_case(case) -> tuple[dict, dict[str, np.ndarray]]:
    """Return (meta, arrays) describing a case for a child's ``supports()``: its id, op,
    dtype, shape, flags, eps/momentum/axis and inputs (never its expected values)."""
    flags = getattr(case, "flags", None)
    error = getattr(case, "error", None)
    meta = {name: getattr(case, name, None) for name in CASE_FIELDS}
    meta["shape"] = list(getattr(case, "shape", ()) or ())
    meta["flags"] = {name: bool(getattr(flags, name, False)) for name in FLAG_FIELDS}
    meta["error"] = (None if error is None else
                     {"exception": error.exception, "match": error.match})
    meta["quantized"] = getattr(case, "quantized", None)  # op "qnt": the four range params
    inputs = {name: np.asarray(value)
              for name, value in (getattr(case, "inputs", None) or {}).items()}
    return {"kind": "supports", "case": meta}, inputs


class CaseFlags:
    """The flags of a CaseView (the attributes of bnspec.flags.Flags that backends use)."""

    def __init__(self, training, fix_gamma, use_global_stats, output_mean_var):
        self.training = training
        self.fix_gamma = fix_gamma
        self.use_global_stats = use_global_stats
        self.output_mean_var = output_mean_var

    @property
    def batch_stats(self) -> bool:
        return self.training and not self.use_global_stats


class CaseView:
    """What a child's ``supports(case)`` sees of an oracle.casefile.Case: the same
    attribute names (id, op, family, summary, dtype, shape, axis, flags, eps, momentum,
    cudnn_off, inputs, error) and ``kwargs()``, without the expected values."""

    def __init__(self, meta: dict, inputs: dict[str, np.ndarray]):
        for name in CASE_FIELDS:
            setattr(self, name, meta.get(name))
        self.shape = tuple(meta.get("shape") or ())
        self.flags = CaseFlags(**meta["flags"])
        error = meta.get("error")
        self.error = None if error is None else SimpleNamespace(**error)
        self.quantized = meta.get("quantized")
        self.inputs = inputs

    def kwargs(self) -> dict:
        """Return the keyword arguments of the case's call, as Case.kwargs() does."""
        flags = self.flags
        return {"eps": self.eps, "momentum": self.momentum, "fix_gamma": flags.fix_gamma,
                "use_global_stats": flags.use_global_stats,
                "output_mean_var": flags.output_mean_var, "axis": self.axis,
                "training": flags.training, "cudnn_off": self.cudnn_off}
