"""Recompute a folder of golden cases with the oracle: ``python -m oracle.verify DIR``.

    python -m oracle.verify cases/                 # every case; exit 1 if any differs
    python -m oracle.verify my_cases/ --jobs 2 --filter 'fwd_*_fp16_*'

The loader (``oracle.casefile``) proves a file intact and its numbers self-consistent, but a
file edited and re-signed keeps both: an input changed, with the expected values left as
they were, loads fine. This command trusts nothing in a case but its inputs and parameters:
each case is recomputed from them (``oracle.evaluate``, ``oracle.evaluate_quantized``) and
compared with what the file stores, output by output:

- the same outputs, of the same dtypes and shapes;
- ``rounded``: bit for bit (NaN where NaN);
- ``value``: within the 32 digits the file keeps, |stored - recomputed| <= 2 e with
  e = max(|hi| 2**-103, 2**-1074) (``oracle.casefile.meaning``); NaN and +-inf exactly;
- ``cond`` (and the quantized ``dist``): equal, up to the float32 rounding-up of a sidecar's
  cond (relative 2**-22);
- an invalid-input case: the oracle refuses the inputs with the stored exception class, its
  message containing the stored fragment.

A case the loader refuses counts as a difference too. The first difference of each case is
reported, naming the case, the output and the element. Cases are loaded and recomputed in
``--jobs`` processes (default: the CPUs available), the largest first.

The conformance plugin runs the same check before a run with ``--verify-cases``.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

from bnspec import validate

from .casefile import CaseFileError, hex_float, id_matches, iter_case_paths, load_case
from .casefile.meaning import value_error

#: Relative slack of a stored cond against the recomputed one: a sidecar stores cond as
#: float32 rounded up (one float32 ulp, 2**-23 relative, with room to spare).
COND_SLACK = 2.0 ** -22


def recompute(case) -> dict:
    """Return the oracle's expected outputs for the case's own inputs and parameters (for an
    invalid-input case: {} after checking that the oracle refuses it as stored)."""
    import oracle

    args = [case.inputs.get(name) for name in ("x",) + validate.PARAMETER_NAMES]
    def call():
        if case.op == "qnt":
            return oracle.evaluate_quantized(*args, eps=case.eps, axis=case.axis,
                                             **(case.quantized or {}))
        flags = case.flags
        return oracle.evaluate(
            *args, case.inputs.get("dy"), eps=case.eps, momentum=case.momentum,
            fix_gamma=flags.fix_gamma, use_global_stats=flags.use_global_stats,
            output_mean_var=flags.output_mean_var, axis=case.axis, training=flags.training)

    if case.error is None:
        return dict(call())
    try:
        call()
    except (ValueError, TypeError) as exc:
        if type(exc).__name__ == case.error.exception and case.error.match in str(exc):
            return {}
        raise Mismatch("error", f"the oracle raises {type(exc).__name__}({str(exc)!r:.200}), "
                                f"the file expects {case.error.exception} mentioning "
                                f"{case.error.match!r}") from None
    raise Mismatch("error", f"the oracle accepts the inputs, the file expects "
                            f"{case.error.exception} mentioning {case.error.match!r}")


class Mismatch(Exception):
    """A stored expectation that differs from the oracle's: ``output`` and the message."""

    def __init__(self, output: str, message: str):
        super().__init__(f"{output}: {message}")
        self.output = output


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == b) | (np.isnan(a) & np.isnan(b))


def _first(bad: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(bad)[0])


def compare(stored, fresh, name: str) -> None:
    """Return None if the stored Expected matches the recomputed one (module doc), else
    raise Mismatch naming the output and the first element that differs."""
    if stored.dtype != fresh.dtype or stored.shape != fresh.shape:
        raise Mismatch(name, f"stored as {stored.dtype}{list(stored.shape)}, the oracle "
                             f"gives {fresh.dtype}{list(fresh.shape)}")
    s_hi, s_lo, f_hi, f_lo = (np.asarray(a, dtype=np.float64)
                              for a in (stored.hi, stored.lo, fresh.hi, fresh.lo))
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf of non-finite values
        gap = np.abs((f_hi - s_hi) + (f_lo - s_lo))
        value_ok = np.where(np.isfinite(s_hi) & np.isfinite(f_hi),
                            gap <= 2 * value_error(s_hi, s_lo), _same(s_hi, f_hi))
        cond_s, cond_f = (np.asarray(e.cond, dtype=np.float64) for e in (stored, fresh))
        cond_ok = _same(cond_s, cond_f) | ((cond_f <= cond_s)
                                           & (cond_s <= cond_f * (1 + COND_SLACK)))
    checks = [("rounded", _same(np.asarray(stored.rounded, dtype=np.float64),
                                np.asarray(fresh.rounded, dtype=np.float64)),
               stored.rounded, fresh.rounded),
              ("value", value_ok, s_hi + s_lo, f_hi + f_lo),
              ("cond", cond_ok, cond_s, cond_f)]
    if hasattr(fresh, "dist"):
        checks.append(("dist", _same(np.asarray(stored.dist, dtype=np.float64),
                                     np.asarray(fresh.dist, dtype=np.float64)),
                       stored.dist, fresh.dist))
    for key, ok, s, f in checks:
        if not np.all(ok):
            i = _first(~ok)
            shown = ", ".join(map(str, i))
            raise Mismatch(name, f"{key}[{shown}] is {hex_float(float(s[i]))} in the file, "
                                 f"the oracle gives {hex_float(float(f[i]))}")


def verify_case(case) -> None:
    """Return None if every stored expectation of the case is what the oracle computes from
    its inputs and parameters; else raise Mismatch (module doc)."""
    fresh = recompute(case)
    if set(fresh) != set(case.expected):
        raise Mismatch("expected", f"the file stores {sorted(case.expected)}, the oracle "
                                   f"gives {sorted(fresh)}")
    for name, expected in case.expected.items():
        compare(expected, fresh[name], name)


def _verify_path(path: Path) -> tuple[str, str | None]:
    """Worker: return (case id, None or the first difference as a sentence)."""
    try:
        verify_case(load_case(path))
    except CaseFileError as exc:
        return path.stem, f"refused by the loader: {exc}"
    except Mismatch as exc:
        return path.stem, f"output {exc}"
    return path.stem, None


def verify_folder(directory, jobs: int = 1, pattern: str | None = None
                  ) -> tuple[int, list[tuple[str, str]]]:
    """Return (cases checked, [(case id, difference)] in id order) for the case files of
    directory whose ids match pattern, recomputed in `jobs` processes."""
    paths = [p for p in iter_case_paths(directory) if id_matches(pattern, p.stem)]
    paths.sort(key=lambda p: -sum(q.stat().st_size for q in (p, p.with_suffix(".bin"))
                                  if q.exists()))
    if jobs <= 1 or len(paths) <= 1:
        results = list(map(_verify_path, paths))
    else:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            results = list(pool.imap_unordered(_verify_path, paths, chunksize=2))
    return len(paths), sorted((cid, problem) for cid, problem in results if problem)


def default_jobs() -> int:
    """Return the number of CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m oracle.verify",
        description="Recompute every case of a folder with the oracle from its own inputs "
                    "and parameters; exit 1 if any stored expectation differs.")
    parser.add_argument("directory", help="folder of case files (<id>.yaml)")
    parser.add_argument("--jobs", type=int, default=default_jobs(),
                        help="worker processes (default: the CPUs available)")
    parser.add_argument("--filter", default=None, metavar="PATTERN",
                        help="only ids matching this glob or regular expression")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs={args.jobs} must be >= 1")
    if not Path(args.directory).is_dir():
        parser.error(f"directory={args.directory!r} is not a directory")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    checked, problems = verify_folder(args.directory, args.jobs, args.filter)
    seconds = time.perf_counter() - start
    for case_id, problem in problems:
        print(f"{case_id}: {problem}")
    verdict = f"{len(problems)} differ from the oracle" if problems else "all match the oracle"
    print(f"verified {checked} cases in {args.directory}: {verdict} "
          f"({seconds:.1f} s, --jobs {args.jobs})", file=sys.stderr if problems else sys.stdout)
    return 1 if problems or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
