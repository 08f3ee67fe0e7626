"""Per-element error samples of a judged case, compact enough to keep for every case.

The HTML report plots the distribution of errors (in ulp, per dtype) and error against the
condition of the element; a summary keeps only the worst element per output. So each test
records, per judged output, a bounded sample: the worst element (in tolerance units) and
up to ``SAMPLE_SIZE`` elements evenly spaced over the flat index, among the elements judged
by tolerance (those with cond == 0, NaN or inf expected, or a non-finite result are judged
exactly and only counted). Numbers keep ``DIGITS`` significant digits.

Record of one output::

    {"ulp": [...], "units": [...], "rc": [...], "n": elements, "n_exact": exactly judged}

ulp = |got - value| / ulp(value); units = the error in tolerance units (see
conformance.tolerances); rc = cond / |value|, the relative condition of the element (None
where the value is 0). The first entry of each list is the worst element.
"""
from __future__ import annotations

import math

import numpy as np

from .compare import slice_errors

SAMPLE_SIZE = 12
DIGITS = 3


def _round(value: float):
    value = float(value)
    if not math.isfinite(value):
        return None
    return float(f"{value:.{DIGITS}g}")


def output_sample(got, expected) -> dict | None:
    """Return the sample record of one output (None when got cannot be compared).

    Taken a slice at a time (conformance.compare.slice_errors), in two passes over a large
    output: the judged count and the worst element, then the evenly spaced picks."""
    if not isinstance(got, np.ndarray) or tuple(got.shape) != expected.shape:
        return None
    n_judged, worst, worst_units, worst_pick = 0, None, -1.0, None
    for start, errors in slice_errors(got, expected):
        judged = np.flatnonzero(~errors.special)
        if judged.size:
            k = judged[int(np.argmax(errors.units[judged]))]
            if errors.units[k] > worst_units:
                worst, worst_units = start + int(k), float(errors.units[k])
                worst_pick = (float(errors.ulp[k]), float(errors.units[k]))
        n_judged += judged.size
    n = int(got.size)
    record = {"n": n, "n_exact": n - n_judged, "ulp": [], "units": [], "rc": []}
    if n_judged == 0:
        return record
    ranks = np.unique(np.linspace(0, n_judged - 1, min(SAMPLE_SIZE, n_judged)).astype(np.int64))
    picks = {worst: worst_pick}
    order = [worst]
    seen = 0
    for start, errors in slice_errors(got, expected):
        judged = np.flatnonzero(~errors.special)
        local = ranks[(ranks >= seen) & (ranks < seen + judged.size)] - seen
        for k in judged[local]:
            i = start + int(k)
            if i != worst:
                picks[i] = (float(errors.ulp[k]), float(errors.units[k]))
                order.append(i)
        seen += judged.size
    value = np.ravel(expected.hi)
    cond = np.ravel(expected.cond)
    for i in order:
        ulp, units = picks[i]
        v, c = abs(float(value[i])), float(cond[i])
        record["ulp"].append(_round(ulp))
        record["units"].append(_round(units))
        record["rc"].append(_round(c / v) if v > 0 else None)
    return record


def case_samples(judged) -> dict:
    """Return {output name: sample record} for judge_outputs' (result, got, expected)."""
    out = {}
    for result, got, expected in judged:
        sample = output_sample(got, expected)
        if sample is not None:
            out[result.name] = sample
    return out
