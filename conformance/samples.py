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

from .compare import element_errors

SAMPLE_SIZE = 12
DIGITS = 3


def _round(value: float):
    value = float(value)
    if not math.isfinite(value):
        return None
    return float(f"{value:.{DIGITS}g}")


def output_sample(got, expected) -> dict | None:
    """Return the sample record of one output (None when got cannot be compared)."""
    if not isinstance(got, np.ndarray) or tuple(got.shape) != expected.shape:
        return None
    errors = element_errors(got, expected)
    units, ulp = errors.units.ravel(), errors.ulp.ravel()
    judged = np.flatnonzero(~errors.special.ravel())
    record = {"n": int(units.size), "n_exact": int(units.size - judged.size),
              "ulp": [], "units": [], "rc": []}
    if judged.size == 0:
        return record
    worst = judged[int(np.argmax(units[judged]))]
    spread = judged[np.unique(np.linspace(0, judged.size - 1,
                                          min(SAMPLE_SIZE, judged.size)).astype(np.int64))]
    picks = [worst] + [int(i) for i in spread if i != worst]
    value = np.abs(expected.hi.ravel().astype(np.float64))
    cond = expected.cond.ravel().astype(np.float64)
    for i in picks:
        record["ulp"].append(_round(ulp[i]))
        record["units"].append(_round(units[i]))
        record["rc"].append(_round(cond[i] / value[i]) if value[i] > 0 else None)
    return record


def case_samples(judged) -> dict:
    """Return {output name: sample record} for judge_outputs' (result, got, expected)."""
    out = {}
    for result, got, expected in judged:
        sample = output_sample(got, expected)
        if sample is not None:
            out[result.name] = sample
    return out
