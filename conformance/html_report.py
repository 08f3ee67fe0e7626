"""index.html: one self-contained page per run (no external file, images as data URIs).

    python -m conformance.html_report reports/<backend>    # re-render from the saved run

Sections: the run (backend, tolerance, command), the counts, the declared semantic profile,
the flag combination x dtype matrix of this backend, plots, the failures with their
diagnosis and repro command, skips by reason and known deviations. Plots (matplotlib, PNG
embedded as base64): the error in ulp per data dtype (histogram), the error against the
relative condition of the element (scatter), and the worst fraction of tolerance per flag
combination x dtype (heat map). The plots use the per-element samples of errors.json
(conformance/samples.py): for every judged output its worst element and up to a dozen
evenly spaced others. Without matplotlib the page says that the plots are omitted.
"""
from __future__ import annotations

import base64
import html
import io
import math
import sys
from collections import Counter
from pathlib import Path

from bnspec.flags import ALL_FLAGS, DTYPES

from .matrix import EXTRA_ROWS, Cell, cell_stats, format_fraction
from .report_files import HTML_FILE, OUTCOMES, load, write_atomic

MAX_FAILURES = 300  # failures listed in full; the rest are counted
RC_MAX = 1e12  # relative conditions beyond this (values next to 0) are drawn at it
DTYPE_COLORS = {"float64": "#1f77b4", "float32": "#2ca02c", "float16": "#d62728",
                "bfloat16": "#9467bd"}
OUTCOME_COLORS = {"pass": "#2e7d32", "fail": "#c62828", "error": "#6a1b9a",
                  "skip": "#757575", "xfail": "#ef6c00", "xpass": "#0277bd"}

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 24px auto;
       max-width: 1150px; color: #212121; background: #fff; }
h1 { font-size: 26px; margin-bottom: 4px; } h2 { font-size: 20px; margin-top: 32px;
     border-bottom: 1px solid #ddd; padding-bottom: 4px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.meta td:first-child { font-weight: 600; }
.badge { display: inline-block; padding: 6px 14px; margin: 4px 6px 4px 0; color: #fff;
         border-radius: 6px; font-size: 15px; font-weight: 600; }
code { font-size: 12px; background: #f6f6f6; padding: 1px 3px; word-break: break-all; }
.good { background: #e8f5e9; } .near { background: #fff8e1; } .bad { background: #ffebee; }
.none { color: #999; }
figure { display: inline-block; margin: 8px 16px 8px 0; } figcaption { font-size: 12px;
         color: #555; max-width: 530px; }
img.plot { border: 1px solid #ddd; max-width: 530px; }
.note { color: #555; font-style: italic; }
.failure { border-left: 4px solid #c62828; background: #fafafa; padding: 4px 10px;
           margin: 8px 0; font-size: 13px; }
.failure .test { color: #555; } .failure .diagnosis { color: #1a237e; }
code.id { font-weight: 600; background: none; }
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _num(value) -> float:
    return float(value)


# --- plots ------------------------------------------------------------------------------------


def _points(document: dict, samples: dict):
    """Yield (data dtype, ulp, rc, fraction) of every sampled element."""
    for r in document["results"]:
        per_output = samples.get(r["nodeid"]) or {}
        outputs = r.get("outputs") or {}
        for name, s in per_output.items():
            limit = float(outputs.get(name, {}).get("limit") or 1.0)
            for ulp, units, rc in zip(s["ulp"], s["units"], s["rc"], strict=True):
                if ulp is None:
                    continue
                fraction = units / limit if units is not None else math.inf
                yield r.get("dtype"), ulp, rc, fraction


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _histogram(plt, points) -> str | None:
    import numpy as np

    by_dtype: dict[str, list[float]] = {}
    for dtype, ulp, _, _ in points:
        by_dtype.setdefault(dtype, []).append(ulp)
    if not by_dtype:
        return None
    low, high = 1e-3, 1e9
    top = min(max(max(v) for v in by_dtype.values()), high)
    bins = np.logspace(-3, max(1.0, math.log10(max(top, 1.0)) + 0.5), 40)
    fig, ax = plt.subplots(figsize=(6.2, 3.6))
    for dtype in [d for d in DTYPES if d in by_dtype]:
        values = np.clip(np.array(by_dtype[dtype]), low, bins[-1] * 0.999)
        ax.hist(values, bins=bins, histtype="step", linewidth=1.6,
                color=DTYPE_COLORS.get(dtype), label=f"{dtype} ({len(values)})")
    ax.set_xscale("log")
    ax.set_xlabel("error in ulp of the output dtype (clipped to the first and last bins)")
    ax.set_ylabel("sampled elements")
    ax.set_title("Error distribution per data dtype")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    try:
        return _png(fig)
    finally:
        plt.close(fig)


def _scatter(plt, points) -> str | None:
    import numpy as np

    rows = [(d, u, min(rc, RC_MAX), f) for d, u, rc, f in points if rc is not None and rc > 0]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.2, 3.6))
    for dtype in [d for d in DTYPES if any(r[0] == d for r in rows)]:
        sel = [r for r in rows if r[0] == dtype]
        rc = np.array([r[2] for r in sel])
        ulp = np.clip(np.array([r[1] for r in sel]), 1e-3, None)
        bad = np.array([r[3] > 1 for r in sel])
        ax.scatter(rc[~bad], ulp[~bad], s=7, alpha=0.5, color=DTYPE_COLORS.get(dtype),
                   label=dtype)
        if bad.any():
            ax.scatter(rc[bad], ulp[bad], s=28, marker="x", color=DTYPE_COLORS.get(dtype),
                       label=f"{dtype}: out of tolerance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"relative condition cond / |value| (1 = well conditioned; "
                  f"clipped at {RC_MAX:.0e})")
    ax.set_ylabel("error in ulp (min 1e-3)")
    ax.set_title("Error vs condition scale of the element")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    try:
        return _png(fig)
    finally:
        plt.close(fig)


def _heatmap(plt, cells: dict[tuple[str, str], Cell]) -> str | None:
    import numpy as np
    from matplotlib.colors import LogNorm

    flags = [f.label for f in ALL_FLAGS]
    dtypes = [d for d in DTYPES if any(k[1] == d for k in cells)]
    if not dtypes:
        return None
    grid = np.full((len(flags), len(dtypes)), np.nan)
    for i, f in enumerate(flags):
        for j, d in enumerate(dtypes):
            cell = cells.get((f, d))
            if cell is not None and cell.worst is not None:
                grid[i, j] = cell.worst
    finite = grid[np.isfinite(grid)]
    vmax = max(10.0, float(finite.max()) if finite.size else 10.0)
    shown = np.where(np.isinf(grid), vmax, grid)
    fig, ax = plt.subplots(figsize=(6.2, 6.0))
    image = ax.imshow(np.clip(shown, 1e-3, None), cmap="RdYlGn_r",
                      norm=LogNorm(vmin=1e-3, vmax=vmax), aspect="auto")
    for i in range(len(flags)):
        for j in range(len(dtypes)):
            cell = cells.get((flags[i], dtypes[j]))
            if cell is None or cell.worst is None:
                ax.text(j, i, "skip" if cell is not None else "-", ha="center", va="center",
                        fontsize=7, color="#555")
                continue
            label = format_fraction(cell.worst) + (" ✗" if cell.failed else "")
            ax.text(j, i, label, ha="center", va="center", fontsize=7,
                    fontweight="bold" if cell.failed else "normal")
    ax.set_xticks(range(len(dtypes)), dtypes)
    ax.set_yticks(range(len(flags)), flags, fontsize=7)
    ax.set_title("Worst error / tolerance (✗ = failures)")
    fig.colorbar(image, ax=ax, shrink=0.7, label="fraction of tolerance")
    try:
        return _png(fig)
    finally:
        plt.close(fig)


def plots(document: dict, samples: dict, cells) -> tuple[list[tuple[str, str, str]], str | None]:
    """Return ([(title, data URI, caption)], note): the plots, or a note saying why none."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return [], ("Plots omitted: matplotlib is not installed "
                    "(pip install matplotlib, or the project's [test] extra).")
    points = list(_points(document, samples))
    made = []
    try:
        for title, uri, caption in (
            ("Error histogram", _histogram(plt, points),
             "Error in ulp of the output dtype of the sampled elements (the worst and up to "
             "12 evenly spaced elements of every judged output), per data dtype."),
            ("Error vs condition", _scatter(plt, points),
             "Each sampled element: its error in ulp against cond/|value|. A correct "
             "implementation's ulp error grows with the relative condition; crosses are "
             "elements out of tolerance."),
            ("Heat map", _heatmap(plt, cells),
             "Worst error as a fraction of the tolerance per flag combination "
             "(mode/gamma/stats/mean-var) and dtype."),
        ):
            if uri is not None:
                made.append((title, uri, caption))
    except Exception as exc:  # a plotting failure must not lose the report
        return made, f"Plots incomplete: {type(exc).__name__}: {exc}"
    note = None if made else "No plots: the run judged no output elements."
    return made, note


# --- the page ---------------------------------------------------------------------------------


def _table(header, rows, classes=None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = classes[i] if classes else None
        cells = "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row)
        body.append(f"<tr{f' class={chr(34)}{cls}{chr(34)}' if cls else ''}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell_html(cell: Cell | None) -> str:
    if cell is None:
        return '<td class="none">-</td>'
    if not cell.judged:
        return '<td class="none">skip</td>'
    worst = cell.worst
    cls = "bad" if cell.failed else ("near" if worst is not None and worst > 0.5 else "good")
    text = f"{cell.counts['pass'] + cell.counts['xpass']}/{cell.judged}"
    if cell.counts["xfail"]:
        text += f" ({cell.counts['xfail']} xfail)"
    if worst is not None:
        text += f" · {format_fraction(worst)}"
    return f'<td class="{cls} num">{_e(text)}</td>'


def _failures(results) -> str:
    bad = [r for r in results if r["outcome"] in ("fail", "error")]
    if not bad:
        return "<p>No failures.</p>"
    blocks = []
    for r in bad[:MAX_FAILURES]:
        diagnosis = (r.get("diagnosis") or {}).get("text")
        repro = r.get("repro")
        lines = [f'<div class="failure"><div><code class="id">{_e(r.get("id") or r["nodeid"])}'
                 f"</code> <span class=\"test\">{_e(r.get('test'))}, {_e(r['outcome'])}</span>"
                 "</div>",
                 f"<div>{_e((r.get('message') or r.get('reason') or '')[:500])}</div>"]
        if diagnosis:
            lines.append(f'<div class="diagnosis"><b>diagnosis:</b> {_e(diagnosis)}</div>')
        if repro:
            lines.append(f"<div><b>repro:</b> <code>{_e(repro)}</code></div>")
        blocks.append("".join(lines) + "</div>")
    more = (f"<p class='note'>{len(bad) - MAX_FAILURES} more failures are in summary.json."
            "</p>" if len(bad) > MAX_FAILURES else "")
    return "".join(blocks) + more


def _diagnosis_counts(results) -> str:
    counts = Counter()
    for r in results:
        if r["outcome"] == "fail":
            d = r.get("diagnosis") or {}
            counts[d.get("short") or d.get("label") or ("not explained" if d else
                                                         "no diagnosis")] += 1
    if not counts:
        return ""
    rows = [[_e(label), f'<td class="num">{n}</td>'] for label, n in counts.most_common()]
    return "<h3>Failures by diagnosis</h3>" + _table(["explained by", "failed tests"], rows)


def render(document: dict, samples: dict | None = None) -> str:
    """Return the HTML page of a run (summary document, per-element samples)."""
    samples = samples or {}
    env, results = document["environment"], document["results"]
    b = env["backend"]
    cells = cell_stats(results)
    parts = ["<!doctype html>", f"<!-- Generated by `{_e(document.get('generated_by'))}`. "
             "Do not edit; rerun the suite. -->", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>Conformance report: {_e(b['name'])}</title>", f"<style>{CSS}</style>",
             "</head><body>", f"<h1>Conformance report: {_e(b['name'])}</h1>"]
    meta = [("backend", f"{b['name']} {b['version']} ({b.get('target')}, {b.get('how')})"),
            ("device", b.get("device")), ("tolerance profile", env.get("tolerance")),
            ("cases", env.get("cases_dir")),
            ("known deviations", env.get("known_deviations") or "none"),
            ("command", env.get("command")), ("finished", env.get("finished"))]
    parts.append('<table class="meta">' + "".join(
        f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in meta) + "</table>")
    counts = document["counts"]
    parts.append("<h2>Summary</h2><div>" + "".join(
        f'<span class="badge" style="background:{OUTCOME_COLORS[o]}">{_e(o)}: {counts[o]}'
        "</span>" for o in OUTCOMES) + "</div>")
    parts.append("<h2>Declared semantic profile</h2>")
    block = document.get("profile") or {"declared": [], "unused": []}
    if block["declared"]:
        parts.append("<ul>" + "".join(
            f"<li><code>{_e(d['name'])}</code>: {_e(d['description'])}"
            + (" <em>(changed no case of this run)</em>" if d["name"] in block["unused"] else "")
            + "</li>" for d in block["declared"]) + "</ul>")
    else:
        parts.append("<p>None: judged against MXNet 1.9.1 CPU semantics (the golden cases)."
                     "</p>")
    dtypes = [d for d in DTYPES if any(k[1] == d for k in cells)]
    rows = [[f"<code>{_e(f.label)}</code>", *(_cell_html(cells.get((f.label, d)))
                                              for d in dtypes)]
            for f in ALL_FLAGS if any((f.label, d) in cells for d in dtypes)]
    for label in EXTRA_ROWS.values():
        if (label, "all") in cells:
            rows.append([_e(label), _cell_html(cells[(label, "all")]),
                         *([""] * (len(dtypes) - 1))])
    parts.append("<h2>Flag combination × dtype</h2><p>Passing / judged tests and the worst "
                 "error as a fraction of the tolerance (1 = at the tolerance).</p>")
    parts.append(_table(["flags (mode/gamma/stats/mean-var)", *dtypes], rows))
    parts.append("<h2>Plots</h2>")
    made, note = plots(document, samples, cells)
    if note:
        parts.append(f'<p class="note" id="plots-note">{_e(note)}</p>')
    for title, uri, caption in made:
        parts.append(f'<figure><img class="plot" alt="{_e(title)}" src="{uri}">'
                     f"<figcaption><b>{_e(title)}.</b> {_e(caption)}</figcaption></figure>")
    bad = sum(1 for r in results if r["outcome"] in ("fail", "error"))
    parts.append(f"<h2>Failures ({bad})</h2>")
    parts.append(_failures(results))
    parts.append(_diagnosis_counts(results))
    reasons = Counter(r.get("reason") or "" for r in results if r["outcome"] == "skip")
    if reasons:
        parts.append("<h2>Skipped, by reason</h2>" + _table(
            ["tests", "reason"], [[f'<td class="num">{n}</td>', _e(reason)]
                                  for reason, n in reasons.most_common()]))
    known = [r for r in results if r["outcome"] in ("xfail", "xpass")]
    if known:
        parts.append(f"<h2>Known deviations ({len(known)})</h2>" + _table(
            ["case", "outcome", "reason"],
            [[f"<code>{_e(r.get('id'))}</code>", _e(r["outcome"]), _e(r.get("reason"))]
             for r in known]))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def main(argv=None) -> int:
    """Re-render index.html of report directories from summary.json and errors.json."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m conformance.html_report REPORT_DIR [...]", file=sys.stderr)
        return 2
    for arg in argv:
        out = Path(arg)
        document, samples = load(out)
        write_atomic(out / HTML_FILE, render(document, samples))
        print(f"wrote {out / HTML_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
