"""A backend that segfaults, aborts, exits or hangs on one case fails that case with a clear
reason, the run goes on, and the report lists every case.

The suite runs in a subprocess, as a user runs it, on four golden cases copied into a
temporary --cases directory, with a backend from tests/robustness/crashing_backends.py that
fails on one of them ($BN_CRASH_CASE). Three ways to run a fragile backend are covered:

- pytest-xdist (``-n 1``): the crash takes down the worker, xdist replaces it, the plugin
  reports the test as "crashed:" (or "timed out:" when pytest-timeout's thread method
  stopped a hang that no signal can interrupt); the case's second test then runs with the
  backend in a child process (``--isolate auto``) and fails with BackendCrashed;
- one process (``-p no:xdist``): isolated by default, an exit or a hang fails its test with
  BackendCrashed; in process (``--isolate never``) SystemExit and Python-level hangs
  (signal method) fail their test;
- backends.worker (``--backend backends.worker:from_env``): the backend runs in a child
  process; a crash or a timeout fails the call with WorkerCrashed / WorkerTimeout.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CASES = ("fwd_infer_fixgamma_batchstats_meanvar_axis1_fp32_4x3_normal",
         "fwd_train_fixgamma_batchstats_meanvar_axis1_fp32_2x3x5_normal",
         "fwd_infer_freegamma_globalstats_nomeanvar_axis1_fp64_4x3_normal",
         "bwd_train_freegamma_batchstats_nomeanvar_axis1_fp32_4x3_normal")
TARGET = CASES[1]
TESTS = {"fwd": ("test_forward", "test_running_stats"),
         "bwd": ("test_backward", "test_running_stats")}
MODULE = "tests.robustness.crashing_backends"
HANG_S = 3  # the per-case timeout the hang scenarios use


def run_suite(tmp_path: Path, backend: str, *args: str, env: dict | None = None,
              target: str = TARGET) -> tuple[int, str, dict | None]:
    """Run the suite on the copied cases; return (exit code, output tail, summary.json)."""
    cases = tmp_path / "cases"
    cases.mkdir(exist_ok=True)
    for case_id in CASES:
        shutil.copy(ROOT / "cases" / f"{case_id}.yaml", cases)
    reports = tmp_path / "reports"
    cmd = [sys.executable, "-m", "pytest", "conformance/test_forward.py",
           "conformance/test_backward.py", "conformance/test_running_stats.py",
           "--backend", backend, "--cases", str(cases), "--report-dir", str(reports), "-q",
           "-p", "no:cacheprovider", "-o", "addopts=", *args]
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("PYTEST_", "BN_BACKEND", "BN_WORKER"))}
    full_env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                             os.environ.get("PYTHONPATH")])),
                    BN_CRASH_CASE=target, **(env or {}))
    proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=240, check=False)
    found = sorted(reports.glob("*/summary.json"))
    doc = json.loads(found[0].read_text()) if len(found) == 1 else None
    return proc.returncode, (proc.stdout + proc.stderr)[-3000:], doc


def expected_tests() -> set[tuple[str, str]]:
    return {(test, cid) for cid in CASES for test in TESTS[cid[:3]]}


def check_report(code: int, tail: str, doc: dict | None, reason: str,
                 crashed: set[str] = frozenset({TARGET})) -> dict:
    """Assert: exit code 1, every (test, case) listed once, the crashed cases failed with a
    reason matching the pattern, every other case passed. Return {(test, id): result}."""
    __tracebackhide__ = True
    assert code == 1 and doc is not None, f"exit code {code}, report {doc is not None}\n{tail}"
    results = {(r["test"], r["id"]): r for r in doc["results"]}
    assert len(results) == len(doc["results"]), "a test is listed twice"
    assert set(results) == expected_tests(), (
        f"the report lists {sorted(results)}, but should list {sorted(expected_tests())}")
    for (test, cid), r in results.items():
        if cid in crashed:
            assert r["outcome"] == "fail" and re.search(reason, r["reason"] or ""), (
                f"{test}[{cid}]: outcome={r['outcome']} reason={r['reason']!r}, but should "
                f"fail with a reason matching {reason!r}\n{tail}")
        else:
            assert r["outcome"] == "pass", f"{test}[{cid}]: {r['outcome']} {r['reason']!r}"
    return results


CRASHED = r"^crashed: worker 'gw\d+' crashed while running .*\(after [\d.]+ s: the process"
#: After the first crashed worker, --isolate auto serves the backend from a child process.
ISOLATED = (r"BackendCrashed: crashed: \w+\(\) of \w+ ended the backend's process "
            r"\((signal SIG\w+|exit status \d+)")
#: The per-case timeout of the scenarios that run a child process: the child restarted after
#: a crash or a hang starts inside the next test's time, which must hold it on a busy machine.
ISOLATED_HANG_S = 8
TIMED_OUT_ISOLATED = (rf"BackendCrashed: timed out: \w+\(\) of \w+ ran past "
                      rf"{0.9 * ISOLATED_HANG_S:g} s \(90% of the per-case timeout\)")


SLOW = pytest.mark.slow  # each run starts several interpreters: the variants run in -m slow


def test_crash_under_xdist(tmp_path):
    """The first test of the target case crashes its worker; the second runs isolated.
    (Abort and exit: tests/robustness/test_crash_isolation.py.)"""
    code, tail, doc = run_suite(tmp_path, f"{MODULE}:segfault", "-n", "1")
    check_report(code, tail, doc, f"{CRASHED}|{ISOLATED}")


def test_uninterruptible_hang_under_xdist(tmp_path):
    """Every signal blocked inside native code: only the thread method can stop it."""
    code, tail, doc = run_suite(tmp_path, f"{MODULE}:hang_in_c", "-n", "1",
                                "--timeout", str(ISOLATED_HANG_S), "--timeout-method", "thread")
    check_report(code, tail, doc, rf"^timed out: ran [\d.]+ s, past the per-case timeout "
                                  rf"of {ISOLATED_HANG_S} s|{TIMED_OUT_ISOLATED}")


@pytest.mark.parametrize("kind, isolate, timeout, reason", [
    ("system_exit", "never", HANG_S, r"SystemExit: 3"),
    ("system_exit", "auto", 60, ISOLATED),
    pytest.param("hang_in_python", "never", HANG_S, r"Timeout \(>3\.0s\)", marks=SLOW),
    # The child is killed at 90% of the timeout; pytest-timeout's own signal, if the machine
    # is slow enough for it to come first, stops the wait for the child just as well.
    ("hang_in_c", "auto", ISOLATED_HANG_S,
     (rf"BackendCrashed: timed out: \w+\(\) of \w+ ran past {0.9 * ISOLATED_HANG_S:g} s|"
      rf"Timeout \(>{ISOLATED_HANG_S}\.0s\)"))])
def test_one_process(tmp_path, kind, isolate, timeout, reason):
    """In process (--isolate never) SystemExit and a Python hang fail their test; isolated
    (the default in one process) an exit and even a hang no signal can stop do."""
    code, tail, doc = run_suite(tmp_path, f"{MODULE}:{kind}", "-p", "no:xdist",
                                "--timeout", str(timeout), "--isolate", isolate)
    check_report(code, tail, doc, reason)


@pytest.mark.parametrize("kind, reason", [
    ("segfault", r"WorkerCrashed: .* died during \w+\(\) \(signal SIGSEGV"),
    pytest.param("abort", r"WorkerCrashed: .* died during \w+\(\) \(signal SIGABRT",
                 marks=SLOW),
    pytest.param("exit_process", r"WorkerCrashed: .* died during \w+\(\) \(exit status 3",
                 marks=SLOW),
    ("hang_in_c", rf"WorkerTimeout: .* took more than {HANG_S}(\.0)? s"),
])
def test_out_of_process_worker(tmp_path, kind, reason):
    code, tail, doc = run_suite(tmp_path, "backends.worker:from_env", "-p", "no:xdist",
                                env={"BN_WORKER_FACTORY": f"{MODULE}:{kind}",
                                     "BN_WORKER_TIMEOUT": str(HANG_S)})
    check_report(code, tail, doc, reason)


def test_report_lists_tests_never_run(tmp_path):
    """Every case crashes and xdist may not restart a worker: the session stops after the
    first crash, and the report still lists every test, the rest as not run."""
    code, tail, doc = run_suite(tmp_path, f"{MODULE}:segfault", "-n", "1",
                                "--max-worker-restart", "0", target="*")
    assert code == 1 and doc is not None, f"exit code {code}\n{tail}"
    results = {(r["test"], r["id"]): r for r in doc["results"]}
    assert set(results) == expected_tests(), sorted(results)
    outcomes = sorted(r["outcome"] for r in results.values())
    assert outcomes == ["error"] * (len(results) - 1) + ["fail"], outcomes
    for r in results.values():
        assert re.search(CRASHED if r["outcome"] == "fail" else r"^not run: ", r["reason"]), r


@pytest.mark.parametrize("args, method", [(["-n", "1"], "thread"),
                                          (["-p", "no:xdist"], "signal"),
                                          (["-p", "no:xdist", "--timeout", "7"], None)])
def test_default_per_case_timeout(tmp_path, args, method):
    """Without --timeout every test of the suite gets the plugin's per-case timeout: the
    thread method in an xdist worker, the signal method in one process; with --timeout the
    run's own setting applies (no marker)."""
    from conformance.plugin import DEFAULT_CASE_TIMEOUT_S

    probe = tmp_path / "probe.jsonl"
    code, tail, _ = run_suite(tmp_path, "numpy", "-p", "tests.robustness.timeout_probe", *args,
                              env={"BN_TIMEOUT_PROBE": str(probe)}, target="")
    assert code == 0, tail
    seen = [json.loads(line) for line in probe.read_text().splitlines()]
    assert {s["nodeid"].rpartition("[")[2][:-1] for s in seen} == set(CASES)
    want = None if method is None else {"args": [DEFAULT_CASE_TIMEOUT_S],
                                        "kwargs": {"method": method}}
    for s in seen:
        got = None if s["args"] is None else {"args": s["args"], "kwargs": s["kwargs"]}
        assert got == want, f"{s['nodeid']}: timeout marker {got}, but should be {want}"
