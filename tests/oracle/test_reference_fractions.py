"""The oracle agrees bit for bit with an exact rational reference on small random cases.

fraction_reference.py recomputes every output in fractions.Fraction with the square root
bracketed by integer square roots, and rounds with its own IEEE rounding; here the oracle's
``evaluate(...).rounded``, ``batch_norm`` and ``batch_norm_backward`` must equal it exactly and
``Expected.hi + lo`` must be within 1e-30 relative of the exact value. Every flag combination,
every dtype, ranks 2-4, axes positive and negative, eps in {default, 1e-5, 0, 1} and momentum
in {0.9, 0, 1} appear.
"""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

import oracle
from fraction_reference import (
    NotCovered, DTYPE_NAMES, EPS_VALUES, MOMENTUM_VALUES, PARAM_DTYPE,
                                InvSqrt, Value, assert_hi_lo_close, assert_rounded_equal, cast,
                                draw_case, reference, repro, round_exact)

FLAG_COMBOS = [dict(training=t, fix_gamma=f, use_global_stats=u, output_mean_var=o)
               for t, f, u, o in itertools.product((True, False), repeat=4)]


def flag_id(flags: dict) -> str:
    return "-".join(("train" if flags["training"] else "infer",
                     "fixgamma" if flags["fix_gamma"] else "freegamma",
                     "globalstats" if flags["use_global_stats"] else "batchstats",
                     "meanvar" if flags["output_mean_var"] else "nomeanvar"))


def check_against_reference(case: dict, flags: dict, *, public_api: bool = True) -> None:
    """Compare evaluate (forward and step) and the public entry points with the reference."""
    __tracebackhide__ = True
    fwd_case = {k: v for k, v in case.items() if k != "dy"}
    for with_dy in (False, True):
        args = case if with_dy else fwd_case
        call = repro("evaluate", args, **flags)
        want = reference(**args, **flags)
        got = oracle.evaluate(**args, **flags)
        assert sorted(got) == sorted(want), (
            f"outputs={sorted(got)}, but should be {sorted(want)} [{call}]")
        for name, w in want.items():
            e = got[name]
            assert e.dtype == w.dtype, f"{name}.dtype={e.dtype!r}, but should be {w.dtype!r} [{call}]"
            got_rounded = np.where(w.undefined, np.nan, e.rounded)
            assert_rounded_equal(name, got_rounded, w.rounded(), call)
            assert_hi_lo_close(name, e.hi, e.lo, w.values, call)
    if not public_api:
        return
    # batch_norm: the forward outputs, and the running stats after a whole training step.
    call = repro("batch_norm", fwd_case, **flags)
    out = oracle.batch_norm(**fwd_case, **flags)
    want_fwd = reference(**fwd_case, **flags)
    want_step = reference(**{**fwd_case, "dy": np.zeros_like(case["x"])}, **flags)
    expected = {k: v for k, v in want_fwd.items() if k not in ("running_mean", "running_var")}
    expected["running_mean"] = want_step["running_mean"]
    expected["running_var"] = want_step["running_var"]
    assert sorted(out) == sorted(expected), f"outputs={sorted(out)} [{call}]"
    for name, w in expected.items():
        assert out[name].dtype == np.asarray(cast([0.0], w.dtype)).dtype, (
            f"{name}.dtype={out[name].dtype}, but should be {w.dtype} [{call}]")
        got_rounded = np.where(w.undefined, np.nan, out[name].astype(np.float64))
        assert_rounded_equal(name, got_rounded, w.rounded(), call)
    call = repro("batch_norm_backward", case, **flags)
    grads = oracle.batch_norm_backward(**case, **flags)
    want = reference(**case, **flags)
    assert sorted(grads) == ["dbeta", "dgamma", "dx"], f"outputs={sorted(grads)} [{call}]"
    for name in ("dx", "dgamma", "dbeta"):
        assert grads[name].dtype == np.asarray(cast([0.0], want[name].dtype)).dtype, (
            f"{name}.dtype={grads[name].dtype}, but should be {want[name].dtype} [{call}]")
        assert_rounded_equal(name, grads[name].astype(np.float64), want[name].rounded(), call)


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("flags", FLAG_COMBOS, ids=flag_id)
def test_random_cases_match_fractions(flags, dtype):
    """Two random cases per (flags, dtype), with rank, axis, eps and momentum varied so that
    every rank, sign of axis, eps and momentum meet every flag combination across dtypes."""
    seed = FLAG_COMBOS.index(flags) * 16 + DTYPE_NAMES.index(dtype)
    rng = np.random.default_rng(seed)
    for k in range(2):
        i = seed * 2 + k
        rank = 2 + i % 3
        axis = [0, 1, -1, rank - 1, -rank, -2][i % 6]
        case = draw_case(rng, dtype, rank=rank, axis=axis, eps=EPS_VALUES[i % 4],
                         momentum=MOMENTUM_VALUES[(i // 4) % 3])
        check_against_reference(case, flags)


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("eps", EPS_VALUES, ids=lambda e: f"eps{e!r}")
def test_eps_is_rounded_to_the_data_dtype(dtype, eps):
    """invstd = 1/sqrt(var + DType(eps)): eps rounded to float16 for float16 data and to
    bfloat16 for bfloat16 data (not to float32), checked on a channel whose variance is small
    enough for the eps rounding to show."""
    x = cast(np.array([[0.0, 0.0], [2.0**-6, 2.0**-5]]), dtype)  # var = 2**-14, 2**-12
    p = PARAM_DTYPE[dtype]
    case = dict(x=x, gamma=cast([1.0, 1.0], p), beta=cast([0.0, 0.0], p),
                running_mean=cast([0.0, 0.0], p), running_var=cast([2.0**-13, 0.5], p),
                eps=eps, momentum=0.9, axis=1)
    for flags in FLAG_COMBOS:
        check_against_reference({**case, "dy": cast([[1.0, -2.0], [0.5, 0.25]], dtype)}, flags,
                                public_api=False)


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_constant_channel_and_eps_zero_match_fractions(dtype):
    """A constant channel with eps = 0 (invstd defined as 0) and with eps > 0, and one
    element per channel, in every flag combination (running_var left out where the update
    recovers 1/0 - eps: test_closed_forms pins that)."""
    p = PARAM_DTYPE[dtype]
    for eps, shape in ((0.0, (3, 2)), (EPS_VALUES[0], (3, 2)), (0.0, (1, 2)), (1.0, (1, 3))):
        x = cast(np.full(shape, 1.5), dtype)
        case = dict(x=x, gamma=cast(np.full(shape[1], 3.0), p), beta=cast(np.full(shape[1], -0.25), p),
                    running_mean=cast(np.full(shape[1], 1.0), p),
                    running_var=cast(np.full(shape[1], 2.0), p), eps=eps, momentum=0.9, axis=1,
                    dy=cast(np.arange(np.prod(shape)).reshape(shape) - 1.0, dtype))
        for flags in FLAG_COMBOS:
            check_against_reference(case, flags, public_api=False)


def test_invstd_beyond_float64_range():
    """eps = 0 and a variance of 2**-2152 (two subnormals): invstd = 2**1076 overflows float64
    (rounded: inf) while y = -1, +1 is ordinary."""
    x = np.array([[0.0], [5e-324]])
    case = dict(x=x, gamma=np.ones(1), beta=np.zeros(1), running_mean=np.zeros(1),
                running_var=np.ones(1), eps=0.0, momentum=0.9, axis=1)
    flags = dict(training=True, fix_gamma=True, use_global_stats=False, output_mean_var=True)
    call = repro("evaluate", case, **flags)
    got = oracle.evaluate(**case, **flags)
    assert_rounded_equal("invstd", got["invstd"].rounded, [math.inf], call)
    assert_rounded_equal("y", got["y"].rounded, [[-1.0], [1.0]], call)


@pytest.mark.parametrize("dtype", ("float32", "float16", "bfloat16"))
def test_outputs_overflowing_the_output_dtype(dtype):
    """Outputs past the output dtype's range round to +-inf (eps = 0, variance 2**-300 for
    float32 data gives invstd 2**150; large beta overflows float16/bfloat16 y)."""
    rng = np.random.default_rng(7)
    tiny = {"float32": 2.0**-149, "float16": 2.0**-24, "bfloat16": 2.0**-133}[dtype]
    x = cast(np.array([[0.0, 1.0], [tiny, 3.0]]), dtype)
    big = {"float32": 3e38, "float16": 3e38, "bfloat16": 3e38}[dtype]
    p = PARAM_DTYPE[dtype]
    case = dict(x=x, gamma=cast([1.0, big], p), beta=cast([0.0, big], p),
                running_mean=cast([0.0, 0.0], p), running_var=cast([1.0, 1.0], p), eps=0.0,
                momentum=0.9, axis=1, dy=cast(rng.normal(size=(2, 2)), dtype))
    for flags in FLAG_COMBOS:
        check_against_reference(case, flags, public_api=False)


# --- the reference itself, against things it does not share with the oracle ---------------


def test_reference_rounding_to_float64_is_python_float():
    """round_exact(q, 'float64') equals CPython's correctly rounded int/int division."""
    rng = np.random.default_rng(1)
    for _ in range(3000):
        num = int(rng.integers(-2**62, 2**62)) * 2 ** int(rng.integers(0, 40))
        den = int(rng.integers(1, 2**62)) * 2 ** int(rng.integers(0, 1100))
        q = Fraction(num, den)
        assert round_exact(q, "float64") == float(q), q


@pytest.mark.parametrize("dtype", ("float32", "float16"))
def test_reference_rounding_matches_numpy_single_casts(dtype):
    """For float64 inputs, numpy's float64 -> float32/float16 cast is a single correct
    rounding; the reference's rounding must agree (including subnormals and overflow)."""
    rng = np.random.default_rng(2)
    bits = rng.integers(0, 2**63, size=20000, dtype=np.uint64)
    v = bits.view(np.float64)
    v = v[np.isfinite(v)]
    lim = {"float32": 140, "float16": 30}[dtype]
    v = np.concatenate([v, np.ldexp(rng.uniform(0.5, 1, 20000),
                                    rng.integers(-lim, lim, 20000)) * rng.choice([-1, 1], 20000)])
    with np.errstate(over="ignore"):
        want = v.astype(dtype).astype(np.float64)
    for a, w in zip(v, want):
        assert round_exact(Fraction(float(a)), dtype) == w, float(a).hex()


def test_reference_rounding_bfloat16_matches_float32_cast():
    """For float32 values, ml_dtypes' float32 -> bfloat16 cast is one correct rounding."""
    import ml_dtypes

    rng = np.random.default_rng(3)
    v = rng.integers(0, 2**32, size=20000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    v = v[np.isfinite(v)]
    want = v.astype(ml_dtypes.bfloat16).astype(np.float64)
    for a, w in zip(v, want):
        assert round_exact(Fraction(float(a)), "bfloat16") == w, float(a).hex()


def test_reference_bracket_is_rigorous():
    """The integer-square-root bracket contains 1/sqrt(v) (checked by squaring) and shrinks."""
    rng = np.random.default_rng(4)
    for _ in range(200):
        v = Fraction(int(rng.integers(1, 2**40)), 2 ** int(rng.integers(0, 80)))
        r = InvSqrt(v)
        for bits in (64, 300):
            lo, hi = r.bracket(bits)
            assert lo * lo * v <= 1 <= hi * hi * v
            assert hi - lo <= hi / 2**bits
    assert InvSqrt(Fraction(1, 4)).exact == 2 and InvSqrt(Fraction(9, 16)).exact == Fraction(4, 3)
    assert InvSqrt(Fraction(0)).exact == 0
    # A value exactly at a float16 tie is decided by the exact path (no endless refinement).
    assert Value(Fraction(1), Fraction(2**-11), InvSqrt(Fraction(1))).rounded("float16") == 1.0


# --- subnormals, near-overflow data, long channels, Hypothesis-drawn inputs ------------------


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_subnormal_and_near_overflow_data(dtype):
    """Data made of the dtype's subnormals (channel 0) and of values near its largest finite
    number, whose sums and squares overflow the dtype (channel 1)."""
    import ml_dtypes

    info = ml_dtypes.finfo(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.finfo(dtype)
    sub = float(info.smallest_subnormal)
    big = float(info.max)
    rng = np.random.default_rng(500 + DTYPE_NAMES.index(dtype))
    x = np.stack([rng.integers(-9, 10, 6) * sub, big * rng.choice([1.0, -1.0, 0.5, 0.75], 6)],
                 axis=1)
    p = PARAM_DTYPE[dtype]
    pbig = float(np.finfo(np.float32).max) if p == "float32" else big
    for eps in (0.0, EPS_VALUES[0]):
        case = dict(x=cast(x, dtype), gamma=cast([0.5, 2.0], p), beta=cast([0.0, 1.0], p),
                    running_mean=cast([sub, pbig / 2], p), running_var=cast([4 * sub, pbig], p),
                    eps=eps, momentum=0.9, axis=1, dy=cast(rng.normal(size=(6, 2)), dtype))
        for flags in FLAG_COMBOS:
            check_against_reference(case, flags, public_api=False)


@pytest.mark.parametrize("dtype", ("float16", "bfloat16", "float32"))
def test_long_channel(dtype):
    """M = 3000 per channel (float16 sums of that many values lose digits in float16)."""
    rng = np.random.default_rng(510)
    p = PARAM_DTYPE[dtype]
    case = dict(x=cast(rng.normal(size=(3000, 2)) * 30 + 100, dtype), gamma=cast([1.5, -1], p),
                beta=cast([0.25, 0], p), running_mean=cast([0, 1], p), running_var=cast([1, 2], p),
                eps=1e-5, momentum=0.9, axis=1, dy=cast(rng.normal(size=(3000, 2)), dtype))
    check_against_reference(case, dict(training=True, fix_gamma=False, use_global_stats=False,
                                       output_mean_var=True), public_api=False)


def _floats(dtype: str, lo: float, hi: float):
    from hypothesis import strategies as st

    # Drawn as float64 (subnormals of every dtype included near 0), rounded to dtype.
    return st.floats(lo, hi).map(lambda v: float(cast([v], dtype).astype(np.float64)[0]))


def _hypothesis_case(dtype: str, magnitude: float):
    from hypothesis import strategies as st

    p = PARAM_DTYPE[dtype]
    pmag = min(magnitude, 1e30)

    @st.composite
    def build(draw):
        M = draw(st.integers(1, 4))
        C = draw(st.integers(1, 3))
        x = [[draw(_floats(dtype, -magnitude, magnitude)) for _ in range(C)] for _ in range(M)]
        dy = [[draw(_floats(dtype, -magnitude, magnitude)) for _ in range(C)] for _ in range(M)]
        vec = lambda lo, hi: [draw(_floats(p, lo, hi)) for _ in range(C)]  # noqa: E731
        axis = draw(st.sampled_from([1, -1, 0, -2]))
        x, dy = np.array(x), np.array(dy)  # (M, C): channel axis 1
        if axis in (0, -2):
            x, dy = x.T, dy.T
        return dict(x=cast(x, dtype), gamma=cast(vec(-pmag, pmag), p),
                    beta=cast(vec(-pmag, pmag), p), running_mean=cast(vec(-pmag, pmag), p),
                    running_var=cast(vec(2.0**-60, pmag), p), dy=cast(dy, dtype),
                    eps=draw(st.sampled_from(EPS_VALUES) | st.floats(0, 4)),
                    momentum=draw(st.sampled_from((0.9, 0.0, 1.0)) | st.floats(0, 1)),
                    axis=axis)

    return build()


def _check_covered(case, flags):
    """check_against_reference, with inputs whose answer is infinite rejected (they are the
    closed-form tests' subject: test_eps_rounding_to_zero_in_float16_gives_infinite_invstd)."""
    from hypothesis import reject

    try:
        check_against_reference(case, flags, public_api=False)
    except NotCovered:
        reject()


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_hypothesis_moderate_inputs(dtype):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=60, deadline=None)
    @given(_hypothesis_case(dtype, 1e3), st.sampled_from(FLAG_COMBOS))
    def check(case, flags):
        _check_covered(case, flags)

    check()


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_hypothesis_extreme_inputs(dtype):
    """The whole range of the dtype (products and sums far outside it stay exact)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    big = {"float64": 1e300, "float32": 3e38, "float16": 65504.0, "bfloat16": 3e38}[dtype]

    @settings(max_examples=60, deadline=None)
    @given(_hypothesis_case(dtype, big), st.sampled_from(FLAG_COMBOS))
    def check(case, flags):
        _check_covered(case, flags)

    check()


@pytest.mark.parametrize("dtype", ("float16", "bfloat16"))
def test_value_just_past_a_tie_below_minus_one(dtype):
    """y = beta + tiny with beta = -1 + 2**-(p+1) exactly the midpoint between -1 and the next
    value toward 0, -(1 - 2**-p), and tiny = 2**-61 (x - mean) invstd > 0 for x = 1: y[1] lies
    just inside the midpoint, so it rounds to -(1 - 2**-p), not to -1;
    y[0] lies just outside and rounds to -1. A rounding step that takes the spacing above 1
    for values just above -1 gets y[1] wrong."""
    p = {"float16": 11, "bfloat16": 8}[dtype]
    case = dict(x=cast(np.array([[0.0], [1.0]]), dtype), gamma=np.array([2.0**-60], np.float32),
                beta=np.array([-1 + 2.0 ** -(p + 1)], np.float32), running_mean=np.zeros(1, np.float32),
                running_var=np.ones(1, np.float32), eps=1e-3, momentum=0.9, axis=1,
                dy=cast(np.array([[1.0], [-0.5]]), dtype))
    flags = dict(training=True, fix_gamma=False, use_global_stats=False, output_mean_var=False)
    fwd_case = {k: v for k, v in case.items() if k != "dy"}
    want = reference(**fwd_case, **flags)["y"].rounded()
    assert want.ravel().tolist() == [-1.0, -(1 - 2.0**-p)]
    check_against_reference(case, flags)
