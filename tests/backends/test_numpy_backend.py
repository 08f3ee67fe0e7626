"""Direct tests of backends.numpy_backend against exact rational arithmetic.

The reference here is independent of the code under test: it follows the spec
(shared/spec/batch_norm_semantics.md) with fractions.Fraction, one channel at a time, and
a square root to about 2**-200. Expected values come from that reference or from closed
forms, never from the backend.
"""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.numpy_backend import NumpyBackend, to_dtype
from bnspec.formats import FORMATS, round_fraction

PARAM = {"float64": "float64", "float32": "float32", "float16": "float32",
         "bfloat16": "float32"}
DTYPES = tuple(PARAM)
EPS = float(np.float32(1e-3))
FLAGS = [dict(zip(("training", "fix_gamma", "use_global_stats", "output_mean_var"), combo))
         for combo in itertools.product((True, False), repeat=4)]


def np_dtype(name):
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


# --- exact reference ------------------------------------------------------------------


def sqrt_fraction(q: Fraction, bits: int = 200) -> Fraction:
    """Return sqrt(q) for q > 0 to a relative accuracy of about 2**-bits."""
    k = bits + max(0, (q.denominator.bit_length() - q.numerator.bit_length()) // 2 + 1)
    return Fraction(math.isqrt(q.numerator * 4**k // q.denominator), 2**k)


def fractions_of(a) -> list[Fraction]:
    return [Fraction(float(v)) for v in np.asarray(a).astype(np.float64).ravel()]


def reference(x, gamma, beta, rm, rv, dy=None, *, eps, momentum, fix_gamma, use_global_stats,
              output_mean_var, axis, training):
    """Return the exact outputs (object arrays of Fractions) of forward, or of a training
    step when dy is given, written from the spec formulas, and under "scale" the magnitude
    of the terms each output is made of (a float64 computation errs by a few 2**-53 of it)."""
    dtype = np.dtype(x.dtype).name
    e = Fraction(round_fraction(Fraction(eps), FORMATS[dtype]))
    m = Fraction(round_fraction(Fraction(momentum), FORMATS["float32"]))
    ax = axis % x.ndim
    channels = x.shape[ax]
    xs = np.moveaxis(np.asarray(x).astype(np.float64), ax, -1).reshape(-1, channels)
    dys = None if dy is None else np.moveaxis(dy.astype(np.float64), ax, -1).reshape(-1, channels)
    batch = training and not use_global_stats
    out = {name: [] for name in ("y", "dx", "y_scale", "dx_scale")}
    stats = {name: [] for name in ("mean", "invstd", "dgamma", "dbeta", "running_mean",
                                   "running_var")}
    for c in range(channels):
        col = fractions_of(xs[:, c])
        count = len(col)
        g = Fraction(1) if fix_gamma else Fraction(float(gamma[c]))
        b = Fraction(float(beta[c]))
        rmc, rvc = Fraction(float(rm[c])), Fraction(float(rv[c]))
        if batch:
            mean = sum(col) / count
            var = sum((v - mean) ** 2 for v in col) / count
            invstd = 1 / sqrt_fraction(var + e)
        else:
            mean, invstd = rmc, 1 / sqrt_fraction(rvc + e)
        s = abs(invstd * g)
        out["y"].append([(v - mean) * invstd * g + b for v in col])
        out["y_scale"].append([(abs(v) + abs(mean)) * s + abs(b) for v in col])
        stats["mean"].append(mean)
        stats["invstd"].append(invstd)
        new_rm, new_rv = rmc, rvc
        if dys is not None:
            d = fractions_of(dys[:, c])
            sdy = sum(d)
            dotp = sum((v - mean) * w for v, w in zip(col, d))
            if batch:
                k = dotp * invstd**2 / count
                dx = [(w - sdy / count - (v - mean) * k) * invstd * g for v, w in zip(col, d)]
                out["dx_scale"].append([
                    s * (abs(w) + abs(sdy) / count + (abs(v) + abs(mean)) * abs(k))
                    for v, w in zip(col, d)])
                recovered = var + e - Fraction(eps)  # 1/invstd^2 - eps, invstd exact
                new_rm = rmc * m + mean * (1 - m)
                new_rv = rvc * m + recovered * (1 - m)
            else:
                dx = [w * invstd * g for w in d]
                out["dx_scale"].append([abs(w) * s for w in d])
            out["dx"].append(dx)
            stats["dgamma"].append(Fraction(0) if fix_gamma else dotp * invstd)
            stats["dbeta"].append(sdy)
        stats["running_mean"].append(new_rm)
        stats["running_var"].append(new_rv)

    def layout(columns):
        arr = np.empty((len(columns[0]), channels), dtype=object)
        for c, column in enumerate(columns):
            arr[:, c] = column
        moved = list(x.shape)
        moved.append(moved.pop(ax))
        return np.moveaxis(arr.reshape(moved), -1, ax)

    result = {"running_mean": np.array(stats["running_mean"], dtype=object),
              "running_var": np.array(stats["running_var"], dtype=object), "scale": {}}
    if dy is None:
        result["y"] = layout(out["y"])
        result["scale"]["y"] = layout(out["y_scale"])
        if output_mean_var:
            result["mean"] = np.array(stats["mean"], dtype=object)
            result["invstd"] = np.array(stats["invstd"], dtype=object)
    else:
        result["dx"] = layout(out["dx"])
        result["scale"]["dx"] = layout(out["dx_scale"])
        result["dgamma"] = np.array(stats["dgamma"], dtype=object)
        result["dbeta"] = np.array(stats["dbeta"], dtype=object)
    return result


def assert_matches(name, got, exact, dtype, scale=None):
    """got must be the exact value correctly rounded to dtype, give or take one ulp (the
    float64 computation may land on the other side of a rounding boundary) and 1e-13 of the
    magnitude of the terms (scale; by default the largest |value|): float64's own error."""
    __tracebackhide__ = True
    fmt = FORMATS[dtype]
    assert np.asarray(got).dtype == np_dtype(dtype), f"{name}.dtype={got.dtype}, not {dtype}"
    assert np.shape(got) == np.shape(exact), f"{name}.shape={np.shape(got)} != {np.shape(exact)}"
    want = np.array([round_fraction(v, fmt) for v in exact.ravel()]).reshape(exact.shape)
    g = np.asarray(got).astype(np.float64)
    if scale is None:
        scale = float(np.max(np.abs(want))) if want.size else 0.0
    tol = fmt.ulp(want) + 1e-13 * np.asarray(scale, dtype=np.float64)
    bad = ~(np.abs(g - want) <= tol)
    assert not bad.any(), (
        f"{name}{list(np.argwhere(bad)[0])}={g[bad][0]!r}, but should be {want[bad][0]!r} "
        f"[{dtype}]")


# --- inputs -----------------------------------------------------------------------------


def make_inputs(dtype, shape, axis, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    c = shape[axis]
    pdt = np_dtype(PARAM[dtype])
    x = (rng.normal(size=shape) * 2 + offset).astype(np.float32).astype(np_dtype(dtype))
    dy = rng.normal(size=shape).astype(np.float32).astype(np_dtype(dtype))
    gamma = rng.uniform(0.5, 2.0, size=c).astype(pdt)
    beta = rng.normal(size=c).astype(pdt)
    rm = rng.normal(size=c).astype(pdt)
    rv = rng.uniform(0.5, 2.0, size=c).astype(pdt)
    return x, gamma, beta, rm, rv, dy


def kwargs(flags, axis, eps=EPS, momentum=0.9):
    return {"eps": eps, "momentum": momentum, "axis": axis, **flags}


def flags_of(training=True, fix_gamma=False, use_global_stats=False, output_mean_var=True):
    return {"training": training, "fix_gamma": fix_gamma, "use_global_stats": use_global_stats,
            "output_mean_var": output_mean_var}


BACKEND = NumpyBackend()
SHAPES_AXES = [((3, 2, 4), 1), ((2, 3, 1, 2), -1), ((5, 3), 0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(k for k, v in f.items() if v))
@pytest.mark.parametrize("shape,axis", SHAPES_AXES)
def test_forward_matches_exact_reference(dtype, flags, shape, axis):
    x, gamma, beta, rm, rv, _ = make_inputs(dtype, shape, axis)
    exact = reference(x, gamma, beta, rm, rv, **kwargs(flags, axis))
    got = BACKEND.forward(x, gamma.copy(), beta, rm.copy(), rv.copy(), **kwargs(flags, axis))
    scale = exact.pop("scale")
    assert set(got) == set(exact)
    assert_matches("y", got["y"], exact["y"], dtype, scale["y"])
    for name in set(exact) - {"y"}:
        assert_matches(name, got[name], exact[name], PARAM[dtype])
    np.testing.assert_array_equal(got["running_mean"], rm)  # forward never updates
    np.testing.assert_array_equal(got["running_var"], rv)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(k for k, v in f.items() if v))
@pytest.mark.parametrize("shape,axis", SHAPES_AXES)
def test_backward_matches_exact_reference(dtype, flags, shape, axis):
    x, gamma, beta, rm, rv, dy = make_inputs(dtype, shape, axis, seed=1)
    exact = reference(x, gamma, beta, rm, rv, dy, **kwargs(flags, axis))
    got = BACKEND.backward(x, gamma.copy(), beta, rm.copy(), rv.copy(), dy,
                           **kwargs(flags, axis))
    scale = exact.pop("scale")
    assert set(got) == set(exact)
    assert_matches("dx", got["dx"], exact["dx"], dtype, scale["dx"])
    for name in ("dgamma", "dbeta", "running_mean", "running_var"):
        assert_matches(name, got[name], exact[name], PARAM[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_offset_is_accurate(dtype):
    """Data far from zero (mean/std ~ 1e3): a one-pass variance would lose every digit."""
    flags = flags_of()
    x, gamma, beta, rm, rv, dy = make_inputs(dtype, (4, 3, 6), 1, seed=2, offset=2048.0)
    exact = reference(x, gamma, beta, rm, rv, dy, **kwargs(flags, 1))
    got = BACKEND.backward(x, gamma.copy(), beta, rm.copy(), rv.copy(), dy, **kwargs(flags, 1))
    assert_matches("dx", got["dx"], exact["dx"], dtype, exact["scale"]["dx"])
    assert_matches("running_var", got["running_var"], exact["running_var"], PARAM[dtype])


# --- closed forms -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [EPS, 0.0, 0.5])
def test_constant_channel_gives_beta(dtype, eps):
    x = np.full((4, 2, 3), 3.25, dtype=np_dtype(dtype))
    x[:, 1] = -7.5
    pdt = np_dtype(PARAM[dtype])
    gamma, beta = np.array([2.0, -3.0], pdt), np.array([0.375, -1.5], pdt)
    rm, rv = np.zeros(2, pdt), np.ones(2, pdt)
    out = BACKEND.forward(x, gamma, beta, rm, rv, eps=eps, momentum=0.9, fix_gamma=False,
                          use_global_stats=False, output_mean_var=True, axis=1, training=True)
    want = np.broadcast_to(beta.astype(np.float64)[None, :, None], x.shape)
    np.testing.assert_array_equal(out["y"].astype(np.float64), want)
    np.testing.assert_array_equal(out["mean"], np.array([3.25, -7.5], pdt))
    e = round_fraction(Fraction(eps), FORMATS[dtype])
    # invstd = 1/sqrt(0 + DType(eps)), or 0 by definition when eps = 0
    if eps == 0:
        np.testing.assert_array_equal(out["invstd"], np.zeros(2, pdt))
    else:
        assert_matches("invstd", out["invstd"], np.array([1 / sqrt_fraction(Fraction(e))] * 2),
                       PARAM[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [EPS, 0.25])
def test_two_elements_per_channel(dtype, eps):
    """M = 2: x = (a, b), d = b - a gives y = -+ g / sqrt(1 + 4 e / d^2) + beta."""
    x = np.array([[1.0, -2.0, 0.5], [3.0, 6.0, 0.625]], dtype=np_dtype(dtype))  # [2, C=3]
    pdt = np_dtype(PARAM[dtype])
    gamma, beta = np.array([1.5, 1.0, -2.0], pdt), np.array([0.0, 0.25, 1.0], pdt)
    out = BACKEND.forward(x, gamma, beta, np.zeros(3, pdt), np.ones(3, pdt), eps=eps,
                          momentum=0.9, fix_gamma=False, use_global_stats=False,
                          output_mean_var=False, axis=1, training=True)
    e = Fraction(round_fraction(Fraction(eps), FORMATS[dtype]))
    for c in range(3):
        d = Fraction(float(x[1, c])) - Fraction(float(x[0, c]))
        s = 1 / sqrt_fraction(1 + 4 * e / d**2)
        g, b = Fraction(float(gamma[c])), Fraction(float(beta[c]))
        for row, sign in ((0, -1), (1, 1)):
            want = round_fraction(sign * s * g + b, FORMATS[dtype])
            got = float(out["y"][row, c])
            assert abs(got - want) <= FORMATS[dtype].ulp(want), f"y[{row},{c}]={got} vs {want}"


@pytest.mark.parametrize("op", ["forward", "backward"])
def test_fix_gamma_ignores_gamma_and_overwrites_it(op):
    x, gamma, beta, rm, rv, dy = make_inputs("float32", (3, 4, 2), 1, seed=3)
    results, gammas = [], []
    for scale in (1.0, -5.0):
        g = (gamma * scale).astype(np.float32)
        args = (x, g, beta, rm.copy(), rv.copy()) + ((dy,) if op == "backward" else ())
        results.append(getattr(BACKEND, op)(
            *args, **kwargs(flags_of(fix_gamma=True, output_mean_var=False), 1)))
        gammas.append(g)
    for name in results[0]:
        np.testing.assert_array_equal(results[0][name], results[1][name], err_msg=name)
    for g in gammas:  # overwritten in place, like MXNet
        np.testing.assert_array_equal(g, np.ones(4, np.float32))
    if op == "backward":
        np.testing.assert_array_equal(results[0]["dgamma"], np.zeros(4, np.float32))


def test_free_gamma_is_left_alone():
    x, gamma, beta, rm, rv, dy = make_inputs("float32", (3, 4, 2), 1, seed=3)
    before = gamma.copy()
    BACKEND.backward(x, gamma, beta, rm, rv, dy, **kwargs(flags_of(output_mean_var=False), 1))
    np.testing.assert_array_equal(gamma, before)


# --- running statistics ---------------------------------------------------------------------


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(k for k, v in f.items() if v))
def test_running_stats_change_only_in_a_batch_stats_backward(flags):
    x, gamma, beta, rm, rv, dy = make_inputs("float64", (4, 3), 1, seed=4)
    rm0, rv0 = rm.copy(), rv.copy()
    BACKEND.forward(x, gamma.copy(), beta, rm, rv, **kwargs(flags, 1))
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)
    out = BACKEND.backward(x, gamma.copy(), beta, rm, rv, dy, **kwargs(flags, 1))
    assert out["running_mean"] is rm and out["running_var"] is rv  # updated in place
    changed = flags["training"] and not flags["use_global_stats"]
    assert (rm != rm0).all() == changed and (rv != rv0).all() == changed


def test_momentum_is_rounded_to_float32():
    """float64 data: 0.9 and float32(0.9) give running means 2.4e-8 * |rm - mean| apart."""
    x = np.array([[1.0], [3.0]])  # mean 2, var 1
    rm, rv = np.array([10.0]), np.array([1.0])
    BACKEND.backward(x, np.ones(1), np.zeros(1), rm, rv, np.zeros_like(x), eps=EPS,
                     momentum=0.9, fix_gamma=True, use_global_stats=False,
                     output_mean_var=False, axis=1, training=True)
    m = Fraction(float(np.float32(0.9)))
    assert rm[0] == round_fraction(10 * m + 2 * (1 - m), FORMATS["float64"])
    assert rm[0] != 10 * 0.9 + 2 * 0.1


def test_recovered_variance_uses_the_double_eps():
    """float16 data: var' = var + DType(eps) - eps, and float16(1e-3) - 1e-3 = 4.3e-7."""
    x = np.array([[1.0], [3.0]], dtype=np.float16)  # var 1
    rm, rv = np.zeros(1, np.float32), np.zeros(1, np.float32)
    BACKEND.backward(x, np.ones(1, np.float32), np.zeros(1, np.float32), rm, rv,
                     np.zeros_like(x), eps=EPS, momentum=0.5, fix_gamma=True,
                     use_global_stats=False, output_mean_var=False, axis=1, training=True)
    e16 = Fraction(float(np.float16(EPS)))
    assert e16 != Fraction(EPS)
    assert rv[0] == round_fraction((1 + e16 - Fraction(EPS)) / 2, FORMATS["float32"])


def test_eps_zero_constant_channel_recovers_infinite_variance():
    """invstd is defined as 0 (eps = 0, var = 0), so var' = 1/0 - 0 = +inf."""
    x = np.full((3, 1), 2.0)
    rm, rv = np.zeros(1), np.ones(1)
    out = BACKEND.backward(x, np.ones(1), np.zeros(1), rm, rv, np.ones_like(x), eps=0.0,
                           momentum=0.9, fix_gamma=False, use_global_stats=False,
                           output_mean_var=False, axis=1, training=True)
    assert rm[0] == round_fraction(Fraction(2) * (1 - Fraction(float(np.float32(0.9)))),
                                   FORMATS["float64"])
    assert rv[0] == np.inf
    np.testing.assert_array_equal(out["dx"], np.zeros_like(x))  # invstd 0


# --- special values -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_poison_only_their_channel(dtype, bad):
    x, gamma, beta, rm, rv, dy = make_inputs(dtype, (3, 2, 2), 1, seed=5)
    x[1, 0, 1] = bad
    flags = flags_of()
    fwd = BACKEND.forward(x, gamma.copy(), beta, rm.copy(), rv.copy(), **kwargs(flags, 1))
    bwd = BACKEND.backward(x, gamma.copy(), beta, rm.copy(), rv.copy(), dy, **kwargs(flags, 1))
    for out, name in ((fwd, "y"), (bwd, "dx")):
        arr = out[name].astype(np.float64)
        assert np.isnan(arr[:, 0]).all() and np.isfinite(arr[:, 1]).all(), name
    for out, name in ((fwd, "invstd"), (bwd, "dgamma"), (bwd, "running_var")):
        assert np.isnan(out[name][0]) and np.isfinite(out[name][1]), name
    # the mean is sum(x)/M: NaN stays NaN, a single +-Inf gives +-Inf
    np.testing.assert_array_equal(fwd["mean"][0], bad)
    np.testing.assert_array_equal(bwd["running_mean"][0], bad)


def test_running_stats_mode_nan_stays_elementwise():
    x = np.array([[1.0, 2.0], [np.nan, 4.0], [5.0, 6.0]])
    out = BACKEND.forward(x, np.ones(2), np.zeros(2), np.zeros(2), np.ones(2), eps=EPS,
                          momentum=0.9, fix_gamma=True, use_global_stats=True,
                          output_mean_var=False, axis=1, training=True)
    assert np.isnan(out["y"]).sum() == 1 and np.isnan(out["y"][1, 0])


def test_bfloat16_outputs_are_rounded_once():
    """1 + 2**-8 + 2**-30 is nearer 1 + 2**-7 than 1; a cast through float32 gives 1."""
    v = np.array([1 + 2**-8 + 2**-30])
    assert float(to_dtype(v, "bfloat16")[0]) == 1 + 2**-7
    assert to_dtype(v, "bfloat16").dtype == np_dtype("bfloat16")


def test_negative_axis_equals_positive_axis():
    x, gamma, beta, rm, rv, dy = make_inputs("float32", (2, 3, 4, 5), 2, seed=6)
    flags = flags_of()
    a = BACKEND.backward(x, gamma, beta, rm.copy(), rv.copy(), dy, **kwargs(flags, 2))
    b = BACKEND.backward(x, gamma, beta, rm.copy(), rv.copy(), dy, **kwargs(flags, -2))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# --- errors ------------------------------------------------------------------------------------


def _valid():
    x, gamma, beta, rm, rv, dy = make_inputs("float32", (2, 3, 2), 1, seed=7)
    return {"x": x, "gamma": gamma, "beta": beta, "running_mean": rm, "running_var": rv,
            "dy": dy}


ERRORS = [
    ("gamma", lambda a: a.update(gamma=np.ones(4, np.float32)), ValueError, "gamma"),
    ("running_var", lambda a: a.update(running_var=np.ones((3, 1), np.float32)), ValueError,
     "running_var"),
    ("axis", lambda a: a.update(axis=3), ValueError, "axis"),
    ("axis_neg", lambda a: a.update(axis=-4), ValueError, "axis"),
    ("rank1", lambda a: a.update(x=np.ones(3, np.float32)), ValueError, "x"),
    ("eps", lambda a: a.update(eps=-1e-3), ValueError, "eps"),
    ("param_dtype", lambda a: a.update(beta=np.zeros(3, np.float16)), TypeError, "beta"),
    ("x_dtype", lambda a: a.update(x=np.ones((2, 3, 2), np.int32)), TypeError, "x"),
    ("f16_params", lambda a: a.update(x=np.ones((2, 3, 2), np.float16),
                                      gamma=np.ones(3, np.float16)), TypeError, "gamma"),
    ("dy_shape", lambda a: a.update(dy=np.ones((2, 3), np.float32)), ValueError, "dy"),
]


@pytest.mark.parametrize("op,case", [(op, e) for op in ("forward", "backward") for e in ERRORS
                                     if op == "backward" or e[0] != "dy_shape"],
                         ids=lambda v: v if isinstance(v, str) else v[0])
def test_errors_leave_inputs_untouched(op, case):
    _, mutate, exc, match = case
    args = _valid()
    args["gamma"] = args["gamma"] * 3  # fix_gamma would overwrite it, if it got that far
    probe = {**args, "axis": 1, "eps": EPS}
    mutate(probe)
    arrays = {k: v for k, v in probe.items() if isinstance(v, np.ndarray)}
    before = {k: v.copy() for k, v in arrays.items()}
    call = {**flags_of(fix_gamma=True), "momentum": 0.9, "axis": probe.pop("axis"),
            "eps": probe.pop("eps")}
    dy = probe.pop("dy")
    positional = [probe[k] for k in ("x", "gamma", "beta", "running_mean", "running_var")]
    if op == "backward":
        positional.append(dy)
    with pytest.raises(exc, match=match):
        getattr(BACKEND, op)(*positional, **call)
    for k, v in arrays.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_capabilities_and_contract():
    from conformance.adapter import Backend

    assert isinstance(BACKEND, Backend)
    assert BACKEND.capabilities.dtypes == frozenset(DTYPES)
    assert BACKEND.supports(object()) is None


# --- random small problems ---------------------------------------------------------------------


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=2, max_size=4)))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    flags = draw(st.sampled_from(FLAGS))
    eps = draw(st.sampled_from([EPS, 1e-5, 0.5]))
    momentum = draw(st.sampled_from([0.9, 0.0, 1.0, 0.3]))
    seed = draw(st.integers(0, 2**16))
    offset = draw(st.sampled_from([0.0, 3.0, -100.0]))
    return dtype, shape, axis, flags, eps, momentum, seed, offset


@settings(max_examples=60, deadline=None)
@given(problems())
def test_random_problems_match_exact_reference(problem):
    dtype, shape, axis, flags, eps, momentum, seed, offset = problem
    x, gamma, beta, rm, rv, dy = make_inputs(dtype, shape, axis, seed=seed, offset=offset)
    kw = kwargs(flags, axis, eps=eps, momentum=momentum)
    exact = reference(x, gamma, beta, rm, rv, dy, **kw)
    got = BACKEND.backward(x, gamma.copy(), beta, rm.copy(), rv.copy(), dy, **kw)
    assert_matches("dx", got["dx"], exact["dx"], dtype, exact["scale"]["dx"])
    for name in ("dgamma", "dbeta", "running_mean", "running_var"):
        assert_matches(name, got[name], exact[name], PARAM[dtype])
    exact = reference(x, gamma, beta, rm, rv, **kw)
    got = BACKEND.forward(x, gamma.copy(), beta, rm.copy(), rv.copy(), **kw)
    assert_matches("y", got["y"], exact["y"], dtype, exact["scale"]["y"])
