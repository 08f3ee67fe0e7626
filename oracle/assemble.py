"""Expected records from the evaluation's numbers: per-channel exact values, and per-element
fast-path sums hi + lo with an error bound err.

``finish`` rounds each fast-path element to the output dtype where err proves 30 significant
digits (err <= 2**-100 |hi|) and decides the rounding, sends the others (and those whose
products could underflow, ``unsafe``) to the slow path, and takes IEEE float64 values where
the inputs are not finite. ``expected_from_scalars`` does the same for per-channel values.
Channel views: x of any rank and axis as a [C, M] array, channel first, and back.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from bnspec.formats import FORMATS, round_dd, round_fraction

from .dd import split3
from .mp import decided, to_dd, to_fraction
from .results import Expected

DIGITS_BOUND = 2.0**-100  # err/|value| that proves 30 significant digits
TINY = 2.0**-400  # inputs or scales this small could make a two_prod underflow: slow path


def channel_view(a: np.ndarray, axis: int) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(np.asarray(a).astype(np.float64), axis, 0)).reshape(
        a.shape[axis], -1)


def from_channel_view(a: np.ndarray, shape, axis: int) -> np.ndarray:
    moved = (shape[axis],) + tuple(n for i, n in enumerate(shape) if i != axis)
    return np.moveaxis(a.reshape(moved), 0, axis)


def triple_columns(values: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = np.array([split3(v) for v in values], dtype=np.float64).reshape(len(values), 3)
    return tuple(parts[:, i:i + 1] for i in range(3))


def expected_from_scalars(name, dtype, values, conds) -> Expected:
    """Build an Expected from per-channel exact (Fraction/mpf) or IEEE float values."""
    fmt = FORMATS[dtype]
    hi = np.empty(len(values))
    lo = np.zeros(len(values))
    rounded = np.empty(len(values))
    for i, v in enumerate(values):
        if isinstance(v, float) and not np.isfinite(v):
            hi[i] = rounded[i] = v
            continue
        if isinstance(v, float):  # IEEE float64 evaluation of a non-finite channel
            hi[i] = v
            rounded[i] = round_fraction(Fraction(v), fmt)
            continue
        hi[i], lo[i] = to_dd(v)
        rounded[i] = round_fraction(to_fraction(v), fmt)
    return Expected(name, dtype, hi, lo, rounded, np.asarray(conds, dtype=np.float64))


def finish(name, dtype, hi, lo, err, exact_mask, slow, ieee, cond, risky) -> Expected:
    """Round the fast-path values, send undecided and `risky` elements (whose products
    could underflow) to `slow(index) -> mpf`, and take IEEE values where exact_mask is
    False."""
    fmt = FORMATS[dtype]
    rounded, undecided = round_dd(hi, lo, err, fmt)
    undecided |= risky
    undecided |= err > DIGITS_BOUND * np.abs(hi)
    undecided &= exact_mask
    hi, lo = hi.copy(), lo.copy()
    for index in zip(*np.nonzero(undecided)):
        value = decided(lambda prec: slow(index, prec), fmt)
        hi[index], lo[index] = to_dd(value)
        rounded[index] = round_fraction(to_fraction(value), fmt)
    ieee = np.broadcast_to(ieee, hi.shape)
    special = ~exact_mask
    hi[special] = ieee[special]
    lo[special] = 0.0
    rounded[special] = round_ieee(ieee[special], fmt)
    cond = np.where(special & ~np.isfinite(ieee), 0.0, cond)
    cond = np.where(np.isfinite(cond), cond, 0.0)
    return Expected(name, dtype, hi, lo, rounded, np.asarray(cond, dtype=np.float64))


def unsafe_scalars(values) -> np.ndarray:
    """[C, 1] mask of per-channel exact scalars (Fraction or mpf) too small or too large for
    the float64 triples of the fast path (judged on the exact value: its float64 rounding
    may already have flushed to zero)."""
    return np.array([v != 0 and not (TINY <= abs(v) <= 1 / TINY) for v in values],
                    dtype=bool)[:, None]


def unsafe(a) -> np.ndarray:
    """Magnitudes where a two_prod could underflow or overflow (nonzero below TINY, above
    1/TINY, or not finite): such elements take the slow path."""
    a = np.abs(np.asarray(a, dtype=np.float64))
    return ((a != 0) & (a < TINY)) | ~(a < 1 / TINY)


def round_ieee(values: np.ndarray, fmt) -> np.ndarray:
    from bnspec.formats import round_float64

    return round_float64(values, fmt)
