"""oracle.exact's sums and dot products equal the Fraction sums of the same floats.

Floats are drawn by Hypothesis from every dtype (float64, float32, float16, bfloat16), with
subnormals, signed zeros, wide exponent ranges and heavy cancellation; the exact values are
summed with fractions.Fraction, which shares nothing with the limb decomposition under test.
"""
from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraction_reference import DTYPE_NAMES
from oracle import exact

WIDTH = {"float64": 64, "float32": 32, "float16": 16}


def floats_of(dtype: str, **kw):
    """Finite floats exactly representable in dtype (as Python floats)."""
    if dtype == "bfloat16":
        # bfloat16 = the top 16 bits of a float32: draw the bit pattern.
        def from_bits(b):
            return float(np.array([b << 16], dtype=np.uint32).view(np.float32)[0])

        return st.integers(0, 2**16 - 1).map(from_bits).filter(np.isfinite)
    return st.floats(allow_nan=False, allow_infinity=False, width=WIDTH[dtype], **kw)


def as_array(values, dtype: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    return a.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)


def fraction_sum(values) -> Fraction:
    return sum((Fraction(float(v)) for v in np.asarray(values, dtype=np.float64).ravel()),
               Fraction(0))


def fraction_dot(a, b) -> Fraction:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return sum((Fraction(float(s)) * Fraction(float(t)) for s, t in zip(a, b)), Fraction(0))


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_exact_sum_of_drawn_floats(dtype):
    @settings(max_examples=150, deadline=None)
    @given(st.lists(floats_of(dtype), min_size=0, max_size=60))
    def check(values):
        a = as_array(values, dtype)
        assert exact.exact_sum(a) == fraction_sum(a), [float(v).hex() for v in values]

    check()


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_exact_dot_of_drawn_floats(dtype):
    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.tuples(floats_of(dtype), floats_of(dtype)), min_size=0, max_size=40))
    def check(pairs):
        a = as_array([p[0] for p in pairs], dtype)
        b = as_array([p[1] for p in pairs], dtype)
        assert exact.exact_dot(a, b) == fraction_dot(a, b), [
            (float(s).hex(), float(t).hex()) for s, t in pairs]

    check()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-2**53 + 1, 2**53 - 1), st.integers(-1074, 971)),
                min_size=1, max_size=50))
def test_exact_sum_wide_exponents_and_cancellation(parts):
    """m * 2**e over the whole float64 range, each value also added negated at the end with
    one term changed, so the sum cancels to a tiny remainder."""
    values = [float(Fraction(m) * Fraction(2) ** e) for m, e in parts]
    values = [v for v in values if np.isfinite(v)]
    cancel = [-v for v in values[1:]] + [5e-324]
    a = np.array(values + cancel)
    assert exact.exact_sum(a) == fraction_sum(a)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(floats_of("float64", min_value=-1e150, max_value=1e150),
                          floats_of("float64", min_value=-1e150, max_value=1e150)),
                min_size=1, max_size=30))
def test_exact_dot_wide_exponents_subnormal_products(pairs):
    """Products from 1e300 down to far below the smallest subnormal stay exact."""
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    assert exact.exact_dot(a, b) == fraction_dot(a, b)


def test_exact_sum_long_reduction_of_float16():
    """70,000 float16 values (more than 2**16): the float64 bincount blocks stay exact."""
    rng = np.random.default_rng(5)
    a = (rng.normal(size=70000) * 1000).astype(np.float16)
    assert exact.exact_sum(a) == fraction_sum(a)
    b = (rng.normal(size=70000)).astype(np.float16)
    assert exact.exact_dot(a, b) == fraction_dot(a, b)


def test_exact_sum_of_extremes():
    big = np.finfo(np.float64).max
    a = np.array([big, big, -big, 5e-324, -0.0, 0.0, 2.0**-1022])
    assert exact.exact_sum(a) == fraction_sum(a)
    assert exact.exact_sum(np.array([], dtype=np.float64)) == 0
    assert exact.exact_dot(np.array([big, 5e-324]), np.array([big, 5e-324])) == (
        Fraction(big) ** 2 + Fraction(5e-324) ** 2)
    m = np.full(4096, 2.0**53 - 1)  # full 53-bit mantissas, all limbs busy
    assert exact.exact_dot(m, m) == 4096 * Fraction(2**53 - 1) ** 2
    assert exact.exact_sum(m) == 4096 * (2**53 - 1)


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_split_mantissa_is_exact(dtype):
    """a = sign * |m| * 2**e element by element, |m| < 2**53."""
    rng = np.random.default_rng(6)
    a = as_array(rng.normal(size=200) * 2.0 ** rng.integers(-20, 12, 200), dtype)  # finite
    sign, mant, e = exact.split_mantissa(a)
    for s, m, x, t in zip(sign, mant, e, a.astype(np.float64)):
        assert 0 <= int(m) < 2**53
        assert Fraction(int(s)) * int(m) * Fraction(2) ** int(x) == Fraction(float(t))
