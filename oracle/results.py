"""The oracle's result types: ``Expected`` (one output of a call, to about 32 digits, correctly
rounded, with its condition scale) and ``QuantizedExpected``, and the dtype of each output.

The evaluators (``oracle.reference``, ``oracle.quantized``) make them, the case files store
them and the conformance runner compares against them; this module imports none of its users.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from bnspec.flags import DTYPES, numpy_dtype


@dataclass(frozen=True)
class Expected:
    """One expected output of a case.

    value = hi + lo to a relative accuracy of 1e-30 or better, or to 2**-1074 absolute in
    the float64 subnormal range (NaN and +-inf exactly, with lo = 0; a finite value beyond
    the float64 range is held as +-inf, and its rounded form is +-inf in every dtype);
    rounded = value correctly rounded to dtype (round to nearest, ties to even),
    held as float64; cond = condition scale (see oracle.condition), 0 where the value must
    be reproduced exactly.
    """

    name: str
    dtype: str
    hi: np.ndarray
    lo: np.ndarray
    rounded: np.ndarray
    cond: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.rounded.shape)

    def as_dtype(self) -> np.ndarray:
        """The correctly rounded values as an array of the output dtype."""
        return self.rounded.astype(numpy_dtype(self.dtype))


@dataclass(frozen=True)
class QuantizedExpected(Expected):
    """The int8 output of the quantized path (``oracle.quantized``).

    value = hi + lo is the exact value before rounding; rounded = that value rounded to the
    nearest integer (ties to even) and saturated to -128..127; dist = its distance to the
    nearest rounding boundary k + 1/2 (k = -128..126; 0 at an exact tie); cond = the
    magnitude of the terms a float32 evaluation rounds, 0 where the formula is exact in
    float32 (then the result must match exactly).
    """

    dist: np.ndarray


@dataclass(frozen=True)
class ExpectedBlocks:
    """A per-element expected output (y or dx) that is computed block by block.

    Iterating gives ``Expected`` records of 1-D arrays: consecutive runs of the output
    flattened in C order (its layout), which together cover it once. Each iteration
    computes the blocks anew (``make``), so only one block is held at a time.
    """

    name: str
    dtype: str
    shape: tuple
    make: Callable[[], Iterator[Expected]]

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n

    def __iter__(self) -> Iterator[Expected]:
        return iter(self.make())

    def collect(self) -> Expected:
        """Return the whole output as one Expected of its shape."""
        n = self.size
        arrays = {key: np.empty(n) for key in ("hi", "lo", "rounded", "cond")}
        start = 0
        for block in self:
            stop = start + block.rounded.size
            for key, a in arrays.items():
                a[start:stop] = getattr(block, key)
            start = stop
        if start != n:
            raise ValueError(f"{self.name}: blocks cover {start} of {n} elements")
        return Expected(self.name, self.dtype,
                        *(arrays[k].reshape(self.shape) for k in ("hi", "lo", "rounded", "cond")))


def output_dtype(name: str, data_dtype: str) -> str:
    """Return the dtype of output `name` for data of dtype `data_dtype`."""
    return data_dtype if name in ("y", "dx") else DTYPES[data_dtype].param
