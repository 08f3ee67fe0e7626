"""The public API: argument errors, output names and dtypes, running statistics, purity.

- every invalid argument raises the documented error class with a message naming the
  parameter and its value, and leaves every input bit-identical;
- outputs come by name, in the documented dtype (y, dx: data dtype; the rest: the parameter
  dtype, float32 for 16-bit data), with bfloat16 given and returned as ml_dtypes.bfloat16;
- batch_norm returns the running statistics after a whole training step (updated only with
  training and batch statistics) and evaluate's forward returns them exactly as given
  (hi = value, lo = 0, cond = 0);
- eps and momentum defaults are MXNet's: 0.0010000000474974513 and float32(0.9).
"""
from __future__ import annotations

import itertools
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

import oracle
from fraction_reference import (DTYPE_NAMES, PARAM_DTYPE, assert_rounded_equal, cast,
                                draw_case, np_dtype, repro, round_exact)

FLAG_COMBOS = [dict(training=t, fix_gamma=f, use_global_stats=u, output_mean_var=o)
               for t, f, u, o in itertools.product((True, False), repeat=4)]
ENTRY_POINTS = ("evaluate", "batch_norm", "batch_norm_backward")


def valid_case(dtype="float32", shape=(2, 3, 4), axis=1) -> dict:
    rng = np.random.default_rng(0)
    C = shape[axis]
    p = PARAM_DTYPE[dtype]
    return dict(x=cast(rng.normal(size=shape), dtype), gamma=cast(rng.normal(size=C), p),
                beta=cast(rng.normal(size=C), p), running_mean=cast(rng.normal(size=C), p),
                running_var=cast(rng.uniform(0.5, 2, size=C), p),
                dy=cast(rng.normal(size=shape), dtype), axis=axis)


def snapshot(case: dict) -> dict:
    return {k: (v.dtype, v.shape, v.tobytes()) if isinstance(v, np.ndarray) else v
            for k, v in case.items()}


def call(entry: str, case: dict, **kw):
    fn = getattr(oracle, entry)
    if entry == "batch_norm":
        case = {k: v for k, v in case.items() if k != "dy"}
    return fn(**case, **kw)


# --- argument errors ---------------------------------------------------------------------

C3 = valid_case()
INVALID = [
    # (id, changes to the valid case, error class, fragments the message must contain)
    ("gamma_length", dict(gamma=np.ones(4, np.float32)), ValueError, ["gamma", "(4,)"]),
    ("beta_length", dict(beta=np.ones(2, np.float32)), ValueError, ["beta", "(2,)"]),
    ("running_mean_length", dict(running_mean=np.ones(5, np.float32)), ValueError,
     ["running_mean", "(5,)"]),
    ("running_var_2d", dict(running_var=np.ones((3, 1), np.float32)), ValueError,
     ["running_var", "(3, 1)"]),
    ("axis_too_large", dict(axis=3), ValueError, ["axis", "3"]),
    ("axis_too_negative", dict(axis=-4), ValueError, ["axis", "-4"]),
    ("axis_float", dict(axis=1.0), ValueError, ["axis", "1.0"]),
    ("rank1", dict(x=np.ones(3, np.float32), dy=np.ones(3, np.float32)), ValueError, ["x", "1"]),
    ("rank0", dict(x=np.float32(1.0) * np.ones((), np.float32), dy=np.ones((), np.float32)),
     ValueError, ["x", "0"]),
    ("empty", dict(x=np.ones((0, 3), np.float32), dy=np.ones((0, 3), np.float32)), ValueError,
     ["x", "(0, 3)"]),
    ("int_dtype", dict(x=np.ones((2, 3, 4), np.int32), dy=np.ones((2, 3, 4), np.int32)),
     TypeError, ["x", "int32"]),
    ("float64_gamma_for_float32", dict(gamma=np.ones(3, np.float64)), TypeError,
     ["gamma", "float64"]),
    ("float16_params", dict(x=np.ones((2, 3, 4), np.float16), dy=np.ones((2, 3, 4), np.float16),
                            gamma=np.ones(3, np.float16)), TypeError, ["gamma", "float16"]),
    ("bfloat16_params", dict(x=np.ones((2, 3, 4), ml_dtypes.bfloat16),
                             dy=np.ones((2, 3, 4), ml_dtypes.bfloat16),
                             running_var=np.ones(3, ml_dtypes.bfloat16)), TypeError,
     ["running_var", "bfloat16"]),
    ("negative_eps", dict(eps=-1e-5), ValueError, ["eps", "-1e-05"]),
    ("nan_eps", dict(eps=float("nan")), ValueError, ["eps", "nan"]),
    ("inf_momentum", dict(momentum=float("inf")), ValueError, ["momentum", "inf"]),
    ("nan_momentum", dict(momentum=float("nan")), ValueError, ["momentum", "nan"]),
]
DY_INVALID = [
    ("dy_shape", dict(dy=np.ones((2, 3, 5), np.float32)), ValueError, ["dy", "(2, 3, 5)"]),
    ("dy_dtype", dict(dy=np.ones((2, 3, 4), np.float64)), TypeError, ["dy", "float64"]),
]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("name,changes,error,fragments", INVALID + DY_INVALID,
                         ids=[c[0] for c in INVALID + DY_INVALID])
def test_invalid_arguments_raise_and_change_nothing(entry, name, changes, error, fragments):
    if entry == "batch_norm" and "dy" in changes and len(changes) == 1:
        pytest.skip("batch_norm takes no dy")
    case = dict(valid_case(), **changes)
    before = snapshot(case)
    with pytest.raises(error) as info:
        call(entry, case, fix_gamma=True, training=True)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (
            f"message={message!r} should contain {fragment!r} [{entry} with {name}]")
    assert snapshot(case) == before, f"{entry} changed its inputs on error [{name}]"


# --- output names, dtypes, shapes -----------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_output_names_dtypes_and_shapes(dtype):
    case = valid_case(dtype, shape=(3, 2, 2), axis=-1)
    p = PARAM_DTYPE[dtype]
    assert np.dtype(case["x"].dtype) == np_dtype(dtype)
    for flags in FLAG_COMBOS:
        fwd = call("evaluate", {k: v for k, v in case.items() if k != "dy"}, **flags)
        names = ["y", "running_mean", "running_var"] + (
            ["mean", "invstd"] if flags["output_mean_var"] else [])
        assert sorted(fwd) == sorted(names), (sorted(fwd), flags)
        step = call("evaluate", case, **flags)
        assert sorted(step) == sorted(["dx", "dgamma", "dbeta", "running_mean", "running_var"])
        out = call("batch_norm", case, **flags)
        assert sorted(out) == sorted(names)
        grads = call("batch_norm_backward", case, **flags)
        assert sorted(grads) == ["dbeta", "dgamma", "dx"]
        for name, e in list(fwd.items()) + list(step.items()):
            want = dtype if name in ("y", "dx") else p
            assert e.dtype == want, f"{name}.dtype={e.dtype!r}, but should be {want!r} [{flags}]"
            assert oracle.output_dtype(name, dtype) == want
            assert e.as_dtype().dtype == np_dtype(want)
            shape = case["x"].shape if name in ("y", "dx") else (2,)
            for field in ("hi", "lo", "rounded", "cond"):
                assert np.shape(getattr(e, field)) == shape, (name, field, flags)
            assert np.all(e.cond >= 0), f"{name}.cond={e.cond} has negative entries"
            # rounded holds values of the output dtype
            assert np.array_equal(e.as_dtype().astype(np.float64), e.rounded, equal_nan=True)
        for name, a in list(out.items()) + list(grads.items()):
            want = dtype if name in ("y", "dx") else p
            assert isinstance(a, np.ndarray) and a.dtype == np_dtype(want), (
                f"{name}.dtype={getattr(a, 'dtype', type(a))}, but should be {want} [{flags}]")


def test_bfloat16_in_and_out():
    """bfloat16 data as ml_dtypes.bfloat16 arrays with float32 parameters; y and dx come back
    as bfloat16, correctly rounded from the exact value (checked against the reference)."""
    from fraction_reference import reference

    case = valid_case("bfloat16", shape=(4, 3), axis=1)
    flags = dict(training=True, fix_gamma=False, use_global_stats=False, output_mean_var=True)
    out = call("batch_norm", case, eps=1e-5, **flags)
    assert out["y"].dtype == np.dtype(ml_dtypes.bfloat16)
    assert out["mean"].dtype == np.float32 and out["invstd"].dtype == np.float32
    want = reference(**{k: v for k, v in case.items() if k != "dy"}, eps=1e-5, momentum=0.9,
                     **flags)
    assert_rounded_equal("y", out["y"].astype(np.float64), want["y"].rounded(),
                         repro("batch_norm", case, eps=1e-5, **flags))
    grads = call("batch_norm_backward", case, eps=1e-5, **flags)
    assert grads["dx"].dtype == np.dtype(ml_dtypes.bfloat16)
    assert grads["dgamma"].dtype == np.float32


# --- running statistics ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_batch_norm_returns_running_stats_after_the_step(dtype):
    """batch_norm's running stats = those of evaluate with a dy (the step), which with
    training and batch statistics are rm m + mean (1 - m) and rv m + (var + DType(eps) - eps)
    (1 - m); in every other mode they are the inputs, bit for bit."""
    rng = np.random.default_rng(400 + DTYPE_NAMES.index(dtype))
    for flags in FLAG_COMBOS:
        case = draw_case(rng, dtype, eps=1e-5, momentum=0.9)
        fwd_case = {k: v for k, v in case.items() if k != "dy"}
        out = oracle.batch_norm(**fwd_case, **flags)
        step = oracle.evaluate(**case, **flags)
        where = repro("batch_norm", fwd_case, **flags)
        for name in ("running_mean", "running_var"):
            assert np.array_equal(out[name], step[name].as_dtype()), (
                f"{name}={out[name]}, but the step gives {step[name].as_dtype()} [{where}]")
            if not (flags["training"] and not flags["use_global_stats"]):
                assert out[name].tobytes() == case[name].tobytes(), (
                    f"{name}={out[name]}, but should be the input {case[name]} [{where}]")
        if flags["training"] and not flags["use_global_stats"]:
            ax = case["axis"] % case["x"].ndim
            x = np.moveaxis(case["x"].astype(np.float64), ax, 0).reshape(case["gamma"].size, -1)
            m = Fraction(round_exact(Fraction(0.9), "float32"))
            eps_d = Fraction(round_exact(Fraction(1e-5), dtype))
            for c in range(x.shape[0]):
                col = [Fraction(float(t)) for t in x[c]]
                mean = sum(col) / len(col)
                var = sum((t - mean) ** 2 for t in col) / len(col)
                rm = Fraction(float(case["running_mean"][c])) * m + mean * (1 - m)
                rv = Fraction(float(case["running_var"][c])) * m + (var + eps_d - Fraction(1e-5)) * (1 - m)
                assert float(out["running_mean"][c]) == round_exact(rm, PARAM_DTYPE[dtype]), where
                assert float(out["running_var"][c]) == round_exact(rv, PARAM_DTYPE[dtype]), where


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_forward_evaluate_leaves_running_stats_as_given(dtype):
    """Without dy (forward only) the running stats are the inputs exactly: hi = input,
    lo = 0, rounded = input, cond = 0; the same for a step that does not update them."""
    rng = np.random.default_rng(410 + DTYPE_NAMES.index(dtype))
    for flags in FLAG_COMBOS:
        case = draw_case(rng, dtype)
        fwd = oracle.evaluate(**{k: v for k, v in case.items() if k != "dy"}, **flags)
        step = oracle.evaluate(**case, **flags)
        updated = flags["training"] and not flags["use_global_stats"]
        for name in ("running_mean", "running_var"):
            given = case[name].astype(np.float64)
            for e, label in ((fwd[name], "forward"), (step[name], "step")):
                if label == "step" and updated:
                    continue
                assert np.array_equal(e.hi, given) and np.all(e.lo == 0), (label, name, flags)
                assert np.array_equal(e.rounded, given), (label, name, flags)
                assert np.all(e.cond == 0), (
                    f"{name}.cond={e.cond} in {label}, but should be 0 (returned exactly) [{flags}]")


def test_inputs_other_than_gamma_are_not_modified():
    """The oracle is a pure function of its inputs (MXNet's in-place gamma = 1 with fix_gamma
    is not asserted either way): x, beta, running stats and dy keep their bits."""
    case = valid_case("float32")
    before = snapshot(case)
    for flags in FLAG_COMBOS:
        for entry in ENTRY_POINTS:
            call(entry, case, **flags)
    after = snapshot(case)
    for name in ("x", "beta", "running_mean", "running_var", "dy"):
        assert after[name] == before[name], f"{name} was modified"


# --- defaults ---------------------------------------------------------------------------


def test_defaults_are_mxnets():
    """eps defaults to float32(1e-3) as a double; momentum 0.9 acts as float32(0.9):
    with running_mean 1 and a batch mean 0 one step gives exactly 0.899999976158142."""
    assert oracle.DEFAULT_EPS == 0.0010000000474974513
    x = np.array([[-1.0], [1.0]])
    out = oracle.batch_norm(x, np.ones(1), np.zeros(1), np.ones(1), np.ones(1), training=True,
                            output_mean_var=True)
    assert out["running_mean"][0] == float(np.float32(0.9)) == 0.8999999761581421
    # invstd with the default eps: 1/sqrt(1 + 0.0010000000474974513)
    want = round_exact(Fraction(1) / Fraction(1 + Fraction(oracle.DEFAULT_EPS)), "float64")
    assert abs(out["invstd"][0] ** 2 - want) <= 2 * 2.0**-52
