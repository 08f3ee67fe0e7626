"""What every report writer shares: the outcome names, the report directory's file names and
schemas, the atomic write, and reading a written report back.

A leaf of the report modules: ``reports`` (the run's summary), ``report_md``,
``report_extras``, ``html_report`` and ``matrix`` import it, and it imports none of them, so
data flows one way: the run's document is handed to the writers, which never call back.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

#: A test's outcome in summary.json, in the order the reports list them.
OUTCOMES = ("pass", "fail", "error", "skip", "xfail", "xpass")
#: errors.json: per-element error samples (conformance/report_extras.py writes it).
ERRORS_SCHEMA = "bn-conformance-errors/1"
ERRORS_FILE = "errors.json"
#: index.html: the self-contained page (conformance/html_report.py renders it).
HTML_FILE = "index.html"


def write_atomic(path: Path, text: str) -> None:
    """Replace the file at path with text in one step (temporary file + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load(out: Path) -> tuple[dict, dict]:
    """Return (summary document, samples) of a report directory (samples {} without
    errors.json)."""
    out = Path(out)
    document = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    path = out / ERRORS_FILE
    samples = json.loads(path.read_text(encoding="utf-8"))["samples"] if path.is_file() else {}
    return document, samples
