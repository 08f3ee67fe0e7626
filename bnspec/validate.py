"""Argument checks of the operator, shared by the oracle and the shipped backends.

Every check runs before anything is computed or written, and every error names the
parameter and its value (spec, "Errors a conforming backend raises"):

- ValueError: rank < 2; an empty x; axis out of range; gamma/beta/running_mean/running_var not of
  shape (C,); dy not of x's shape; eps < 0 or NaN; momentum not a finite number;
  only one calibration value, or min_calib_range > max_calib_range.
- TypeError: x of a dtype other than float16/float32/float64/bfloat16; parameters of a
  dtype other than the one the data dtype requires (float32 for 16-bit data).

The quantized path (``check_quantized_arguments``) takes int8/uint8 x (TypeError otherwise,
a float x included), float32 parameters, and needs both calibration values (ValueError
naming both when one or both are missing) with min <= max, finite ranges, a nonzero output
range max(|min_calib_range|, |max_calib_range|), finite parameters and running_var + eps > 0.
"""
from __future__ import annotations

import math

import numpy as np

from .flags import DTYPES, QUANTIZED_DTYPES, dtype_name

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


def _real(name: str, value) -> float:
    """Return value as a float, or raise ValueError naming the parameter."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                      np.floating)):
        raise ValueError(f"{name}={value!r} must be a real number")
    return float(value)


def check_eps(eps) -> float:
    value = _real("eps", eps)
    if math.isnan(value) or value < 0:
        raise ValueError(f"eps={eps!r} must be a number >= 0")
    return value


def check_momentum(momentum) -> float:
    value = _real("momentum", momentum)
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


def _check_layout(x, axis, param_dtype: str, name: str, params) -> tuple[tuple, int]:
    """Return (x's shape, normalized axis) after the checks both operators share: rank >= 2,
    a non-empty x, the axis, and gamma/beta/running_mean/running_var of shape (C,) and of
    dtype param_dtype (x's dtype is `name`)."""
    shape = np.shape(x)
    if len(shape) < 2:
        raise ValueError(f"x.ndim={len(shape)} (shape {tuple(shape)}): batch_norm needs rank >= 2")
    if 0 in shape:
        raise ValueError(f"x.shape={tuple(shape)} is empty: batch_norm needs at least one element")
    ax = normalize_axis(axis, len(shape))
    channels = shape[ax]
    for pname, value in zip(PARAMETER_NAMES, params):
        pshape = tuple(np.shape(value))
        if pshape != (channels,):
            raise ValueError(
                f"{pname}.shape={pshape} must be ({channels},): x.shape[{ax}] = {channels}")
        pdt = dtype_name(np.asarray(value).dtype)
        if pdt != param_dtype:
            raise TypeError(f"{pname}.dtype={pdt!r} must be {param_dtype!r} for x.dtype={name!r}")
    return shape, ax


def check_arguments(x, gamma, beta, running_mean, running_var, *, axis, eps, momentum,
                    dy=None) -> tuple[str, int]:
    """Validate every argument of batch_norm; return (dtype name, normalized axis)."""
    name = check_dtype(x)
    shape, ax = _check_layout(x, axis, DTYPES[name].param, name,
                              (gamma, beta, running_mean, running_var))
    if dy is not None:
        if tuple(np.shape(dy)) != tuple(shape):
            raise ValueError(f"dy.shape={tuple(np.shape(dy))} must equal x.shape={tuple(shape)}")
        if dtype_name(np.asarray(dy).dtype) != name:
            raise TypeError(f"dy.dtype={dtype_name(np.asarray(dy).dtype)!r} must be {name!r}")
    check_eps(eps)
    check_momentum(momentum)
    return name, ax


def check_quantized_arguments(x, gamma, beta, running_mean, running_var, *, axis, eps,
                              min_data, max_data, min_calib_range,
                              max_calib_range) -> tuple[str, int]:
    """Validate every argument of the quantized batch norm; return (x's dtype name, axis).

    Raised before anything is computed (see the module doc for the list): TypeError for x
    not int8/uint8 or parameters not float32; ValueError for rank < 2, an empty x, axis,
    parameter shapes, eps, the data range (min_data, max_data: finite numbers), the
    calibration range (both given, finite, min <= max, not both 0), non-finite parameters
    and running_var + eps <= 0 (the output would be undefined).
    """
    name = dtype_name(getattr(x, "dtype", np.asarray(x).dtype))
    if name not in QUANTIZED_DTYPES:
        raise TypeError(f"x.dtype={name!r} is not supported by the quantized path: it takes "
                        f"{', '.join(QUANTIZED_DTYPES)} data")
    shape, ax = _check_layout(x, axis, "float32", name,
                              (gamma, beta, running_mean, running_var))
    eps = check_eps(eps)
    for rname, value in (("min_data", min_data), ("max_data", max_data)):
        _check_range_value(rname, value)
    if min_calib_range is None or max_calib_range is None:
        raise ValueError(
            f"min_calib_range={min_calib_range!r} and max_calib_range={max_calib_range!r}: "
            "the quantized path needs both")
    for rname, value in (("min_calib_range", min_calib_range),
                         ("max_calib_range", max_calib_range)):
        _check_range_value(rname, value)
    check_calib_range(min_calib_range, max_calib_range)
    if max(abs(float(min_calib_range)), abs(float(max_calib_range))) == 0:
        raise ValueError(f"min_calib_range={min_calib_range!r} and max_calib_range="
                         f"{max_calib_range!r}: the output scale 127/max(|min|, |max|) needs "
                         "a nonzero calibration range")
    for pname, value in zip(PARAMETER_NAMES, (gamma, beta, running_mean, running_var)):
        a = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(a)):
            bad = float(a[~np.isfinite(a)][0])
            raise ValueError(f"{pname} holds {bad!r}: the quantized path needs finite "
                             "parameters (an int8 output of NaN or inf is undefined)")
    rv = np.asarray(running_var, dtype=np.float64)
    if np.any(rv + eps <= 0):
        bad = float(rv[rv + eps <= 0][0])
        raise ValueError(f"running_var holds {bad!r}: running_var + eps={eps!r} must be > 0 "
                         "on the quantized path")
    return name, ax


def _check_range_value(name: str, value) -> float:
    """Return value as a float, or raise ValueError naming it unless it is a finite number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} must be a finite number") from None
    if not math.isfinite(number):
        raise ValueError(f"{name}={value!r} must be a finite number")
    return number


def check_written(written, **arrays) -> None:
    """Raise ValueError naming the parameter unless every array named in `written` (the ones
    a call updates in place: gamma with fix_gamma, running_mean/running_var when the step
    updates them) is a writeable numpy array sharing no memory with another argument.
    Runs before any write, so a refused call changes nothing."""
    for name in written:
        target = arrays[name]
        if not isinstance(target, np.ndarray) or not target.flags.writeable:
            raise ValueError(f"{name} must be a writeable numpy array: batch_norm updates it "
                             "in place")
        for other, value in arrays.items():
            if other != name and isinstance(value, np.ndarray) and np.shares_memory(target, value):
                raise ValueError(f"{name} shares memory with {other}: batch_norm writes {name} "
                                 "in place")
