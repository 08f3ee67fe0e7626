"""Argument checks of the operator, shared by the oracle and the shipped backends.

Every check runs before anything is computed or written, and every error names the
parameter and its value (spec, "Errors a conforming backend raises"):

- ValueError: rank < 2; an empty x; axis out of range; gamma/beta/running_mean/running_var not of
  shape (C,); dy not of x's shape; eps < 0 or NaN; momentum not a finite number;
  only one calibration value, or min_calib_range > max_calib_range.
- TypeError: x of a dtype other than float16/float32/float64/bfloat16; parameters of a
  dtype other than the one the data dtype requires (float32 for 16-bit data).
"""
from __future__ import annotations

import math

import numpy as np

from .flags import DTYPES, dtype_name

PARAMETER_NAMES = ("gamma", "beta", "running_mean", "running_var")


def check_dtype(x) -> str:
    """Return the dtype name of x, or raise TypeError naming x."""
    name = dtype_name(getattr(x, "dtype", np.asarray(x).dtype))
    if name not in DTYPES:
        raise TypeError(
            f"x.dtype={name!r} is not supported: batch_norm takes {', '.join(DTYPES)}"
        )
    return name


def normalize_axis(axis, ndim: int) -> int:
    """Return axis in 0..ndim-1, or raise ValueError naming axis."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"axis={axis!r} must be an integer")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis={int(axis)} is out of range for x of rank {ndim}")
    return int(axis) % ndim


def check_eps(eps) -> float:
    value = float(eps)
    if math.isnan(value) or value < 0:
        raise ValueError(f"eps={eps!r} must be a number >= 0")
    return value


def check_momentum(momentum) -> float:
    value = float(momentum)
    if not math.isfinite(value):
        raise ValueError(f"momentum={momentum!r} must be a finite number")
    return value


def check_calib_range(min_calib_range, max_calib_range) -> None:
    """Raise ValueError unless both calibration values are given with min <= max, or neither."""
    if (min_calib_range is None) != (max_calib_range is None):
        raise ValueError(
            f"min_calib_range={min_calib_range!r} and max_calib_range={max_calib_range!r}: "
            "the quantized path needs both"
        )
    if min_calib_range is not None and not float(min_calib_range) <= float(max_calib_range):
        raise ValueError(
            f"min_calib_range={min_calib_range!r} is greater than "
            f"max_calib_range={max_calib_range!r}"
        )


def check_arguments(x, gamma, beta, running_mean, running_var, *, axis, eps, momentum,
                    dy=None) -> tuple[str, int]:
    """Validate every argument of batch_norm; return (dtype name, normalized axis)."""
    name = check_dtype(x)
    shape = np.shape(x)
    if len(shape) < 2:
        raise ValueError(f"x.ndim={len(shape)} (shape {tuple(shape)}): batch_norm needs rank >= 2")
    if 0 in shape:
        raise ValueError(f"x.shape={tuple(shape)} is empty: batch_norm needs at least one element")
    ax = normalize_axis(axis, len(shape))
    channels = shape[ax]
    param_dtype = DTYPES[name].param
    for pname, value in zip(PARAMETER_NAMES, (gamma, beta, running_mean, running_var)):
        pshape = tuple(np.shape(value))
        if pshape != (channels,):
            raise ValueError(
                f"{pname}.shape={pshape} must be ({channels},): x.shape[{ax}] = {channels}"
            )
        pdt = dtype_name(np.asarray(value).dtype)
        if pdt != param_dtype:
            raise TypeError(
                f"{pname}.dtype={pdt!r} must be {param_dtype!r} for x.dtype={name!r}"
            )
    if dy is not None:
        if tuple(np.shape(dy)) != tuple(shape):
            raise ValueError(f"dy.shape={tuple(np.shape(dy))} must equal x.shape={tuple(shape)}")
        if dtype_name(np.asarray(dy).dtype) != name:
            raise TypeError(f"dy.dtype={dtype_name(np.asarray(dy).dtype)!r} must be {name!r}")
    check_eps(eps)
    check_momentum(momentum)
    return name, ax
