"""The oracle's per-element fast path: outputs as double-doubles with error bounds.

Each function takes float64 arrays of one block of a [C, M] channel view and per-channel
scalars split into non-overlapping triples (t1 + t2 + t3, see oracle.dd.split3) as [rows, 1]
columns, and returns (hi, lo, err) with |hi + lo - exact| <= err. ``blockwise`` runs a
function over cache-sized blocks, which makes the dozens of numpy passes per element run
from cache rather than memory (about 3x faster on 1M elements).
"""
from __future__ import annotations

import numpy as np

from .dd import accurate_sum, two_prod, two_sum

BLOCK_ELEMENTS = 1 << 13  # 8192 float64 = 64 KiB per temporary: a few dozen fit in L2


def product_terms_with_error(a_terms, b_terms):
    """Return (terms, err): sum(terms) = (sum a)(sum b) within err.

    a_terms = (a1, a2, a3, a4) with a2 ~ u a1 and a3, a4 small; b_terms a non-overlapping
    triple. Products of weight above u^2 are taken exactly by two_prod, those of weight u^2
    as plain products (their rounding is in err), the rest (weight <= u^3 of |a| |b|) are
    dropped and bounded in err.
    """
    a1, a2, a3, a4 = a_terms
    b1, b2, b3 = b_terms
    terms = []
    for x, y in ((a1, b1), (a1, b2), (a2, b1), (a3, b1)):
        terms += two_prod(x, y)
    plain = [a1 * b3, a2 * b2, a3 * b2, a4 * b1]
    terms += plain
    dropped = (np.abs(a2) + np.abs(a3)) * np.abs(b3) + np.abs(a4) * (np.abs(b2) + np.abs(b3))
    err = 2.0**-52 * sum(np.abs(p) for p in plain) + 2 * dropped
    return terms, err


def centered_terms(x, mu):
    """x - mu as four terms: exact but for mu's own 2**-159 representation error."""
    mu1, mu2, mu3 = mu
    a, b = two_sum(x, -mu1)
    zero = np.zeros_like(a)
    return a, b, zero - mu2, zero - mu3


def y_value(x, mu, s, beta):
    """(x - mu) s + beta."""
    terms, err_p = product_terms_with_error(centered_terms(x, mu), s)
    hi, lo, err = accurate_sum(terms + [np.broadcast_to(beta, x.shape)])
    return hi, lo, err + err_p


def _times_triple(t_hi, t_lo, t_err, w):
    """(t_hi + t_lo) w for a triple w: a product, so no cancellation."""
    w1, w2, w3 = w
    terms = [*two_prod(t_hi, w1), *two_prod(t_hi, w2), *two_prod(t_lo, w1), t_hi * w3, t_lo * w2]
    hi, lo, err = accurate_sum([np.broadcast_to(t, t_hi.shape) for t in terms])
    err = err + t_err * np.abs(w1) * 1.001 + 2.0**-52 * (np.abs(t_hi * w3) + np.abs(t_lo * w2)) \
        + 2 * np.abs(t_lo) * np.abs(w3)
    return hi, lo, err


def dx_batch_value(x, dy, mu, a, k, w):
    """(dy - a - (x - mu) k) w."""
    dk, err_dk = product_terms_with_error(centered_terms(x, mu), k)
    inner = [dy] + [-t for t in a] + [-t for t in dk]
    t_hi, t_lo, t_err = accurate_sum([np.broadcast_to(t, x.shape) for t in inner])
    return _times_triple(t_hi, t_lo, t_err + err_dk, w)


def dx_running_value(dy, w):
    """dy w."""
    zero = np.zeros_like(dy)
    return _times_triple(dy, zero, zero, w)


def blockwise(fn, arrays, columns):
    """Run fn(*array_blocks, *column_blocks) over blocks of [C, M] arrays.

    arrays: [C, M] float64 arrays; columns: tuples of [C, 1] arrays (per-channel triples) or
    single [C, 1] arrays. Returns (hi, lo, err), each [C, M].
    """
    C, M = arrays[0].shape
    hi, lo, err = (np.empty((C, M)) for _ in range(3))
    rows = max(1, BLOCK_ELEMENTS // M)
    cols = min(M, BLOCK_ELEMENTS)
    take = lambda col, r0, r1: (tuple(t[r0:r1] for t in col)  # noqa: E731
                                if isinstance(col, tuple) else col[r0:r1])
    with np.errstate(all="ignore"):
        for r0 in range(0, C, rows):
            r1 = min(C, r0 + rows)
            cols_here = [take(col, r0, r1) for col in columns]
            for c0 in range(0, M, cols):
                c1 = min(M, c0 + cols)
                out = fn(*(a[r0:r1, c0:c1] for a in arrays), *cols_here)
                for dst, src in zip((hi, lo, err), out):
                    dst[r0:r1, c0:c1] = src
    return hi, lo, err
