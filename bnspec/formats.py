"""Binary floating-point formats and correct rounding into them.

A format with precision p (bits, the implicit one included), minimum normal exponent emin
and maximum exponent emax represents ``N * 2**q`` with integer ``|N| < 2**p`` and
``q >= emin - p + 1``. Rounding is IEEE round-to-nearest, ties to even, with gradual
underflow; a value whose magnitude is at least ``(2 - 2**-p) * 2**emax`` (the midpoint
between the largest finite number and ``2**(emax+1)``) rounds to infinity.

We do the rounding ourselves instead of casting because casts can round twice: numpy
casts float64 -> bfloat16 (ml_dtypes) through float32, so 1 + 2**-8 + 2**-30 becomes 1
instead of 1 + 2**-7.

Three entry points:
- ``round_fraction``: exact rational -> nearest representable value (a Python float).
- ``round_float64``: float64 array -> nearest representable values, vectorized, exact.
- ``round_dd``: double-double values with an error bound -> correctly rounded values and a
  mask of the elements whose rounding the bound cannot decide (those go to mpmath).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .flags import numpy_dtype

_DOUBLE_MAX = 1.7976931348623157e308


@dataclass(frozen=True)
class Format:
    name: str
    p: int  # precision in bits, implicit bit included
    emin: int  # exponent of the smallest normal number
    emax: int  # exponent of the largest finite number

    @property
    def unit_roundoff(self) -> float:
        """u = 2**-p: the largest relative error of rounding a normal number."""
        return math.ldexp(1.0, -self.p)

    @property
    def max_finite(self) -> float:
        return math.ldexp(2.0 - math.ldexp(1.0, 1 - self.p), self.emax)

    @property
    def min_normal(self) -> float:
        return math.ldexp(1.0, self.emin)

    @property
    def min_subnormal(self) -> float:
        return math.ldexp(1.0, self.emin - self.p + 1)

    @property
    def overflow_threshold(self) -> float:
        """Magnitudes at or above this round to infinity (inf for float64, whose threshold
        2**1024 (1 - 2**-54) lies beyond every finite double)."""
        exact = (2 - Fraction(1, 2**self.p)) * Fraction(2) ** self.emax
        return math.inf if exact > Fraction(_DOUBLE_MAX) else float(exact)

    @property
    def numpy(self) -> np.dtype:
        return numpy_dtype(self.name)

    def ulp(self, value):
        """ulp(v): the spacing of the format at |v|, 2**(e - p + 1) with e = max(exponent of
        v, emin); at 0 and in the subnormal range that is the smallest subnormal."""
        v = np.abs(np.asarray(value, dtype=np.float64))
        _, e = np.frexp(v)  # v = m * 2**e, 0.5 <= m < 1, so the exponent is e - 1
        e = np.where(v == 0, self.emin, np.maximum(e - 1, self.emin))
        return np.ldexp(1.0, e - self.p + 1)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("float64", 53, -1022, 1023),
        Format("float32", 24, -126, 127),
        Format("float16", 11, -14, 15),
        Format("bfloat16", 8, -126, 127),
    )
}


def round_fraction(value: Fraction | int, fmt: Format) -> float:
    """Return the value of fmt nearest to an exact rational (ties to even), as a float.

    Overflow gives +-inf; zero gives +0.0.
    """
    q = Fraction(value)
    if q == 0:
        return 0.0
    sign = -1.0 if q < 0 else 1.0
    q = abs(q)
    # e = floor(log2 q), from the bit lengths, corrected by one comparison.
    e = q.numerator.bit_length() - q.denominator.bit_length()
    if q < Fraction(2) ** e:
        e -= 1
    if e > fmt.emax:
        return sign * math.inf
    quantum_exp = max(e, fmt.emin) - (fmt.p - 1)
    scaled = q / (Fraction(2) ** quantum_exp)
    n = scaled.numerator // scaled.denominator
    rest = scaled - n
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and n % 2 == 1):
        n += 1
    if n == 1 << fmt.p:  # rounded up into the next binade
        n >>= 1
        quantum_exp += 1
    if quantum_exp + fmt.p - 1 > fmt.emax:
        return sign * math.inf
    return sign * math.ldexp(float(n), quantum_exp)  # n < 2**p <= 2**53: exact


def round_float64(values, fmt: Format) -> np.ndarray:
    """Round float64 values to fmt (ties to even), exactly; returns float64 values.

    Each v is scaled by a power of two so that the format's quantum at v becomes 1, rounded
    with rint (ties to even) and scaled back; both scalings are exact in float64.
    """
    v = np.asarray(values, dtype=np.float64)
    if fmt.name == "float64":
        return v.copy()
    out = v.copy()
    finite = np.isfinite(v) & (v != 0)
    x = v[finite]
    _, e = np.frexp(x)
    quantum_exp = np.maximum(e - 1, fmt.emin) - (fmt.p - 1)
    with np.errstate(over="ignore"):  # beyond the format's range: handled just below
        r = np.ldexp(np.rint(np.ldexp(x, -quantum_exp)), quantum_exp)
    r = np.where(np.abs(r) > fmt.max_finite, np.copysign(np.inf, x), r)
    out[finite] = r
    return out


def round_dd(hi, lo, err, fmt: Format) -> tuple[np.ndarray, np.ndarray]:
    """Correctly round hi + lo (true value within err of it) to fmt.

    Returns (rounded float64 values, undecided mask). An element is undecided when the
    interval [hi+lo-err, hi+lo+err] contains a rounding boundary (a midpoint between two
    neighbours, or the overflow threshold) or the value lies next to the format's largest
    number or zero; the caller recomputes those in higher precision.
    """
    hi = np.asarray(hi, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    err = np.asarray(err, dtype=np.float64)
    r = round_float64(hi, fmt)
    # offset = value - r; hi - r is exact (r is within half a coarser ulp of hi). The
    # rounding boundary on the side of the offset is half the spacing on that side: the
    # spacing below |r| when the offset points toward zero, the ulp at |r| otherwise.
    offset = lo if fmt.name == "float64" else (hi - r) + lo
    toward_zero = offset * np.sign(r) < 0
    half = np.where(toward_zero, _ulp_below(r, fmt), fmt.ulp(r)) / 2
    # Margin: err plus the rounding of the offset computation itself.
    margin = err + np.abs(offset) * 2.0**-50 + 2.0**-1074
    decided = np.abs(offset) + margin < half
    decided &= np.isfinite(r) & (np.abs(r) < fmt.max_finite) & (r != 0)
    # Whatever the interval, exact zeros with no error are decided.
    decided |= (hi == 0) & (lo == 0) & (err == 0)
    # Non-finite inputs pass through (NaN stays NaN, +-inf stays +-inf).
    nonfinite = ~np.isfinite(hi)
    r = np.where(nonfinite, hi, r)
    decided |= nonfinite
    # Offsets that would move r: round half ties etc. are caught as undecided above; when
    # |offset| > half (rounding of hi alone disagreed with hi+lo), mark undecided too.
    return r, ~decided


def _ulp_below(r, fmt: Format):
    """Spacing between |r| and the next smaller magnitude in fmt (half the ulp at a power of 2)."""
    a = np.abs(np.asarray(r, dtype=np.float64))
    ulp = fmt.ulp(a)
    m, e = np.frexp(a)
    at_binade_start = (m == 0.5) & (e - 1 > fmt.emin)
    return np.where(at_binade_start, ulp / 2, ulp)


def to_storage(values, dtype_name: str) -> np.ndarray:
    """Cast values already representable in dtype_name to that numpy dtype (exact)."""
    return np.asarray(values, dtype=np.float64).astype(numpy_dtype(dtype_name))
