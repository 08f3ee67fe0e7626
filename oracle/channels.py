"""The [C, M] channel view of a call's x and dy, read in blocks, and its per-channel sums.

The oracle works on the channel view: channel c's M elements in row-major order of the
other axes (``oracle.assemble.channel_view``). Holding that view whole costs 8 bytes per
element for each of x and dy, and every numpy pass over it as much again; this module reads
it in blocks of at most ``CHUNK`` elements from the arrays as the caller holds them, so the
evaluation's memory stays a few blocks plus the inputs themselves:

- ``ChannelSource.block(name, c0, c1, j0, j1)``: rows c0..c1, columns j0..j1 as float64;
- ``first_pass`` / ``second_pass``: every per-channel sum the evaluation needs, exact sums
  (``oracle.exact``, added as Fractions: exact in any order) and float64 sums taken as numpy's
  pairwise summation takes them (``oracle.pairwise``), so the numbers are the same as those
  of the whole view (tests/oracle/test_streaming.py);
- ``layout_tiles``: blocks of the per-element outputs in the caller's layout order, each a
  contiguous run of the flattened output.

Layout: x of shape (P..., C, Q...) with the channel at `axis` is a (P, C, Q) array; element
(p, c, q) is column j = p Q + q of channel c.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from . import pairwise
from .exact import exact_dot, exact_sum

#: Elements of one block: 8 MiB per float64 temporary, and the evaluation makes a few dozen.
CHUNK = 1 << 20


class ChannelSource:
    """x and dy (dy may be None) of one call, read as float64 blocks of the channel view."""

    def __init__(self, x, dy, axis: int, chunk: int = CHUNK):
        x = np.asarray(x)
        self.shape = x.shape
        ax = axis % x.ndim
        self.C = int(self.shape[ax])
        self.Q = math.prod(self.shape[ax + 1:])
        self.M = x.size // self.C if self.C else 0
        self.chunk = chunk
        self._arrays = {"x": self._as3(x)}
        if dy is not None:
            self._arrays["dy"] = self._as3(np.asarray(dy))

    def _as3(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a).reshape(-1, self.C, self.Q)

    def block(self, name: str, c0: int, c1: int, j0: int, j1: int) -> np.ndarray:
        """Return channels c0..c1, columns j0..j1 of the view of `name`, float64, C-ordered."""
        a3, q = self._arrays[name], self.Q
        if j1 <= j0 or c1 <= c0:
            return np.zeros((max(0, c1 - c0), max(0, j1 - j0)))
        pa, pb = j0 // q, (j1 - 1) // q + 1
        rows = np.moveaxis(a3[pa:pb, c0:c1, :], 1, 0).reshape(c1 - c0, -1)
        return np.ascontiguousarray(rows[:, j0 - pa * q: j1 - pa * q], dtype=np.float64)

    def groups(self) -> list[tuple[int, int]]:
        """Return channel ranges [c0, c1) whose whole rows (or one row's leaves) fill a block."""
        rows = max(1, self.chunk // max(self.M, 1))
        return [(c0, min(self.C, c0 + rows)) for c0 in range(0, self.C, rows)]

    def leaves(self) -> list[tuple[int, int]]:
        """Return the column ranges of numpy's pairwise tree over a row (oracle.pairwise)."""
        return pairwise.leaves(self.M, self.chunk)


def layout_tiles(shape, axis: int, chunk: int = CHUNK) -> list[tuple[int, int, int, int]]:
    """Return tiles (c0, c1, j0, j1) of the channel view that, taken in order, cover the
    output in its layout order, each a contiguous run of the flattened output of about
    chunk elements (see ``tile_to_layout``)."""
    ax = axis % len(shape)
    c, q = int(shape[ax]), math.prod(shape[ax + 1:])
    p = math.prod(shape[:ax])
    if c == 0 or p * q == 0:
        return []
    if c * q <= chunk:  # whole runs (p0..p1, every channel, every q)
        step = max(1, chunk // (c * q))
        return [(0, c, p0 * q, min(p, p0 + step) * q) for p0 in range(0, p, step)]
    if q <= chunk:  # one p, a group of channels, every q
        rows = max(1, chunk // q)
        return [(c0, min(c, c0 + rows), i * q, (i + 1) * q)
                for i in range(p) for c0 in range(0, c, rows)]
    return [(ch, ch + 1, i * q + q0, i * q + min(q, q0 + chunk))
            for i in range(p) for ch in range(c) for q0 in range(0, q, chunk)]


def tile_to_layout(block: np.ndarray, q: int) -> np.ndarray:
    """Return the [c1 - c0, j1 - j0] block of a layout tile flattened in layout order."""
    rows, width = block.shape
    return block.reshape(rows, -1, min(q, width)).transpose(1, 0, 2).ravel()


def magnitude(a: np.ndarray, floor: float) -> np.ndarray:
    """|a| with non-finite entries as 0 and every entry at least floor."""
    return np.maximum(np.abs(np.where(np.isfinite(a), a, 0)), floor)


@dataclass
class ChannelSums:
    """Per-channel sums over the channel view (arrays of length C; exact ones as lists of
    Fraction, None where the channel holds a non-finite value or was not asked for)."""

    x_ok: np.ndarray
    sum_x: np.ndarray  # float64 sum(x), numpy's pairwise order
    sum_mag_x: np.ndarray  # float64 sum(magnitude(x))
    exact_x: list = field(default_factory=list)  # sum x, exactly
    exact_xx: list = field(default_factory=list)  # sum x^2, exactly
    dy_ok: np.ndarray | None = None
    sum_dy: np.ndarray | None = None
    sum_mag_dy: np.ndarray | None = None
    exact_dy: list = field(default_factory=list)
    exact_xdy: list = field(default_factory=list)  # sum x dy, exactly (x and dy finite)


def _accumulate(total, add):
    """Return total + add for exact partial sums (None: the channel was given up)."""
    return None if total is None or add is None else total + add


def first_pass(src: ChannelSource, floor: float, exact_x: bool) -> ChannelSums:
    """Return the sums that need no statistic: finiteness, sum(x), sum(magnitude(x)), with
    exact_x also sum x and sum x^2 exactly; with dy the same of dy, and sum x dy exactly."""
    C, with_dy = src.C, "dy" in src._arrays
    sums = ChannelSums(np.ones(C, dtype=bool), np.zeros(C), np.zeros(C),
                       [Fraction(0) if exact_x else None] * C,
                       [Fraction(0) if exact_x else None] * C)
    if with_dy:
        sums.dy_ok, sums.sum_dy, sums.sum_mag_dy = np.ones(C, dtype=bool), np.zeros(C), np.zeros(C)
        sums.exact_dy, sums.exact_xdy = [Fraction(0)] * C, [Fraction(0)] * C
    leaves = src.leaves()
    for c0, c1 in src.groups():
        float_sums = {key: [] for key in ("x", "mx", "dy", "mdy")}
        for j0, j1 in leaves:
            X = src.block("x", c0, c1, j0, j1)
            x_fin = np.isfinite(X).all(axis=1)
            sums.x_ok[c0:c1] &= x_fin
            float_sums["x"].append(X.sum(axis=1))
            float_sums["mx"].append(magnitude(X, floor).sum(axis=1))
            DY = src.block("dy", c0, c1, j0, j1) if with_dy else None
            if with_dy:
                dy_fin = np.isfinite(DY).all(axis=1)
                sums.dy_ok[c0:c1] &= dy_fin
                float_sums["dy"].append(DY.sum(axis=1))
                float_sums["mdy"].append(magnitude(DY, floor).sum(axis=1))
            for r in range(c1 - c0):
                c = c0 + r
                if exact_x:
                    ok = bool(x_fin[r]) and sums.exact_x[c] is not None
                    sums.exact_x[c] = _accumulate(sums.exact_x[c], exact_sum(X[r]) if ok else None)
                    sums.exact_xx[c] = _accumulate(sums.exact_xx[c],
                                                   exact_dot(X[r], X[r]) if ok else None)
                if with_dy:
                    ok = bool(dy_fin[r]) and sums.exact_dy[c] is not None
                    sums.exact_dy[c] = _accumulate(sums.exact_dy[c],
                                                   exact_sum(DY[r]) if ok else None)
                    ok = ok and bool(x_fin[r]) and sums.exact_xdy[c] is not None
                    sums.exact_xdy[c] = _accumulate(sums.exact_xdy[c],
                                                    exact_dot(X[r], DY[r]) if ok else None)
        M = src.M
        sums.sum_x[c0:c1] = pairwise.combine(M, src.chunk, float_sums["x"])
        sums.sum_mag_x[c0:c1] = pairwise.combine(M, src.chunk, float_sums["mx"])
        if with_dy:
            sums.sum_dy[c0:c1] = pairwise.combine(M, src.chunk, float_sums["dy"])
            sums.sum_mag_dy[c0:c1] = pairwise.combine(M, src.chunk, float_sums["mdy"])
    return sums


@dataclass
class CenteredSums:
    """Per-channel float64 sums about a center (numpy's pairwise order)."""

    sq_dev: np.ndarray | None  # sum((x - mu64)^2), batch statistics only
    dev_dy: np.ndarray | None  # sum((x - mu64) dy)
    mag_d_dy: np.ndarray | None  # sum(magnitude(|x - mu1| magnitude(dy)))


def second_pass(src: ChannelSource, floor: float, mu64: np.ndarray, mu1: np.ndarray,
                squares: bool) -> CenteredSums:
    """Return the sums about the channel means: with `squares` sum((x - mu64)^2); with dy
    sum((x - mu64) dy) and sum(magnitude(|x - mu1| magnitude(dy))) (mu1: the leading float
    of the exact mean)."""
    C, with_dy = src.C, "dy" in src._arrays
    out = CenteredSums(np.zeros(C) if squares else None, np.zeros(C) if with_dy else None,
                       np.zeros(C) if with_dy else None)
    if not (squares or with_dy):
        return out
    leaves = src.leaves()
    for c0, c1 in src.groups():
        parts = {"sq": [], "ddy": [], "mag": []}
        for j0, j1 in leaves:
            X = src.block("x", c0, c1, j0, j1)
            d64 = X - mu64[c0:c1, None]
            if squares:
                parts["sq"].append((d64 ** 2).sum(axis=1))
            if with_dy:
                DY = src.block("dy", c0, c1, j0, j1)
                parts["ddy"].append((d64 * DY).sum(axis=1))
                abs_d = np.abs(X - mu1[c0:c1, None])
                parts["mag"].append(magnitude(abs_d * magnitude(DY, floor), floor).sum(axis=1))
        M = src.M
        if squares:
            out.sq_dev[c0:c1] = pairwise.combine(M, src.chunk, parts["sq"])
        if with_dy:
            out.dev_dy[c0:c1] = pairwise.combine(M, src.chunk, parts["ddy"])
            out.mag_d_dy[c0:c1] = pairwise.combine(M, src.chunk, parts["mag"])
    return out
