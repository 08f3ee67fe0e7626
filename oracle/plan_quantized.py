"""Phase Q of the plan: the quantized path (op ``qnt``), valid and invalid calls.

Every flag combination (all accepted, none changes the result), the range classes of
oracle.quantized_inputs.RANGES, saturation, exact ties, ranks and axes, eps values, SIMD-tail
channel counts, int8 and uint8 data, and invalid calls (``QUANTIZED_ERROR_CASES``).
"""
from __future__ import annotations

import itertools

from bnspec.flags import ALL_FLAGS, DEFAULT_EPS, Flags, axis_for_class, case_id, error_case_id

from .case_spec import CaseSpec, axis_classes, shape_for
from .casefile import ErrorSpec

#: The quantized operator's defaults: inference, fix_gamma (MXNet's default; no effect here).
QUANTIZED_FLAGS = Flags(training=False, fix_gamma=True, use_global_stats=False,
                        output_mean_var=False)
QUANTIZED_SHAPE = (2, 3, 4, 4)
QUANTIZED_DTYPE_NAMES = ("int8", "uint8")


def _qspec(dtype, shape, axis, family, ranges, *, flags=QUANTIZED_FLAGS, eps=DEFAULT_EPS):
    from .quantized_inputs import RANGES

    shape = tuple(shape)
    cid = case_id("qnt", flags, axis, dtype, shape, family, eps=eps, tag=ranges)
    return CaseSpec(id=cid, op="qnt", family=family, dtype=dtype, shape=shape, axis=axis,
                    flags=flags, eps=eps, quantized=RANGES[ranges].values, ranges=ranges)


def quantized_plan() -> list[CaseSpec]:
    """Return phase Q: the quantized golden cases (valid and invalid), sorted by id."""
    specs = []
    for flags, dtype in itertools.product(ALL_FLAGS, QUANTIZED_DTYPE_NAMES):  # every flag
        specs.append(_qspec(dtype, QUANTIZED_SHAPE, 1, "qnormal", "sym", flags=flags))
    for ranges, dtype in itertools.product(("onesided", "asym", "negonly", "huge", "zerodata"),
                                           QUANTIZED_DTYPE_NAMES):
        specs.append(_qspec(dtype, QUANTIZED_SHAPE, 1, "qnormal", ranges))
    for dtype in QUANTIZED_DTYPE_NAMES:
        specs.append(_qspec(dtype, QUANTIZED_SHAPE, 1, "qnormal", "tiny", eps=0.0))
        specs.append(_qspec(dtype, QUANTIZED_SHAPE, 1, "qnormal", "tiny"))
        for ranges in ("sym", "onesided"):
            specs.append(_qspec(dtype, QUANTIZED_SHAPE, 1, "qsaturate", ranges))
        specs.append(_qspec(dtype, QUANTIZED_SHAPE, 1, "qconstant", "asym"))
        specs.append(_qspec(dtype, (2, 4, 8, 4), 1, "qties", "unit", eps=0.0))
        for eps in (1e-5, 0.0, 0.5, 2.0):
            specs.append(_qspec(dtype, QUANTIZED_SHAPE, 1, "qnormal", "asym", eps=eps))
    for rank, cls in ((2, "first"), (2, "negative"), (3, "first"), (3, "middle"), (3, "last"),
                      (4, "first"), (4, "middle"), (4, "last"), (4, "negative"),
                      (5, "first"), (5, "middle"), (5, "last"), (5, "negative"),
                      (2, "one"), (3, "one"), (5, "one")):
        if cls not in axis_classes(rank):  # e.g. "middle" of rank 3 is axis 1 ("one")
            continue
        axis = axis_for_class(cls, rank)
        for dtype in QUANTIZED_DTYPE_NAMES[: 2 if cls in ("last", "one") else 1]:
            specs.append(_qspec(dtype, shape_for("normal", rank, axis), axis, "qnormal", "sym"))
    for channels in (1, 9, 17, 33):  # one channel, and one past the 8-, 16-, 32-lane widths
        specs.append(_qspec("int8", (3, channels, 5), 1, "qnormal", "asym"))
        specs.append(_qspec("uint8", (3, 7, channels), -1, "qnormal", "onesided"))
    specs.append(_qspec("int8", (2, 17, 9, 15), 1, "qnormal", "sym"))  # > 4096: sidecar
    specs.append(_qspec("uint8", (2, 9, 15, 17), -1, "qsaturate", "onesided"))
    return sorted(specs + quantized_error_specs(), key=lambda s: s.id)


#: Invalid calls of the quantized path: (defect, dtype, shape, axis, eps, (min_data,
#: max_data, min_calib_range, max_calib_range), exception, match). Defects that change an
#: input are applied by oracle.generate.quantized_error_inputs.
QUANTIZED_ERROR_CASES = (
    ("calib_only_min", "int8", (2, 3), 1, DEFAULT_EPS, (-1.0, 1.0, -2.0, None), "ValueError",
     "max_calib_range"),
    ("calib_only_max", "uint8", (2, 3, 4), 1, DEFAULT_EPS, (0.0, 1.0, None, 2.0), "ValueError",
     "min_calib_range"),
    ("calib_none", "int8", (2, 3), 1, DEFAULT_EPS, (-1.0, 1.0, None, None), "ValueError",
     "min_calib_range"),
    ("calib_order", "int8", (2, 3), 1, DEFAULT_EPS, (-1.0, 1.0, 2.0, 1.0), "ValueError",
     "min_calib_range"),
    ("calib_order", "uint8", (2, 3, 2, 2), 1, DEFAULT_EPS, (0.0, 1.0, 2.0**-30, -(2.0**-30)),
     "ValueError", "min_calib_range"),
    ("x_float", "float32", (2, 3), 1, DEFAULT_EPS, (-1.0, 1.0, -2.0, 2.0), "TypeError",
     "x.dtype"),
    ("x_float", "float16", (2, 3, 4), 1, DEFAULT_EPS, (-1.0, 1.0, -2.0, 2.0), "TypeError",
     "x.dtype"),
    ("x_dtype", "int32", (2, 3), 1, DEFAULT_EPS, (-1.0, 1.0, -2.0, 2.0), "TypeError", "x.dtype"),
    ("param_dtype", "int8", (2, 3), 1, DEFAULT_EPS, (-1.0, 1.0, -2.0, 2.0), "TypeError",
     "gamma"),
    ("gamma_length", "int8", (2, 3), 1, DEFAULT_EPS, (-1.0, 1.0, -2.0, 2.0), "ValueError",
     "gamma"),
    ("axis_range", "uint8", (2, 3), 2, DEFAULT_EPS, (0.0, 1.0, -2.0, 2.0), "ValueError", "axis"),
    ("rank", "int8", (5,), 0, DEFAULT_EPS, (-1.0, 1.0, -2.0, 2.0), "ValueError", "x.ndim"),
    ("eps", "int8", (2, 3), 1, -1e-3, (-1.0, 1.0, -2.0, 2.0), "ValueError", "eps"),
)


def quantized_error_specs() -> list[CaseSpec]:
    """Return the invalid quantized calls of QUANTIZED_ERROR_CASES (op 'qnt' with an error)."""
    out = []
    for defect, dtype, shape, axis, eps, ranges, exc, match in QUANTIZED_ERROR_CASES:
        cid = error_case_id(defect, dtype, shape, op="qnt")
        out.append(CaseSpec(id=cid, op="qnt", family="qnormal", dtype=dtype, shape=tuple(shape),
                            axis=axis, flags=QUANTIZED_FLAGS, eps=eps, error=ErrorSpec(exc, match),
                            defect=defect, quantized=ranges))
    return out
