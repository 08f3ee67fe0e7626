"""The worker child: ``python -m backends.worker.child MODULE:FACTORY``.

Loads one backend from a factory spec (as ``conformance.registry`` does: ``module:attr``,
a class or a function returning the backend, or the backend object itself), answers a
``hello`` with its name, version and capabilities, then serves requests one at a time until
its input ends or a ``shutdown`` arrives (messages: ``backends.worker.protocol``):

    supports  -> {"kind": "result", "value": None | reason}      (the case as a CaseView)
    call      -> {"kind": "result", "outputs": [...]} + arrays "out:<name>"
               | {"kind": "error", "error": {type, module, bases, message, traceback}}

Each call reply also carries, as arrays "inout:<arg key>", the input arrays the backend
changed in place (MXNet overwrites gamma with fix_gamma; running statistics are updated in
place), so the parent can write them back into its caller's arrays: an out-of-process
backend mutates its inputs exactly as the in-process one would, on success and on error.

The protocol runs on copies of the original stdin/stdout descriptors; fd 0 is then
/dev/null and fd 1 is redirected to stderr, so whatever the backend or a C library prints
cannot corrupt the message stream. Only numpy and the standard library are needed here.
"""
from __future__ import annotations

import builtins
import dataclasses
import importlib
import os
import platform
import sys
import traceback

import numpy as np

from backends.worker.protocol import (
    CaseView,
    decode,
    encode,
    read_body,
    unpack_call,
)

#: Backend methods a parent may call ("quantized": the quantized path, conformance/adapter.py).
METHODS = ("forward", "backward", "quantized")


def load_factory(spec: str):
    """Return the backend a ``module:attr`` spec names (calling it if it is a factory)."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ValueError(f"factory spec={spec!r} must be of the form package.module:factory")
    obj = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "forward")):
        obj = obj()
    return obj


def capabilities_dict(caps) -> dict:
    """Return a backend's capabilities as JSON-ready values (sets and tuples as lists)."""
    if dataclasses.is_dataclass(caps):
        values = {f.name: getattr(caps, f.name) for f in dataclasses.fields(caps)}
    else:
        values = dict(vars(caps)) if caps is not None else {}
    return {name: sorted(value) if isinstance(value, (set, frozenset)) else
            list(value) if isinstance(value, tuple) else value
            for name, value in values.items()}


def error_meta(exc: BaseException) -> dict:
    """Return what the parent needs to re-raise exc: class name and module, the builtin
    classes among its bases, the message and the formatted traceback."""
    cls = type(exc)
    bases = [base.__name__ for base in cls.__mro__
             if base.__module__ == "builtins" and getattr(builtins, base.__name__, None) is base]
    return {"type": cls.__name__, "module": cls.__module__, "bases": bases,
            "message": str(exc),
            "traceback": "".join(traceback.format_exception(cls, exc, exc.__traceback__))}


class Child:
    """The serving loop over two binary streams (see module doc)."""

    def __init__(self, spec: str, inp, out):
        self.spec = spec
        self.inp = inp
        self.out = out
        self.backend = None

    def send(self, meta: dict, arrays: dict | None = None) -> None:
        self.out.write(encode(meta, arrays))
        self.out.flush()

    def hello(self) -> bool:
        """Load the backend and say hello; return False (after saying why) if it fails."""
        try:
            self.backend = load_factory(self.spec)
            backend = self.backend
            info = {"kind": "hello", "ok": True, "name": str(backend.name),
                    "version": str(backend.version),
                    "capabilities": capabilities_dict(getattr(backend, "capabilities", None)),
                    "methods": [m for m in METHODS + ("supports",)
                                if callable(getattr(backend, m, None))]}
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            info = {"kind": "hello", "ok": False, "error": error_meta(exc)}
        info.update(pid=os.getpid(), python=sys.executable,
                    python_version=platform.python_version(), numpy=np.__version__)
        self.send(info)
        return info["ok"]

    def serve(self) -> int:
        """Answer requests until EOF or shutdown; return the exit status."""
        if not self.hello():
            return 1
        while True:
            body = read_body(self.inp)
            if body is None:
                return 0
            try:  # a request this interpreter cannot decode (an array dtype it lacks)
                meta, arrays = decode(body)
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                self.send({"kind": "error", "error": error_meta(exc)})
                continue
            kind = meta.get("kind")
            if kind == "shutdown":
                return 0
            if kind == "supports":
                self.supports(meta, arrays)
            elif kind == "call":
                self.call(meta, arrays)
            else:
                self.send({"kind": "error", "error": error_meta(
                    ValueError(f"request kind={kind!r} is not one of call, supports, shutdown"))})

    def supports(self, meta: dict, arrays: dict) -> None:
        try:
            reason = self.backend.supports(CaseView(meta["case"], arrays))
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            self.send({"kind": "error", "error": error_meta(exc)})
            return
        self.send({"kind": "result", "value": None if reason is None else str(reason)})

    def call(self, meta: dict, arrays: dict) -> None:
        """Run one backend method; reply with its outputs or its exception, plus the input
        arrays it changed in place."""
        before = {key: array.copy() for key, array in arrays.items()}
        reply: dict = {"kind": "result"}
        out_arrays: dict = {}
        try:
            method = meta.get("method")
            if method not in METHODS:
                raise ValueError(f"method={method!r} is not one of {METHODS}")
            args, kwargs = unpack_call(meta, arrays)
            outputs = getattr(self.backend, method)(*args, **kwargs)
            if isinstance(outputs, dict):
                reply["outputs"] = list(outputs)
                out_arrays = {f"out:{name}": np.asarray(value)
                              for name, value in outputs.items()}
            else:
                reply["returned"] = type(outputs).__name__
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            reply = {"kind": "error", "error": error_meta(exc)}
            out_arrays = {}
        changed = [key for key, array in arrays.items() if _changed(before[key], array)]
        reply["inout"] = changed
        out_arrays.update({f"inout:{key}": arrays[key] for key in changed})
        self.send(reply, out_arrays)


def _changed(old: np.ndarray, new: np.ndarray) -> bool:
    return (old.dtype != new.dtype or old.shape != new.shape
            or old.tobytes() != new.tobytes())


def protocol_streams():
    """Return (input, output) binary streams on private copies of fds 0 and 1, after
    pointing fd 0 at /dev/null and fd 1 at stderr."""
    inp = os.fdopen(os.dup(0), "rb", buffering=0)
    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return inp, out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m backends.worker.child package.module:factory", file=sys.stderr)
        return 2
    inp, out = protocol_streams()
    try:
        return Child(argv[0], inp, out).serve()
    except BrokenPipeError:  # the parent went away
        return 0


if __name__ == "__main__":
    sys.exit(main())
