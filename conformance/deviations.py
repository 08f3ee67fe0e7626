"""Known deviations: lists of cases expected to fail, each with its reason.

The shipped list of a backend is ``conformance/known_deviations/<backend name>.txt``
(``--known-deviations FILE`` replaces it); a user adds their own with ``--deviations FILE``
(repeatable). All use one format, one entry a line::

    # comment lines and blank lines are ignored
    fwd_*_f16_*_constant          # float16 constant channels: var + eps rounded in float16
    test_running_stats::bwd_*_f16_*  # only this test of these cases

The pattern is an ``fnmatch`` pattern matched against the whole case id (``*`` any run,
``?`` one character, ``[...]`` a set), optionally prefixed by ``test_name::`` to limit it
to one test function. A generated test (bad inputs, properties) has no case: its pattern is
matched against the test's parameter id, e.g. ``test_invalid_input::overlap_*_forward``. A
test without parameters (a property test such as ``test_dx_sums_to_zero``) is named by its
function name alone, exactly: ``test_dx_sums_to_zero  # reason`` (no wildcards; case ids never
begin with ``test_``, so the entry lists that one test and no case). The reason after ``#`` is
required. A matching test becomes an
``xfail`` whose reason names the entry (file, line, pattern) and gives its reason. The xfail
is strict, as pytest's ``xfail_strict``: a listed test that passes fails the run
("[XPASS(strict)] known deviation FILE:LINE ..."), so a list names exactly what deviates;
``--deviations-lenient`` lets it pass as XPASS instead. An entry that matches no collected
test warns, so the lists do not rot.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import pytest

from .report_location import portable

DEVIATIONS_DIR = Path(__file__).resolve().parent / "known_deviations"


class DeviationFileError(ValueError):
    """A malformed known-deviations file; the message names the file and line."""


class UnmatchedDeviationWarning(pytest.PytestWarning):
    """A known-deviation entry that matches no collected test."""


@dataclass(frozen=True)
class Deviation:
    """One entry: a case-id pattern, optionally for one test function, and its reason."""

    pattern: str
    reason: str
    test: str | None  # test function name, or None for every test of the case
    source: str  # "file:line", for messages

    def matches(self, test_name: str, case_id: str) -> bool:
        """Return True if this entry covers test test_name on case case_id."""
        if self.test is not None and self.test != test_name:
            return False
        return fnmatch.fnmatchcase(case_id, self.pattern)

    def names_test(self, test_name: str) -> bool:
        """Return True if this entry names the test without parameters test_name: its whole
        pattern is that name, exactly (no test:: scope, no wildcards)."""
        return self.test is None and self.pattern == test_name


def default_path(backend_name: str) -> Path:
    """Return the known-deviations file of a backend (which may not exist)."""
    return DEVIATIONS_DIR / f"{backend_name}.txt"


def parse(text: str, source: str) -> list[Deviation]:
    """Return the entries of a known-deviations file's text (see module doc)."""
    entries = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{lineno}"
        pattern, sep, reason = line.partition("#")
        pattern, reason = pattern.strip(), reason.strip()
        if not sep or not reason:
            raise DeviationFileError(
                f"{where}: entry {pattern!r} has no reason (write 'PATTERN  # reason')")
        if len(pattern.split()) != 1:
            raise DeviationFileError(f"{where}: pattern={pattern!r} must be one word")
        test, _, case_pattern = pattern.rpartition("::")
        if not case_pattern:
            raise DeviationFileError(f"{where}: pattern={pattern!r} has no case-id part")
        entries.append(Deviation(case_pattern, reason, test or None, where))
    return entries


def load(path: Path | None) -> list[Deviation]:
    """Return the entries of the file at path ([] when path is None or does not exist)."""
    if path is None or not path.is_file():
        return []
    return parse(path.read_text(encoding="utf-8"), portable(path, Path.cwd()))


def first_match(entries: list[Deviation], test_name: str, case_id: str) -> Deviation | None:
    """Return the first entry covering (test_name, case_id), or None."""
    return next((e for e in entries if e.matches(test_name, case_id)), None)


def first_naming(entries: list[Deviation], test_name: str) -> Deviation | None:
    """Return the first entry that names the test without parameters test_name, or None."""
    return next((e for e in entries if e.names_test(test_name)), None)


def xfail_reason(entry: Deviation) -> str:
    """Return the xfail reason of a test an entry covers: the entry's place, its pattern and
    its reason (pytest prefixes "[XPASS(strict)]" when such a test passes)."""
    scope = f"{entry.test}::" if entry.test else ""
    return f"known deviation {entry.source} {scope}{entry.pattern}: {entry.reason}"


def unmatched_message(entry: Deviation) -> str:
    return (f"{entry.source}: known deviation {entry.pattern!r}"
            f"{f' (test {entry.test})' if entry.test else ''} matches no collected test")
