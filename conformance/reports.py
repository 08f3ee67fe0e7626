"""The run's reports: ``<report dir>/<backend>/summary.json`` and ``summary.md``.

Only the process that owns the run (pytest's, or xdist's controller) writes. Results reach
it as test reports: each test's record (case facts and per-output numbers) travels in the
report's ``user_properties`` under ``PROPERTY``, which pytest-xdist carries from the
workers. Both files are replaced atomically (temporary file + os.replace), so a report is
always one whole run.

summary.json (``SCHEMA``; a new field keeps the version, a changed meaning bumps it)::

    schema        "bn-conformance-report/1"
    generated_by  the pytest command line of the run
    environment   backend {name, version, device, spec, target, how, profile}, tolerance,
                  cases_dir, known_deviations, versions {python, platform, packages},
                  command, cwd, xdist_workers, started, finished
    counts        {pass, fail, error, skip, xfail, xpass}: number of tests
    results       one per test, sorted by case id then node id:
                  nodeid, test, id, op, dtype, flags (label), family, outcome, reason
                  (skip / xfail / error), duration, message (first line, failures), and
                  outputs {name: {dtype, limit, n, n_bad, worst_units, fraction, ulp,
                  index, kind, problem}} for the outputs the test judged; profile_effect
                  (declared variants that changed the case), and for failures diagnosis
                  (conformance/diagnosis.py) and repro
    profile       {declared: [{name, description}], unused: [names]} (conformance/profiles.py)

Per-element error samples go to errors.json, and index.html is written next to summary.md
(conformance/report_extras.py).

Non-finite numbers are written as the strings "inf" / "nan".
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .report_extras import after_write, before_write
from .report_files import OUTCOMES, write_atomic
from .report_md import render

SCHEMA = "bn-conformance-report/1"
PROPERTY = "bn_conformance"
#: pytest-xdist's phase name in the report of a test whose worker process died. Such a test
#: is a "fail" whose reason starts with "crashed:" or "timed out:"; a collected test that
#: never ran is an "error" whose reason starts with "not run:": every test is listed.
CRASH_PHASE = "???"
NOT_RUN = ("not run: the session stopped before this test (-x/--maxfail, an interrupt, or "
           "more crashed xdist workers than --max-worker-restart allows)")


@dataclass
class Collector:
    """Per-test outcomes gathered from pytest's reports (setup, call, teardown)."""

    results: dict[str, dict] = field(default_factory=dict)
    expected: dict[str, None] = field(default_factory=dict)  # collected node ids, in order

    def expect(self, nodeids) -> None:
        """Note collected tests, so that one that never reports is still listed."""
        self.expected.update(dict.fromkeys(nodeids))

    def add(self, report, crash_note: str | None = None) -> None:
        """Fold one phase's report into its test's result; crash_note (how long the test had
        run, whether past its timeout) goes into the reason of a crashed test."""
        entry = self.results.setdefault(report.nodeid, {
            "nodeid": report.nodeid, "test": _test_name(report.nodeid), "outcome": None,
            "reason": None, "duration": 0.0})
        entry["duration"] += float(getattr(report, "duration", 0.0) or 0.0)
        for name, value in getattr(report, "user_properties", ()):
            if name == PROPERTY:
                entry.update(json.loads(value))
        outcome, reason = _phase_outcome(report)
        if report.when == CRASH_PHASE and crash_note:
            first, newline, rest = reason.partition("\n")  # the note follows its first line
            reason = (crash_note if crash_note.startswith("timed out")
                      else f"{first} {crash_note}{newline}{rest}")
        if outcome is None or entry["outcome"] in ("fail", "error"):
            return
        if entry["outcome"] is None or outcome in ("fail", "error"):
            entry["outcome"], entry["reason"] = outcome, reason
        if outcome in ("fail", "error") and reason and not entry.get("message"):
            entry["message"] = reason


def _test_name(nodeid: str) -> str:
    """Return the test function's name of a node id: a/test_x.py::test_x[case] -> test_x."""
    return nodeid.rpartition("::")[2].partition("[")[0]


def _phase_outcome(report) -> tuple[str | None, str | None]:
    """Return (outcome, reason) one phase decides, or (None, None) if it decides nothing."""
    wasxfail = getattr(report, "wasxfail", None)
    if report.when == CRASH_PHASE:
        return "fail", f"crashed: {report.longrepr}"
    if report.when == "call":
        if report.passed:
            return ("xpass", wasxfail) if wasxfail is not None else ("pass", None)
        if report.skipped:
            return ("xfail", wasxfail) if wasxfail is not None else ("skip", _skip_reason(report))
        return "fail", _crash_line(report)
    if report.skipped:
        return "skip", _skip_reason(report)
    if report.failed:
        return "error", f"{report.when}: {_crash_line(report)}"
    return None, None


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, (tuple, list)) and len(longrepr) == 3:
        text = str(longrepr[2])
        return text.removeprefix("Skipped: ")
    return str(longrepr)


def _crash_line(report) -> str:
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    text = getattr(crash, "message", None) or str(getattr(report, "longreprtext", ""))
    return text.strip().splitlines()[0] if text.strip() else ""


def counts(results: list[dict]) -> dict[str, int]:
    """Return {outcome: number of tests} for every outcome (zeros included)."""
    out = {name: 0 for name in OUTCOMES}
    for r in results:
        if r["outcome"] in out:
            out[r["outcome"]] += 1
    return out


def summary(collector: Collector, environment: dict, generated_by: str) -> dict:
    """Return the summary.json document of a run: every reported test, and every collected
    test that never reported (NOT_RUN); a crashed or unrun test, which sent no record, takes
    its id from the node id's brackets."""
    entries = {nodeid: dict(entry) for nodeid, entry in collector.results.items()}
    for nodeid in collector.expected:
        entries.setdefault(nodeid, {"nodeid": nodeid, "test": _test_name(nodeid),
                                    "outcome": "error", "reason": NOT_RUN, "duration": 0.0})
    for entry in entries.values():
        unfinished = (entry.get("reason") or "").startswith(("crashed:", "timed out:", "not run:"))
        if unfinished and not entry.get("id") and entry["nodeid"].endswith("]"):
            entry["id"] = entry["nodeid"].partition("[")[2][:-1]
    results = sorted(entries.values(),
                     key=lambda r: (r.get("id") or r["nodeid"], r["nodeid"]))
    return {"schema": SCHEMA, "generated_by": generated_by, "environment": environment,
            "counts": counts(results), "results": results}


def backend_dir(report_dir: Path, backend_name: str) -> Path:
    """Return the report directory of a backend (its name made safe for a path)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in backend_name)
    return report_dir / (safe if safe.strip(".") else "_")


def write(report_dir: Path, backend_name: str, document: dict) -> Path:
    """Write summary.json and summary.md of a run, then errors.json and index.html
    (conformance/report_extras.py); return the directory written."""
    out = backend_dir(report_dir, backend_name)
    document, samples = before_write(document)  # samples leave for errors.json
    write_atomic(out / "summary.json", json.dumps(document, indent=1, allow_nan=False) + "\n")
    write_atomic(out / "summary.md", render(document))
    after_write(out, document, samples)
    return out
