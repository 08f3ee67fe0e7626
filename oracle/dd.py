"""Error-free transformations and accurate sums on float64 arrays (vectorized).

The oracle's fast path writes each output as an exact or nearly exact sum of float64
terms (an *expansion*) and reduces it to a double-double hi + lo:

- ``two_sum(a, b) -> (s, e)`` with s + e == a + b exactly (Knuth).
- ``two_prod(a, b) -> (p, e)`` with p + e == a * b exactly (Dekker's splitting; exact for
  |a|, |b| < 2**995 and products above the underflow range, which the oracle's inputs obey).
- ``accurate_sum(terms) -> (hi, lo, err)``: three passes of VecSum (Ogita, Rump, Oishi,
  "Accurate sum and dot product", 2005) leave the sum unchanged and push it into the last
  term; the rest is summed in float64. The result satisfies
  |hi + lo - sum(terms)| <= err = 2 n u^2 |hi| + 2**-140 sum|terms|   (u = 2**-53)
  for n <= 64 terms. After three passes the n - 1 residuals hold s - fl(s), of size u |s|
  up to O((n u)^3) sum|terms|; summing them in float64 errs by (n - 1) u times their size.
  Both parts carry a safety factor of 2 or more. Where the residuals are all zero the sum
  is exact and err = 0 (so exact zeros and exactly representable results are recognised).

All functions take and return float64 numpy arrays of one common shape.
"""
from __future__ import annotations

import numpy as np

_SPLITTER = 134217729.0  # 2**27 + 1


def two_sum(a, b):
    """Return (s, e): s = fl(a + b) and e = a + b - s exactly."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def _split(a):
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def two_prod(a, b):
    """Return (p, e): p = fl(a * b) and e = a * b - p exactly (no underflow/overflow)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _vec_sum(terms: list) -> None:
    for i in range(1, len(terms)):
        terms[i], terms[i - 1] = two_sum(terms[i], terms[i - 1])


def accurate_sum(terms: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (hi, lo, err): hi + lo approximates sum(terms) within err (see module doc)."""
    if len(terms) > 64:
        raise ValueError(f"len(terms)={len(terms)}: accurate_sum's bound holds for <= 64 terms")
    magnitude = sum(np.abs(t) for t in terms)
    work = [np.asarray(t, dtype=np.float64) for t in terms]
    for _ in range(3):
        _vec_sum(work)
    rest = sum(work[:-1]) if len(work) > 1 else np.zeros_like(work[0])
    residual = sum(np.abs(t) for t in work[:-1]) if len(work) > 1 else rest
    hi, lo = two_sum(work[-1], rest)
    err = np.abs(hi) * (2 * len(terms) * 2.0**-106) + magnitude * 2.0**-140
    # Residuals all zero: the terms sum exactly to work[-1] = hi, with lo = 0.
    return hi, lo, np.where(residual == 0, 0.0, err)


def product_terms(a: list, b: list) -> list:
    """Return float64 terms whose sum is exactly (sum a) * (sum b): every pair's two_prod."""
    out = []
    for x in a:
        for y in b:
            p, e = two_prod(x, y)
            out.append(p)
            out.append(e)
    return out


def split3(value) -> tuple[float, float, float]:
    """Return (t1, t2, t3) floats with t1 + t2 + t3 = value to about 2**-159 relative.

    value is a fractions.Fraction or an mpmath mpf; each part is the nearest float to the
    remainder, so the parts are non-overlapping.
    """
    from fractions import Fraction

    parts = []
    rest = value
    for _ in range(3):
        try:
            t = float(rest)
        except OverflowError:  # beyond the float64 range: the caller's slow path handles it
            return (np.inf if rest > 0 else -np.inf), 0.0, 0.0
        parts.append(t)
        rest = rest - (Fraction(t) if isinstance(rest, Fraction) else t)
    return parts[0], parts[1], parts[2]
