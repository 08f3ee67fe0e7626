"""Where reports go (a run's: bn-reports/, git-ignored; published: the tracked reports/) and
how paths are written in them (relative to the repository, no path of the machine)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conformance import report_location as loc

ROOT = Path(__file__).resolve().parents[2]


def test_a_run_writes_to_bn_reports_in_its_directory_unless_told(tmp_path):
    assert loc.choose(tmp_path, None, False, []) == tmp_path / "bn-reports"
    assert loc.choose(tmp_path, "out", False, ["-k 'fp32'"]) == tmp_path / "out"
    assert loc.choose(tmp_path, "/abs/where", False, []) == Path("/abs/where")


def test_publish_writes_the_tracked_reports_folder_of_a_full_run(tmp_path):
    assert loc.is_source_checkout() and loc.PUBLISHED_DIR == ROOT / "reports"
    assert loc.choose(tmp_path, None, True, []) == ROOT / "reports"
    with pytest.raises(ValueError, match=r"cannot be combined with --report-dir='out'"):
        loc.choose(tmp_path, "out", True, [])
    with pytest.raises(ValueError, match=r"a partial run \(-k 'fp32', --cases\)"):
        loc.choose(tmp_path, None, True, ["-k 'fp32'", "--cases"])


def test_publish_needs_a_source_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(loc, "PACKAGE_ROOT", tmp_path)  # as in site-packages: no pyproject
    monkeypatch.setattr(loc, "PUBLISHED_DIR", tmp_path / "reports")
    with pytest.raises(ValueError, match="only a source checkout has"):
        loc.choose(tmp_path, None, True, [])


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_default_folder_is_ignored_by_git_in_any_repository(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    folder = tmp_path / "bn-reports"
    loc.ensure_ignored(folder)
    loc.ensure_ignored(folder)  # a second run leaves the marker as it is
    (folder / "numpy").mkdir()
    (folder / "numpy" / "summary.json").write_text("{}")
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"],
                            cwd=tmp_path, capture_output=True, text=True, check=True)
    assert status.stdout == ""
    assert (folder / ".gitignore").read_text() == loc.IGNORE_ALL


def test_paths_in_reports_are_relative_to_the_repository(tmp_path):
    assert loc.portable(ROOT / "cases") == "cases"
    assert loc.portable(ROOT / "conformance" / "known_deviations" / "torch.txt") == \
        "conformance/known_deviations/torch.txt"
    assert loc.portable(ROOT) == "."
    assert loc.portable(tmp_path / "mine.txt", tmp_path) == "mine.txt"
    assert loc.portable(tmp_path / "mine.txt") == str(tmp_path / "mine.txt")  # elsewhere
    words = ["-m", "pytest", str(ROOT / "conformance"), f"--report-dir={ROOT}/reports/x",
             "--backend", "numpy", str(tmp_path)]
    assert loc.portable_args(words) == ["-m", "pytest", "conformance",
                                        "--report-dir=reports/x", "--backend", "numpy",
                                        str(tmp_path)]
