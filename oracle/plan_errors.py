"""Phase H of the plan: invalid inputs (op ``err``), one case per defect of ``ERROR_CASES``."""
from __future__ import annotations

from bnspec.flags import DEFAULT_EPS, DEFAULT_MOMENTUM, Flags, error_case_id

from .case_spec import CaseSpec
from .casefile import ErrorSpec

#: (defect, tag, dtype, shape, axis, eps, momentum, exception, match). Defects that change an
#: input are applied by oracle.generate.error_inputs; axis/eps/momentum defects are the values.
ERROR_CASES = (
    *((f"{p}_length", tag, "float32", (4, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", p)
      for p in ("gamma", "beta", "running_mean", "running_var") for tag in ("long", "short")),
    ("gamma_length", "long", "float16", (2, 3, 2, 5), -1, DEFAULT_EPS, DEFAULT_MOMENTUM,
     "ValueError", "gamma"),
    ("running_var_length", "short", "float64", (2, 5, 3), 0, DEFAULT_EPS, DEFAULT_MOMENTUM,
     "ValueError", "running_var"),
    ("axis_range", "pos", "float32", (4, 3), 2, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", "axis"),
    ("axis_range", "neg", "float32", (4, 3), -3, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", "axis"),
    ("axis_range", "pos", "float64", (2, 3, 2, 5), 4, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError",
     "axis"),
    ("axis_range", "neg", "float16", (2, 3, 2, 5), -5, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError",
     "axis"),
    ("rank", "", "float32", (5,), 0, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", "x.ndim"),
    ("rank", "", "float16", (5,), 0, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", "x.ndim"),
    ("rank", "", "float32", (), 0, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", "x.ndim"),
    ("empty", "", "float32", (0, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", "x.shape"),
    ("empty", "", "float64", (2, 0, 4), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", "x.shape"),
    ("x_dtype", "", "int32", (4, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "TypeError", "x.dtype"),
    ("x_dtype", "", "bool", (4, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "TypeError", "x.dtype"),
    ("x_dtype", "", "uint8", (2, 3, 2), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "TypeError", "x.dtype"),
    ("param_dtype", "f16params", "float16", (4, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "TypeError",
     "gamma"),
    ("param_dtype", "bf16params", "bfloat16", (4, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM,
     "TypeError", "gamma"),
    ("param_dtype", "f64params", "float32", (4, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "TypeError",
     "gamma"),
    ("param_dtype", "f32params", "float64", (4, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "TypeError",
     "gamma"),
    ("dy_shape", "", "float32", (4, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", "dy"),
    ("dy_shape", "", "float16", (2, 3, 2, 5), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", "dy"),
    ("dy_dtype", "", "float32", (4, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "TypeError", "dy"),
    ("eps", "negative", "float32", (4, 3), 1, -1e-3, DEFAULT_MOMENTUM, "ValueError", "eps"),
    ("eps", "nan", "float32", (4, 3), 1, float("nan"), DEFAULT_MOMENTUM, "ValueError", "eps"),
    ("eps", "neginf", "float64", (4, 3), 1, float("-inf"), DEFAULT_MOMENTUM, "ValueError", "eps"),
    ("momentum", "inf", "float32", (4, 3), 1, DEFAULT_EPS, float("inf"), "ValueError", "momentum"),
    ("momentum", "neginf", "float16", (4, 3), 1, DEFAULT_EPS, float("-inf"), "ValueError",
     "momentum"),
    ("momentum", "nan", "float32", (4, 3), 1, DEFAULT_EPS, float("nan"), "ValueError", "momentum"),
)


def error_specs() -> list[CaseSpec]:
    """Return the invalid-input cases of ERROR_CASES (op 'err', a training step's flags)."""
    flags = Flags(training=True, fix_gamma=False, use_global_stats=False, output_mean_var=False)
    out = []
    for defect, tag, dtype, shape, axis, eps, momentum, exc, match in ERROR_CASES:
        cid = error_case_id(defect, dtype, shape, tag)
        out.append(CaseSpec(id=cid, op="err", family="normal", dtype=dtype, shape=tuple(shape),
                            axis=axis, flags=flags, eps=eps, momentum=momentum,
                            error=ErrorSpec(exc, match), defect=defect + (f":{tag}" if tag else "")))
    return out
