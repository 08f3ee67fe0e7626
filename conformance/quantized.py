"""Verdicts on the quantized path (op "qnt"): the int8 output under the integer rule, the
float32 range outputs exactly, and the failure message.

The rule (conformance/tolerances.py, ``QUANTIZED_TABLE``): an element of ``out`` passes when
it equals the oracle's rounded value, or is its neighbour on the side of the exact value's
nearest rounding boundary with ``dist <= limit * u_f32 * cond`` (both stored per element in
the case). ``min_out`` and ``max_out`` (cond 0) must be exact.

A backend that declares ``Capabilities.quantized_profile`` (names of
``oracle.variants.QUANTIZED_VARIANTS``) is judged against ``oracle.evaluate_quantized`` with
those variants instead of the golden values.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from bnspec.flags import QUANTIZED_OUTPUTS
from oracle.api import QuantizedExpected
from oracle.casefile import hex_float
from oracle.variants import check_quantized_variants

from .compare import KIND_EXACT, KIND_TOL, OutputResult, compare, structural_problem
from .messages import format_value, index_text
from .tolerances import QUANTIZED_UNIT, quantized_limit_for

KIND_NOT_NEIGHBOUR = "more than one away, or on the far side of the boundary"
_cache: OrderedDict = OrderedDict()


def declared_profile(backend) -> tuple[str, ...]:
    """Return the backend's quantized profile (sorted, validated; () when none)."""
    names = getattr(backend.capabilities, "quantized_profile", ()) or ()
    if isinstance(names, str):
        raise TypeError(f"quantized_profile={names!r} must be a tuple of variant names")
    return tuple(sorted(check_quantized_variants(names)))


def expected_for(case, profile=()) -> dict:
    """Return the case's expected outputs under a quantized profile: its golden values for
    (), else oracle.evaluate_quantized(..., variants=profile) (cached, 8 cases)."""
    if not profile:
        return case.expected
    key = (str(case.path), case.id, tuple(profile))
    if key not in _cache:
        from oracle.api import evaluate_quantized

        inputs = case.inputs
        _cache[key] = evaluate_quantized(
            *(inputs[n] for n in ("x", "gamma", "beta", "running_mean", "running_var")),
            variants=profile, **case.quantized_kwargs())
        while len(_cache) > 8:
            _cache.popitem(last=False)
    return _cache[key]


def element_verdicts(got, expected: QuantizedExpected, limit: float):
    """Return (units, off) per element: off = got - rounded; units = 0 where equal,
    dist / (u_f32 cond) for a neighbour on the boundary's side, inf otherwise."""
    g = np.asarray(got).astype(np.float64)
    off = g - expected.rounded
    side = np.sign((expected.hi - expected.rounded) + expected.lo)  # where v lies
    with np.errstate(divide="ignore", invalid="ignore"):
        units = expected.dist / (QUANTIZED_UNIT * expected.cond)
    neighbour = (np.abs(off) == 1) & ((side == off) | (expected.dist == 0))
    units = np.where(off == 0, 0.0, np.where(neighbour & (expected.cond > 0), units, np.inf))
    return np.where(np.isnan(units), np.inf, units), off


def compare_int(got, expected: QuantizedExpected, limit: float) -> OutputResult:
    """Return the verdict on the int8 output (see the module doc for the rule)."""
    n = int(np.prod(expected.shape, dtype=np.int64))
    problem = structural_problem(got, expected)
    if problem is not None:
        return OutputResult(expected.name, expected.dtype, limit, n, n, np.inf, np.inf, None,
                            np.inf, None, problem)
    if n == 0:
        return OutputResult(expected.name, expected.dtype, limit, 0, 0, 0.0, 0.0, None, 0.0,
                            None)
    units, off = element_verdicts(got, expected, limit)
    bad = units > limit
    flat = int(np.argmax(units))
    index = tuple(int(i) for i in np.unravel_index(flat, expected.shape))
    kind = None
    if bad.any():
        kind = KIND_EXACT if expected.cond[index] == 0 else (
            KIND_TOL if np.isfinite(units[index]) else KIND_NOT_NEIGHBOUR)
    return OutputResult(expected.name, expected.dtype, limit, n, int(bad.sum()),
                        float(units[index]), float(np.max(np.abs(off))), index,
                        float(abs(off[index])), kind)


def judge_quantized(case, outputs: dict, profile: str, variants=()) -> list:
    """Return (OutputResult, got, Expected) for out, min_out and max_out of a valid qnt case."""
    expected = expected_for(case, variants)
    limit = quantized_limit_for(profile).units
    judged = []
    for name in QUANTIZED_OUTPUTS:
        e, got = expected[name], outputs.get(name)
        result = compare_int(got, e, limit) if isinstance(e, QuantizedExpected) else \
            compare(name, got, e, 1.0)
        judged.append((result, got, e))
    return judged


def output_line(result: OutputResult, got, expected, where: str) -> str:
    """Return one failing output in the suite's format, e.g.
    ``out[0,1,2,3]=-7 but should be -6 (value -6.4999998..., dist 2e-07 > 8 u_f32 cond) [...]``."""
    if result.problem is not None:
        return f"{result.problem} [{where}]"
    i = result.worst_index
    value = format_value(expected.hi[i], expected.lo[i])
    if not isinstance(expected, QuantizedExpected):
        return (f"{result.name}{index_text(i)}={float(got[i])!r} but should be {value} "
                f"({hex_float(float(expected.rounded[i]))}, exact) [{where}]")
    cond, dist = float(expected.cond[i]), float(expected.dist[i])
    if result.worst_kind == KIND_TOL:
        why = (f"dist {dist:.3g} > {result.limit:g} u_f32 cond = "
               f"{result.limit * QUANTIZED_UNIT * cond:.3g}")
    elif result.worst_kind == KIND_EXACT:
        why = "cond is 0: exact in float32, must be exact"
    else:
        why = f"dist {dist:.3g}; {result.worst_kind}"
    return (f"{result.name}{index_text(i)}={int(got[i])} but should be "
            f"{int(expected.rounded[i])} (value {value}, {why}) [{where}]")


def failure_message(case, backend: str, failing, repro: str, variants=()) -> str:
    """Return the full failure message of a qnt case (one line per failing output)."""
    where = f"{case.id} on {backend}"
    lines = [output_line(r, g, e, where) for r, g, e in failing]
    lines += [f"  {r.name}: {r.n_bad} of {r.n} elements fail" for r, _, _ in failing
              if r.problem is None]
    if variants:
        lines.append(f"judged with the declared quantized profile {list(variants)}")
    lines += [f"case: {case.summary}", f"repro: {repro}"]
    return "\n".join(lines)


def check_quantized(conformance, case) -> None:
    """Judge a valid qnt case in a test (the ``conformance`` fixture); fail with the message."""
    __tracebackhide__ = True
    state = conformance.state
    variants = declared_profile(state.backend)
    outputs = state.outputs(case)
    judged = judge_quantized(case, outputs, state.profile, variants)
    conformance.record["outputs"] = {r.name: r.as_record() for r, _, _ in judged}
    failing = [item for item in judged if not item[0].ok]
    if failing:
        message = failure_message(case, state.backend_name, failing, state.repro(case.id),
                                  variants)
        conformance.record["message"] = message.splitlines()[0]
        pytest.fail(message)


def print_repro(case, backend, tolerance: str, top: int) -> int:
    """Print each output's verdict and the worst elements of ``out`` (index, got, expected,
    exact value, dist, cond, verdict in units); return 0 on pass, 1 on fail (for
    ``python -m conformance.repro``)."""
    from .runner import run_case

    variants = declared_profile(backend)
    if variants:
        print(f"judged with the declared quantized profile {list(variants)}")
    where = f"{case.id} on {backend.name}"
    ok = True
    for result, got, expected in judge_quantized(case, run_case(backend, case), tolerance,
                                                 variants):
        verdict = "ok" if result.ok else "FAIL"
        print(f"\n{result.name} ({result.dtype}, {result.n} elements): {verdict}")
        ok &= result.ok
        if result.problem is not None or not isinstance(expected, QuantizedExpected):
            if not result.ok:
                print(f"  {output_line(result, got, expected, where)}")
            continue
        units, off = element_verdicts(got, expected, result.limit)
        order = np.lexsort((-np.abs(off).ravel(), -units.ravel()))
        rows = [["index", "got", "expected", "value", "dist", "cond", "units"]]
        for flat in order[: top if top > 0 else None]:
            i = np.unravel_index(flat, expected.shape)
            rows.append([index_text(tuple(int(k) for k in i)), str(int(got[i])),
                         str(int(expected.rounded[i])),
                         format_value(expected.hi[i], expected.lo[i], 12),
                         f"{float(expected.dist[i]):.3g}", f"{float(expected.cond[i]):.3g}",
                         f"{float(units[i]):.3g}"])
        widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print("\nPASS" if ok else "\nFAIL")
    return 0 if ok else 1

