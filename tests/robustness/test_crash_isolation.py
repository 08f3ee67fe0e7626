"""A backend that crashes on a whole shape class costs only those cases, with and without
pytest-xdist (issue 18's acceptance).

The suite runs in a subprocess, as a user runs it, on 41 float32 forward cases copied into a
temporary --cases directory: 19 of shape 2x3x5, on which the backend from
tests/robustness/crashing_backends.py segfaults, aborts or exits ($BN_CRASH_CASE is the
pattern ``*_2x3x5_*``), and 22 of shapes 4x3 and 3x4, on which it is the numpy backend.
More crashes than xdist's default restart budget for 2 workers (8), so the run only
finishes because the plugin serves the backend from a child process after the first crash
(``--isolate auto``, conformance/isolation.py).

Segfaults are checked with ``-n 2`` and in one process, abort under ``-n 2`` and exit in
one process. Every run must show: 22 passed and 19 failed in pytest's summary line; the same counts in
summary.json; each failed case's reason naming the signal or the exit status; a repro
command for each failed case in pytest's output.
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
MODULE = "tests.robustness.crashing_backends"
CRASHING, N_CRASHING = "_2x3x5_", 19
HEALTHY = ("_4x3_", "_3x4_")
N_HEALTHY = 22
STATUS = {"segfault": r"signal SIGSEGV \(-11\)", "abort": r"signal SIGABRT \(-6\)",
          "exit_process": r"exit status 3"}


def select_cases(target: Path) -> list[str]:
    """Copy the 41 cases (see module doc) into target; return their ids."""
    names = sorted(p.name for p in (ROOT / "cases").glob("fwd_*_fp32_*.yaml"))
    crashing = [n for n in names if CRASHING in n][:N_CRASHING]
    healthy = [n for n in names if any(s in n for s in HEALTHY)][:N_HEALTHY]
    assert (len(crashing), len(healthy)) == (N_CRASHING, N_HEALTHY), "cases/ changed"
    target.mkdir()
    for name in crashing + healthy:
        shutil.copy(ROOT / "cases" / name, target)
    return [n.removesuffix(".yaml") for n in crashing + healthy]


def run(tmp_path: Path, kind: str, *args: str) -> tuple[int, str, dict | None]:
    """Run test_forward on the selected cases; return (exit code, output, summary.json)."""
    cases, reports = tmp_path / "cases", tmp_path / "reports"
    select_cases(cases)
    cmd = [sys.executable, "-m", "pytest", "conformance/test_forward.py", "--backend",
           f"{MODULE}:{kind}", "--cases", str(cases), "--report-dir", str(reports),
           "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--timeout", "60", *args]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "BN_BACKEND", "BN_WORKER"))}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
               BN_CRASH_CASE=f"*{CRASHING}*")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
                          check=False)
    found = sorted(reports.glob("*/summary.json"))
    doc = json.loads(found[0].read_text()) if len(found) == 1 else None
    return proc.returncode, proc.stdout + proc.stderr, doc


def pytest_counts(output: str) -> dict[str, int]:
    """Return {outcome: n} from pytest's final summary line (e.g. '19 failed, 22 passed')."""
    line = [s for s in output.splitlines()
            if re.search(r"\b\d+ (passed|failed)\b.* in [\d.]+s\b", s)]
    assert line, f"no pytest summary line in the output:\n{output[-3000:]}"
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", line[-1])
            if word not in ("warning", "warnings")}


XDIST, ONE_PROCESS = ["-n", "2"], ["-p", "no:xdist"]


# Segfaults both ways; abort and exit one way each: the signal reaches the message by the
# same path whatever it is (the child's exit status, or the xdist worker's).
@pytest.mark.parametrize("kind, args", [("segfault", XDIST), ("segfault", ONE_PROCESS),
                                        ("abort", XDIST), ("exit_process", ONE_PROCESS)],
                         ids=["segfault-xdist2", "segfault-one", "abort-xdist2", "exit-one"])
def test_crashing_shape_class_costs_only_its_cases(tmp_path, kind, args):
    code, output, doc = run(tmp_path, kind, *args)
    tail = output[-3000:]
    assert code == 1 and doc is not None, f"exit code {code}, report {doc is not None}\n{tail}"
    counted = pytest_counts(output)
    assert counted == {"failed": N_CRASHING, "passed": N_HEALTHY}, (
        f"pytest counted {counted}, but should count {N_CRASHING} failed, {N_HEALTHY} passed"
        f"\n{tail}")
    report = {k: v for k, v in doc["counts"].items() if v}
    assert report == {"fail": N_CRASHING, "pass": N_HEALTHY}, (
        f"summary.json counts {report}, but should agree with pytest's {counted}")
    for r in doc["results"]:
        crashing = CRASHING in r["id"]
        assert r["outcome"] == ("fail" if crashing else "pass"), (r["id"], r["outcome"])
        if crashing:
            assert re.search(rf"crashed.*\({STATUS[kind]}\)", r["reason"]), (
                f"{r['id']}: reason={r['reason']!r}, but should name {STATUS[kind]}")
            assert f"repro: python -m conformance.repro {r['id']} " in output, (
                f"{r['id']}: no repro command in pytest's output")


def test_only_calls_a_pipe_carries_exactly_go_to_the_child():
    """Read-only, strided, foreign-byte-order, object or aliased arrays, and arguments that
    are neither arrays nor scalars, stay in process: their verdict depends on what they are
    here (conformance/bad_inputs.py UNUSUAL and the overlap checks)."""
    import numpy as np

    from conformance.isolation import crosses_intact

    x, g = np.ones((4, 3), np.float32), np.ones(3, np.float32)
    assert crosses_intact((x, g), {"eps": 1e-3, "axis": 1, "training": True, "name": None})
    readonly = g.copy()
    readonly.flags.writeable = False
    for odd in (readonly, x[:, 0], g.astype(">f4"), np.array([1.0, None], dtype=object),
                x[0], [1.0, 2.0, 3.0]):
        assert not crosses_intact((x, odd), {}), odd
    assert not crosses_intact((x,), {"axis": (1,)})


PID_BACKEND = '''
import os
import sys

from backends.numpy_backend import NumpyBackend


class PidBackend(NumpyBackend):
    def forward(self, *args, **kwargs):
        with open(os.environ["BN_PID_FILE"], "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\\n")
        return super().forward(*args, **kwargs)


def factory():
    return PidBackend()


def parent_only():
    if sys.argv[0] == "-c":  # the worker child runs python -c
        raise RuntimeError("this backend does not start in a child process")
    return PidBackend()
'''


@pytest.mark.parametrize("factory, in_child", [("factory", True), ("parent_only", False)])
def test_one_process_runs_a_file_target_in_a_child(tmp_path, factory, in_child):
    """Without xdist every forward call runs in another process than pytest's, also for a
    ``path/to/file.py:factory`` target; a backend that cannot start in a child runs in
    process, with a warning saying so."""
    source = tmp_path / "pidbn.py"
    source.write_text(PID_BACKEND)
    cases = select_cases(tmp_path / "cases")[N_CRASHING - 2:N_CRASHING + 2]
    keep = tmp_path / "some"
    keep.mkdir()
    for case_id in cases:
        shutil.copy(tmp_path / "cases" / f"{case_id}.yaml", keep)
    pids = tmp_path / "pids.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "BN_"))}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
               BN_PID_FILE=str(pids))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "conformance/test_forward.py", "--backend",
         f"{source}:{factory}", "--cases", str(keep), "--report-dir", str(tmp_path / "r"),
         "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-o", "addopts="],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, output[-3000:]
    seen = [int(line) for line in pids.read_text().split()]
    assert len(seen) == len(cases), (seen, output[-2000:])
    if in_child:
        assert proc.pid not in seen, f"forward ran in pytest's process {proc.pid}: {seen}"
    else:
        assert set(seen) == {proc.pid}, f"forward should run in pytest's process: {seen}"
        assert "IsolationUnavailable" in output and "does not start in a child" in output
