"""The compact layout of large expected arrays: ``rounded`` is not stored but derived.

An expected array of more than ``COMPACT_FROM`` elements stores, in the sidecar, hi and lo
(float64, the oracle's double-double bit for bit) and cond (float32 rounded up), and no
``rounded``: the reader derives it as the correct rounding (to nearest, ties to even) of the
exact binary value hi + lo into the output dtype. That is the oracle's own ``rounded`` for
every element whose value the oracle decided at 2**-100 relative (``oracle.assemble``:
the whole interval around hi + lo rounds the same), and for exact values; the rare element
where it is not (a true value within 2**-106 of a rounding boundary, so that hi + lo lands
on the other side or on the tie) is listed in ``rounded_exceptions`` with its stored
rounding, which the reader puts back. The verdict is unchanged: it reads hi, lo, rounded and
cond, all bit for bit what the oracle computed.

Why rounded and not hi/lo: hi + lo is what makes the verdict exact (conformance.compare
forms got - hi - lo with an error-free two_sum; dropping lo would move every error by up to
2**-53 |value|, a change of verdict near the limit), cond is needed as is, and rounded is a
function of hi + lo. Inputs stay stored (docs/case-format.md says why).
"""
from __future__ import annotations

import mmap
from fractions import Fraction

import numpy as np

from bnspec.formats import FORMATS, round_dd, round_fraction

#: Expected arrays and inputs with more elements than this use the large-case layout.
COMPACT_FROM = 1 << 20
#: Elements per slice when a large array is derived, checked or compared.
SLICE = 1 << 20


def derived_rounding(hi: np.ndarray, lo: np.ndarray, dtype: str) -> np.ndarray:
    """Return hi + lo (exact binary values) correctly rounded into dtype, as float64:
    vectorized (oracle's round_dd with no error), exact Fractions where it cannot decide
    (a tie, the overflow threshold, zero); NaN and +-inf pass through."""
    fmt = FORMATS[dtype]
    hi = np.asarray(hi, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        rounded, undecided = round_dd(hi, lo, np.zeros_like(hi), fmt)
    for i in np.flatnonzero(undecided & np.isfinite(hi)):
        rounded[i] = round_fraction(Fraction(float(hi[i])) + Fraction(float(lo[i])), fmt)
    return rounded


def differs(derived: np.ndarray, rounded: np.ndarray) -> np.ndarray:
    """Return where rounded is not derived: another number or another sign of zero (two NaNs
    are the same: a case file keeps no NaN payload)."""
    derived = np.asarray(derived, dtype=np.float64)
    rounded = np.asarray(rounded, dtype=np.float64)
    both_nan = np.isnan(derived) & np.isnan(rounded)
    other = (derived != rounded) | (np.signbit(derived) != np.signbit(rounded))
    return other & ~both_nan


def release(a, start: int = 0, stop: int | None = None) -> None:
    """Drop the pages of flat elements start..stop of a read-only memory map (np.memmap of a
    sidecar) from this process: they stay in the page cache and are read again if touched,
    but no longer count as this process's memory. Anything else is left alone."""
    base = a
    while isinstance(base, np.ndarray) and not isinstance(getattr(base, "_mmap", None),
                                                         mmap.mmap):
        base = base.base
    if not isinstance(base, np.ndarray) or not hasattr(mmap, "MADV_DONTNEED"):
        return
    buffer = base._mmap
    flat = np.ravel(a)
    stop = flat.size if stop is None else stop
    if stop <= start:
        return
    # the byte range of the elements inside the mapping, widened to whole pages
    origin = np.asarray(flat[:0]).__array_interface__["data"][0] - _address(buffer)
    first = origin + start * flat.itemsize
    last = origin + stop * flat.itemsize
    first -= first % mmap.PAGESIZE
    last = min(len(buffer), last + (-last) % mmap.PAGESIZE)
    if last > first:
        buffer.madvise(mmap.MADV_DONTNEED, first, last - first)


def _address(buffer: mmap.mmap) -> int:
    """Return the address of a mapping's first byte."""
    return np.frombuffer(buffer, dtype=np.uint8, count=0).__array_interface__["data"][0]
