"""The vocabulary of the suite: dtypes, flags, axis classes, defaults and case ids.

This module is the one source of truth for these facts. The oracle, the generator, the
conformance runner and the reports all import them from here; nothing else spells a flag
token or a dtype name.

Case ids read left to right, with every boolean spelled out both ways::

    fwd_train_fixgamma_batchstats_nomeanvar_axis1_fp32_4x3x5x5_normal
    bwd_infer_freegamma_globalstats_meanvar_axisneg1_fp16_2x7_constant_eps1e-05_mom0

op, mode, fix_gamma, use_global_stats, output_mean_var, axis, dtype, shape, data family,
then optional tokens for non-default eps, momentum and cudnn_off, then an optional variant
tag. The id is also the file name of the case and its pytest id.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, fields

import numpy as np

# --- defaults (MXNet 1.9.1, see shared/spec/batch_norm_semantics.md "Signature") ---------

#: The default eps is the float32 value of 1e-3, stored as a C++ double.
DEFAULT_EPS: float = float(np.float32(1e-3))  # 0.0010000000474974513
#: The default momentum as the user writes it; the operator rounds it to float32.
DEFAULT_MOMENTUM: float = 0.9

# --- dtypes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DtypeInfo:
    """A data dtype of the operator and the dtype of its parameters and statistics."""

    name: str  # numpy-style name: "float32", "bfloat16", ...
    token: str  # case-id token: "fp32", "bf16", ... ("fp16" is not a substring of "bf16")
    param: str  # dtype of gamma/beta/running stats and of the returned mean/invstd

    @property
    def numpy(self) -> np.dtype:
        return numpy_dtype(self.name)


DTYPES: dict[str, DtypeInfo] = {
    d.name: d
    for d in (
        DtypeInfo("float64", "fp64", "float64"),
        DtypeInfo("float32", "fp32", "float32"),
        # 16-bit data: float32 parameters and accumulation (spec "dtypes").
        DtypeInfo("float16", "fp16", "float32"),
        DtypeInfo("bfloat16", "bf16", "float32"),
    )
}
DTYPE_BY_TOKEN: dict[str, DtypeInfo] = {d.token: d for d in DTYPES.values()}

#: Input dtypes of the quantized path (op "qnt"): int8 and uint8 data, float32 parameters.
#: Tokens "s8"/"u8" ("int8" is a substring of "uint8", so -k int8 would select both).
QUANTIZED_DTYPES: dict[str, DtypeInfo] = {
    d.name: d for d in (DtypeInfo("int8", "s8", "float32"), DtypeInfo("uint8", "u8", "float32"))
}


def numpy_dtype(name: str) -> np.dtype:
    """Return the numpy dtype for a dtype name; bfloat16 comes from ml_dtypes."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def dtype_name(dtype) -> str:
    """Return the suite's name ("float32", "bfloat16", ...) of a numpy dtype."""
    return np.dtype(dtype).name


# --- flags ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flags:
    """The four boolean switches whose 16 combinations every dtype is tested under."""

    training: bool
    fix_gamma: bool
    use_global_stats: bool
    output_mean_var: bool

    @property
    def batch_stats(self) -> bool:
        """True when the batch statistics are used (and running stats get updated)."""
        return self.training and not self.use_global_stats

    @property
    def tokens(self) -> tuple[str, str, str, str]:
        return (
            "train" if self.training else "infer",
            "fixgamma" if self.fix_gamma else "freegamma",
            "globalstats" if self.use_global_stats else "batchstats",
            "meanvar" if self.output_mean_var else "nomeanvar",
        )

    @property
    def label(self) -> str:
        """Short human label used in report tables, e.g. ``train/fixgamma/batchstats/meanvar``."""
        return "/".join(self.tokens)


#: The flags' keyword names, in Flags' field order: Flags(*(kwargs[n] for n in FLAG_NAMES)).
FLAG_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Flags))

ALL_FLAGS: tuple[Flags, ...] = tuple(
    Flags(*combo) for combo in itertools.product((True, False), repeat=4)
)

# --- ops --------------------------------------------------------------------------------

#: op token -> meaning. "qnt" is the seam for the quantized path (min/max_calib_range).
OPS = {"fwd": "forward", "bwd": "forward + backward (training step)", "err": "invalid input",
       "qnt": "quantized forward"}

#: Outputs of each op, in the order reports list them.
FORWARD_OUTPUTS = ("y", "mean", "invstd", "running_mean", "running_var")
BACKWARD_OUTPUTS = ("dx", "dgamma", "dbeta", "running_mean", "running_var")
#: The quantized operator's outputs: int8 ``out`` and the float32 range it stands for.
QUANTIZED_OUTPUTS = ("out", "min_out", "max_out")

# --- axes -------------------------------------------------------------------------------

AXIS_CLASSES = ("first", "one", "middle", "last", "negative")


def axis_for_class(axis_class: str, ndim: int) -> int | None:
    """Return the axis value of an axis class for a rank, or None where the class does not
    exist as a distinct axis for that rank (e.g. "middle" of a 2-D input)."""
    if axis_class == "first":
        return 0
    if axis_class == "one":
        return 1 if ndim >= 2 else None
    if axis_class == "middle":
        return ndim // 2 if ndim >= 4 or (ndim == 3 and ndim // 2 not in (0, ndim - 1)) else None
    if axis_class == "last":
        return ndim - 1
    if axis_class == "negative":
        return -1 if ndim < 3 else -2
    raise ValueError(f"axis_class={axis_class!r} is not one of {AXIS_CLASSES}")


def axis_class_of(axis: int, ndim: int) -> str:
    """Return the axis class an axis value belongs to (the inverse of axis_for_class)."""
    if axis < 0:
        return "negative"
    if axis == 0:
        return "first"
    if axis == ndim - 1:
        return "last"
    if axis == 1:
        return "one"
    return "middle"


# --- case ids ---------------------------------------------------------------------------


def _number_token(value: float) -> str:
    """Spell a number for an id: 1e-05, 0.5, 0, 1 (no dots where not needed)."""
    text = repr(float(value))
    if text.endswith(".0"):
        text = text[:-2]
    return text.replace("+", "")


def axis_token(axis: int) -> str:
    return f"axisneg{-axis}" if axis < 0 else f"axis{axis}"


def shape_token(shape) -> str:
    return "x".join(str(int(n)) for n in shape) if len(shape) else "scalar"


def case_id(
    op: str,
    flags: Flags,
    axis: int,
    dtype: str,
    shape,
    family: str,
    *,
    eps: float = DEFAULT_EPS,
    momentum: float = DEFAULT_MOMENTUM,
    cudnn_off: bool = False,
    tag: str = "",
) -> str:
    """Return the case id (= file stem = pytest id) for a forward/backward/quantized case."""
    if op not in OPS:
        raise ValueError(f"op={op!r} is not one of {sorted(OPS)}")
    parts = [op, *flags.tokens, axis_token(axis), dtype_token(dtype), shape_token(shape), family]
    if eps != DEFAULT_EPS:
        parts.append("eps" + _number_token(eps))
    if momentum != DEFAULT_MOMENTUM:
        parts.append("mom" + _number_token(momentum))
    if cudnn_off:
        parts.append("cudnnoff")
    if tag:
        parts.append(tag)
    return _checked_id("_".join(parts))


def dtype_token(dtype: str) -> str:
    """Return the case-id token of a data dtype (fp32, bf16, s8, u8, ...)."""
    if dtype in DTYPES:
        return DTYPES[dtype].token
    return QUANTIZED_DTYPES[dtype].token


def error_case_id(reason: str, dtype: str, shape, tag: str = "", op: str = "err") -> str:
    """Return the id of an invalid-input case, e.g. ``err_gamma_length_fp32_2x3``; with
    op="qnt" one of the quantized path, e.g. ``qnt_invalid_calib_order_s8_2x3`` (no "err" in it,
    so that a filter or -k on "err" selects the float operator's invalid cases only)."""
    if dtype in DTYPES or (op == "qnt" and dtype in QUANTIZED_DTYPES):
        token = dtype_token(dtype)
    else:  # e.g. err_x_dtype_uint8_...: a dtype the float operator refuses, spelled out
        token = re.sub(r"[^a-z0-9]", "", dtype)
    head = ["err"] if op == "err" else [op, "invalid"]
    parts = head + [reason, token, shape_token(shape)] + ([tag] if tag else [])
    return _checked_id("_".join(parts))


_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


def _checked_id(text: str) -> str:
    if not _ID_PATTERN.match(text) or len(text) > 200:
        raise ValueError(f"case id {text!r} is not a safe file name")
    return text
