"""Failure messages: one line per failing output, in the suite's one format.

    y[0,2,1,3]=0.4123 (0x1.a63p-2) but should be 0.41180134... (0x1.a5ap-2)
        (err 3.1 ulp, 5.2 x tol-unit > tol 2) [fwd_train_..._normal on numpy]

then how many elements fail, the case's summary and the repro command. Got is printed in
its own dtype (shortest repr) and in hex; the expected value is hi + lo to 20 significant
digits, with the hex of its correctly rounded form.
"""
from __future__ import annotations

import shlex
from decimal import Decimal, localcontext

import numpy as np

from bnspec.flags import numpy_dtype
from bnspec.formats import FORMATS
from oracle.api import Expected
from oracle.casefile import hex_float

from .compare import KIND_EXACT, KIND_TOL, OutputResult


def format_got(value, dtype: str) -> str:
    """Return the shortest decimal repr of value in dtype (e.g. 0.4123 for float16)."""
    scalar = np.asarray(value).astype(numpy_dtype(dtype))[()]
    return repr(float(scalar)) if dtype == "float64" else str(scalar)


def format_value(hi: float, lo: float, digits: int = 20) -> str:
    """Return hi + lo in decimal to `digits` significant digits ('nan', 'inf', '-inf' as such)."""
    hi, lo = float(hi), float(lo)
    if not np.isfinite(hi):
        return repr(hi)
    with localcontext() as ctx:
        ctx.prec = 60
        total = Decimal(hi) + Decimal(lo)
        return f"{total:.{digits}g}" if total != 0 else ("-0.0" if np.signbit(hi) else "0.0")


def index_text(index: tuple[int, ...] | None) -> str:
    return "" if index is None else "[" + ",".join(str(i) for i in index) + "]"


def output_line(result: OutputResult, got, expected: Expected, where: str) -> str:
    """Return the one-line description of a failing output (see module doc)."""
    if result.problem is not None:
        return f"{result.problem} [{where}]"
    i = result.worst_index
    got_value = got[i]
    got_text = f"{format_got(got_value, result.dtype)} ({hex_float(float(got_value))})"
    should = (f"{format_value(expected.hi[i], expected.lo[i])} "
              f"({hex_float(float(expected.rounded[i]))})")
    if result.worst_kind == KIND_TOL:
        why = (f"err {result.index_ulp:.3g} ulp, {result.worst_units:.3g} x tol-unit "
               f"> tol {result.limit:g}")
    elif result.worst_kind == KIND_EXACT:
        why = f"err {result.index_ulp:.3g} ulp; {KIND_EXACT}"
    else:
        why = result.worst_kind
    return f"{result.name}{index_text(i)}={got_text} but should be {should} ({why}) [{where}]"


def count_line(result: OutputResult, expected: Expected) -> str:
    """Return e.g. '  y: 3 of 300 elements fail; at the worst, cond=0.91, u=2**-24'."""
    if result.problem is not None or result.worst_index is None:
        return ""
    cond = float(expected.cond[result.worst_index])
    return (f"  {result.name}: {result.n_bad} of {result.n} elements fail; at the worst "
            f"cond={cond:.3g}, u({result.dtype})=2**-{FORMATS[result.dtype].p}")


def repro_command(case_id: str, backend: str, cases_dir: str | None = None,
                  tolerance: str | None = None) -> str:
    """Return the shell command that reruns one case and prints its per-element diff."""
    words = ["python", "-m", "conformance.repro", case_id, "--backend", backend]
    if cases_dir is not None:
        words += ["--cases", str(cases_dir)]
    if tolerance is not None:
        words += ["--tolerance", tolerance]
    return " ".join(shlex.quote(w) for w in words)


def failure_message(case_id: str, backend: str, summary: str, failing, repro: str) -> str:
    """Return the full failure message.

    failing: (OutputResult, got array or None, Expected) for each failing output.
    """
    where = f"{case_id} on {backend}"
    lines = [output_line(r, g, e, where) for r, g, e in failing]
    lines += [line for line in (count_line(r, e) for r, _, e in failing) if line]
    lines.append(f"case: {summary}")
    lines.append(f"repro: {repro}")
    return "\n".join(lines)
