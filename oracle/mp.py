"""The oracle's slow-path numbers: exact rationals (``Fraction``) and 256-bit mpmath values.

Conversions between them and doubles (``to_fraction``, ``to_float``, ``to_dd``: a value as the
double-double hi + lo), exact square roots of rationals that are squares, mixing the two
kinds exactly, and ``decided``: Ziv's strategy, which recomputes at 4x the precision until
the rounding to a format is decided.
"""
from __future__ import annotations

from fractions import Fraction
from math import isqrt

import mpmath
import numpy as np

from bnspec.formats import round_fraction

PRECISION_BITS = 256
MP = mpmath.mp.clone() if hasattr(mpmath.mp, "clone") else mpmath.mp


def mpf(value) -> "mpmath.mpf":
    """Return value (a Fraction, float or int) as an mpf at the working precision."""
    if isinstance(value, Fraction):
        return MP.mpf(value.numerator) / value.denominator
    return MP.mpf(value)


def to_fraction(value) -> Fraction:
    """Exact rational value of a finite mpf, Fraction or float."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, float):
        return Fraction(value)
    sign, man, exp, _ = value._mpf_
    if not man:
        return Fraction(0)
    return (-1) ** sign * Fraction(int(man)) * Fraction(2) ** int(exp)


def to_float(value) -> float:
    """Nearest float64 of a Fraction or mpf; +-inf beyond the float64 range."""
    try:
        return float(value)
    except OverflowError:
        return np.inf if value > 0 else -np.inf


def exact_sqrt(q: Fraction) -> Fraction | None:
    """sqrt(q) when q >= 0 is the square of a rational, else None."""
    n, d = q.numerator, q.denominator
    rn, rd = isqrt(n), isqrt(d)
    return Fraction(rn, rd) if rn * rn == n and rd * rd == d else None


def quotient(p: Fraction, q):
    """p / q for a Fraction p and a Fraction or mpf q."""
    return p / q if isinstance(q, Fraction) else mpf(p) / q


def same_kind(like, value):
    """value as a Fraction when `like` is one, else as an mpf (to mix the two exactly)."""
    return Fraction(value) if isinstance(like, Fraction) else mpf(Fraction(value))


def to_dd(value) -> tuple[float, float]:
    """(hi, lo): hi = nearest double of value, lo = nearest double of the rest. Values
    beyond the float64 range give (+-inf, 0)."""
    hi = to_float(value)
    if not np.isfinite(hi):
        return hi, 0.0
    rest = value - (Fraction(hi) if isinstance(value, Fraction) else MP.mpf(hi))
    return hi, float(rest)


MAX_PRECISION_BITS = 1 << 14


def decided(compute, fmt):
    """compute(prec) at 256 bits, then at 4x the precision while its rounding to fmt is not
    decided (Ziv's strategy): the result of compute(prec) is trusted to 2**-(prec/2 - 8)
    relative (the slow paths keep at least prec/2 good bits through cancellation). Exact
    results (Fractions) are decided at once."""
    prec = PRECISION_BITS
    while True:
        with MP.workprec(prec):
            value = compute(prec)
        if isinstance(value, Fraction) or prec >= MAX_PRECISION_BITS:
            return value
        exact = to_fraction(value)
        delta = abs(exact) / (Fraction(2) ** (prec // 2 - 8))
        if round_fraction(exact - delta, fmt) == round_fraction(exact + delta, fmt):
            return value
        prec *= 4
