"""index.html: one self-contained page per run, and that it renders in a real browser.

A small run of a mutant backend (failures with a diagnosis) writes the page; the tests
check its content and that it needs no other file, that it degrades to a note without
matplotlib, and, in headless Chromium (the Debian package ``chromium``; skipped with the
reason when it is not installed), that the screenshot is not blank and that every image
decoded (naturalWidth > 0, read back from the DOM after the load event).
"""
from __future__ import annotations

import builtins
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conformance import html_report, report_files
from tests.conformance.test_mutants import run_suite

SELECT = "fwd and train and batchstats and 2x3x5 and normal and (fp32 or fp16)"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BROWSER_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("html")
    code, tail, report = run_suite("tests.mutants.unbiased_variance:factory", SELECT, root)
    assert code == 1 and report is not None, tail
    return root / "mutant-unbiased-variance"


def test_page_is_self_contained_with_three_plots(report_dir):
    page = (report_dir / "index.html").read_text()
    assert page.startswith("<!doctype html>")
    images = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(images) == 3 and all(s.startswith("data:image/png;base64,") for s in images)
    assert not re.search(r'(src|href)="(?!data:)', page), "the page refers to another file"
    assert "<h2>Failures (" in page and "matches the oracle with variant variance_unbiased" in page
    assert "python -m conformance.repro fwd_train_" in page
    assert "Flag combination × dtype" in page and "train/fixgamma/batchstats/meanvar" in page


def test_samples_live_in_errors_json_not_in_the_summary(report_dir):
    document, samples = report_files.load(report_dir)
    assert all("samples" not in r for r in document["results"])
    judged = [r for r in document["results"] if r.get("outputs")]
    assert judged and all(r["nodeid"] in samples for r in judged)
    sample = next(iter(samples[judged[0]["nodeid"]].values()))
    assert set(sample) == {"n", "n_exact", "ulp", "units", "rc"}
    assert 1 <= len(sample["ulp"]) <= 13


def test_rerender_from_saved_run_without_matplotlib(report_dir, monkeypatch):
    document, samples = report_files.load(report_dir)
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    page = html_report.render(document, samples)
    assert "<img" not in page and "Plots omitted: matplotlib is not installed" in page
    assert "matches the oracle with variant variance_unbiased" in page


def test_cli_rerenders_the_page(report_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(report_dir, copy)
    (copy / "index.html").unlink()
    assert html_report.main([str(copy)]) == 0
    assert (copy / "index.html").read_text().count('src="data:image/png;base64,') == 3


# --- in a browser -----------------------------------------------------------------------------

MARKER_SCRIPT = """<script>
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute('data-images-loaded', ok.length + '/' + images.length);
});
</script>"""


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium)")


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--no-first-run",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S,
                          check=False)


def test_page_renders_in_headless_chromium(report_dir, tmp_path):
    browser = _browser()
    shot = tmp_path / "shot.png"
    done = _chromium(browser, tmp_path / "profile-1", f"--screenshot={shot}",
                     "--window-size=1200,2000", (report_dir / "index.html").as_uri())
    assert shot.is_file(), f"no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    plt_image = pytest.importorskip("matplotlib.image")
    pixels = plt_image.imread(str(shot))[..., :3]
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    assert float(pixels.std()) > 0.05, "the screenshot is blank"
    inked = (pixels < 0.9).any(axis=-1).mean()  # anything but the white page
    assert float(inked) > 0.02, f"only {inked:.2%} of the screenshot is drawn"

    marked = tmp_path / "marked.html"
    marked.write_text((report_dir / "index.html").read_text().replace(
        "</body>", MARKER_SCRIPT + "</body>"))
    dom = _chromium(browser, tmp_path / "profile-2", "--dump-dom", "--virtual-time-budget=5000",
                    marked.as_uri())
    found = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom.stdout)
    assert found, f"the marker script did not run (exit {dom.returncode}): {dom.stderr[-2000:]}"
    loaded, total = map(int, found.groups())
    assert total == 3 and loaded == total, f"{loaded} of {total} images decoded"
