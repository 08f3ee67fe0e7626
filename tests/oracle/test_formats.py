"""bnspec.formats rounds exactly as IEEE 754 says, checked against an independent rounding.

fraction_reference.round_exact is written from the definition (and itself checked against
CPython's float division and numpy's single-rounding casts in test_reference_fractions);
here round_fraction, round_float64 and round_dd must agree with it, including ties to even,
subnormals, the overflow threshold and the bfloat16 double-rounding trap, and round_dd's
"decided" answers must hold for every value in the stated error interval.
"""
from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from fraction_reference import DTYPE_NAMES, FORMATS, round_exact
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from bnspec import formats

FMT = formats.FORMATS


# --- format constants -------------------------------------------------------------------


@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_format_constants_match_finfo(name):
    """p, emin, emax, max, smallest subnormal, ulp(1) and the overflow threshold agree with
    numpy / ml_dtypes finfo and with the IEEE definition."""
    info = ml_dtypes.finfo(ml_dtypes.bfloat16) if name == "bfloat16" else np.finfo(name)
    f = FMT[name]
    p, emin, emax = FORMATS[name]
    assert (f.p, f.emin, f.emax) == (p, emin, emax)
    assert f.max_finite == float(info.max)
    assert f.min_subnormal == float(info.smallest_subnormal)
    assert float(f.ulp(1.0)) == float(info.eps)
    assert float(f.ulp(-1.5)) == float(info.eps)
    assert float(f.ulp(f.min_subnormal)) == float(info.smallest_subnormal)
    assert f.unit_roundoff == 2.0**-p


@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_ulp_at_zero_is_the_smallest_subnormal(name):
    """ulp(0) is the spacing of the format at 0, the smallest subnormal (the docstring's
    2**(e-p+1) with e = max(exponent, emin) = emin)."""
    f = FMT[name]
    assert float(f.ulp(0.0)) == f.min_subnormal, (
        f"ulp(0.0)={float(f.ulp(0.0))!r}, but should be {f.min_subnormal!r} [{name}]")


@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_overflow_threshold(name):
    """(2 - 2**-p) * 2**emax, or +inf for float64 where it is past the float64 range; the
    property must not raise."""
    p, _, emax = FORMATS[name]
    exact = (2 - Fraction(1, 2**p)) * Fraction(2) ** emax
    want = float(exact) if exact < Fraction(2) ** 1024 - Fraction(2) ** 970 else math.inf
    got = FMT[name].overflow_threshold
    assert got == want, f"overflow_threshold={got!r}, but should be {want!r} [{name}]"


# --- round_fraction ---------------------------------------------------------------------


def dyadic_near_boundaries(name: str):
    """Rationals at, just beside and between rounding boundaries of format `name`: k/2 * q
    (q a quantum of the format) plus a small signed offset, across the whole exponent range."""
    p, emin, emax = FORMATS[name]

    @st.composite
    def build(draw):
        e = draw(st.integers(emin - 3, emax))
        quantum_exp = max(e, emin) - p + 1
        k = draw(st.integers(0, 2 ** (p + 1) + 2))  # multiples of half a quantum
        offset = draw(st.sampled_from([0, 1, -1])) * Fraction(1, 2 ** draw(st.integers(1, 80)))
        q = (Fraction(k, 2) + offset) * Fraction(2) ** quantum_exp
        sign = draw(st.sampled_from([1, -1]))
        return sign * q

    return build()


@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_round_fraction_near_boundaries(name):
    @settings(max_examples=400, deadline=None)
    @given(dyadic_near_boundaries(name))
    def check(q):
        assert formats.round_fraction(q, FMT[name]) == round_exact(q, name), q

    check()


@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_round_fraction_random_rationals(name):
    """Random rationals inside the float64 range (past it: the test below)."""
    @settings(max_examples=300, deadline=None)
    @given(st.integers(-2**80, 2**80), st.integers(1, 2**80), st.integers(-1200, 940))
    def check(num, den, e):
        q = Fraction(num, den) * Fraction(2) ** e
        want = round_exact(q, name)
        try:
            got = formats.round_fraction(q, FMT[name])
        except OverflowError as exc:  # pragma: no cover - reported as a failure
            raise AssertionError(f"round_fraction({q!r}, {name}) raised {exc!r}; should be "
                                 f"{want!r}") from exc
        assert got == want, (q, got, want)

    check()


@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_round_fraction_beyond_float64_range_is_inf(name):
    """A rational past the format's overflow threshold rounds to +-inf, also when it is past
    the float64 range (2**1024, 2**2000)."""
    for q in (Fraction(2) ** 1024, Fraction(2) ** 2000, Fraction(3) * Fraction(2) ** 1023):
        assert formats.round_fraction(q, FMT[name]) == math.inf, (name, q)
        assert formats.round_fraction(-q, FMT[name]) == -math.inf, (name, q)


def test_ties_to_even_and_overflow_threshold_by_hand():
    f16, bf16, f32, f64 = FMT["float16"], FMT["bfloat16"], FMT["float32"], FMT["float64"]
    cases = [
        (f16, Fraction(1) + Fraction(1, 2**11), 1.0),  # tie, even is 1
        (f16, Fraction(1) + Fraction(3, 2**11), 1 + 2.0**-9),  # tie, even is 1 + 2**-9
        (f16, Fraction(65519), 65504.0),
        (f16, Fraction(65520), math.inf),  # the threshold itself rounds to inf
        (f16, Fraction(65520) - Fraction(1, 2**40), 65504.0),
        (f16, Fraction(1, 2**25), 0.0),  # half the smallest subnormal: tie to 0
        (f16, Fraction(1, 2**25) + Fraction(1, 2**60), 2.0**-24),
        (f16, Fraction(3, 2**25), 2.0**-23),  # 1.5 subnormals: tie to 2 (even)
        (bf16, Fraction(1) + Fraction(1, 2**8) + Fraction(1, 2**30), 1 + 2.0**-7),  # the trap
        (bf16, Fraction(1) + Fraction(1, 2**8), 1.0),
        (bf16, Fraction(1, 2**134), 0.0),
        (bf16, Fraction(2) ** 128 - Fraction(2) ** 119, math.inf),
        (bf16, Fraction(2) ** 128 - Fraction(2) ** 119 - 1, float(ml_dtypes.finfo(ml_dtypes.bfloat16).max)),
        (f32, Fraction(2) ** 128 - Fraction(2) ** 103, math.inf),
        (f32, Fraction(1, 2**150), 0.0),
        (f32, Fraction(1, 2**150) + Fraction(1, 2**200), 2.0**-149),
        (f64, Fraction(2) ** 1024 - Fraction(2) ** 970, math.inf),
        (f64, Fraction(1, 2**1075), 0.0),
        (f64, Fraction(3, 2**1075), 2 * 5e-324),
    ]
    for fmt, q, want in cases:
        assert formats.round_fraction(q, fmt) == want, (fmt.name, q)
        assert formats.round_fraction(-q, fmt) == -want, (fmt.name, -q)
        assert round_exact(q, fmt.name) == want, (fmt.name, q)


# --- round_float64 ----------------------------------------------------------------------


def test_bfloat16_double_rounding_trap():
    """1 + 2**-8 + 2**-30 is above the bfloat16 midpoint 1 + 2**-8: it rounds up to 1 + 2**-7;
    a cast through float32 (what ml_dtypes does) would see the tie 1 + 2**-8 and give 1."""
    v = 1 + 2.0**-8 + 2.0**-30
    assert formats.round_float64(np.array([v, -v]), FMT["bfloat16"]).tolist() == [
        1 + 2.0**-7, -(1 + 2.0**-7)]
    assert float(np.float64(v).astype(np.float32).astype(ml_dtypes.bfloat16)) == 1.0


@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_round_float64_random_bit_patterns(name):
    """All float64 bit patterns (weighted towards the format's range) round as the reference."""
    p, emin, emax = FORMATS[name]
    rng = np.random.default_rng(10 + DTYPE_NAMES.index(name))
    a = rng.integers(0, 2**64, size=3000, dtype=np.uint64).view(np.float64)
    mant = rng.uniform(0.5, 1.0, 6000)
    # Exact midpoints and their float64 neighbours, across normal and subnormal binades.
    k = rng.integers(2**(p - 1), 2**p, 3000) * 2 + 1
    mids = np.ldexp(k.astype(np.float64), rng.integers(emin - p - 2, emax - p + 1, 3000))
    b = np.ldexp(mant, rng.integers(emin - p - 3, emax + 2, 6000))
    v = np.concatenate([a, b, mids, np.nextafter(mids, 0), np.nextafter(mids, np.inf)])
    threshold = (2 - Fraction(1, 2**p)) * Fraction(2) ** emax
    edge = [float(threshold), np.nextafter(float(threshold), 0)] if emax < 1023 else []
    v = np.concatenate([v, -v, [0.0, FMT[name].max_finite, *edge]])
    v = v[np.isfinite(v)]
    got = formats.round_float64(v, FMT[name])
    for x, g in zip(v, got):
        assert g == round_exact(Fraction(float(x)), name), (name, float(x).hex(), float(g))


def test_round_float64_passes_nan_and_inf():
    v = np.array([np.nan, np.inf, -np.inf])
    for name in DTYPE_NAMES:
        got = formats.round_float64(v, FMT[name])
        assert np.isnan(got[0]) and got[1] == np.inf and got[2] == -np.inf


# --- round_dd: decided answers must be right for the whole error interval ------------------


def _check_round_dd(hi: np.ndarray, lo: np.ndarray, err: np.ndarray, name: str) -> int:
    """Assert every decided element's rounding holds over [hi+lo-err, hi+lo+err]; return the
    number of decided elements."""
    r, undecided = formats.round_dd(hi, lo, err, FMT[name])
    decided = 0
    for i in range(hi.size):
        if undecided[i] or not np.isfinite(hi[i]):
            continue
        decided += 1
        centre = Fraction(float(hi[i])) + Fraction(float(lo[i]))
        e = Fraction(float(err[i]))
        ends = {round_exact(centre - e, name), round_exact(centre + e, name)}
        assert ends == {float(r[i])}, (
            f"round_dd(hi={float(hi[i]).hex()}, lo={float(lo[i]).hex()}, err={float(err[i])!r}, "
            f"{name}) = {float(r[i])!r} decided, but the interval rounds to {sorted(ends)}")
    return decided


def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_round_dd_is_conservative_near_boundaries(name):
    """Values within a few err of rounding boundaries (midpoints, binade edges, both signs,
    subnormals): whatever round_dd calls decided is right for the whole interval."""
    p, emin, emax = FORMATS[name]
    rng = np.random.default_rng(20 + DTYPE_NAMES.index(name))
    n = 4000
    e = rng.integers(emin - 2, min(emax, 1000) - 1, n)
    # A boundary: a midpoint k + 1/2 quanta (k random, or at the binade edge 2**(p-1)).
    k = np.where(rng.random(n) < 0.5, 2 ** (p - 1), rng.integers(2 ** (p - 1), 2**p, n))
    quantum = np.ldexp(1.0, np.maximum(e, emin) - p + 1)
    boundary = (k - np.where(rng.random(n) < 0.5, 0.5, 0.0)) * quantum
    err = np.abs(boundary) * np.ldexp(1.0, rng.integers(-110, -60, n))
    delta = err * rng.choice([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0], n)
    sign = rng.choice([-1.0, 1.0], n)
    hi, lo = _two_sum(sign * boundary, sign * delta)
    decided = _check_round_dd(hi, lo, err, name)
    assert decided > n // 10


@pytest.mark.parametrize("name", DTYPE_NAMES)
@settings(max_examples=300, deadline=None)
@given(hi=st.floats(allow_nan=False, allow_infinity=False, width=64),
       lo_scale=st.integers(-60, 0), lo_frac=st.floats(-1, 1), err_exp=st.integers(-120, -40))
@example(hi=-1.0, lo_scale=0, lo_frac=0.5, err_exp=-110)  # -1 + 2**-54: below a binade edge
def test_round_dd_is_conservative_hypothesis(name, hi, lo_scale, lo_frac, err_exp):
    """Random normalized double-doubles (hi = fl(hi + lo)) with an error bound."""
    ulp = math.ulp(hi) if hi != 0 else 5e-324
    lo = math.ldexp(lo_frac, lo_scale) * ulp / 2
    s, t = _two_sum(hi, lo)
    assume(math.isfinite(s))
    err = abs(s) * 2.0**err_exp
    _check_round_dd(np.array([s]), np.array([t]), np.array([err]), name)


@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_round_dd_below_negative_powers_of_two(name):
    """-2**k + t with t just above half the spacing below 2**k: the value's magnitude is below
    the midpoint under 2**k, so it rounds to -(2**k - spacing) unless t is exactly the tie.
    round_dd must not claim -2**k when the interval reaches past that midpoint."""
    p, _, _ = FORMATS[name]
    below_spacing = 2.0 ** -p  # spacing just below 1 is 2**-p
    hi = np.array([-1.0, -1.0, 1.0])
    lo = np.array([below_spacing / 2, below_spacing / 2, -below_spacing / 2])
    err = np.array([below_spacing * 2.0**-40] * 3)
    _check_round_dd(hi, lo, err, name)
