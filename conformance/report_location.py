"""Where a run's reports go, and how paths are written inside them.

Two places, so that a run never dirties a source tree:

- A run's reports (``pytest conformance/ --backend NAME``, ``pytest --pyargs conformance``)
  go to ``RUN_DIR`` (``bn-reports/``) in the directory the run started in, unless
  ``--report-dir DIR`` says otherwise. The suite creates that folder with a ``.gitignore``
  holding ``*``, as pytest does for ``.pytest_cache``: git ignores it in this repository and
  in a user's own repository alike, and CI can still upload it as an artifact.
- The published reports (MATRIX.md, FRAMEWORKS.md, bench/, and one full-run report per
  backend) live in the repository's tracked ``reports/`` folder (``PUBLISHED_DIR``). Only
  ``python -m conformance.matrix`` writes there, or a suite run given ``--publish``, which a
  source checkout alone has and which a partial run (-k, -m, --cases, node ids) may not use.

Paths written into a report are ``portable``: relative to the directory holding the
conformance package (the repository root in a source checkout, site-packages once installed)
when they lie inside it, so committed reports carry no path of the machine that made them.
"""
from __future__ import annotations

import os
from pathlib import Path

#: The directory holding the conformance package: the repository root of a source checkout.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
#: The folder of a run's reports, relative to the directory the run started in.
RUN_DIR = "bn-reports"
#: The tracked folder of published reports in a source checkout.
PUBLISHED_DIR = PACKAGE_ROOT / "reports"
IGNORE_ALL = "# Created by bn-conformance: the reports of a run are not tracked.\n*\n"


def is_source_checkout() -> bool:
    """Return True if the conformance package runs from a source checkout (it has the
    repository's pyproject.toml and reports/ next to it)."""
    return (PACKAGE_ROOT / "pyproject.toml").is_file() and PUBLISHED_DIR.is_dir()


def choose(invocation_dir: Path, report_dir: str | None, publish: bool,
           partial: list[str]) -> Path:
    """Return the report folder of a run (module doc): --publish, --report-dir, else RUN_DIR
    in invocation_dir. partial names the options that make the run a partial one.

    Raises ValueError naming the option when --publish cannot be honoured.
    """
    if not publish:
        return Path(invocation_dir, report_dir if report_dir is not None else RUN_DIR)
    if report_dir is not None:
        raise ValueError(f"--publish writes to {PUBLISHED_DIR}; it cannot be combined with "
                         f"--report-dir={report_dir!r}")
    if not is_source_checkout():
        raise ValueError("--publish writes the repository's reports/ folder, which only a "
                         f"source checkout has (conformance runs from {PACKAGE_ROOT})")
    if partial:
        raise ValueError("--publish replaces a published full-run report: it cannot be "
                         f"combined with a partial run ({', '.join(partial)})")
    return PUBLISHED_DIR


def ensure_ignored(folder: Path) -> None:
    """Create folder with a .gitignore that ignores everything in it, unless it exists."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".gitignore"
    try:
        with open(marker, "x", encoding="utf-8") as f:
            f.write(IGNORE_ALL)
    except FileExistsError:
        pass


def portable(path: Path | str, invocation_dir: Path | None = None) -> str:
    """Return path as written in a report: relative to PACKAGE_ROOT when inside it, else
    relative to invocation_dir when inside that, else absolute (POSIX separators)."""
    resolved = Path(path).resolve()
    for base in (PACKAGE_ROOT, invocation_dir):
        if base is None:
            continue
        base = Path(base).resolve()
        if resolved == base:
            return "."
        if base in resolved.parents:
            return resolved.relative_to(base).as_posix()
    return str(resolved)


def portable_args(args, invocation_dir: Path | None = None) -> list[str]:
    """Return command-line words with every absolute path inside PACKAGE_ROOT (alone or as
    the value of ``--opt=PATH``) made portable (see portable)."""
    out = []
    for word in args:
        option, eq, value = word.partition("=") if word.startswith("-") else ("", "", word)
        if os.path.isabs(value) and _inside_root(value):
            word = f"{option}{eq}{portable(value, invocation_dir)}"
        out.append(word)
    return out


def _inside_root(path: str) -> bool:
    resolved = Path(path).resolve()
    return resolved == PACKAGE_ROOT or PACKAGE_ROOT in resolved.parents
