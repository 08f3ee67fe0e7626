"""Meta-test: the conformance suite fails every mutant backend and passes the numpy one.

Each mutant (tests/mutants/<name>.py) is the numpy backend with one classic mistake. For
each, the suite runs in a subprocess, as a user would run it::

    python -m pytest conformance/ --backend tests.mutants.<name>:factory -k <SELECT> ...

restricted to the mutant's SELECT (the cases able to catch that mistake) and stopped after
MAXFAIL failures, so the whole meta-test stays within a minute or two on 2 cores. A mutant
is caught when pytest exits with 1 (tests failed, not a usage or collection error) and the
run's report (summary.json) shows a failing case whose failing outputs include one the
mistake corrupts (the mutant's OUTPUTS). The numpy backend must pass the whole suite, and
each selection must hold cases it passes: so what fails a mutant is its mistake.
$BN_MUTANT_CASES, if set, names another case directory (passed on as ``--cases``).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # for tests.mutants when pytest runs without the root on sys.path
    sys.path.insert(0, str(ROOT))

from tests import mutants

MUTANTS = mutants.names()
MAXFAIL = 10  # failures per mutant: enough to see which cases catch it, and fast
TIMEOUT_S = 300
CASES = ["--cases", os.environ["BN_MUTANT_CASES"]] if os.environ.get("BN_MUTANT_CASES") else []


def run_suite(backend: str, select: str | None, report_dir: Path, *extra: str):
    """Run the conformance suite on backend for the cases matching select (all if None);
    return (exit code, output tail, report), report being the run's summary.json or None."""
    cmd = [sys.executable, "-m", "pytest", "conformance/", "--backend", backend,
           *(["-k", select] if select else []), "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
           "--report-dir", str(report_dir), "-o", "addopts=", *CASES,
           # in process: these runs judge verdicts, and the whole suite must fit TIMEOUT_S on
           # a busy 2-core CI machine (a child process costs about a fifth more; crash
           # isolation has its own tests in tests/robustness)
           "--isolate", "never", *extra]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "BN_BACKEND"))}  # nothing from the outer run
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    reports = sorted(report_dir.glob("*/summary.json"))
    report = json.loads(reports[0].read_text()) if len(reports) == 1 else None
    return proc.returncode, (proc.stdout + proc.stderr)[-3000:], report


def _matches(select: str, case_id: str) -> bool:
    """Return True if a -k expression (names, and, or, not, parentheses) matches a case id
    the way pytest's -k does: each name is a substring of the id."""
    python = re.sub(r"[A-Za-z_][A-Za-z0-9_.\-]*",
                    lambda m: m.group(0) if m.group(0) in ("and", "or", "not")
                    else repr(m.group(0) in case_id), select)
    return bool(eval(python, {"__builtins__": {}}))  # only True/False/and/or/not/()


def failing_names(result: dict) -> set[str]:
    """Return the outputs a failed case got wrong, or the exception the backend raised."""
    bad = {name for name, out in (result.get("outputs") or {}).items()
           if out.get("n_bad") or out.get("problem")}
    if not bad and result.get("reason"):
        bad.add(result["reason"].split(":", 1)[0])
    return bad


@pytest.mark.parametrize("name", MUTANTS)
def test_suite_catches_mutant(name, tmp_path):
    module = mutants.load(name)
    code, tail, report = run_suite(f"tests.mutants.{name}:factory", module.SELECT, tmp_path,
                                   f"--maxfail={MAXFAIL}")
    where = f"[mutant {name}, -k {module.SELECT!r}, exit code {code}]"
    assert code != 0, f"the suite passed mutant {name}, but should fail it {where}"
    assert code == 1 and report is not None, (
        f"the suite stopped with exit code {code}, but should fail cases {where}\n{tail}")
    failed = [r for r in report["results"] if r["outcome"] == "fail"]
    caught = {r.get("id", r["nodeid"]): sorted(failing_names(r) & set(module.OUTPUTS)) for r in failed}
    caught = {cid: names for cid, names in caught.items() if names}
    assert caught, (
        f"the cases failed, but none in the outputs {module.OUTPUTS} its mistake corrupts: "
        f"{ {r['id']: sorted(failing_names(r)) for r in failed} } {where}")
    print(f"\n{name}: caught by " + "; ".join(f"{cid} ({', '.join(names)})"
                                             for cid, names in caught.items()))


def test_suite_passes_numpy_backend(tmp_path):
    """The whole suite (a superset of every mutant's selection) passes the numpy backend."""
    code, tail, report = run_suite("backends.numpy_backend:NumpyBackend", None, tmp_path)
    counts = report["counts"] if report else None
    failed = [r.get("id", r["nodeid"]) for r in report["results"] if r["outcome"] == "fail"] if report else []
    assert code == 0 and counts and counts["pass"] > 0, (
        f"the suite failed the numpy backend: exit code {code}, {counts}, failed {failed}\n"
        f"{tail}")
    for name in MUTANTS:  # every selection holds cases the correct backend passes
        select = mutants.load(name).SELECT
        assert any(_matches(select, r.get("id", "")) and r["outcome"] == "pass"
                   for r in report["results"]), f"-k {select!r} of mutant {name} passes nothing"
