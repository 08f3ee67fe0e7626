"""Element-wise comparison of a backend's output with the oracle's expected value.

``compare(name, got, expected, limit)`` returns an ``OutputResult``: the worst element,
its error in tolerance units (|got - value| / (u_out * (cond + tiny_out)), see
``conformance.tolerances``), as a fraction of the limit
and in ulp of the output dtype (|got - value| / ulp(value)), and how many elements fail.
The rules for cond == 0, NaN and inf are those of ``conformance.tolerances``.

value = hi + lo: the difference got - hi is formed with an error-free two_sum, then lo is
taken off, so a float64 output is compared against the 106-bit value and its last bit
counts. The result has a relative error of about 2**-52, far below any tolerance.

Outputs of more than ``SLICE`` elements (large cases, whose expected arrays may be memory
maps in their stored dtypes) are judged a flat slice at a time (``slice_errors``): the
verdict is the same element by element, and memory stays a few slices of float64.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bnspec.flags import dtype_name
from bnspec.formats import FORMATS
from oracle.api import Expected
from oracle.casefile import release
from oracle.dd import two_sum

#: Elements judged at a time (8 MiB per float64 temporary).
SLICE = 1 << 20

#: Why an element failed, in the order a failure message prefers them.
KIND_NAN = "NaN where the oracle is finite"
KIND_NOT_NAN = "finite where the oracle is NaN"
KIND_INF = "inf where the oracle is finite"
KIND_WRONG_INF = "not the oracle's inf"
KIND_EXACT = "cond is 0: must be exact"
KIND_TOL = "out of tolerance"


@dataclass(frozen=True)
class ElementErrors:
    """Per-element errors of one output (float64 arrays of the output's shape)."""

    units: np.ndarray  # error in tolerance units; inf for a special-value or exactness miss
    ulp: np.ndarray  # |got - value| / ulp(value); 0 where special values match
    special: np.ndarray  # bool: the element is judged exactly (cond 0, NaN, inf)


@dataclass(frozen=True)
class OutputResult:
    """The verdict on one output of one case."""

    name: str
    dtype: str  # expected output dtype
    limit: float  # tolerance in units
    n: int  # number of elements
    n_bad: int  # elements failing their rule
    worst_units: float  # 0.0 for an empty output; inf for a special-value miss
    worst_ulp: float  # the largest ulp error of any element
    worst_index: tuple[int, ...] | None  # the element with the largest error in units
    index_ulp: float  # the ulp error of that element
    worst_kind: str | None  # a KIND_* for the worst failing element, else None
    problem: str | None = None  # a structural miss: missing output, wrong dtype or shape

    @property
    def ok(self) -> bool:
        return self.problem is None and self.n_bad == 0

    @property
    def fraction(self) -> float:
        """Return the worst error as a fraction of the limit (inf for exactness misses)."""
        return self.worst_units / self.limit

    def as_record(self) -> dict:
        """Return the JSON-ready summary of this result (non-finite floats as strings)."""
        return {
            "dtype": self.dtype, "limit": self.limit, "n": self.n, "n_bad": self.n_bad,
            "worst_units": _num(self.worst_units), "fraction": _num(self.fraction),
            "ulp": _num(self.worst_ulp),
            "index": list(self.worst_index) if self.worst_index is not None else None,
            "kind": self.worst_kind, "problem": self.problem,
        }


def _num(value: float):
    value = float(value)
    return value if np.isfinite(value) else repr(value)


def value_minus(got64: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Return got - (hi + lo), accurate to a relative 2**-52 (finite inputs)."""
    s, e = two_sum(got64, -hi)
    return s + (e - lo)


def element_errors(got, expected: Expected) -> ElementErrors:
    """Return the per-element errors of got (any float array of expected's shape)."""
    g = np.asarray(got).astype(np.float64)
    hi, lo = expected.hi.astype(np.float64), expected.lo.astype(np.float64)
    rounded, cond = expected.rounded.astype(np.float64), expected.cond.astype(np.float64)
    fmt = FORMATS[expected.dtype]
    with np.errstate(all="ignore"):
        diff = np.abs(value_minus(g, hi, lo))
        # divided in this order so that u * cond cannot underflow
        units = diff / (cond + math.ldexp(1.0, fmt.emin)) / fmt.unit_roundoff
        ulp = diff / fmt.ulp(hi)
    units = np.where(np.isnan(units), np.inf, units)  # nan cond or 0/0: judged below
    ulp = np.where(np.isnan(ulp), np.inf, ulp)

    exact = cond == 0
    nan_expected = np.isnan(hi)
    inf_expected = np.isinf(hi)
    overflow = np.isfinite(hi) & np.isinf(rounded)  # the value itself rounds to +-inf
    special = exact | nan_expected | inf_expected | overflow | ~np.isfinite(g)
    match = np.where(nan_expected, np.isnan(g),
                     np.where(inf_expected | overflow, g == rounded,
                              np.isfinite(g) & (g == rounded)))
    judged_exactly = exact | nan_expected | inf_expected | ~np.isfinite(g)
    units = np.where(judged_exactly, np.where(match, 0.0, np.inf), units)
    units = np.where(overflow & match, 0.0, units)
    ulp = np.where(special & match, 0.0, ulp)
    return ElementErrors(units=units, ulp=ulp, special=special)


def _flat_expected(expected: Expected, start: int, stop: int) -> Expected:
    """Return flat elements start..stop of expected as an Expected of 1-D arrays."""
    part = lambda a: np.ravel(a)[start:stop]  # noqa: E731
    return Expected(expected.name, expected.dtype, part(expected.hi), part(expected.lo),
                    part(expected.rounded), part(expected.cond))


def slice_errors(got, expected: Expected, size: int = SLICE):
    """Yield (start, ElementErrors of flat elements start..start+size) over the whole output,
    so that no full-size float64 array is made."""
    flat = np.ravel(got)
    n = flat.size
    for start in range(0, n, size):
        stop = min(n, start + size)
        yield start, element_errors(flat[start:stop], _flat_expected(expected, start, stop))
        for a in (expected.hi, expected.lo, expected.cond):
            release(a, start, stop)  # a memory-mapped slice leaves this process's memory


def _kind(got: float, expected: Expected, index) -> str:
    hi, cond = float(expected.hi[index]), float(expected.cond[index])
    if np.isnan(hi):
        return KIND_NOT_NAN
    if np.isinf(hi):
        return KIND_WRONG_INF
    if np.isnan(got):
        return KIND_NAN
    if np.isinf(got) and not np.isinf(expected.rounded[index]):
        return KIND_INF
    if cond == 0:
        return KIND_EXACT
    return KIND_TOL


def structural_problem(got, expected: Expected) -> str | None:
    """Return why got cannot be compared with expected (None, dtype or shape mismatch)."""
    if got is None:
        return f"backend returned no {expected.name!r}"
    if not isinstance(got, np.ndarray):
        return f"{expected.name} is a {type(got).__name__}, not a numpy array"
    if dtype_name(got.dtype) != expected.dtype:
        return f"{expected.name}.dtype={dtype_name(got.dtype)} but should be {expected.dtype}"
    if tuple(got.shape) != expected.shape:
        return f"{expected.name}.shape={tuple(got.shape)} but should be {expected.shape}"
    return None


def compare(name: str, got, expected: Expected, limit: float) -> OutputResult:
    """Return the verdict on output `name`: got (numpy array or None) against expected."""
    n = int(np.prod(expected.shape, dtype=np.int64))
    problem = structural_problem(got, expected)
    if problem is not None:
        return OutputResult(name, expected.dtype, limit, n, n, float("inf"), float("inf"),
                            None, float("inf"), None, problem)
    if n == 0:
        return OutputResult(name, expected.dtype, limit, 0, 0, 0.0, 0.0, None, 0.0, None)
    # first of the worst: inf beats any finite error, and an earlier slice wins a tie
    n_bad, flat, worst, worst_ulp, max_ulp = 0, 0, -1.0, 0.0, 0.0
    for start, errors in slice_errors(got, expected):
        n_bad += int(np.count_nonzero(errors.units > limit))
        i = int(np.argmax(errors.units))
        if errors.units[i] > worst:
            flat, worst, worst_ulp = start + i, float(errors.units[i]), float(errors.ulp[i])
        max_ulp = max(max_ulp, float(np.max(errors.ulp)))
    index = tuple(int(i) for i in np.unravel_index(flat, expected.shape))
    kind = _kind(float(got[index]), expected, index) if n_bad else None
    return OutputResult(name, expected.dtype, limit, n, n_bad, worst, max_ulp, index,
                        worst_ulp, kind)
