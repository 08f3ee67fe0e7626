"""Tiny golden case files for testing the harness, written in the schema of
docs/case-format.md, and the fake backends that go with them.

The fixture cases follow a toy operator, not batch norm: the harness only compares what a
backend returns with what a case expects, so any deterministic rule will do, and a rule
this simple lets each fake backend break exactly one thing. Toy rule:

    forward:  y = x;  mean = running_mean;  invstd = running_var  (with output_mean_var);
              for float64 data the exact y is x + 0.375 ulp(x) (lo = 0.375 ulp): a backend
              returning x is 0.375 ulp off, which only a 106-bit comparison sees;
              running_mean, running_var returned unchanged (cond 0: exact)
    backward: dx = dy;  dgamma = gamma;  dbeta = beta;
              running_mean, running_var returned doubled
"""
from __future__ import annotations

from pathlib import Path

# Imported here, before pytester's sys.modules snapshot: the snapshot drops modules a test
# imported, and ml_dtypes' extension registers its dtypes once per process, so importing
# it again in the next test raises 'DType bfloat16 appears already registered'.
import ml_dtypes  # noqa: F401
import numpy as np

from bnspec.flags import (DEFAULT_EPS, DEFAULT_MOMENTUM, DTYPES, Flags, case_id, error_case_id,
                          numpy_dtype)
from oracle.api import Expected, output_dtype
from oracle.casefile import Case, ErrorSpec, write_case

COMMAND = "tests/conformance/case_fixtures.py (harness fixture)"


def toy_inputs(dtype: str, shape, seed: int = 0, with_dy: bool = False) -> dict[str, np.ndarray]:
    """Return random inputs of a call, in the dtypes the operator takes."""
    rng = np.random.default_rng(seed)
    dt, pdt = numpy_dtype(dtype), numpy_dtype(DTYPES[dtype].param)
    c = shape[1]
    inputs = {"x": rng.normal(size=shape).astype(dt),
              "gamma": rng.uniform(0.5, 2, c).astype(pdt),
              "beta": rng.normal(size=c).astype(pdt),
              "running_mean": rng.normal(size=c).astype(pdt),
              "running_var": rng.uniform(0.5, 2, c).astype(pdt)}
    if with_dy:
        inputs["dy"] = rng.normal(size=shape).astype(dt)
    return inputs


def toy_expected(name: str, data_dtype: str, value: np.ndarray, cond, lo=None) -> Expected:
    """Return the Expected of an output hi + lo whose hi is representable and |lo| is below
    half an ulp of hi (so hi is also the correctly rounded value)."""
    value = np.asarray(value, dtype=np.float64)
    cond = np.broadcast_to(np.asarray(cond, dtype=np.float64), value.shape).copy()
    lo = np.zeros_like(value) if lo is None else lo
    return Expected(name, output_dtype(name, data_dtype), value, lo, value.copy(), cond)


def toy_outputs(op: str, flags: Flags, dtype: str, inputs: dict) -> dict[str, Expected]:
    """Return the expected outputs of the toy rule (module doc)."""
    a = {k: v.astype(np.float64) for k, v in inputs.items()}
    if op == "fwd":
        lo = 0.375 * np.spacing(np.abs(a["x"])) if dtype == "float64" else None
        out = {"y": toy_expected("y", dtype, a["x"], np.abs(a["x"]) + 1, lo)}
        if flags.output_mean_var:
            out["mean"] = toy_expected("mean", dtype, a["running_mean"], 1.0)
            out["invstd"] = toy_expected("invstd", dtype, a["running_var"], 1.0)
        out["running_mean"] = toy_expected("running_mean", dtype, a["running_mean"], 0.0)
        out["running_var"] = toy_expected("running_var", dtype, a["running_var"], 0.0)
        return out
    return {"dx": toy_expected("dx", dtype, a["dy"], np.abs(a["dy"])),
            "dgamma": toy_expected("dgamma", dtype, a["gamma"], a["gamma"]),
            "dbeta": toy_expected("dbeta", dtype, a["beta"], np.abs(a["beta"]) + 1),
            "running_mean": toy_expected("running_mean", dtype, 2 * a["running_mean"],
                                         np.abs(2 * a["running_mean"])),
            "running_var": toy_expected("running_var", dtype, 2 * a["running_var"],
                                        2 * a["running_var"])}


def write_toy_case(directory: Path, op: str, flags: Flags, dtype: str, shape,
                   seed: int = 0) -> str:
    """Write a fwd or bwd toy case with oracle.casefile; return its id."""
    axis = 1
    cid = case_id(op, flags, axis, dtype, shape, "normal")
    inputs = toy_inputs(dtype, shape, seed, with_dy=op == "bwd")
    case = Case(id=cid, op=op, family="normal", path=None, dtype=dtype, shape=tuple(shape),
                summary=f"toy {op} {dtype} {'x'.join(map(str, shape))} {flags.label}",
                axis=axis, flags=flags, eps=DEFAULT_EPS, momentum=DEFAULT_MOMENTUM,
                cudnn_off=False, inputs=inputs, expected=toy_outputs(op, flags, dtype, inputs))
    write_case(case, directory, COMMAND)
    return cid


def write_error_case(directory: Path, dtype: str = "float32") -> str:
    """Write err_gamma_length: gamma of length C + 1; return its id."""
    shape = (2, 3)
    cid = error_case_id("gamma_length", dtype, shape)
    inputs = toy_inputs(dtype, shape)
    inputs["gamma"] = np.ones(4, dtype=inputs["gamma"].dtype)
    case = Case(id=cid, op="err", family="invalid", path=None, dtype=dtype, shape=shape,
                summary=f"{dtype} 2x3 with gamma of length 4", axis=1,
                flags=Flags(True, False, False, False), eps=DEFAULT_EPS,
                momentum=DEFAULT_MOMENTUM, cudnn_off=False, inputs=inputs,
                error=ErrorSpec("ValueError", "gamma"))
    write_case(case, directory, COMMAND)
    return cid


TRAIN = Flags(True, True, False, False)
TRAIN_MEANVAR = Flags(True, False, False, True)
INFER = Flags(False, True, True, False)


def write_suite(directory: Path) -> dict[str, list[str]]:
    """Write the standard fixture suite; return {op: [ids]}."""
    directory.mkdir(parents=True, exist_ok=True)
    ids = {"fwd": [write_toy_case(directory, "fwd", TRAIN, "float32", (2, 3)),
                   write_toy_case(directory, "fwd", TRAIN_MEANVAR, "float16", (2, 3), seed=1),
                   write_toy_case(directory, "fwd", INFER, "float64", (2, 3), seed=2),
                   write_toy_case(directory, "fwd", TRAIN, "float32", (2, 3, 2, 2), seed=3)],
           "bwd": [write_toy_case(directory, "bwd", TRAIN, "float32", (2, 3), seed=4),
                   write_toy_case(directory, "bwd", TRAIN, "bfloat16", (2, 3), seed=5)],
           "err": [write_error_case(directory)]}
    return ids


FAKE_BACKENDS = '''
"""Fake backends of the toy rule (tests/conformance/case_fixtures.py), one flaw each."""
import numpy as np
from conformance.adapter import Capabilities


class Good:
    name = "fake"
    version = "0.0"
    capabilities = Capabilities()

    def supports(self, case):
        return None

    def forward(self, x, gamma, beta, running_mean, running_var, **kw):
        if gamma.shape != (x.shape[kw["axis"]],):
            raise ValueError(f"gamma.shape={gamma.shape} must be ({x.shape[kw['axis']]},)")
        out = {"y": x.copy(), "running_mean": running_mean.copy(),
               "running_var": running_var.copy()}
        if kw["output_mean_var"]:
            out["mean"], out["invstd"] = running_mean.copy(), running_var.copy()
        return out

    def backward(self, x, gamma, beta, running_mean, running_var, dy, **kw):
        return {"dx": dy.copy(), "dgamma": gamma.copy(), "dbeta": beta.copy(),
                "running_mean": running_mean * 2, "running_var": running_var * 2}


class OffByUlps(Good):
    """y[0, 1] moved by 40 ulp in float32 cases."""

    def forward(self, x, *args, **kw):
        out = super().forward(x, *args, **kw)
        if x.dtype == np.float32:
            y = out["y"]
            for _ in range(40):
                y[0, 1] = np.nextafter(y[0, 1], np.float32(np.inf))
        return out


class NanDx(Good):
    def backward(self, *args, **kw):
        out = super().backward(*args, **kw)
        out["dx"][1, 2] = np.nan
        return out


class F32Only(Good):
    capabilities = Capabilities(dtypes=frozenset({"float32"}), backward=False, max_rank=2)


class RunningInForward(Good):
    """Updates the running statistics in forward: must break the exact check."""

    def forward(self, *args, **kw):
        out = super().forward(*args, **kw)
        out["running_mean"] = out["running_mean"] * 2
        return out


class Raises(Good):
    def forward(self, *args, **kw):
        raise RuntimeError("kernel launch failed")


class Silent(Good):
    """Accepts a gamma of the wrong length."""

    def forward(self, x, gamma, beta, running_mean, running_var, **kw):
        return {"y": x.copy(), "running_mean": running_mean, "running_var": running_var}


class WritesFirst(Good):
    """Updates running_mean in place before it checks its arguments."""

    def forward(self, x, gamma, beta, running_mean, running_var, **kw):
        running_mean *= 0.5
        return super().forward(x, gamma, beta, running_mean, running_var, **kw)


class WrongMessage(Good):
    def forward(self, *args, **kw):
        raise ValueError("bad shape")


class Broken:
    def __init__(self):
        raise ImportError("libbn.so: cannot open shared object file")
'''
