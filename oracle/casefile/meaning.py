"""What the reader can check of an expected output's meaning, cheaply: every stored
``rounded`` is a correct rounding of its stored ``value``, and every ``cond`` is finite and
>= 0. (That each expected output has the shape its inputs and flags give, the reader checks
itself, in ``read._Reader.expected``.) A digest only says a file was not damaged; a file
edited and re-signed passes it, but not these checks.

The rule. The stored ``value`` v is the oracle's value rounded to 32 significant digits and
read back as a double-double hi + lo, so the true value lies in

    [v - e, v + e],   e = max(|hi| 2**-103, 2**-1074)

(32 digits: a relative error below 5e-32 < 2**-103.9; hi + lo holds the decimal to
2**-106 relative). ``rounded`` must be the rounding of some value in that interval:
round-to-nearest-even into the output's float format (``bnspec.formats``), or for an
integer output (the quantized path's int8 ``out``) to the nearest integer, ties to even,
saturated to the dtype's range. Rounding is monotone, so the accepted results are exactly
those between round(v - e) and round(v + e): one value, except when the interval holds a
rounding boundary (an exact tie of the true value), where both neighbours are accepted.
NaN must stay NaN and +-inf the same infinity.

Cost: one vectorized ``round_dd`` per array (the oracle's own fast path), and exact
``Fraction`` arithmetic only for the few elements it cannot decide. Arrays of more than
``compact.SLICE`` elements are checked a slice at a time.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from bnspec.formats import FORMATS, round_dd, round_fraction

from .compact import SLICE, release
from .number_text import decimal_value, hex_float

#: Relative bound of |true value - (hi + lo)| for a 32-digit decimal value (module doc).
VALUE_RELATIVE_ERROR = 2.0 ** -103
#: Absolute floor of that bound (the float64 subnormal spacing).
VALUE_ABSOLUTE_ERROR = 2.0 ** -1074


def value_error(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Return e = max(|hi| 2**-103, 2**-1074), or 0 for a value of exactly zero (no
    nonzero number prints as a zero decimal): how far the true value may lie from hi + lo."""
    err = np.maximum(np.abs(hi) * VALUE_RELATIVE_ERROR, VALUE_ABSOLUTE_ERROR)
    return np.where((hi == 0) & (lo == 0), 0.0, err)


def round_exact(q: Fraction, dtype: str) -> float:
    """Return the exact rational q rounded into dtype: to nearest, ties to even, into a
    float format; to the nearest integer, ties to even, saturated, for an integer dtype."""
    if dtype in FORMATS:
        return round_fraction(q, FORMATS[dtype])
    info = np.iinfo(np.dtype(dtype))
    return float(min(max(round(q), info.min), info.max))  # Fraction rounds ties to even


def _decided(dtype: str, hi, lo, err) -> tuple[np.ndarray, np.ndarray]:
    """Return (nearest, decided): the rounding of every value interval the fast path can
    decide, and where it can (the oracle's own round_dd for float formats)."""
    if dtype in FORMATS:
        nearest, undecided = round_dd(hi, lo, err, FORMATS[dtype])
        return nearest, ~undecided
    info = np.iinfo(np.dtype(dtype))
    nearest = np.rint(hi)
    offset = (hi - nearest) + lo  # hi - nearest is exact: |hi - nearest| <= 1/2
    decided = np.abs(offset) * (1 + 2.0 ** -50) + err < 0.5
    return np.clip(nearest, info.min, info.max), decided


def rounding_problem(dtype: str, rounded, hi, lo) -> tuple[int, str] | None:
    """Return (flat index, message) of the first element whose rounded is no correct
    rounding of its value into dtype (module doc), or None if every element is one."""
    rounded, hi, lo = (np.ravel(np.asarray(a, dtype=np.float64)) for a in (rounded, hi, lo))
    finite = np.isfinite(hi)
    err = value_error(hi, lo)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf of non-finite values
        nearest, decided = _decided(dtype, hi, lo, err)
    ok = np.where(finite, decided & (rounded == nearest),
                  (rounded == hi) | (np.isnan(rounded) & np.isnan(hi)))
    for i in np.flatnonzero(~ok):
        if not finite[i]:
            return int(i), _message(dtype, rounded[i], hi[i], lo[i], hex_float(float(hi[i])))
        value = Fraction(float(hi[i])) + Fraction(float(lo[i]))
        low = round_exact(value - Fraction(float(err[i])), dtype)
        high = round_exact(value + Fraction(float(err[i])), dtype)
        if not low <= rounded[i] <= high:
            want = hex_float(low) if low == high else f"{hex_float(low)} .. {hex_float(high)}"
            return int(i), _message(dtype, rounded[i], hi[i], lo[i], want)
    return None


def _message(dtype: str, rounded: float, hi: float, lo: float, want: str) -> str:
    return (f"rounded={hex_float(float(rounded))} is not the correct rounding to {dtype} of "
            f"value={decimal_value(float(hi), float(lo))} (that is {want})")


def cond_problem(cond) -> tuple[int, str] | None:
    """Return (flat index, message) of the first condition scale that is not finite and
    >= 0, or None."""
    cond = np.ravel(np.asarray(cond, dtype=np.float64))
    bad = ~(np.isfinite(cond) & (cond >= 0))
    if not np.any(bad):
        return None
    i = int(np.flatnonzero(bad)[0])
    return i, f"cond={cond[i]!r} must be finite and >= 0"


def check_expected(fail, expected: dict) -> None:
    """Return None if every expected output's rounded values and condition scales mean
    what they must (module doc); else call fail(field, problem) naming the output, e.g.
    ``expected.y.rounded``, and the element's index (fail raises: the reader's
    CaseFileError names the file). The arrays of one dtype are checked in one pass."""
    if not expected:  # an invalid-input case
        return
    groups: dict[str, list] = {}
    large = [e for e in expected.values() if e.rounded.size > SLICE]
    for e in expected.values():
        if e.rounded.size <= SLICE:
            groups.setdefault(e.dtype, []).append(e)
    for dtype, outputs in groups.items():
        found = rounding_problem(dtype, *(np.concatenate([np.ravel(getattr(e, key))
                                                          for e in outputs])
                                          for key in ("rounded", "hi", "lo")))
        if found is not None:
            _fail_at(fail, outputs, "rounded", *found)
    small = [e for e in expected.values() if e.rounded.size <= SLICE]
    found = cond_problem(np.concatenate([np.ravel(e.cond) for e in small] + [np.zeros(0)]))
    if found is not None:
        _fail_at(fail, small, "cond", *found)
    for e in large:  # a slice at a time: memory-mapped arrays stay unread until here
        arrays = [np.ravel(getattr(e, key)) for key in ("rounded", "hi", "lo", "cond")]
        for start in range(0, e.rounded.size, SLICE):
            r, hi, lo, cond = (a[start:start + SLICE] for a in arrays)
            found = rounding_problem(e.dtype, r, hi, lo)
            if found is not None:
                _fail_at(fail, [e], "rounded", start + found[0], found[1])
            found = cond_problem(cond)
            if found is not None:
                _fail_at(fail, [e], "cond", start + found[0], found[1])
            for a in arrays:
                release(a, start, start + SLICE)


def _fail_at(fail, outputs: list, key: str, flat: int, problem: str) -> None:
    """Call fail for element `flat` of the outputs' concatenated arrays, naming the output
    and the element's index in it."""
    for e in outputs:
        if flat < e.rounded.size:
            index = ", ".join(str(int(i)) for i in np.unravel_index(flat, e.rounded.shape))
            fail(f"expected.{e.name}.{key}", f"[{index}]: {problem}")
        flat -= e.rounded.size
