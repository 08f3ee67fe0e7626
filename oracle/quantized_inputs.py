"""Deterministic inputs of the quantized golden cases (op "qnt"): ranges and data families.

The float range of the int8/uint8 data and the calibration range of the output come from a
*range class* (``RANGES``, the case id's last token); the data q and the float32 parameters
from a *family* (``QUANTIZED_FAMILIES``), on the counter-based streams of oracle.inputs.

Parameters are scaled to the ranges so that outputs land inside the int8 range with some
saturation at the ends: with A = max|data range| and B = max|calibration range|,
sigma = A/2, running_var = sigma^2 U(0.5, 2), running_mean = A U(-0.2, 0.2),
gamma = +-B/8 U(0.5, 2) (a quarter negative), beta = +-B/4 U(0.1, 1): the float output y
of x = q A/127 is then mostly within [-B, B], so out = y 127/B mostly within int8.
Every value is rounded to float32 (ties to even).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnspec.flags import QUANTIZED_DTYPES

from .inputs import Request, Stream, round_to, to_layout


@dataclass(frozen=True)
class Ranges:
    """The data range [min_data, max_data] and calibration range of one range class."""

    min_data: float
    max_data: float
    min_calib_range: float
    max_calib_range: float
    what: str

    @property
    def values(self) -> tuple[float, float, float, float]:
        return (self.min_data, self.max_data, self.min_calib_range, self.max_calib_range)

    @property
    def data_scale(self) -> float:  # A
        return max(abs(self.min_data), abs(self.max_data))

    @property
    def output_scale(self) -> float:  # B
        return max(abs(self.min_calib_range), abs(self.max_calib_range))


#: Range classes (all values float32). The tiny and huge ones keep every parameter a normal
#: float32: running_var = (A/2)^2 must stay within 2**-126 .. 2**128.
RANGES: dict[str, Ranges] = {
    "sym": Ranges(-2.0, 2.0, -4.0, 4.0, "symmetric data and calibration ranges"),
    "onesided": Ranges(0.0, 3.0, 0.0, 6.0, "one-sided ranges [0, max] (after a ReLU)"),
    "asym": Ranges(-0.5, 3.0, -6.0, 1.5, "asymmetric ranges: A from max_data, B from "
                   "min_calib_range"),
    "negonly": Ranges(-3.0, 0.0, -5.0, -0.25, "ranges entirely below zero"),
    "tiny": Ranges(-(2.0**-40) * 3, 2.0**-40 * 3, -(2.0**-39) * 5, 2.0**-39 * 5,
                   "tiny ranges (about 1e-12)"),
    "huge": Ranges(-(2.0**60), 2.0**60 * 0.75, -(2.0**61) * 1.5, 2.0**61,
                   "huge ranges (about 1e18)"),
    "zerodata": Ranges(0.0, 0.0, -4.0, 4.0, "a zero data range (A = 0: out = rint(b))"),
    "unit": Ranges(-1.0, 1.0, -1.0, 1.0, "A = B = 1 (the exact-tie family)"),
}


def _draw_q(s: Stream, dtype: str, c: int, m: int) -> np.ndarray:
    """Return (C, M) integers: a normal-like spread over the dtype's range with both ends."""
    if dtype == "int8":
        q = np.clip(np.rint(45 * s.normal((c, m))), -128, 127)
        ends = (-128.0, 127.0, -127.0, 0.0)
    else:
        q = np.clip(np.rint(np.abs(70 * s.normal((c, m)))), 0, 255)
        ends = (0.0, 255.0, 254.0, 1.0)
    for k, value in enumerate(ends[:m]):  # every channel holds the extremes
        q[:, k] = value
    return q


def qnormal(req: Request, r: Ranges):
    """q spread over the range (extremes included); parameters as the module doc says."""
    s = req.stream("q")
    c, m = req.channels, req.per_channel
    return _draw_q(s, req.dtype, c, m), _scaled_params(req, r, 1.0)


def qsaturate(req: Request, r: Ranges):
    """As qnormal with gamma 8 times and beta 4 times larger: many outputs saturate (a
    fifth to two fifths of them), at both ends (-128 and 127)."""
    s = req.stream("q")
    c, m = req.channels, req.per_channel
    params = _scaled_params(req, r, 8.0)
    params["beta"] = params["beta"] * 4
    return _draw_q(s, req.dtype, c, m), params


def qconstant(req: Request, r: Ranges):
    """Every channel constant: channel c holds the c-th of the dtype's extremes and 0."""
    c, m = req.channels, req.per_channel
    ends = [-128.0, 127.0, 0.0, -1.0] if req.dtype == "int8" else [0.0, 255.0, 128.0, 1.0]
    q = np.array([[ends[k % len(ends)]] * m for k in range(c)])
    return q, _scaled_params(req, r, 1.0)


#: (gamma, beta / B, running_mean / B, running_var) of the qties channels (eps = 0, A = B):
#: w = gamma / sqrt(running_var) and b = (beta - running_mean w) 127 / B are short dyadics,
#: so v = w q + b lands exactly on half-integers and every step is exact in float32.
TIE_CHANNELS = (
    (0.5, 0.0, 0.0, 1.0),    # w = 1/2, b = 0:       odd q tie
    (1.0, 0.5, 0.0, 1.0),    # w = 1,   b = 63.5:    every q ties
    (0.25, -0.25, 0.0, 1.0),  # w = 1/4, b = -31.75: q = 1 mod 4 ties
    (0.25, 0.0, 1.0, 0.25),  # w = 1/2, b = -63.5:   even q tie
)


def qties(req: Request, r: Ranges):
    """Exact ties (needs eps = 0 and a range with A = B): channel c follows
    TIE_CHANNELS[c % 4]; q covers the int8 (uint8) range uniformly."""
    s = req.stream("q")
    c, m = req.channels, req.per_channel
    low, high = (-128, 127) if req.dtype == "int8" else (0, 255)
    q = s.integers((c, m), low, high).astype(np.float64)
    B = r.output_scale
    rows = np.array([TIE_CHANNELS[k % len(TIE_CHANNELS)] for k in range(c)])
    params = {"gamma": rows[:, 0], "beta": rows[:, 1] * B, "running_mean": rows[:, 2] * B,
              "running_var": rows[:, 3]}
    return q, params


QUANTIZED_FAMILIES = {f.__name__: f for f in (qnormal, qsaturate, qconstant, qties)}


def _scaled_params(req: Request, r: Ranges, gain: float) -> dict:
    p = req.stream("params")
    c = req.channels
    A = r.data_scale if r.data_scale > 0 else 1.0
    B = r.output_scale
    sigma = A / 2
    return {"gamma": gain * p.signs(c, 0.25) * p.uniform(c, 0.5, 2) * B / 8,
            "beta": p.signs(c) * p.uniform(c, 0.1, 1) * B / 4,
            "running_mean": A * p.uniform(c, -0.2, 0.2),
            "running_var": sigma * sigma * p.uniform(c, 0.5, 2)}


def make_quantized_inputs(family: str, dtype: str, shape, axis: int, ranges: str, *,
                          seed: int = 0, key: str = "") -> dict[str, np.ndarray]:
    """Return x (int8 or uint8) and gamma, beta, running_mean, running_var (float32) of one
    quantized case; the same arguments always give the same bits."""
    if family not in QUANTIZED_FAMILIES:
        raise ValueError(f"family={family!r} is not one of {sorted(QUANTIZED_FAMILIES)}")
    if dtype not in QUANTIZED_DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {list(QUANTIZED_DTYPES)}")
    if ranges not in RANGES:
        raise ValueError(f"ranges={ranges!r} is not one of {sorted(RANGES)}")
    shape = tuple(int(n) for n in shape)
    req = Request(family, dtype, shape, axis, 0.0, int(seed), key)
    q, params = QUANTIZED_FAMILIES[family](req, RANGES[ranges])
    out = {"x": to_layout(q, shape, axis).astype(dtype)}
    for name in ("gamma", "beta", "running_mean", "running_var"):
        out[name] = round_to(np.asarray(params[name], dtype=np.float64), "float32")
    return out
