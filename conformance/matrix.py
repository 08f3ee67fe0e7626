"""The conformance matrix: every available backend through the suite, side by side.

    python -m conformance.matrix [--backends numpy,cpu,mxnet,torch,onnxruntime,jax,tensorflow] [--collect]
                                 [--report-dir DIR] [--out FILE] [-n 2] [-k EXPR]

Runs the suite once per backend, each in its own pytest subprocess
(``pytest conformance/ --backend NAME -n 2 --report-dir <own dir>``), moves the run's report
directory to ``<report-dir>/<backend>/`` (summary.json, summary.md, errors.json,
index.html), and writes ``<report-dir>/MATRIX.md``: rows are flag combination x dtype,
columns backends, cells the passing / judged tests and the worst error as a fraction of the
tolerance; then each backend's declared semantic profile and what the diagnosis found in
its failures. With ``--collect`` nothing runs: the existing ``<report-dir>/*/summary.json``
are read. A backend that does not load (missing framework, usage error) is shown as
unavailable with the reason; one whose every case skips, as skipped with the commonest
reason. Exit status: 0 when the matrix was written, 2 on a usage error.

The report directory defaults to the repository's tracked ``reports/`` (the published
reports, conformance/report_location.py), whatever the current directory; this command is
what writes there.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bnspec.flags import ALL_FLAGS, DTYPES

from .report_location import PUBLISHED_DIR
from .report_files import OUTCOMES, write_atomic

ROOT = Path(__file__).resolve().parent.parent
SUITE_DIR = Path(__file__).resolve().parent
DEFAULT_BACKENDS = ("numpy", "cpu", "mxnet", "torch", "onnxruntime", "jax", "jax-twopass",
                    "tensorflow", "openvino", "openvino-f32", "paddle")
JUDGED = ("pass", "fail", "error", "xfail", "xpass")
RUNS_DIR = ".matrix-runs"


# --- per-cell statistics (also used by the HTML report) ----------------------------------------


@dataclass
class Cell:
    """The tests of one (flag combination, dtype) of one backend."""

    counts: Counter = field(default_factory=Counter)
    worst: float | None = None  # worst fraction of tolerance, known deviations (xfail) aside

    @property
    def judged(self) -> int:
        return sum(self.counts[o] for o in JUDGED)

    @property
    def failed(self) -> int:
        return self.counts["fail"] + self.counts["error"]

    def text(self) -> str:
        """Return e.g. '38/38 · 0.41', '**36/38** · inf', 'skip' or '-'."""
        if not self.judged:
            return "skip" if self.counts["skip"] else "-"
        ratio = f"{self.counts['pass'] + self.counts['xpass']}/{self.judged}"
        if self.failed:
            ratio = f"**{ratio}**"
        if self.counts["xfail"]:
            ratio += f" ({self.counts['xfail']} xfail)"
        return ratio + (f" · {format_fraction(self.worst)}" if self.worst is not None else "")


def format_fraction(value: float) -> str:
    return f"{value:.2g}" if math.isfinite(value) else str(value)


def _fraction(value) -> float:
    return float(value)  # "inf" / "nan" strings parse too


#: Rows after the flag combinations: tests that are not forward/backward golden cases.
EXTRA_ROWS = {"qnt": "quantized path", "err": "invalid input", None: "other tests"}


def row_of(result: dict) -> tuple[str, str]:
    """Return the (row, dtype) a test counts under: (flags label, dtype) for forward and
    training-step cases, else one of EXTRA_ROWS with dtype "all"."""
    op = result.get("op")
    if op in ("fwd", "bwd") and result.get("flags"):
        return result["flags"], result.get("dtype")
    return EXTRA_ROWS.get(op, EXTRA_ROWS[None]), "all"


def cell_stats(results: list[dict]) -> dict[tuple[str, str], Cell]:
    """Return {(row, dtype): Cell} over the results of one run (see row_of)."""
    cells: dict[tuple[str, str], Cell] = {}
    for r in results:
        key = row_of(r)
        cell = cells.setdefault(key, Cell())
        cell.counts[r["outcome"]] += 1
        outputs = r.get("outputs") or {}
        if r["outcome"] in JUDGED and r["outcome"] != "xfail" and outputs:
            worst = max(_fraction(o["fraction"]) for o in outputs.values())
            cell.worst = worst if cell.worst is None else max(cell.worst, worst)
    return cells


def row_keys() -> list[tuple[str, str]]:
    """Return the matrix rows in order: every flag combination x dtype, then EXTRA_ROWS."""
    return [(f.label, d) for f in ALL_FLAGS for d in DTYPES] + [
        (label, "all") for label in EXTRA_ROWS.values()]


# --- running and collecting ---------------------------------------------------------------------


@dataclass
class Column:
    """One backend of the matrix: its report, or why there is none."""

    spec: str
    document: dict | None = None
    report_dir: Path | None = None
    reason: str | None = None  # why unavailable
    seconds: float | None = None

    @property
    def name(self) -> str:
        return self.document["environment"]["backend"]["name"] if self.document else self.spec

    @property
    def status(self) -> str:
        if self.document is None:
            return f"unavailable: {self.reason}"
        counts = self.document["counts"]
        if not any(counts[o] for o in JUDGED) and counts["skip"]:
            reasons = Counter(r.get("reason") or "" for r in self.document["results"]
                              if r["outcome"] == "skip")
            return f"every case skipped: {reasons.most_common(1)[0][0]}"
        seconds = self.seconds if self.seconds is not None else _run_seconds(self.document)
        return "ran" + (f" in {seconds:.0f} s" if seconds is not None else "")


def _run_seconds(document: dict) -> float | None:
    """Return the duration of a run from its summary's started/finished stamps."""
    env = document.get("environment", {})
    try:
        stamps = [time.mktime(time.strptime(env[k], "%Y-%m-%dT%H:%M:%S%z"))
                  for k in ("started", "finished")]
    except (KeyError, TypeError, ValueError):
        return None
    return stamps[1] - stamps[0]


def _subprocess_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "BN_BACKEND"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def suite_command(spec: str, report_dir: Path, workers: int, select: str | None,
                  extra=()) -> list[str]:
    """Return the pytest command line that runs the suite on one backend."""
    cmd = [sys.executable, "-m", "pytest", str(SUITE_DIR), "--backend", spec,
           "--report-dir", str(report_dir), "-q", "-p", "no:cacheprovider", "-o", "addopts="]
    if workers > 1 and importlib.util.find_spec("xdist") is not None:
        cmd += ["-n", str(workers)]
    if select:
        cmd += ["-k", select]
    return cmd + list(extra)


def _usage_error(output: str) -> str:
    """Return pytest's usage-error line (the backend's reason) from a run's output."""
    for line in output.splitlines():
        if line.startswith("ERROR: "):
            return line.removeprefix("ERROR: ").removeprefix("bn-conformance: ").strip()
    tail = [line for line in output.strip().splitlines() if line.strip()]
    return tail[-1].strip() if tail else "no output"


def run_backend(spec: str, report_root: Path, workers: int = 2, select: str | None = None,
                extra=(), timeout: float | None = None) -> Column:
    """Run the suite on one backend and move its report to report_root/<name>/."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec)
    scratch = report_root / RUNS_DIR / safe
    shutil.rmtree(scratch, ignore_errors=True)
    started = time.monotonic()
    try:
        proc = subprocess.run(suite_command(spec, scratch, workers, select, extra), cwd=ROOT,
                              env=_subprocess_env(), capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return Column(spec, reason=f"the run took longer than {timeout:g} s")
    seconds = time.monotonic() - started
    found = sorted(scratch.glob("*/summary.json"))
    if proc.returncode not in (0, 1) or len(found) != 1:
        output = proc.stdout + proc.stderr
        reason = (_usage_error(output) if proc.returncode == 4 else
                  "no case selected" if proc.returncode == 5 else
                  f"pytest exit code {proc.returncode}: {_usage_error(output)}")
        shutil.rmtree(scratch, ignore_errors=True)
        return Column(spec, reason=reason)
    source = found[0].parent
    target = report_root / source.name
    if target.exists():
        shutil.rmtree(target)
    shutil.move(str(source), str(target))
    shutil.rmtree(scratch, ignore_errors=True)
    _remove_if_empty(report_root / RUNS_DIR)
    document = json.loads((target / "summary.json").read_text(encoding="utf-8"))
    return Column(spec, document, target, seconds=seconds)


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def collect_backend(spec: str, report_root: Path) -> Column:
    """Return the column of an existing report: report_root/<spec>/summary.json, else the
    report whose backend spec or name is spec."""
    direct = report_root / spec / "summary.json"
    candidates = [direct] if direct.is_file() else []
    for path in sorted(report_root.glob("*/summary.json")):
        if path in candidates:
            continue
        try:
            backend = json.loads(path.read_text(encoding="utf-8"))["environment"]["backend"]
        except (OSError, ValueError, KeyError):
            continue
        if spec in (backend.get("spec"), backend.get("name")):
            candidates.append(path)
    if not candidates:
        return Column(spec, reason=f"no report in {report_root} (run without --collect)")
    path = candidates[0]
    return Column(spec, json.loads(path.read_text(encoding="utf-8")), path.parent)


# --- rendering ----------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _profile(column: Column) -> list[str]:
    if column.document is None:
        return []
    return list(column.document["environment"]["backend"].get("profile") or ())


def _diagnoses(document: dict, outcome: str = "fail") -> list[tuple[str, int, str]]:
    """Return (explanation, number of tests, an example case id), commonest first, over the
    tests of one outcome ("fail", or "xfail": the known deviations)."""
    found: dict[str, list[str]] = {}
    for r in document["results"]:
        if r["outcome"] != outcome:
            continue
        d = r.get("diagnosis")
        if d is None and r.get("op") in ("fwd", "bwd") and not r.get("outputs"):
            label = "no diagnosis: the backend raised on a valid case"
        elif d is None:
            label = f"no diagnosis: {row_of(r)[0]} (not compared with the oracle's outputs)"
        else:
            label = d.get("short") or d.get("label") or "not explained"
        found.setdefault(label, []).append(r.get("id") or r["nodeid"])
    return sorted(((label, len(ids), ids[0]) for label, ids in found.items()),
                  key=lambda t: (-t[1], t[0]))


def render(columns: list[Column], generated_by: str, report_root: Path,
           out_dir: Path) -> str:
    """Return MATRIX.md for the columns."""
    from oracle.variants import VARIANTS

    lines = [f"<!-- Generated by `{generated_by}`. Do not edit; rerun it. -->",
             "# Conformance matrix", "",
             f"Measured on {platform.platform()} ({platform.machine()}, "
             f"{os.cpu_count()} CPUs), Python {platform.python_version()}, "
             f"{time.strftime('%Y-%m-%d')}. Each backend ran the suite "
             "(`pytest conformance/ --backend NAME`) against the golden cases under its "
             "declared semantic profile.", "",
             "Cells: passing / judged tests (forward, backward and running-statistics tests "
             "of that flag combination and dtype; known deviations, listed in "
             "`conformance/known_deviations/<backend>.txt`, count as xfail), then the worst "
             "error of the other tests as a fraction of the tolerance (1 = at the tolerance; "
             "inf = a NaN, inf or exact value missed). "
             "**Bold** = failures; `skip` = every test skipped (outside the backend's "
             "capabilities); `-` = no such case.", "", "## Backends", ""]
    rows = []
    for c in columns:
        counts = c.document["counts"] if c.document else {}
        version = c.document["environment"]["backend"]["version"] if c.document else ""
        device = c.document["environment"]["backend"]["device"] if c.document else ""
        link = ""
        if c.report_dir is not None:
            rel = os.path.relpath(c.report_dir, out_dir)
            link = f"[summary]({rel}/summary.md)"
            if (c.report_dir / "index.html").is_file():
                link += f", [html]({rel}/index.html)"
        profile = ", ".join(f"`{p}`" for p in _profile(c)) or ("none" if c.document else "")
        rows.append([f"**{c.name}**" + (f" (`{c.spec}`)" if c.spec != c.name else ""),
                     version, device, c.status,
                     *(str(counts.get(o, "")) for o in OUTCOMES), profile, link])
    lines += _table(["backend", "version", "device", "status", *OUTCOMES,
                     "declared profile", "report"], rows)
    declared = [(c.name, p) for c in columns for p in _profile(c)]
    if declared:
        lines += ["", "## Declared semantic profiles", "",
                  "Known differences from MXNet 1.9.1 CPU semantics each backend declares; the "
                  "oracle computes them exactly (`oracle.variants`) and the backend is held to "
                  "them.", ""]
        lines += [f"- **{name}** `{p}`: {VARIANTS.get(p, '(unknown variant)')}"
                  for name, p in declared]
    ran = [c for c in columns if c.document is not None]
    stats = {c.spec: cell_stats(c.document["results"]) for c in ran}
    lines += ["", "## Flag combination x dtype", ""]
    body = []
    for key in row_keys():
        cells = [stats[c.spec].get(key) if c.spec in stats else None for c in columns]
        if not any(cell is not None for cell in cells):
            continue
        texts = [cell.text() if cell is not None else ("-" if c.document else "n/a")
                 for c, cell in zip(columns, cells, strict=True)]
        body.append([f"`{key[0]}`" if "/" in key[0] else key[0], key[1], *texts])
    lines += _table(["flags (mode/gamma/stats/mean-var)", "dtype", *(c.name for c in columns)],
                    body)
    for outcome, title, none in (
            ("fail", "What the diagnosis found in the failures", "No failures."),
            ("xfail", "What the diagnosis says about the known deviations (xfail)",
             "No known deviations.")):
        lines += ["", f"## {title}", ""]
        listed = False
        for c in ran:
            found = _diagnoses(c.document, outcome)
            if not found:
                continue
            listed = True
            lines += [f"### {c.name}", ""]
            lines += _table(["explained by", "tests", "example case"],
                            [[label, str(n), f"`{cid}`"] for label, n, cid in found])
            lines.append("")
        if not listed:
            lines.append(none)
    unavailable = [c for c in columns if c.document is None]
    if unavailable:
        lines += ["", "## Unavailable backends", ""]
        lines += [f"- **{c.spec}**: {c.reason}" for c in unavailable]
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.matrix", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                        help="comma-separated backend names or module:factory specs")
    parser.add_argument("--collect", action="store_true",
                        help="read existing <report-dir>/*/summary.json instead of running")
    parser.add_argument("--report-dir", default=str(PUBLISHED_DIR),
                        help="where the per-backend reports and MATRIX.md go (default: the "
                             "repository's published reports/)")
    parser.add_argument("--out", default=None, help="default: <report-dir>/MATRIX.md")
    parser.add_argument("-n", "--workers", type=int, default=2,
                        help="pytest-xdist workers per run (default 2; 1: serial)")
    parser.add_argument("-k", "--select", default=None, help="pytest -k expression per run")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds one backend's run may take")
    args, extra = parser.parse_known_args(argv)
    specs = [s.strip() for s in args.backends.split(",") if s.strip()]
    if not specs:
        parser.error("--backends names no backend")
    report_root = Path(args.report_dir).resolve()
    out = Path(args.out).resolve() if args.out else report_root / "MATRIX.md"
    columns = []
    for spec in specs:
        column = (collect_backend(spec, report_root) if args.collect else
                  run_backend(spec, report_root, args.workers, args.select, extra, args.timeout))
        print(f"{spec}: {column.status}", file=sys.stderr)
        columns.append(column)
    command = shlex.join(["python", "-m", "conformance.matrix",
                          *(argv if argv is not None else sys.argv[1:])])
    write_atomic(out, render(columns, command, report_root, out.parent))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
