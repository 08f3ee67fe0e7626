"""Rerun one case on one backend and print the per-element differences, worst first.

    python -m conformance.repro CASE_ID --backend NAME [--cases DIR] [--tolerance P] [--top N]

Prints, for each output the case expects, its verdict and a table of the worst elements
(index, got, expected value, error in tolerance units, error in ulp); for an invalid-input
case, what the backend raised. Exit status: 0 pass (or the backend skips the case), 1 fail,
2 usage error (unknown case, backend that does not load).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from oracle.casefile import hex_float

from . import cases, deviations, diagnosis, profiles, registry
from .checks import BACKWARD_CHECKED, FORWARD_CHECKED, RUNNING_CHECKED, judge_error, judge_outputs
from .compare import element_errors
from .messages import format_got, format_value, index_text, output_line
from .runner import run_case
from .tolerances import DEFAULT_PROFILE, PROFILES

ALL_CHECKED = FORWARD_CHECKED + BACKWARD_CHECKED + RUNNING_CHECKED


def diff_rows(got, expected, top: int) -> list[list[str]]:
    """Return the table rows of the `top` worst elements (all of them when top <= 0)."""
    errors = element_errors(got, expected)
    order = np.argsort(-errors.units, axis=None, kind="stable")
    if top > 0:
        order = order[:top]
    rows = []
    for flat in order:
        i = np.unravel_index(flat, expected.shape)
        rows.append([index_text(tuple(int(k) for k in i)),
                     f"{format_got(got[i], expected.dtype)} ({hex_float(float(got[i]))})",
                     f"{format_value(expected.hi[i], expected.lo[i])} "
                     f"({hex_float(float(expected.rounded[i]))})",
                     f"{float(expected.cond[i]):.3g}",
                     f"{float(errors.units[i]):.3g}", f"{float(errors.ulp[i]):.3g}"])
    return rows


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Return rows as a plain-text table with left-aligned columns."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.repro", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case_id")
    parser.add_argument("--backend", default=None, help="registered name or module:factory")
    parser.add_argument("--cases", default=str(cases.DEFAULT_CASES_DIR))
    parser.add_argument("--tolerance", default=DEFAULT_PROFILE, choices=PROFILES)
    parser.add_argument("--top", type=int, default=20,
                        help="rows per output, worst first (0: every element)")
    args = parser.parse_args(argv)
    try:
        resolved = registry.resolve(args.backend)
        case = cases.load(cases.check_cases_dir(args.cases), args.case_id)
    except (registry.BackendError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    backend = resolved.backend
    print(f"case: {case.id}\n      {case.summary}")
    print(f"backend: {backend.name} {backend.version} ({resolved.target}; {resolved.how}); "
          f"tolerance: {args.tolerance}")
    entry = deviations.first_match(deviations.load(deviations.default_path(backend.name)),
                                   "", case.id)
    if entry is not None:
        print(f"known deviation ({entry.source}): {entry.reason}")
    reason = cases.skip_reason(backend, case)
    if reason is not None:
        print(f"SKIPPED: {reason}")
        return 0
    if case.op == "err" or case.error is not None:  # qnt cases may be invalid calls too
        problem = judge_error(backend, case)
        print(f"FAIL: {problem}" if problem else "PASS: rejected as required")
        return 1 if problem else 0
    where = f"{case.id} on {backend.name}"
    if case.op == "qnt":  # the quantized path: integer rule (conformance/quantized.py)
        from .quantized import print_repro

        return print_repro(case, backend, args.tolerance, args.top)
    ok = True
    declared = profiles.declared(backend)  # judged against its semantic profile
    if declared:
        print(f"declared profile: {', '.join(declared)}")
    outputs = run_case(backend, case)
    judged = judge_outputs(profiles.profiled_case(case, declared), outputs, ALL_CHECKED,
                           args.tolerance)
    for result, got, expected in judged:
        verdict = "ok" if result.ok else "FAIL"
        print(f"\n{result.name} ({result.dtype}, {result.n} elements, limit {result.limit:g} "
              f"units): {verdict}; worst {result.worst_units:.3g} units "
              f"({result.fraction:.3g} of tol), {result.worst_ulp:.3g} ulp")
        ok &= result.ok
        if result.problem is not None:
            print(f"  {output_line(result, got, expected, where)}")
            continue
        header = ["index", "got", "expected", "cond", "err units", "err ulp"]
        print(format_table(header, diff_rows(got, expected, args.top)))
    if not ok:  # what explains it (conformance/diagnosis.py)
        found = diagnosis.diagnose(case, outputs, [r.name for r, _, _ in judged],
                                   args.tolerance, declared)
        print(f"\ndiagnosis: {found.text}")
    print("\nPASS" if ok else "\nFAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
