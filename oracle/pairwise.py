"""Row sums of a [C, M] float64 matrix taken chunk by chunk, bit for bit as numpy's.

numpy sums a contiguous float64 row of n elements (``a.sum(axis=1)``, ``np.add.reduce``)
by pairwise summation: n <= 128 with eight running accumulators, otherwise

    sum(a[0:n]) = sum(a[0:h]) + sum(a[h:n]),   h = n // 2 - (n // 2) % 8

so the result depends only on n and the data. ``leaves(M, chunk)`` walks that tree down
to ranges of at most ``chunk`` elements; numpy sums each such range itself (the same
subtree), and ``combine`` adds the leaf sums back up the tree in numpy's order. The oracle's
float64 reductions (condition scales, IEEE shadows) are therefore the same numbers whether
a channel is held whole or streamed (tests/oracle/test_streaming.py checks it against
numpy). A row of M <= chunk is one leaf: numpy's own call.
"""
from __future__ import annotations

import numpy as np


#: numpy sums runs of up to this many elements in one unrolled loop, never splitting them.
BLOCK = 128


def _split(n: int) -> int:
    half = n // 2
    return half - half % 8


def leaves(m: int, chunk: int) -> list[tuple[int, int]]:
    """Return the column ranges [j0, j1) of numpy's pairwise tree over m elements whose
    subtrees hold at most max(chunk, 128) elements, left to right (one range [0, m) when m
    <= chunk)."""
    chunk = max(chunk, BLOCK)
    out: list[tuple[int, int]] = []

    def walk(lo: int, hi: int) -> None:
        if hi - lo <= chunk:
            out.append((lo, hi))
            return
        mid = lo + _split(hi - lo)
        walk(lo, mid)
        walk(mid, hi)

    walk(0, m)
    return out


def combine(m: int, chunk: int, sums: list) -> np.ndarray:
    """Return the row sums over all m columns from the per-leaf row sums (in leaves(m, chunk)
    order), added in numpy's pairwise order."""
    chunk = max(chunk, BLOCK)
    it = iter(sums)

    def walk(lo: int, hi: int):
        if hi - lo <= chunk:
            return next(it)
        mid = lo + _split(hi - lo)
        left = walk(lo, mid)
        return left + walk(mid, hi)

    total = walk(0, m)
    if next(it, None) is not None:
        raise ValueError(f"combine: more leaf sums than leaves of m={m}, chunk={chunk}")
    return total
