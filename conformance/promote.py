"""Turn a failing property-test example into golden cases: ``python -m conformance.promote``.

When a test of conformance/test_properties.py fails, it saves the calls of its final
(shrunk) example to ``<report dir>/<backend>/hypothesis/<test>.npz`` and prints::

    promote: python -m conformance.promote reports/cpu/hypothesis/test_x_step.npz --out DIR

That command computes the oracle's expected outputs for each saved call and writes one case
file per call into DIR with oracle.casefile.write_case (schema 1, family ``hypothesis``, a
short content hash as the id's tag), then prints how to run them::

    pytest conformance/ --backend NAME --cases DIR -k <id>

An example file is an ``.npz`` (read with ``allow_pickle=False``) holding ``__meta__`` (the
UTF-8 bytes of a JSON object: the test and, per call, its op ("forward" or "step"), keyword
arguments and data dtype) and the arrays ``c<i>_<name>`` of call i. bfloat16 arrays are
stored as their uint16 bits.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

from bnspec.flags import DTYPES, FLAG_NAMES, Flags, case_id, dtype_name, numpy_dtype
from oracle.casefile import Case, write_case

META = "__meta__"
FAMILY = "hypothesis"
INPUTS = ("x", "gamma", "beta", "running_mean", "running_var", "dy")
KWARGS = ("eps", "momentum", "fix_gamma", "use_global_stats", "output_mean_var", "axis",
          "training")


def save_example(path, test: str, calls: list[tuple[str, dict, dict]]) -> Path:
    """Write the calls [(op, arrays by name, keyword arguments)] of one example to path
    (atomically: a failing test rewrites it for every shrink step); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"test": test, "calls": []}
    arrays = {}
    for i, (op, named, kwargs) in enumerate(calls):
        x = np.asarray(named["x"])
        meta["calls"].append({"op": op, "dtype": dtype_name(x.dtype),
                              "kwargs": {k: _plain(kwargs[k]) for k in KWARGS},
                              "arrays": {n: dtype_name(np.asarray(a).dtype)
                                         for n, a in named.items() if n in INPUTS}})
        for name, a in named.items():
            if name in INPUTS:
                a = np.ascontiguousarray(a)
                arrays[f"c{i}_{name}"] = a.view(np.uint16) if a.dtype.name == "bfloat16" else a
    arrays[META] = np.frombuffer(json.dumps(meta, allow_nan=True).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _plain(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(value)


def load_example(path) -> tuple[str, list[tuple[str, dict, dict]]]:
    """Return (test name, calls) of an example file written by save_example."""
    with np.load(path, allow_pickle=False) as npz:
        if META not in npz.files:
            raise ValueError(f"{path}: not an example file (no {META} entry)")
        meta = json.loads(npz[META].tobytes().decode())
        calls = []
        for i, call in enumerate(meta["calls"]):
            named = {}
            for name, dtype in call["arrays"].items():
                a = npz[f"c{i}_{name}"]
                named[name] = a.view(numpy_dtype(dtype)) if dtype == "bfloat16" else a
            calls.append((call["op"], named, call["kwargs"]))
    return meta["test"], calls


def case_from_call(op: str, named: dict, kwargs: dict, summary: str,
                   variants=()) -> Case:
    """Return the golden Case of one call, expected values from the oracle (with the
    declared variants, if any)."""
    import oracle

    x = np.asarray(named["x"])
    dtype = dtype_name(x.dtype)
    if dtype not in DTYPES:
        raise ValueError(f"x.dtype={dtype!r}: only float cases can be promoted")
    flags = Flags(*(bool(kwargs[name]) for name in FLAG_NAMES))
    inputs = {n: np.ascontiguousarray(named[n]) for n in INPUTS[:5]}
    if op == "step":
        inputs["dy"] = np.ascontiguousarray(named["dy"])
    expected = oracle.evaluate(*(inputs[n] for n in INPUTS[:5]), inputs.get("dy"),
                               variants=tuple(variants), **{k: kwargs[k] for k in KWARGS})
    digest = hashlib.sha256()
    for name in sorted(inputs):
        digest.update(name.encode() + inputs[name].tobytes())
    digest.update(json.dumps({k: _plain(kwargs[k]) for k in KWARGS}, sort_keys=True).encode())
    kind = "bwd" if op == "step" else "fwd"
    cid = case_id(kind, flags, int(kwargs["axis"]), dtype, x.shape, FAMILY,
                  eps=float(kwargs["eps"]), momentum=float(kwargs["momentum"]),
                  tag="h" + digest.hexdigest()[:8])
    return Case(id=cid, op=kind, family=FAMILY, summary=summary, path=None, dtype=dtype,
                shape=tuple(x.shape), axis=int(kwargs["axis"]), flags=flags,
                eps=float(kwargs["eps"]), momentum=float(kwargs["momentum"]),
                cudnn_off=False, inputs=inputs, expected=expected)


def promote(path, out, variants=(), command: str | None = None) -> list[Path]:
    """Write one case file per call of the example at path into out; return their paths."""
    test, calls = load_example(path)
    written = []
    for i, (op, named, kwargs) in enumerate(calls):
        x = np.asarray(named["x"])
        summary = (f"promoted from {test} (call {i + 1} of {len(calls)}): {x.dtype.name} "
                   f"{'x'.join(map(str, x.shape))} axis={kwargs['axis']} {op}")
        case = case_from_call(op, named, kwargs, summary, variants)
        written.append(write_case(case, out, command=command or "python -m conformance.promote"))
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.promote",
        description="Write the calls of a failing property-test example as golden cases.")
    parser.add_argument("example", help="the .npz file a failing property test saved")
    parser.add_argument("--out", required=True, help="directory to write the case files into")
    parser.add_argument("--variants", default="",
                        help="comma-separated oracle variants the backend declares (its "
                             "semantic profile); default: none, MXNet's semantics")
    args = parser.parse_args(argv)
    variants = tuple(v for v in args.variants.split(",") if v)
    command = shlex.join(["python", "-m", "conformance.promote", *(argv or sys.argv[1:])])
    try:
        paths = promote(args.example, args.out, variants, command)
    except (OSError, ValueError, KeyError) as exc:
        print(f"promote: {args.example}: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(f"wrote {p}")
    ids = " or ".join(p.stem for p in paths)
    print(f"run: pytest conformance/ --backend NAME --cases {shlex.quote(args.out)} -k "
          f"{shlex.quote(ids)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
