"""Closed forms the oracle must reproduce exactly, derived by hand from the spec.

- a constant channel (var = 0) gives y = beta, whatever eps, and invstd = 1/sqrt(DType(eps));
- two elements per channel, x = (a, a + d): y = -+ g / sqrt(1 + 4 DType(eps)/d**2) + beta;
- fix_gamma makes gamma irrelevant (and dgamma = 0);
- use_global_stats with running stats equal to the (representable) batch statistics gives the
  training forward;
- var + DType(eps) == 0 gives invstd = 0 and y = beta (also when eps > 0 rounds to 0 in the
  data dtype); the running variance recovered from that invstd is 1/0 - eps = +inf;
- NaN or Inf in a channel makes that channel (only) NaN;
- in training mode the per-channel sum of dx is 0 (checked with hi + lo to 1e-25 of the
  magnitude) and dx = 0 when dy is an affine function of x and eps = 0;
- dbeta = sum(dy) exactly; momentum 1 keeps the running stats, momentum 0 replaces them.
"""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracle
from fraction_reference import (DTYPE_NAMES, EPS_VALUES, PARAM_DTYPE, InvSqrt, Value,
                                assert_hi_lo_close, assert_rounded_equal, cast, draw_case,
                                repro, round_exact)

FLAG_COMBOS = [dict(training=t, fix_gamma=f, use_global_stats=u, output_mean_var=o)
               for t, f, u, o in itertools.product((True, False), repeat=4)]
TRAIN = dict(training=True, use_global_stats=False)


def params(values, dtype):
    return cast(np.asarray(values, dtype=np.float64), PARAM_DTYPE[dtype])


def exact_of(e) -> np.ndarray:
    """hi + lo of an Expected as exact Fractions (object array)."""
    return np.vectorize(lambda h, l_: Fraction(float(h)) + Fraction(float(l_)),
                        otypes=[object])(e.hi, e.lo)


# --- constant channel -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("eps", EPS_VALUES, ids=lambda e: f"eps{e!r}")
def test_constant_channel_gives_beta(dtype, eps):
    """var = 0: y = beta exactly (hi = beta, lo = 0), for M = 1 and M = 6, any gamma."""
    for shape in ((6, 2), (1, 2), (2, 2, 3)):
        x = cast(np.full(shape, -2.75), dtype)
        x[..., 1] = cast(np.full(shape[:-1], 1e4 if dtype != "float16" else 1e3), dtype) \
            if x.ndim == 2 else x[..., 1]
        C = shape[1]
        case = dict(x=x, gamma=params(np.linspace(-3, 3, C), dtype),
                    beta=params(np.linspace(0.1, 0.7, C), dtype),
                    running_mean=params(np.zeros(C), dtype), running_var=params(np.ones(C), dtype),
                    eps=eps, axis=1)
        for fix_gamma in (True, False):
            call = repro("evaluate", case, fix_gamma=fix_gamma, **TRAIN)
            y = oracle.evaluate(**case, fix_gamma=fix_gamma, output_mean_var=True, **TRAIN)
            beta = np.broadcast_to(
                case["beta"].astype(np.float64).reshape((1, C) + (1,) * (x.ndim - 2)), shape)
            want = np.vectorize(lambda b: round_exact(Fraction(float(b)), dtype))(beta)
            assert_rounded_equal("y", y["y"].rounded, want, call)
            assert np.array_equal(y["y"].hi, beta) and np.all(y["y"].lo == 0), (
                f"y.hi={y['y'].hi.tolist()}, lo={y['y'].lo.tolist()}, but should be beta "
                f"exactly [{call}]")
            eps_d = Fraction(round_exact(Fraction(eps), dtype))
            r = Value(Fraction(1), Fraction(0), InvSqrt(eps_d))
            assert_rounded_equal("invstd", y["invstd"].rounded,
                                 [r.rounded(PARAM_DTYPE[dtype])] * C, call)


# --- two elements per channel -----------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_two_elements_per_channel(dtype):
    """x = (a, a + d) per channel: y = -+ g/sqrt(1 + 4 DType(eps)/d**2) + beta = -+ g |d| /
    sqrt(d**2 + 4 DType(eps)) + beta; compared bit for bit after rounding and to 1e-30 with
    hi + lo. This formula shares no step with a mean/variance computation."""
    rng = np.random.default_rng(40 + DTYPE_NAMES.index(dtype))
    for trial in range(12):
        C = 3
        a = cast(rng.normal(size=C) * 4, dtype).astype(np.float64)
        b = cast(rng.normal(size=C) * 4, dtype).astype(np.float64)
        b[0] = a[0] + cast([2.0 ** -trial], dtype).astype(np.float64)[0]  # small differences
        x = cast(np.stack([a, b]), dtype)  # (2, C), channel axis 1
        a, b = x.astype(np.float64)
        eps = EPS_VALUES[trial % 4]
        gamma = params(rng.normal(size=C), dtype)
        beta = params(rng.normal(size=C), dtype)
        case = dict(x=x, gamma=gamma, beta=beta, running_mean=params(np.zeros(C), dtype),
                    running_var=params(np.ones(C), dtype), eps=eps, axis=1)
        eps_d = Fraction(round_exact(Fraction(eps), dtype))
        for fix_gamma in (True, False):
            call = repro("evaluate", case, fix_gamma=fix_gamma, **TRAIN)
            got = oracle.evaluate(**case, fix_gamma=fix_gamma, **TRAIN)["y"]
            want = np.empty((2, C), dtype=object)
            for c in range(C):
                d = Fraction(float(b[c])) - Fraction(float(a[c]))
                g = Fraction(1) if fix_gamma else Fraction(float(gamma[c]))
                root = InvSqrt(d * d + 4 * eps_d)
                for i, sign in ((0, -1), (1, 1)):  # x - mean = -d/2 for a, +d/2 for b
                    if d * d + 4 * eps_d == 0:
                        want[i, c] = Value(Fraction(0), Fraction(float(beta[c])))
                    else:
                        want[i, c] = Value(sign * g * d, Fraction(float(beta[c])), root)
            want_rounded = np.vectorize(lambda v: v.rounded(dtype), otypes=[float])(want)
            assert_rounded_equal("y", got.rounded, want_rounded, call)
            assert_hi_lo_close("y", got.hi, got.lo, want, call)


# --- fix_gamma --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_fix_gamma_makes_gamma_irrelevant(dtype):
    """With fix_gamma every output is the same for any gamma, equals fix_gamma=False with
    gamma = 1, and dgamma is exactly 0."""
    rng = np.random.default_rng(50 + DTYPE_NAMES.index(dtype))
    for flags in FLAG_COMBOS:
        if not flags["fix_gamma"]:
            continue
        case = draw_case(rng, dtype)
        C = case["gamma"].size
        other = dict(case, gamma=params(rng.normal(size=C) * 100, dtype))
        ones = dict(case, gamma=params(np.ones(C), dtype))
        free = dict(flags, fix_gamma=False)
        for with_dy in (False, True):
            pick = (lambda c: c) if with_dy else (lambda c: {k: v for k, v in c.items() if k != "dy"})
            a = oracle.evaluate(**pick(case), **flags)
            b = oracle.evaluate(**pick(other), **flags)
            c = oracle.evaluate(**pick(ones), **free)
            call = repro("evaluate", pick(case), **flags)
            for name in a:
                for field in ("hi", "lo", "rounded"):
                    for other_e, label in ((b[name], "other gamma"), (c[name], "gamma=1 free")):
                        if name == "dgamma" and label == "gamma=1 free":
                            continue
                        assert np.array_equal(getattr(a[name], field), getattr(other_e, field),
                                              equal_nan=True), (
                            f"{name}.{field} differs with {label} [{call}]")
            if with_dy:
                assert np.all(a["dgamma"].rounded == 0) and np.all(a["dgamma"].hi == 0), (
                    f"dgamma={a['dgamma'].rounded}, but should be 0 [{call}]")


# --- use_global_stats with the batch statistics ---------------------------------------------


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_global_stats_equal_to_batch_stats_give_training_forward(dtype):
    """x of small integers whose channel means and (biased) variances are dyadic: training
    with use_global_stats and running stats = those statistics gives the batch-stats forward
    (y, mean, invstd) exactly."""
    rng = np.random.default_rng(60 + DTYPE_NAMES.index(dtype))
    for trial in range(6):
        C = 3
        # Four values per channel: a +- u, a +- v (mean a, var (u**2 + v**2)/2).
        a = rng.integers(-8, 9, C)
        u = rng.integers(0, 5, C)
        v = rng.integers(0, 5, C)
        x = np.stack([a + u, a - u, a + v, a - v]).astype(np.float64)
        x = np.concatenate([x, x * 0.5 + 0.25]) if trial % 2 else x  # M = 8, means still dyadic
        xs = cast(x, dtype)
        X = x
        mean = X.mean(axis=0)
        var = ((X - mean) ** 2).mean(axis=0)  # exact: small dyadic values
        for c in range(C):
            col = [Fraction(float(t)) for t in X[:, c]]
            m = sum(col) / len(col)
            assert Fraction(float(mean[c])) == m
            assert Fraction(float(var[c])) == sum((t - m) ** 2 for t in col) / len(col)
        for eps in EPS_VALUES:
            if eps == 0 and np.any(var == 0):
                continue
            case = dict(x=xs, gamma=params(rng.normal(size=C), dtype),
                        beta=params(rng.normal(size=C), dtype),
                        running_mean=params(mean, dtype), running_var=params(var, dtype),
                        eps=eps, axis=1)
            for fix_gamma in (True, False):
                flags = dict(fix_gamma=fix_gamma, output_mean_var=True, training=True)
                batch = oracle.evaluate(**case, use_global_stats=False, **flags)
                glob = oracle.evaluate(**case, use_global_stats=True, **flags)
                call = repro("evaluate", case, use_global_stats=True, **flags)
                for name in ("y", "mean", "invstd"):
                    assert_rounded_equal(name, glob[name].rounded, batch[name].rounded, call)
                    for g_, b_ in zip(exact_of(glob[name]).ravel(), exact_of(batch[name]).ravel()):
                        assert abs(g_ - b_) <= abs(b_) / 10**30, (
                            f"{name}: hi+lo={float(g_)!r} with global stats, {float(b_)!r} with "
                            f"batch stats [{call}]")


# --- var + DType(eps) == 0 ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_var_plus_eps_zero_gives_invstd_zero(dtype):
    """Constant channel, eps = 0: invstd = 0, y = beta, dx = 0, dgamma = 0; the running
    variance recovered as 1/invstd**2 - eps is +inf, so running_var becomes +inf for
    momentum < 1 (IEEE: rv * m + inf * (1 - m)) and, with momentum 1, inf * 0 = NaN."""
    x = cast(np.full((3, 2), 0.5), dtype)
    case = dict(x=x, gamma=params([2.0, -3.0], dtype), beta=params([0.25, -1.5], dtype),
                running_mean=params([1.0, 2.0], dtype), running_var=params([3.0, 4.0], dtype),
                eps=0.0, axis=1)
    dy = cast(np.arange(6.0).reshape(3, 2), dtype)
    for fix_gamma in (True, False):
        call = repro("evaluate", case, fix_gamma=fix_gamma, **TRAIN)
        f = oracle.evaluate(**case, fix_gamma=fix_gamma, output_mean_var=True, **TRAIN)
        assert_rounded_equal("invstd", f["invstd"].rounded, [0.0, 0.0], call)
        assert_rounded_equal("y", f["y"].rounded, [[0.25, -1.5]] * 3, call)
        s = oracle.evaluate(**case, dy=dy, fix_gamma=fix_gamma, momentum=0.9, **TRAIN)
        assert_rounded_equal("dx", s["dx"].rounded, np.zeros((3, 2)), call)
        assert_rounded_equal("dgamma", s["dgamma"].rounded, [0.0, 0.0], call)
        assert_rounded_equal("dbeta", s["dbeta"].rounded, [6.0, 9.0], call)
        assert_rounded_equal("running_var", s["running_var"].rounded, [math.inf] * 2, call)
        s1 = oracle.evaluate(**case, dy=dy, fix_gamma=fix_gamma, momentum=1.0, **TRAIN)
        assert_rounded_equal("running_var(momentum=1)", s1["running_var"].rounded,
                             [math.nan] * 2, call)


def test_eps_rounding_to_zero_in_float16_gives_infinite_invstd():
    """eps = 1e-9 is 0 in float16 (below half the smallest subnormal 2**-24). The spec defines
    invstd = 0 only when the variance is 0 AND eps is 0; here eps != 0, so a constant float16
    channel gets invstd = 1/sqrt(0 + float16(eps)) = 1/sqrt(0) = inf and y = 0 * inf = NaN
    (MXNet's VARIANCE_TO_INVSTD). In float32 and bfloat16 eps survives and y = beta."""
    for dtype in DTYPE_NAMES:
        x = cast(np.full((4, 1), 3.0), dtype)
        case = dict(x=x, gamma=params([1.0], dtype), beta=params([0.5], dtype),
                    running_mean=params([0.0], dtype), running_var=params([1.0], dtype),
                    eps=1e-9, axis=1)
        got = oracle.evaluate(**case, fix_gamma=False, output_mean_var=True, **TRAIN)
        call = repro("evaluate", case, fix_gamma=False, output_mean_var=True, **TRAIN)
        eps_d = Fraction(round_exact(Fraction(1e-9), dtype))
        assert (eps_d == 0) == (dtype == "float16")
        if dtype == "float16":
            assert got["invstd"].rounded.tolist() == [math.inf], call
            assert np.isnan(got["y"].rounded).all(), call
        else:
            want = Value(Fraction(1), Fraction(0), InvSqrt(eps_d)).rounded(PARAM_DTYPE[dtype])
            assert_rounded_equal("invstd", got["invstd"].rounded, [want], call)
            assert_rounded_equal("y", got["y"].rounded, [[0.5]] * 4, call)
        # With eps = 0 exactly, invstd is defined as 0 and y = beta in every dtype.
        case["eps"] = 0.0
        got = oracle.evaluate(**case, fix_gamma=False, output_mean_var=True, **TRAIN)
        assert got["invstd"].rounded.tolist() == [0.0], call
        assert_rounded_equal("y", got["y"].rounded, [[0.5]] * 4, call)


# --- NaN and Inf ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "neginf"])
def test_non_finite_value_poisons_only_its_channel(dtype, bad):
    """One NaN/Inf in channel 1 (training, batch stats): that channel's y, invstd, dx and
    dgamma and running_var are NaN (var has Inf - Inf); its mean and running mean are NaN
    for NaN and +-Inf for +-Inf (IEEE sum / M); dbeta stays finite. The other channels equal
    the same call without channel 1."""
    rng = np.random.default_rng(70)
    x = cast(rng.normal(size=(4, 3)), dtype)
    x[2, 1] = bad
    dy = cast(rng.normal(size=(4, 3)), dtype)
    p = dict(gamma=params([1.5, 2.0, -1.0], dtype), beta=params([0.1, 0.2, 0.3], dtype),
             running_mean=params([0.0, 1.0, 2.0], dtype), running_var=params([1.0, 2.0, 3.0], dtype))
    flags = dict(fix_gamma=False, **TRAIN)
    fwd = oracle.evaluate(x, **p, output_mean_var=True, **flags)
    step = oracle.evaluate(x, **p, dy=dy, **flags)
    keep = [0, 2]
    sub = {k: v[keep] for k, v in p.items()}
    fwd2 = oracle.evaluate(x[:, keep], **sub, output_mean_var=True, **flags)
    step2 = oracle.evaluate(x[:, keep], **sub, dy=dy[:, keep], **flags)
    call = repro("evaluate", dict(x=x, **p, dy=dy), **flags)
    for name, e in list(fwd.items()) + list(step.items()):
        if name in ("running_mean", "running_var") and e is fwd.get(name):
            continue  # forward leaves them unchanged
        chan = e.rounded[..., 1] if e.rounded.ndim == 2 else e.rounded[1]
        if name == "dbeta":
            assert np.all(np.isfinite(chan)), f"dbeta[1]={chan} [{call}]"
            continue
        if name in ("mean", "running_mean") and not math.isnan(bad):
            assert np.all(chan == bad), f"{name}[1]={chan}, but should be {bad} [{call}]"
        else:
            assert np.all(np.isnan(chan)), f"{name}[..., 1]={chan}, but should be NaN [{call}]"
        twin = (fwd2 if name in fwd2 and e is fwd[name] else step2)[name]
        rest = e.rounded[..., keep] if e.rounded.ndim == 2 else e.rounded[keep]
        assert_rounded_equal(name + "[channels 0, 2]", rest, twin.rounded, call)


# --- backward identities ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_dx_sums_to_zero_per_channel_in_training(dtype):
    """sum over a channel of dx = (dy - mean(dy) - d k) w is 0 (sum d = 0); with hi + lo the
    sum must vanish to 1e-25 of sum |dx| (the values are good to 1e-30 each)."""
    rng = np.random.default_rng(80 + DTYPE_NAMES.index(dtype))
    for _ in range(10):
        case = draw_case(rng, dtype, max_size=40)
        for fix_gamma in (True, False):
            e = oracle.evaluate(**case, fix_gamma=fix_gamma, **TRAIN)["dx"]
            ax = case["axis"] % case["x"].ndim
            total = np.moveaxis(exact_of(e), ax, 0).reshape(e.shape[ax], -1)
            mags = np.moveaxis(np.abs(e.hi), ax, 0).reshape(e.shape[ax], -1)
            for c in range(total.shape[0]):
                s = sum(total[c], Fraction(0))
                assert abs(s) <= Fraction(float(mags[c].sum())) / 10**25, (
                    f"sum(dx[channel {c}])={float(s)!r}, but should be 0 (sum|dx|="
                    f"{mags[c].sum()!r}) [{repro('evaluate', case, fix_gamma=fix_gamma, **TRAIN)}]")


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_dx_is_zero_when_dy_is_affine_in_x_and_eps_zero(dtype):
    """With eps = 0, dy = p + q x makes dy - mean(dy) = q d and d k = q d, so dx = 0 exactly:
    the oracle must say exactly 0 (hi = lo = 0), not a 256-bit rounding residue. Two elements
    per channel with any dy are affine too."""
    cases = [
        (np.array([[-1.75, 0.0]]), np.array([[-1.5, 2.25]]), 0),  # M = 2, r = 8/7
        (np.array([[1.0], [2.0], [4.0]]), np.array([[3.0], [5.0], [9.0]]), 1),  # dy = 2x + 1
        (np.array([[0.0], [3.0]]), np.array([[1.0], [0.0]]), 1),  # r = 2/3
    ]
    for x, dy, axis in cases:
        p = PARAM_DTYPE[dtype]
        C = x.shape[axis]
        case = dict(x=cast(x, dtype), gamma=cast(np.full(C, 1.5), p), beta=cast(np.zeros(C), p),
                    running_mean=cast(np.zeros(C), p), running_var=cast(np.ones(C), p),
                    dy=cast(dy, dtype), eps=0.0, axis=axis)
        for fix_gamma in (True, False):
            call = repro("evaluate", case, fix_gamma=fix_gamma, **TRAIN)
            e = oracle.evaluate(**case, fix_gamma=fix_gamma, **TRAIN)["dx"]
            assert_rounded_equal("dx", e.rounded, np.zeros(x.shape), call)
            assert np.all(e.hi == 0) and np.all(e.lo == 0), (
                f"dx.hi={e.hi.ravel().tolist()}, lo={e.lo.ravel().tolist()}, but should be "
                f"exactly 0 [{call}]")


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), flags=st.sampled_from(FLAG_COMBOS))
def test_dbeta_is_sum_of_dy(dtype, seed, flags):
    """dbeta = sum(dy) over the channel, exactly (hi + lo is the exact sum when it fits)."""
    rng = np.random.default_rng(seed)
    case = draw_case(rng, dtype)
    e = oracle.evaluate(**case, **flags)["dbeta"]
    ax = case["axis"] % case["x"].ndim
    dy = np.moveaxis(case["dy"].astype(np.float64), ax, 0).reshape(e.shape[0], -1)
    for c in range(e.shape[0]):
        s = sum((Fraction(float(t)) for t in dy[c]), Fraction(0))
        got = Fraction(float(e.hi[c])) + Fraction(float(e.lo[c]))
        assert got == s, f"dbeta[{c}]={float(got)!r}, but should be {float(s)!r}"
        assert e.rounded[c] == round_exact(s, PARAM_DTYPE[dtype])


# --- momentum ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_momentum_one_keeps_and_zero_replaces_running_stats(dtype):
    """momentum 1: running stats unchanged after a training step; momentum 0: they become
    the batch mean and the recovered variance var + DType(eps) - eps (exact rationals)."""
    rng = np.random.default_rng(90 + DTYPE_NAMES.index(dtype))
    for _ in range(6):
        case = draw_case(rng, dtype)
        for fix_gamma in (True, False):
            one = oracle.evaluate(**dict(case, momentum=1.0), fix_gamma=fix_gamma, **TRAIN)
            call1 = repro("evaluate", dict(case, momentum=1.0), fix_gamma=fix_gamma, **TRAIN)
            zero = oracle.evaluate(**dict(case, momentum=0.0), fix_gamma=fix_gamma, **TRAIN)
            call = repro("evaluate", dict(case, momentum=0.0), fix_gamma=fix_gamma, **TRAIN)
            ax = case["axis"] % case["x"].ndim
            x = np.moveaxis(case["x"].astype(np.float64), ax, 0).reshape(case["gamma"].size, -1)
            eps = Fraction(case["eps"])
            eps_d = Fraction(round_exact(eps, dtype))
            for c in range(x.shape[0]):
                col = [Fraction(float(t)) for t in x[c]]
                mean = sum(col) / len(col)
                var = sum((t - mean) ** 2 for t in col) / len(col)
                assert one["running_mean"].rounded[c] == case["running_mean"][c], call1
                if var + eps_d != 0:  # else 1/0 - eps = inf and inf * 0 = NaN (pinned above)
                    assert one["running_var"].rounded[c] == case["running_var"][c], call1
                want_m = round_exact(mean, PARAM_DTYPE[dtype])
                assert zero["running_mean"].rounded[c] == want_m, (
                    f"running_mean[{c}]={zero['running_mean'].rounded[c]!r}, but should be "
                    f"{want_m!r} [{call}]")
                if var + eps_d == 0:
                    continue
                want_v = round_exact(var + eps_d - eps, PARAM_DTYPE[dtype])
                assert zero["running_var"].rounded[c] == want_v, (
                    f"running_var[{c}]={zero['running_var'].rounded[c]!r}, but should be "
                    f"{want_v!r} [{call}]")


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("eps", (0.0, EPS_VALUES[0], 1e-5), ids=lambda e: f"eps{e!r}")
@pytest.mark.parametrize("size", ("small", "big", "huge"))
def test_dx_of_a_spike(dtype, eps, size):
    """x = (0, a, 0), dy = (1, 0, 0) in one channel: mean = a/3, var = 2a**2/9, v = var +
    DType(eps), r = 1/sqrt(v), and by hand
        dx = ((2/3 - a**2/(27 v)) r, -DType(eps)/(3 v) r, (-1/3 - a**2/(27 v)) r).
    The middle one is a cancellation of relative size eps/var (exactly 0 for eps = 0); the
    oracle must give all three to 1e-30 (exactly 0 when 0) and round them correctly."""
    big = {"float64": 2.0**80, "float32": 2.0**60, "float16": 2.0**7, "bfloat16": 2.0**60}[dtype]
    huge = {"float64": 2.0**120, "float32": 2.0**120, "float16": 2.0**15,
            "bfloat16": 2.0**120}[dtype]  # eps/var ~ 1e-75: past 256 bits of cancellation
    for a in {"small": (1.0, 3.0), "big": (big,), "huge": (huge,)}[size]:
        case = dict(x=cast(np.array([[0.0], [a], [0.0]]), dtype), gamma=params([1.0], dtype),
                    beta=params([0.0], dtype), running_mean=params([0.0], dtype),
                    running_var=params([1.0], dtype), dy=cast(np.array([[1.0], [0.0], [0.0]]), dtype),
                    eps=eps, axis=1)
        call = repro("evaluate", case, fix_gamma=True, **TRAIN)
        got = oracle.evaluate(**case, fix_gamma=True, **TRAIN)["dx"]
        A = Fraction(a)
        eps_d = Fraction(round_exact(Fraction(eps), dtype))
        v = 2 * A * A / 9 + eps_d
        root = InvSqrt(v)
        want = np.empty((3, 1), dtype=object)
        want[0, 0] = Value(Fraction(2, 3) - A * A / (27 * v), Fraction(0), root)
        want[1, 0] = Value(-eps_d / (3 * v), Fraction(0), root)
        want[2, 0] = Value(Fraction(-1, 3) - A * A / (27 * v), Fraction(0), root)
        rounded = np.vectorize(lambda t: t.rounded(dtype), otypes=[float])(want)
        assert_rounded_equal("dx", got.rounded, rounded, call)
        assert_hi_lo_close("dx", got.hi, got.lo, want, call)
