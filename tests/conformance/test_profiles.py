"""Semantic profiles: a backend is judged against the variants it declares.

In process: profile validation, the expected values of a profile (the golden ones for an
empty profile, the oracle's under the variants otherwise, cached), which declared variants
change a case, and the report's profile block. Through the suite (subprocesses, on a small
selection): a backend following the cuDNN path passes when it declares the cuDNN variants
and fails, diagnosed, when it does not; an unknown variant is a usage error; a declared
variant that changes no case of the run is reported and warned about.
"""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from conformance import cases, profiles
from conformance.report_md import render
from oracle.variants import VARIANTS
from tests.conformance.test_mutants import run_suite

FWD = "fwd_train_freegamma_batchstats_meanvar_axis1_fp32_2x3x5_normal"
INFER = "fwd_infer_freegamma_batchstats_meanvar_axis1_fp32_2x3x5_normal"
CUDNN = ("running_var_unbiased", "stats_updated_in_forward")
#: Forward and training-step cases with batch statistics (what the cuDNN path changes) and
#: their inference twins, float32, one shape: about 40 tests.
SELECT = "fp32 and 2x3x5 and normal and batchstats"
BACKENDS = "tests.conformance.profiled_backends"
ROOT = Path(__file__).resolve().parents[2]


def _case(case_id):
    return cases.load(cases.DEFAULT_CASES_DIR, case_id)


def test_check_profile_sorts_and_names_unknown_variants():
    assert profiles.check_profile(("stats_updated_in_forward", "running_var_unbiased")) == CUDNN
    assert profiles.check_profile(()) == () and profiles.check_profile(None) == ()
    with pytest.raises(ValueError, match="'no_such_variant'"):
        profiles.check_profile(("no_such_variant",))
    with pytest.raises(ValueError, match="not a string"):
        profiles.check_profile("running_var_unbiased")


def test_describe_uses_the_oracle_descriptions():
    assert profiles.describe(CUDNN) == [(n, VARIANTS[n]) for n in CUDNN]


def test_empty_profile_is_the_golden_case():
    case = _case(FWD)
    assert profiles.expected_for(case, ()) is case.expected
    assert profiles.profiled_case(case, ()) is case


def test_profile_expectations_come_from_the_oracle_and_are_cached():
    case = _case(FWD)
    first = profiles.expected_for(case, CUDNN)
    assert profiles.expected_for(case, tuple(reversed(CUDNN))) is first  # cached, any order
    direct = profiles.evaluate_case(case, CUDNN)
    assert profiles.same_expected(first, direct)
    # forward of a training step with batch stats: the cuDNN path updates the statistics
    assert not profiles.same_expected(first, case.expected, ["running_var"])
    assert profiles.same_expected(first, case.expected, ["y", "mean", "invstd"])
    profiled = profiles.profiled_case(case, CUDNN)
    assert profiled.expected is first and profiled.id == case.id and case.expected is not first


def test_effects_name_the_declared_variants_that_change_a_case(monkeypatch):
    monkeypatch.setattr(profiles, "_seen_effective", set())
    assert profiles.effects(_case(INFER), CUDNN) == []  # inference: nothing to update
    assert profiles.effects(_case(FWD), CUDNN) == list(CUDNN)
    assert profiles.effects(_case(FWD), CUDNN) == []  # already seen in this process
    assert profiles.effects(_case(FWD), ()) == []


def _document(profile, effects):
    results = [{"nodeid": f"n{i}", "id": f"c{i}", "outcome": "pass",
                "outputs": {"y": {"fraction": 0.1}}, "profile_effect": e}
               for i, e in enumerate(effects)]
    env = {"backend": {"name": "b", "version": "1", "target": "m:f", "how": "--backend",
                       "device": "cpu", "profile": list(profile)}, "tolerance": "strict",
           "cases_dir": "cases", "versions": {}, "command": "pytest conformance/",
           "finished": "now"}
    return {"generated_by": "pytest conformance/", "environment": env, "counts": {
        o: 0 for o in ("pass", "fail", "error", "skip", "xfail", "xpass")}, "results": results}


def test_report_block_lists_declared_and_unused_variants():
    doc = _document(CUDNN, [["running_var_unbiased"], []])
    block = profiles.report_block(doc)
    assert block["declared"] == [{"name": n, "description": VARIANTS[n]} for n in CUDNN]
    assert block["unused"] == ["stats_updated_in_forward"]
    doc["profile"] = block
    md = render(doc)
    assert "## Declared semantic profile" in md
    assert f"- `running_var_unbiased`: {VARIANTS['running_var_unbiased']}" in md
    assert "- `stats_updated_in_forward`: " in md and "*(changed no case of this run)*" in md
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        profiles.warn_unused(doc)
    assert [type(w.message) for w in caught] == [profiles.UnusedVariantWarning]
    assert "'stats_updated_in_forward'" in str(caught[0].message)
    assert "None: judged against MXNet" in render(_document((), [[]]))


# --- through the suite ------------------------------------------------------------------------


def test_declared_cudnn_path_passes_and_is_listed(tmp_path):
    code, tail, report = run_suite(f"{BACKENDS}:declared", SELECT, tmp_path)
    assert code == 0, tail
    assert report["counts"]["pass"] >= 20 and report["counts"]["fail"] == 0
    assert report["environment"]["backend"]["profile"] == list(CUDNN)
    assert report["profile"] == {"declared": [{"name": n, "description": VARIANTS[n]}
                                              for n in CUDNN], "unused": []}
    out = tmp_path / "cudnn-style"
    assert "## Declared semantic profile" in (out / "summary.md").read_text()
    assert "running_var_unbiased" in (out / "index.html").read_text()


def test_undeclared_cudnn_path_fails_with_the_diagnosis(tmp_path):
    code, tail, report = run_suite(f"{BACKENDS}:undeclared", SELECT, tmp_path)
    assert code == 1, tail
    failed = [r for r in report["results"] if r["outcome"] == "fail"]
    assert failed and all(r["test"] == "test_running_stats" for r in failed)
    by_op = {r["op"]: r["diagnosis"] for r in failed}
    assert by_op["fwd"]["explained_by"] == "cudnn_pair", by_op["fwd"]["text"]
    assert by_op["bwd"]["explained_by"] == "running_var_unbiased", by_op["bwd"]["text"]
    assert "cudnn_pair" in by_op["bwd"]["explains"]  # the same update on a training step
    assert by_op["fwd"]["text"].startswith(
        "matches the oracle with variants running_var_unbiased+stats_updated_in_forward to ")
    md = (tmp_path / "cudnn-undeclared" / "summary.md").read_text()
    assert "  - diagnosis: matches the oracle with variant" in md


def test_diagnosis_is_in_the_failure_message(tmp_path):
    code, tail, _ = run_suite(f"{BACKENDS}:undeclared", f"{FWD} and running", tmp_path)
    assert code == 1
    assert ("diagnosis: matches the oracle with variants "
            "running_var_unbiased+stats_updated_in_forward") in tail


def test_unknown_profile_variant_is_a_usage_error(tmp_path):
    code, tail, report = run_suite(f"{BACKENDS}:unknown", SELECT, tmp_path)
    assert code == 4 and report is None
    assert "Capabilities.profile" in tail and "'no_such_variant'" in tail


def test_declared_variant_without_effect_warns(tmp_path):
    code, tail, report = run_suite(f"{BACKENDS}:eps_floor_declared",
                                   f"{FWD} or {INFER}", tmp_path, "-W",
                                   "always::conformance.profiles.UnusedVariantWarning")
    assert code == 0, tail
    assert report["profile"]["unused"] == ["eps_min_1e-5"]
    assert "UnusedVariantWarning" in tail and "'eps_min_1e-5'" in tail


def test_repro_judges_against_the_profile_and_prints_the_diagnosis():
    def repro(spec):
        env = {k: v for k, v in os.environ.items() if not k.startswith("BN_BACKEND")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return subprocess.run([sys.executable, "-m", "conformance.repro", FWD, "--backend",
                               f"{BACKENDS}:{spec}", "--top", "1"], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=False, timeout=300)

    declared = repro("declared")
    assert declared.returncode == 0, declared.stdout + declared.stderr
    assert "declared profile: running_var_unbiased, stats_updated_in_forward" in declared.stdout
    undeclared = repro("undeclared")
    assert undeclared.returncode == 1
    assert ("diagnosis: matches the oracle with variants "
            "running_var_unbiased+stats_updated_in_forward") in undeclared.stdout
