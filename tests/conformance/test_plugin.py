"""The suite run as a user runs it, in a subprocess (pytester), on fixture cases and fake
backends (case_fixtures.py): ids, skips, messages, known deviations, usage errors, reports
(also under pytest-xdist), JUnit XML and the repro command."""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from case_fixtures import FAKE_BACKENDS, write_suite

import conformance

pytest_plugins = ["pytester"]

SUITE_DIR = Path(conformance.__file__).resolve().parent
ROOT = SUITE_DIR.parent
N_TESTS = 13  # 4 fwd x (forward, running_stats) + 2 bwd x (backward, running_stats) + 1 err


def with_root_on_path(monkeypatch) -> None:
    """Make the repository importable in the subprocesses (a source checkout need not be
    installed)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [
        str(ROOT), os.environ.get("PYTHONPATH")])))


@pytest.fixture
def suite(pytester, monkeypatch):
    with_root_on_path(monkeypatch)
    monkeypatch.delenv("BN_BACKEND", raising=False)
    ids = write_suite(pytester.path / "cases")
    pytester.makepyfile(fakebn=FAKE_BACKENDS)
    return SimpleNamespace(ids=ids, cases=pytester.path / "cases",
                           reports=pytester.path / "reports", pytester=pytester)


def run(suite, backend: str | None, *args: str):
    words = [str(SUITE_DIR), "--cases", str(suite.cases), "--report-dir", str(suite.reports),
             "-p", "no:cacheprovider", "-p", "no:randomly", *args]
    if backend is not None:
        words += ["--backend", backend]
    return suite.pytester.runpytest_subprocess(*words)


def report(suite, name="fake") -> dict:
    return json.loads((suite.reports / name / "summary.json").read_text())


def test_good_backend_passes_and_ids_are_case_ids(suite):
    result = run(suite, "fakebn:Good", "-v")
    result.assert_outcomes(passed=N_TESTS)
    for op, test in (("fwd", "test_forward"), ("bwd", "test_backward"), ("err", "test_errors")):
        for cid in suite.ids[op]:
            result.stdout.fnmatch_lines([f"*::{test}[[]{cid}[]] PASSED*"])


@pytest.mark.parametrize("expr, tokens", [
    ("fp16", ["_fp16_"]),
    ("bf16", ["_bf16_"]),
    ("meanvar and not nomeanvar", ["_meanvar_"]),
    ("err", ["err_"]),
])
def test_k_selects_by_id_token(suite, expr, tokens):
    result = run(suite, "fakebn:Good", "--collect-only", "-q", "-k", expr)
    selected = [line for line in result.outlines if "::test_" in line]
    everything = [cid for ids in suite.ids.values() for cid in ids]
    wanted = [cid for cid in everything if all(t in cid for t in tokens)]
    assert wanted and {line.split("[")[1].rstrip("]") for line in selected} == set(wanted)


def test_header_names_backend_and_options(suite):
    result = run(suite, "fakebn:Good", "--tolerance", "framework")
    result.stdout.fnmatch_lines([
        "bn-conformance backend: fake 0.0, device cpu [[]fakebn:Good; --backend[]]",
        f"bn-conformance tolerance: framework; cases: {suite.cases} (7); *",
    ])


def test_failure_message_format_and_repro(suite):
    result = run(suite, "fakebn:OffByUlps")
    result.assert_outcomes(passed=N_TESTS - 2, failed=2)
    cid = suite.ids["fwd"][0]
    text = result.stdout.str()
    line = re.search(r"Failed: (y\[0,1\]=.*)", text).group(1)
    assert re.fullmatch(
        r"y\[0,1\]=-?[0-9.e-]+ \(-?0x1\.[0-9a-f]+p[+-]\d+\) but should be -?[0-9.e-]+ "
        r"\(-?0x1\.[0-9a-f]+p[+-]\d+\) \(err 40 ulp, [0-9.]+ x tol-unit > tol 8\) "
        rf"\[{cid} on fake\]", line), line
    assert f"repro: python -m conformance.repro {cid} --backend fakebn:OffByUlps --cases " \
           f"{suite.cases}" in text
    assert "case: toy fwd float32 2x3 train/fixgamma/batchstats/nomeanvar" in text


def test_nan_where_finite_fails(suite):
    result = run(suite, "fakebn:NanDx")
    result.assert_outcomes(passed=N_TESTS - 2, failed=2)
    result.stdout.fnmatch_lines(["*Failed: dx[[]1,2[]]=nan (nan) but should be * "
                                 "(NaN where the oracle is finite) [[]bwd_*on fake[]]"])


def test_running_stats_must_come_back_exactly_after_forward(suite):
    result = run(suite, "fakebn:RunningInForward", "-rf")
    result.assert_outcomes(passed=N_TESTS - 4, failed=4)
    failed = [line for line in result.outlines if line.startswith("FAILED")]
    assert len(failed) == 4 and all("test_running_stats[fwd_" in line for line in failed)
    result.stdout.fnmatch_lines(["*Failed: running_mean[[]*cond is 0: must be exact*"])


def test_unsupported_cases_skip_with_the_reason(suite):
    result = run(suite, "fakebn:F32Only", "-rs")
    result.assert_outcomes(passed=3, skipped=N_TESTS - 3)
    result.stdout.fnmatch_lines_random([
        "SKIPPED [[]2[]] *: fake: dtype float16 is not among its dtypes [[]'float32'[]]",
        "SKIPPED [[]4[]] *: fake: it has no backward",
        "SKIPPED [[]2[]] *: fake: rank 4 is outside its ranks 2..2",
    ])


def test_backend_exception_on_valid_case_names_case_and_repro(suite):
    result = run(suite, "fakebn:Raises", "-k", "fwd_ and fp32 and 2x3_")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*RuntimeError: kernel launch failed",
                                 "*fwd_*_fp32_2x3_normal on fake*the backend raised on a valid*",
                                 "*repro: python -m conformance.repro fwd_*"])


@pytest.mark.parametrize("backend, problem", [
    ("fakebn:Good", None),
    ("fakebn:Silent", "returned ['running_mean', 'running_var', 'y'] but should raise "
                      "ValueError mentioning 'gamma'"),
    ("fakebn:WritesFirst", "raised ValueError('gamma.shape=(4,) must be (3,)') as it should, "
                           "but first changed running_mean in place"),
    ("fakebn:WrongMessage", "raised ValueError('bad shape') but its message should mention "
                            "'gamma'"),
])
def test_invalid_input_cases(suite, backend, problem):
    result = run(suite, backend, "-k", "err_")
    if problem is None:
        result.assert_outcomes(passed=1)
        return
    result.assert_outcomes(failed=1)
    assert f"Failed: {problem} [err_gamma_length_fp32_2x3 on fake]" in result.stdout.str()


def test_known_deviations_xfail_and_unmatched_entries_warn(suite):
    (suite.pytester.path / "dev.txt").write_text(
        "# header\nfwd_*_fp32_*   # y off by 40 ulp\n"
        "test_backward::bwd_*_fp64_*  # matches nothing\n")
    result = run(suite, "fakebn:OffByUlps", "--known-deviations", "dev.txt", "-rxX",
                 "--deviations-lenient")
    # both fp32 fwd cases: test_forward fails -> xfail; test_running_stats passes -> xpass
    # The unmatched entry's warning is matched below by its text; other warnings (from
    # plugins of the environment) may come on top, so the count is not pinned.
    result.assert_outcomes(passed=N_TESTS - 4, xfailed=2, xpassed=2)
    result.stdout.fnmatch_lines([
        "*UnmatchedDeviationWarning: dev.txt:3: known deviation 'bwd_*_fp64_*' "
        "(test test_backward) matches no collected test",
    ])
    result.stdout.fnmatch_lines(
        ["XFAIL *test_forward*known deviation dev.txt:2 fwd_*_fp32_*: y off by 40 ulp"])
    assert result.ret == 0


def test_listed_deviation_that_passes_fails_the_run_naming_the_entry(suite):
    (suite.pytester.path / "dev.txt").write_text("fwd_*_fp32_*   # y off by 40 ulp\n")
    result = run(suite, "fakebn:OffByUlps", "--known-deviations", "dev.txt")
    # test_forward fails as listed (xfail); test_running_stats passes: strict, so it fails
    result.assert_outcomes(passed=N_TESTS - 4, xfailed=2, failed=2)
    result.stdout.fnmatch_lines(["_* test_running_stats[[]fwd_*_fp32_* _*",
                                 "[[]XPASS(strict)[]] known deviation dev.txt:1 fwd_*_fp32_*: "
                                 "y off by 40 ulp"] * 2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    doc = report(suite)
    assert doc["counts"]["fail"] == 2 and doc["counts"]["xpass"] == 0
    assert all("XPASS(strict)" in r["message"] for r in doc["results"] if r["outcome"] == "fail")


DX_OFF = """
from backends.numpy_backend import NumpyBackend


class DxOff(NumpyBackend):
    \"\"\"dx + 1 everywhere: no channel's dx sums to zero.\"\"\"

    def backward(self, *args, **kw):
        out = super().backward(*args, **kw)
        out["dx"] = out["dx"] + 1
        return out
"""


@pytest.mark.parametrize("backend, outcome", [("dxoff:DxOff", {"xfailed": 1}),
                                              ("numpy", {"failed": 1})])
def test_a_test_without_parameters_is_listed_by_its_name(pytester, monkeypatch, backend,
                                                         outcome):
    """test_dx_sums_to_zero (a property test: no case, no parameter id) listed by its name:
    failing, it is an xfail naming the entry; passing, an XPASS(strict) that fails the run."""
    with_root_on_path(monkeypatch)
    monkeypatch.delenv("BN_BACKEND", raising=False)
    pytester.makepyfile(dxoff=DX_OFF)
    (pytester.path / "dev.txt").write_text("test_dx_sums_to_zero  # dx does not sum to zero\n")
    result = pytester.runpytest_subprocess(
        f"{SUITE_DIR / 'test_properties.py'}::test_dx_sums_to_zero", "--backend", backend,
        "--known-deviations", "dev.txt", "--report-dir", str(pytester.path / "reports"),
        "-p", "no:cacheprovider", "-p", "no:randomly", "-rxX")
    result.assert_outcomes(**outcome)
    reason = "known deviation dev.txt:1 test_dx_sums_to_zero: dx does not sum to zero"
    if "xfailed" in outcome:
        result.stdout.fnmatch_lines([f"XFAIL *test_dx_sums_to_zero*{reason}"])
        assert result.ret == pytest.ExitCode.OK
    else:
        result.stdout.fnmatch_lines([f"[[]XPASS(strict)[]] {reason}"])
        assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "UnmatchedDeviationWarning" not in result.stdout.str()

def test_user_deviation_files_add_to_the_backend_list(suite):
    path = suite.pytester.path
    (path / "dev.txt").write_text("test_forward::fwd_*_fp32_2x3_*   # the 2-d case\n")
    (path / "mine.txt").write_text("test_forward::fwd_*_fp32_2x3x2x2_*  # the 4-d case\n")
    (path / "more.txt").write_text("test_errors::err_*  # matches a passing test\n")
    both = run(suite, "fakebn:OffByUlps", "--known-deviations", "dev.txt",
               "--deviations", "mine.txt")
    both.assert_outcomes(passed=N_TESTS - 2, xfailed=2)
    both.stdout.fnmatch_lines(["bn-conformance tolerance: *known deviations: *dev.txt, "
                               "*mine.txt (2 entries)*"])
    assert report(suite)["environment"]["known_deviations"] == "dev.txt, mine.txt"
    third = run(suite, "fakebn:OffByUlps", "--known-deviations", "dev.txt",
                "--deviations", "mine.txt", "--deviations", "more.txt")
    third.assert_outcomes(passed=N_TESTS - 3, xfailed=2, failed=1)
    third.stdout.fnmatch_lines(["_* test_errors[[]err_* _*",
                                "[[]XPASS(strict)[]] known deviation more.txt:1 "
                                "test_errors::err_*: matches a passing test"])
    missing = run(suite, "fakebn:Good", "--deviations", "nothere.txt")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["ERROR: bn-conformance: --deviations='nothere.txt' is not "
                                  "a file (read relative to *)"])


def test_malformed_deviation_file_is_a_usage_error(suite):
    (suite.pytester.path / "dev.txt").write_text("fwd_*\n")
    result = run(suite, "fakebn:Good", "--known-deviations", "dev.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: bn-conformance: dev.txt:1: entry 'fwd_*' has no reason*"])


@pytest.mark.parametrize("backend, message", [
    ("fakebn:Broken", "ERROR: bn-conformance: backend='fakebn:Broken': fakebn:Broken() raised "
                      "ImportError: libbn.so: cannot open shared object file"),
    ("no_such_pkg:factory", "ERROR: bn-conformance: backend='no_such_pkg:factory': cannot "
                            "import no_such_pkg:factory: no module named 'no_such_pkg': "
                            "searched the current directory * and sys.path [[]*"),
    ("nosuch", "ERROR: bn-conformance: backend='nosuch' is not a registered name "
               "(registered: *numpy*)*"),
])
def test_unloadable_backend_is_one_usage_error(suite, backend, message):
    result = run(suite, backend)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert sum("bn-conformance" in line for line in result.errlines) == 1
    assert not (suite.reports / "fake").exists()


def test_environment_variable_names_the_backend(suite, monkeypatch):
    monkeypatch.setenv("BN_BACKEND", "fakebn:OffByUlps")
    result = run(suite, None, "-k", "err_")
    result.stdout.fnmatch_lines(["bn-conformance backend: fake 0.0, * [[]fakebn:OffByUlps; "
                                 "$BN_BACKEND[]]"])


def test_list_backends(suite):
    result = suite.pytester.runpytest_subprocess(str(SUITE_DIR), "--list-backends",
                                                 "-p", "no:cacheprovider")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["numpy *backends.numpy_backend:NumpyBackend*"])


def _comparable(doc: dict) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "duration"} for r in doc["results"]]


def test_report_agrees_with_pytest(suite):
    (suite.pytester.path / "dev.txt").write_text("fwd_*_fp32_2x3x2x2_*  # known\n")
    result = run(suite, "fakebn:OffByUlps", "--known-deviations", "dev.txt",
                 "--deviations-lenient")
    outcomes = result.parseoutcomes()
    doc = report(suite)
    assert doc["schema"] == "bn-conformance-report/1"
    counts = {k: v for k, v in doc["counts"].items() if v}
    assert counts == {"pass": outcomes["passed"], "fail": outcomes["failed"],
                      "xfail": outcomes["xfailed"], "xpass": outcomes["xpassed"]}
    by_key = {(r["test"], r["id"]): r for r in doc["results"]}
    assert len(by_key) == N_TESTS
    failed = by_key[("test_forward", suite.ids["fwd"][0])]
    assert failed["outcome"] == "fail" and failed["message"].startswith("y[0,1]=")
    assert failed["op"] == "fwd" and failed["dtype"] == "float32" and failed["family"] == "normal"
    assert failed["flags"] == "train/fixgamma/batchstats/nomeanvar"
    y = failed["outputs"]["y"]
    assert y["n_bad"] == 1 and y["fraction"] == pytest.approx(y["worst_units"] / y["limit"])
    assert y["fraction"] > 1 and y["ulp"] == pytest.approx(40)
    passed = by_key[("test_running_stats", suite.ids["fwd"][0])]
    assert passed["outputs"]["running_mean"]["worst_units"] == 0
    f64 = by_key[("test_forward", suite.ids["fwd"][2])]["outputs"]["y"]  # lo = 0.375 ulp
    assert f64["dtype"] == "float64" and f64["ulp"] == pytest.approx(0.375, rel=1e-9)
    md = (suite.reports / "fake" / "summary.md").read_text()
    assert md.startswith("<!-- Generated by `pytest ")
    assert "| tolerance profile | strict |" in md and "fakebn:OffByUlps" in md
    assert re.search(r"\| \*\*all\*\* \| \*\*\d+\*\* \| \*\*1\*\* \|", md)


def test_report_under_xdist_equals_serial(suite):
    serial = run(suite, "fakebn:OffByUlps")
    serial_doc = report(suite)
    parallel = run(suite, "fakebn:OffByUlps", "-n", "2")
    parallel_doc = report(suite)
    assert serial.parseoutcomes() == {**parallel.parseoutcomes(), **{
        k: v for k, v in serial.parseoutcomes().items() if k == "warnings"}}
    assert parallel_doc["environment"]["xdist_workers"] == 2
    assert _comparable(parallel_doc) == _comparable(serial_doc)
    assert parallel_doc["counts"] == serial_doc["counts"]


def test_report_is_replaced_not_merged(suite):
    run(suite, "fakebn:Good", "-k", "fp16")
    first = report(suite)
    run(suite, "fakebn:Good", "-k", "err_")
    second = report(suite)
    assert {r["id"] for r in first["results"]} == {suite.ids["fwd"][1]}
    assert {r["id"] for r in second["results"]} == {suite.ids["err"][0]}
    assert sorted(p.name for p in (suite.reports / "fake").iterdir()) == [
        "errors.json", "index.html", "summary.json", "summary.md"]  # conformance/report_extras.py


def test_junit_xml_through_pytest(suite):
    run(suite, "fakebn:OffByUlps", "--junitxml", "junit.xml")
    xml = (suite.pytester.path / "junit.xml").read_text()
    assert xml.count("<testcase ") == N_TESTS and xml.count("<failure ") == 2


def repro(suite, *args):
    return subprocess.run([sys.executable, "-m", "conformance.repro", *args, "--cases",
                           str(suite.cases)], capture_output=True, text=True,
                          cwd=suite.pytester.path)


def test_repro_prints_worst_first_and_exits_1_on_failure(suite):
    cid = suite.ids["fwd"][3]  # 2x3x2x2: y[0,1,:,:] are off by 40 ulp
    proc = repro(suite, cid, "--backend", "fakebn:OffByUlps", "--top", "5")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("index"))
    rows = lines[header + 1:header + 6]
    assert all(row.startswith("[0,1,") for row in rows[:4]) and not rows[4].startswith("[0,1,")
    units = [float(row.split()[-2]) for row in rows]
    assert units == sorted(units, reverse=True) and units[0] > 8
    assert lines[-1] == "FAIL"


def test_repro_pass_skip_and_usage_errors(suite):
    ok = repro(suite, suite.ids["bwd"][0], "--backend", "fakebn:Good")
    assert ok.returncode == 0 and ok.stdout.splitlines()[-1] == "PASS"
    err = repro(suite, suite.ids["err"][0], "--backend", "fakebn:Silent")
    assert err.returncode == 1 and "FAIL: returned" in err.stdout
    skip = repro(suite, suite.ids["bwd"][0], "--backend", "fakebn:F32Only")
    assert skip.returncode == 0 and "SKIPPED: fake: it has no backward" in skip.stdout
    missing = repro(suite, "fwd_nothing", "--backend", "fakebn:Good")
    assert missing.returncode == 2 and "fwd_nothing" in missing.stderr
    broken = repro(suite, suite.ids["bwd"][0], "--backend", "fakebn:Broken")
    assert broken.returncode == 2 and "libbn.so" in broken.stderr


def test_plugin_stays_off_for_other_test_runs(pytester, monkeypatch):
    with_root_on_path(monkeypatch)
    monkeypatch.setenv("BN_BACKEND", "no_such_pkg:factory")  # would be a usage error if used
    pytester.makepyfile(test_plain="def test_one():\n    assert True\n")
    installed = any(ep.value == "conformance.plugin"
                    for ep in importlib.metadata.entry_points(group="pytest11"))
    result = pytester.runpytest_subprocess(*([] if installed else ["-p", "conformance.plugin"]))
    result.assert_outcomes(passed=1)
    assert "bn-conformance backend" not in result.stdout.str()  # no header, no backend
    assert not (pytester.path / "reports").exists()


def test_default_report_folder_is_a_self_ignoring_bn_reports_with_portable_paths(suite):
    words = [str(SUITE_DIR), "--cases", "cases", "--backend", "fakebn:Good", "-k", "err_",
             "-p", "no:cacheprovider"]
    result = suite.pytester.runpytest_subprocess(*words)
    result.assert_outcomes(passed=1)
    folder = suite.pytester.path / "bn-reports"
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"
    assert not suite.reports.exists()
    env = report(SimpleNamespace(reports=folder))["environment"]
    assert env["cases_dir"] == "cases"  # relative to the run's directory
    # pytester adds --basetemp first; the suite's path is written relative to the repository
    assert env["command"].startswith("pytest ") and env["command"].endswith(
        " conformance --cases cases --backend fakebn:Good -k err_ -p no:cacheprovider")
    assert env["known_deviations"] is None and env["deviations_lenient"] is False
    partial = suite.pytester.runpytest_subprocess(*words, "--publish")
    assert partial.ret == pytest.ExitCode.USAGE_ERROR
    partial.stderr.fnmatch_lines(["ERROR: bn-conformance: --publish replaces a published "
                                  "full-run report: it cannot be combined with a partial run "
                                  "(-k 'err_', --cases)"])
