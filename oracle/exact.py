"""Exact sums and dot products of binary floating-point numbers, vectorized.

Every finite float64 is ``m * 2**e`` with an integer ``|m| < 2**53``; a product of two is
``m_a * m_b * 2**(e_a + e_b)``. We drop the trailing zero bits that all mantissas share
(data that came from float32 or float16 has 29 or 42 of them), cut each ``|m|`` into limbs
of at most ``_LIMB_BITS`` bits, and collect the limb products by weight ``2**(L k)``. The
partial sums per (exponent, k) are formed with ``np.bincount`` in float64, which is exact
while every running sum stays below ``2**53``: blocks are sized for that. Python integers
then add the few partial sums exactly. The cost is linear, a few numpy passes per limb pair.

Results are exact dyadic rationals (``fractions.Fraction``). Inputs must be finite.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

_LIMB_BITS = 13  # limb products < 2**26, so sums of up to 2**24 elements stay exact


def split_mantissa(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (sign, |m|, e) with a = sign * |m| * 2**e exactly, |m| < 2**53 (int64),
    with the trailing zero bits common to all |m| moved into e."""
    a = np.asarray(a, dtype=np.float64)
    frac, exp = np.frexp(a)  # a = frac * 2**exp, 0.5 <= |frac| < 1 (or 0)
    mant = np.ldexp(np.abs(frac), 53).astype(np.int64)  # exact 53-bit integers
    exp = exp.astype(np.int64) - 53
    combined = int(np.bitwise_or.reduce(mant)) if mant.size else 0
    if combined:
        shared_zeros = (combined & -combined).bit_length() - 1
        mant >>= shared_zeros
        exp += shared_zeros
    sign = np.where(a < 0, -1.0, 1.0)
    return sign, mant, exp


def _limbs(mant: np.ndarray) -> list[np.ndarray]:
    bits = int(mant.max()).bit_length() if mant.size else 0
    count = max(1, -(-bits // _LIMB_BITS))
    mask = (1 << _LIMB_BITS) - 1
    return [(mant >> (_LIMB_BITS * i)) & mask for i in range(count)]


def _exact_weighted_sum(sign, terms: list[np.ndarray], exps: np.ndarray, bound: int) -> Fraction:
    """Exact value of sum_j sign_j * sum_k terms[k][j] * 2**(L k + exps_j), where every
    terms[k][j] < 2**bound."""
    if exps.size == 0:
        return Fraction(0)
    emin = int(exps.min())
    index = exps - emin
    groups = int(index.max()) + 1
    block = 1 << max(0, 52 - bound)
    total = 0
    for start in range(0, exps.size, block):
        stop = start + block
        idx = index[start:stop]
        sg = sign[start:stop]
        for k, t in enumerate(terms):
            sums = np.bincount(idx, weights=sg * t[start:stop], minlength=groups)
            for group in np.flatnonzero(sums):
                total += int(sums[group]) << (_LIMB_BITS * k + int(group))
    return Fraction(total) * Fraction(2) ** emin


def exact_sum(a: np.ndarray) -> Fraction:
    """Return the exact sum of the finite float values in a, as a Fraction."""
    sign, mant, exps = split_mantissa(np.ravel(a))
    return _exact_weighted_sum(sign, _limbs(mant), exps, _LIMB_BITS)


def exact_dot(a: np.ndarray, b: np.ndarray) -> Fraction:
    """Return the exact value of sum(a * b) for finite float arrays, as a Fraction."""
    sa, ma, ea = split_mantissa(np.ravel(a))
    sb, mb, eb = split_mantissa(np.ravel(b))
    la, lb = _limbs(ma), _limbs(mb)
    by_weight = [np.zeros(ma.size, dtype=np.int64) for _ in range(len(la) + len(lb) - 1)]
    for i, li in enumerate(la):
        for j, lj in enumerate(lb):
            by_weight[i + j] += li * lj
    overlap = min(len(la), len(lb)).bit_length()
    return _exact_weighted_sum(sa * sb, by_weight, ea + eb, 2 * _LIMB_BITS + overlap)
