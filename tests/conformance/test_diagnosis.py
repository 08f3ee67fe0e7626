"""The deviation diagnosis names each known mistake, and nothing it cannot see.

- Every mutant backend (tests/mutants) runs through the suite in a subprocess, on its
  SELECT (narrowed where noted) and stopped after MAXFAIL failures; every failed test whose
  backend returned outputs must be explained by the mutant's mistake (``MISTAKES``): as the
  best explanation, one equivalent on that case, or one that also matches. At least one
  must name it as the best, and the diagnosis must be in the failure message.
- In-process: outputs computed by the oracle under each semantic variant are diagnosed as
  that variant; the cuDNN pair as the pair; unrelated garbage as unexplained; a missing
  output or a diagnosis that itself fails never hides the failure.
"""
from __future__ import annotations

import numpy as np
import pytest

from conformance import cases, diagnosis, profiles
from conformance.checks import BACKWARD_CHECKED, FORWARD_CHECKED, RUNNING_CHECKED
from oracle.variants import VARIANTS
from tests import mutants
from tests.conformance.test_mutants import run_suite

#: mutant module -> the candidate name (conformance/diagnosis.py) of its mistake.
MISTAKES = {
    "dgamma_sign": "dgamma_sign_flipped",
    "eps_outside_sqrt": "eps_outside_sqrt",
    "fix_gamma_ignored": "fix_gamma_ignored",
    "half_accumulation": "half_accumulation",
    "momentum_swapped": "momentum_inverted",
    "one_pass_float32": "one_pass_float32",
    "running_stats_frozen": "stats_not_updated",
    "running_stats_global_mode": "stats_updated_in_global_mode",
    "running_stats_in_forward": "stats_updated_in_forward",
    "unbiased_variance": "variance_unbiased",
    "wrong_axis": "wrong_axis",
}
#: Narrower selections where SELECT's first failures carry no outputs to diagnose (the
#: wrong-axis mutant raises on every shape whose axis 1 differs in extent).
NARROW = {"wrong_axis": "3x3x3"}
MAXFAIL = 10


def test_every_mutant_has_an_expected_diagnosis():
    assert sorted(MISTAKES) == mutants.names(), (
        "tests/mutants and MISTAKES differ: name the diagnosis of each new mutant here")
    known = set(VARIANTS) | set(diagnosis.TRANSFORMS)
    assert set(MISTAKES.values()) <= known


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mutant_is_diagnosed(name, tmp_path):
    module = mutants.load(name)
    select = module.SELECT if name not in NARROW else f"({module.SELECT}) and {NARROW[name]}"
    code, tail, report = run_suite(f"tests.mutants.{name}:factory", select, tmp_path,
                                   f"--maxfail={MAXFAIL}")
    where = f"[mutant {name}, -k {select!r}, exit code {code}]"
    assert code == 1 and report is not None, f"the suite should fail cases {where}\n{tail}"
    failed = [r for r in report["results"] if r["outcome"] == "fail"]
    diagnosed = [r for r in failed if r.get("diagnosis")]
    assert diagnosed, f"no failure carries a diagnosis {where}\n{tail}"
    wrong = {r["id"]: r["diagnosis"]["text"] for r in diagnosed
             if MISTAKES[name] not in r["diagnosis"]["explains"]}
    assert not wrong, f"diagnosed as something other than {MISTAKES[name]} {where}: {wrong}"
    assert any(r["diagnosis"]["explained_by"] == MISTAKES[name] for r in diagnosed), where
    best = next(r for r in diagnosed if r["diagnosis"]["explained_by"] == MISTAKES[name])
    print(f"\n{name}: {best['id']}: {best['diagnosis']['text']}")


# --- in process -----------------------------------------------------------------------------


def _case(case_id: str):
    return cases.load(cases.DEFAULT_CASES_DIR, case_id)


def _names(case, test: str) -> list[str]:
    checked = {"fwd": FORWARD_CHECKED, "bwd": BACKWARD_CHECKED}[case.op]
    return [n for n in (checked if test == "main" else RUNNING_CHECKED) if n in case.expected]


def _outputs_of(expected: dict) -> dict:
    """Return a backend's outputs that are exactly the correctly rounded expected values."""
    return {name: e.as_dtype() for name, e in expected.items()}


FWD = "fwd_train_freegamma_batchstats_meanvar_axis1_fp32_2x3x5_normal"
BWD = "bwd_train_freegamma_batchstats_meanvar_axis1_fp32_2x3x5_normal"
#: A case each variant changes, and which test's outputs show it.
VARIANT_CASES = {
    "variance_unbiased": (FWD, "main"),
    "running_var_unbiased": (BWD, "running"),
    "stats_updated_in_forward": (FWD, "running"),
    "stats_not_updated": (BWD, "running"),
    "eps_outside_sqrt": (FWD, "main"),
    "eps_min_1e-5": ("fwd_train_freegamma_batchstats_meanvar_axis0_fp32_3x2x2x2x2_normal_eps0_"
                     "mom0_cudnnoff", "main"),
    "eps_not_cast": ("fwd_train_freegamma_batchstats_meanvar_axis1_fp16_2x3x5_normal", "main"),
    "momentum_inverted": (BWD, "running"),
    "fix_gamma_ignored": ("bwd_train_fixgamma_batchstats_meanvar_axis1_fp32_2x3x5_normal",
                          "main"),
    "invstd_as_var": (FWD, "main"),
    "fp16_stepwise_rounding": ("fwd_train_freegamma_batchstats_meanvar_axis1_fp16_2x3x5_normal",
                               "main"),
    "eps_float32": ("fwd_infer_fixgamma_batchstats_nomeanvar_axis0_fp64_3x4_normal_eps1e-05_"
                    "mom0_cudnnoff", "main"),
    "invstd_inf_at_zero": ("fwd_train_freegamma_batchstats_meanvar_axis0_fp64_3x4_constant_eps0_"
                           "mom1", "main"),
    "running_var_from_batch_var": ("bwd_train_freegamma_batchstats_meanvar_axis2_fp32_2x2x3x2x2_"
                                   "constant_eps0_mom0_cudnnoff", "running"),
    "no_mean_invstd": (FWD, "main"),
    "no_mean_invstd_with_running_stats": ("fwd_infer_freegamma_batchstats_meanvar_axis1_fp32_"
                                          "2x3x5_normal", "main"),
}


def _existing(case_id: str) -> str:
    """Return case_id if the golden cases hold it, else the first id with its prefix up to
    the data family (the optional eps/momentum tokens vary as the generator evolves)."""
    ids = cases.case_paths(cases.DEFAULT_CASES_DIR)
    if case_id in ids:
        return case_id
    stem = case_id.split("_eps")[0].split("_mom")[0]
    found = [cid for cid in ids if cid.startswith(stem)]
    if not found:
        pytest.skip(f"no golden case like {case_id}")
    return found[0]


def test_every_variant_has_a_case():
    assert set(VARIANT_CASES) == set(VARIANTS), "name a case for each new variant here"


@pytest.mark.parametrize("variant", sorted(VARIANT_CASES))
def test_variant_outputs_are_diagnosed_as_the_variant(variant):
    case_id, test = VARIANT_CASES[variant]
    case = _case(_existing(case_id))
    names = _names(case, test)
    expected = profiles.evaluate_case(case, (variant,))
    assert not profiles.same_expected(expected, case.expected, names), (
        f"{variant} changes nothing of {names} in {case.id}: choose another case")
    found = diagnosis.diagnose(case, _outputs_of(expected), names)
    assert variant in found.explains, found.text
    assert found.text.startswith("matches the oracle with "), found.text
    assert found.explained.fraction <= 1 and found.explained.ok


def test_cudnn_pair_is_named_where_neither_variant_alone_explains():
    case = _case(FWD)
    expected = profiles.evaluate_case(case, diagnosis.CUDNN_PAIR)
    found = diagnosis.diagnose(case, _outputs_of(expected), _names(case, "running"))
    assert found.name == "cudnn_pair", found.text
    assert "running_var_unbiased+stats_updated_in_forward" in found.text


def test_a_profile_exclusive_with_the_cudnn_pair_is_still_diagnosed():
    """A profile with running_var_from_batch_var (paddle's) cannot take the cuDNN pair's
    running_var_unbiased on top: the diagnosis leaves that candidate out instead of failing."""
    case = _case(FWD)
    profile = ("stats_updated_in_forward", "running_var_from_batch_var")
    expected = profiles.evaluate_case(case, (*profile, "momentum_inverted"))
    found = diagnosis.diagnose(case, _outputs_of(expected), _names(case, "running"),
                               profile=profile)
    assert "momentum_inverted" in found.explains, found.text
    assert "cudnn_pair" not in found.explains


def test_declared_variant_left_out_is_named():
    case = _case(BWD)
    names = _names(case, "running")
    found = diagnosis.diagnose(case, _outputs_of(case.expected), names,
                               profile=("running_var_unbiased",))
    assert found.name == "without:running_var_unbiased", found.text
    assert "left out" in found.text


def test_declared_profile_is_the_baseline():
    """With the cuDNN pair declared, stats updated in backward only is the difference."""
    case = _case(FWD)
    found = diagnosis.diagnose(case, _outputs_of(case.expected), _names(case, "running"),
                               profile=diagnosis.CUDNN_PAIR)
    assert {"without:stats_updated_in_forward"} <= set(found.explains), found.text


def test_garbage_is_not_explained_and_the_text_says_how_many_were_tried():
    case = _case(FWD)
    names = _names(case, "main")
    rng = np.random.default_rng(0)
    outputs = {n: rng.normal(size=case.expected[n].shape).astype(case.expected[n].as_dtype().dtype)
               for n in names}
    found = diagnosis.diagnose(case, outputs, names)
    assert found.name is None and found.explains == []
    assert found.text.startswith("no known variant or transform explains it (")
    assert found.tried >= 3  # the candidates that change y, mean or invstd of this case
    assert found.as_record()["explained_by"] is None


def test_closest_candidate_is_named_when_it_helps():
    """y under variance_unbiased, perturbed by a few tolerances: not a match, but far
    closer than MXNet semantics."""
    case = _case(FWD)
    names = _names(case, "main")
    expected = profiles.evaluate_case(case, ("variance_unbiased",))
    outputs = _outputs_of(expected)
    y = outputs["y"].astype(np.float64)
    outputs["y"] = (y + 40 * np.spacing(np.abs(y).astype(np.float32))).astype(np.float32)
    found = diagnosis.diagnose(case, outputs, names)
    assert found.name is None
    assert found.closest is not None and found.closest.candidate.name == "variance_unbiased"
    assert "closest: variant variance_unbiased" in found.text


def test_missing_output_or_a_failing_diagnosis_never_raises(monkeypatch):
    case = _case(FWD)
    names = _names(case, "main")
    found = diagnosis.diagnose(case, {}, names)
    assert found.name is None
    monkeypatch.setattr(diagnosis, "_diagnose", lambda *a: 1 / 0)
    broken = diagnosis.diagnose(case, _outputs_of(case.expected), names)
    assert broken.text == "no diagnosis (ZeroDivisionError: division by zero)"
    assert broken.as_record()["error"].startswith("ZeroDivisionError")


def test_outputs_rounded_to_the_data_dtype_are_named():
    """PyTorch's bfloat16 backward returns dgamma and dbeta rounded to bfloat16."""
    case = _case("bwd_train_freegamma_batchstats_meanvar_axis1_bf16_2x3x5_normal")
    names = _names(case, "main")
    outputs = _outputs_of(case.expected)
    for name in ("dgamma", "dbeta"):
        outputs[name] = outputs[name].astype(case.inputs["x"].dtype).astype(np.float32)
    found = diagnosis.diagnose(case, outputs, names)
    assert found.name == "outputs_in_data_dtype", found.text
    assert "transform outputs_in_data_dtype (bfloat16)" in found.text


def test_eps_as_float32_is_named():
    """ONNX stores eps as a float32 attribute: float64 data sees float32(1e-5)."""
    case = _case(_existing("fwd_infer_fixgamma_batchstats_nomeanvar_axis0_fp64_3x4_normal_"
                           "eps1e-05_mom0_cudnnoff"))
    assert float(np.float32(case.eps)) != case.eps
    expected = profiles.evaluate_case(case, ("eps_not_cast",), eps=float(np.float32(case.eps)))
    found = diagnosis.diagnose(case, _outputs_of(expected), _names(case, "main"))
    assert found.name == "eps_float32", found.text


def test_zero_variance_with_zero_eps_by_ieee_arithmetic_is_named():
    """invstd = 1/sqrt(0 + 0) = inf on a constant channel (oneDNN, ONNX Runtime): y NaN."""
    case = _case(_existing("fwd_train_freegamma_batchstats_meanvar_axis0_fp64_3x4_constant_"
                           "eps0_mom1"))
    outputs = _outputs_of(case.expected)
    x = case.inputs["x"]  # [C, M]: the channel axis is 0
    zero = (x == x[:, :1]).all(axis=1)
    assert zero.any()
    outputs["y"] = outputs["y"].copy()
    outputs["y"][zero, :] = np.nan
    outputs["invstd"] = np.where(zero, np.inf, outputs["invstd"]).astype(np.float64)
    found = diagnosis.diagnose(case, outputs, _names(case, "main"))
    assert "invstd_inf_at_zero" in found.explains, found.text


def test_missing_outputs_are_named_and_the_rest_diagnosed():
    """A backend that returns no invstd (but its mean); y itself is right: no variant drops
    invstd alone."""
    case = _case("fwd_infer_freegamma_batchstats_meanvar_axis1_fp32_2x3x5_normal")
    outputs = {"y": case.expected["y"].as_dtype(), "mean": case.expected["mean"].as_dtype()}
    found = diagnosis.diagnose(case, outputs, _names(case, "main"))
    assert found.name is None and found.explains == []
    assert found.text == ("backend returned no 'invstd' (no known variant explains a missing "
                          "or malformed output); the other outputs pass")
    assert found.short == "backend returned no 'invstd'"
    assert found.as_record()["structural"] == {"invstd": "backend returned no 'invstd'"}
    # without both (PyTorch with running statistics): the variants that drop them explain it
    found = diagnosis.diagnose(case, {"y": outputs["y"]}, _names(case, "main"))
    assert {"no_mean_invstd", "no_mean_invstd_with_running_stats"} <= set(found.explains), \
        found.text
    # and y under a variant: the rest is diagnosed
    wrong_y = profiles.evaluate_case(_case(FWD), ("eps_outside_sqrt",))
    found = diagnosis.diagnose(_case(FWD), {"y": wrong_y["y"].as_dtype()},
                               _names(_case(FWD), "main"))
    assert found.short.endswith("; the rest: variant eps_outside_sqrt"), found.short
