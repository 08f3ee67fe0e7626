"""The golden case record (schema 1, docs/case-format.md): ``Case``, ``ErrorSpec``, the names
and sizes of the schema that the writer (``write``) and the reader (``read``) share, and the id
filter.

Quantized cases (op ``qnt``, ``oracle.quantized``) add four params (``min_data``,
``max_data``, ``min_calib_range``, ``max_calib_range``: hex floats; a calibration value may be
``null`` in an invalid case), take int8/uint8 ``x``, and expect ``out`` (int8: ``rounded`` as
plain integers, plus ``dist``, the distance to the nearest rounding boundary, per element;
in the sidecar after cond as float64), ``min_out`` and ``max_out`` (float32, shape [1]). A
``qnt`` case has either ``expected`` or ``error`` (an invalid call of the quantized path).
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

from bnspec.flags import BACKWARD_OUTPUTS, FORWARD_OUTPUTS, QUANTIZED_OUTPUTS, Flags

SCHEMA = 1
#: Sidecar bytes per expected element besides `rounded` (in the output dtype's own width):
#: hi and lo as float64, cond as float32.
EXPECTED_SIDECAR_BYTES = 8 + 8 + 4
#: ... and for an expected array with a boundary distance (the quantized ``out``): dist as float64.
DIST_SIDECAR_BYTES = 8
#: The quantized path's extra params, in file order.
QUANTIZED_PARAMS = ("min_data", "max_data", "min_calib_range", "max_calib_range")

INPUT_NAMES = ("x", "gamma", "beta", "running_mean", "running_var", "dy")
#: dtypes an input array of an error case may have, beyond the float data dtypes.
EXTRA_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "bool")
EXCEPTIONS = ("ValueError", "TypeError")
#: A plain YAML token (ids, ops, families, dtypes): nothing YAML would read as another type.
TOKEN = re.compile(r"^[a-z][a-z0-9_.\-]*$")


@dataclass(frozen=True)
class ErrorSpec:
    """The error an invalid-input case must raise: exception class name and message fragment."""

    exception: str
    match: str


@dataclass(frozen=True, eq=False)
class Case:
    """One golden case: the call's inputs and flags, and the expected outputs or error."""

    id: str
    op: str  # 'fwd' | 'bwd' | 'err' | 'qnt'
    family: str
    summary: str
    path: Path | None
    dtype: str
    shape: tuple
    axis: int
    flags: Flags
    eps: float
    momentum: float
    cudnn_off: bool
    inputs: dict = field(default_factory=dict)  # name -> numpy array in its dtype
    expected: dict = field(default_factory=dict)  # name -> oracle.results.Expected
    error: ErrorSpec | None = None
    #: op 'qnt' only: {min_data, max_data, min_calib_range, max_calib_range} (float or None)
    quantized: dict | None = None

    def kwargs(self) -> dict:
        """Return the keyword arguments of the call: eps, momentum, the four flags, axis, cudnn_off."""
        return {"eps": self.eps, "momentum": self.momentum, "fix_gamma": self.flags.fix_gamma,
                    "use_global_stats": self.flags.use_global_stats,
                    "output_mean_var": self.flags.output_mean_var, "axis": self.axis,
                    "training": self.flags.training, "cudnn_off": self.cudnn_off}

    def quantized_kwargs(self) -> dict:
        """Return the keyword arguments of a quantized call: those of ``kwargs`` plus
        min_data, max_data, min_calib_range and max_calib_range."""
        if self.quantized is None:
            raise ValueError(f"case {self.id!r} is not a quantized case")
        return {**self.kwargs(), **self.quantized}


def expected_names(op: str, flags: Flags) -> tuple[str, ...]:
    """Return the names of the expected outputs of a fwd/bwd case, in file order."""
    if op == "bwd":
        return BACKWARD_OUTPUTS
    if op == "fwd":
        return tuple(n for n in FORWARD_OUTPUTS
                     if flags.output_mean_var or n not in ("mean", "invstd"))
    if op == "qnt":
        return QUANTIZED_OUTPUTS
    return ()


def quantized_output_dtype(name: str) -> str:
    """Return the dtype of a quantized output: int8 ``out``, float32 ``min_out``/``max_out``."""
    return "int8" if name == "out" else "float32"


def id_matches(pattern: str | None, case_id: str) -> bool:
    """Return True when pattern is None, matches the whole id as an fnmatch pattern, or is a
    regular expression found in the id (an invalid regex only counts as a glob)."""
    if pattern is None or fnmatch.fnmatchcase(case_id, pattern):
        return True
    try:
        return re.search(pattern, case_id) is not None
    except re.error:
        return False
