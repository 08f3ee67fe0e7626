"""What the semantic profiles, the diagnosis and the HTML report add to a run's reports.

``conformance.reports.write`` calls ``before_write`` on the summary document before it
writes summary.json / summary.md, and ``after_write`` once they are written:

- before: each result's per-element ``samples`` (conformance/samples.py) move out of the
  document into the sidecar ``errors.json``, so summary.json stays readable; the
  ``profile`` block (declared variants with descriptions, and those that changed no case)
  is added (conformance/profiles.py);
- after: ``errors.json`` and ``index.html`` (conformance/html_report.py) are written next
  to summary.md, and a declared variant that changed no case is warned about.

errors.json (``report_files.ERRORS_SCHEMA``)::

    schema        "bn-conformance-errors/1"
    generated_by  the pytest command line of the run
    samples       {nodeid: {output: {n, n_exact, ulp: [...], units: [...], rc: [...]}}}
"""
from __future__ import annotations

import json
from pathlib import Path

from . import html_report, profiles
from .report_files import ERRORS_FILE, ERRORS_SCHEMA, HTML_FILE, write_atomic


def before_write(document: dict) -> tuple[dict, dict]:
    """Return (the document without per-element samples and with its profile block,
    {nodeid: samples}). The document passed in is not modified."""
    samples, results = {}, []
    for r in document["results"]:
        if "samples" in r:
            r = dict(r)
            samples[r["nodeid"]] = r.pop("samples")
        results.append(r)
    out = {**document, "results": results}
    out["profile"] = profiles.report_block(out)
    return out, samples


def after_write(out: Path, document: dict, samples: dict) -> None:
    """Write errors.json and index.html into out; warn about unused declared variants."""
    write_atomic(out / ERRORS_FILE, json.dumps(
        {"schema": ERRORS_SCHEMA, "generated_by": document.get("generated_by"),
         "samples": samples}, separators=(",", ":"), allow_nan=False) + "\n")
    write_atomic(out / HTML_FILE, html_report.render(document, samples))
    profiles.warn_unused(document)
