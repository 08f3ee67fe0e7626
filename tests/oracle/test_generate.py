"""The coverage plan and the generator CLI: what is planned, and that what is written is
complete, deterministic, checked, and loadable.

The pair-coverage test enumerates the parameter values itself (from the flags vocabulary and
the issue's lists), not from oracle.plan, so a value the plan forgets is a failure.
"""
from __future__ import annotations

import itertools
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import oracle
from bnspec.flags import (ALL_FLAGS, AXIS_CLASSES, DEFAULT_EPS, DTYPES, axis_class_of,
                          axis_for_class, case_id, error_case_id)
from bnspec.validate import check_arguments
from oracle import generate
from oracle.casefile import load_case, load_cases
from oracle.inputs import FAMILIES
from oracle.plan import default_plan, user_plan

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "cases"
FAMILY_NAMES = ("normal", "uniform", "small_int", "large_offset", "tiny_var", "constant",
                "one_per_channel", "long", "channels", "special", "f16_overflow", "bf16_rounding")


@pytest.fixture(scope="module")
def plan():
    return default_plan()


def _run(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "oracle.generate", *map(str, args)], check=False,
                          cwd=cwd,
                          capture_output=True, text=True, timeout=600)


# --- the plan -------------------------------------------------------------------------------


def test_every_flag_combination_dtype_and_op(plan):
    have = {(s.flags, s.dtype, s.op) for s in plan if s.op != "err"}
    missing = [(f.label, d, op) for f in ALL_FLAGS for d in DTYPES for op in ("fwd", "bwd")
               if (f, d, op) not in have]
    assert not missing, f"missing flag combinations: {missing}"
    assert len(ALL_FLAGS) == 16


def test_every_family_with_every_dtype_and_op_in_training_batch_stats(plan):
    assert set(FAMILIES) == set(FAMILY_NAMES)
    have = {(s.family, s.dtype, s.op) for s in plan
            if s.op != "err" and s.flags.training and not s.flags.use_global_stats}
    missing = [k for k in itertools.product(FAMILY_NAMES, DTYPES, ("fwd", "bwd")) if k not in have]
    assert not missing, missing


def _valid_axis_classes(rank: int) -> set:
    return {axis_class_of(a, rank) for a in range(-rank, rank)} & {
        c for c in AXIS_CLASSES if axis_for_class(c, rank) is not None}


def test_pairwise_coverage(plan):
    values = {
        "op": ["fwd", "bwd"], "training": [True, False], "fix_gamma": [True, False],
        "use_global_stats": [True, False], "output_mean_var": [True, False],
        "dtype": ["float64", "float32", "float16", "bfloat16"], "rank": [2, 3, 4, 5],
        "axis_class": ["first", "one", "middle", "last", "negative"],
        "eps": [DEFAULT_EPS, 1e-5, 0.0, 1.0], "momentum": [0.9, 0.0, 1.0],
        "cudnn_off": [False, True], "family": list(FAMILY_NAMES)}

    def of(s):
        return {"op": s.op, "training": s.flags.training, "fix_gamma": s.flags.fix_gamma,
                "use_global_stats": s.flags.use_global_stats,
                "output_mean_var": s.flags.output_mean_var, "dtype": s.dtype,
                "rank": len(s.shape), "axis_class": axis_class_of(s.axis, len(s.shape)),
                "eps": s.eps, "momentum": s.momentum, "cudnn_off": s.cudnn_off,
                "family": s.family}

    seen = set()
    for s in plan:
        if s.op == "err":
            continue
        v = of(s)
        for p, q in itertools.combinations(values, 2):
            seen.add((p, v[p], q, v[q]))
    missing = []
    for p, q in itertools.combinations(values, 2):
        for a in values[p]:
            for b in values[q]:
                pair = {p: a, q: b}
                if "rank" in pair and "axis_class" in pair and \
                        pair["axis_class"] not in _valid_axis_classes(pair["rank"]):
                    continue
                if (p, a, q, b) not in seen:
                    missing.append(f"{p}={a!r} with {q}={b!r}")
    assert not missing, f"{len(missing)} pairs never appear, e.g. {missing[:10]}"


def test_ranks_axes_and_ids(plan):
    runs = [s for s in plan if s.op != "err"]
    ids = [s.id for s in plan]
    assert len(ids) == len(set(ids)), "ids must be unique"
    assert 1000 <= len(plan) <= 2000
    for s in runs:
        assert 2 <= len(s.shape) <= 5 and -len(s.shape) <= s.axis < len(s.shape)
        assert s.id == case_id(s.op, s.flags, s.axis, s.dtype, s.shape, s.family, eps=s.eps,
                               momentum=s.momentum, cudnn_off=s.cudnn_off)
    by_rank = {r: {axis_class_of(s.axis, r) for s in runs if len(s.shape) == r} for r in (2, 3, 4, 5)}
    for r, classes in by_rank.items():
        assert classes == _valid_axis_classes(r), (r, classes)
    assert {len(s.shape) for s in plan if s.op == "err"} >= {0, 1}


def test_family_shapes(plan):
    for s in plan:
        if s.op == "err":
            continue
        c = s.shape[s.axis]
        m = math.prod(s.shape) // c
        if s.family == "long":
            assert m > 65536, s.id
        elif s.family == "one_per_channel":
            assert m == 1, s.id
        else:
            assert m <= 64 and math.prod(s.shape) <= 4096, f"{s.id} is not a small case"
    channel_counts = {s.shape[s.axis] for s in plan if s.family == "channels"}
    assert {1, 3, 17} <= channel_counts and ({9} <= channel_counts or {33} <= channel_counts)


def test_edge_values_of_eps_momentum_cudnn(plan):
    runs = [s for s in plan if s.op != "err"]
    assert {s.eps for s in runs} == {DEFAULT_EPS, 1e-5, 0.0, 1.0}
    assert {s.momentum for s in runs} == {0.9, 0.0, 1.0}
    assert {s.cudnn_off for s in runs} == {False, True}
    zero_var = {(s.family, s.dtype, s.op) for s in runs if s.eps == 0.0
                and s.family in ("constant", "one_per_channel") and s.flags.training
                and not s.flags.use_global_stats}
    assert len(zero_var) == 16, "eps = 0 with var = 0 (invstd defined as 0) for every dtype/op"


def test_error_cases_are_rejected_by_the_validator(plan):
    errors = [s for s in plan if s.op == "err"]
    reasons = Counter(s.defect.split(":")[0] for s in errors)
    for needed in ("gamma_length", "beta_length", "running_mean_length", "running_var_length",
                   "axis_range", "rank", "empty", "x_dtype", "param_dtype", "dy_shape", "eps",
                   "momentum"):
        assert reasons[needed], f"no error case for {needed}"
    assert {s.dtype for s in errors} >= {"int32", "bool"}
    for s in errors:
        assert s.id.startswith("err_") and s.error.exception in ("ValueError", "TypeError")
        inputs = generate.error_inputs(s)
        args = [inputs.get(n) for n in ("x", "gamma", "beta", "running_mean", "running_var")]
        with pytest.raises((ValueError, TypeError)) as info:
            check_arguments(*args, axis=s.axis, eps=s.eps, momentum=s.momentum,
                            dy=inputs.get("dy"))
        assert type(info.value).__name__ == s.error.exception, s.id
        assert s.error.match in str(info.value), (s.id, str(info.value))
    assert error_case_id("gamma_length", "float32", (4, 3), "long") in {s.id for s in errors}


def test_user_plan():
    specs = user_plan((8, 64, 28, 28), "float16", -1)
    assert len(specs) == 32 and {s.op for s in specs} == {"fwd", "bwd"}
    assert {s.flags for s in specs} == set(ALL_FLAGS)
    some = user_plan((2, 3), "float32", 1, flags="train,fixgamma")
    assert len(some) == 8 and all(s.flags.training and s.flags.fix_gamma for s in some)
    with pytest.raises(ValueError, match="flags="):
        user_plan((2, 3), "float32", 1, flags="train,bogus")
    with pytest.raises(ValueError, match="axis="):
        user_plan((2, 3), "float32", 2)


# --- the generator ------------------------------------------------------------------------


def test_jobs_do_not_change_the_bytes(tmp_path):
    pattern = "*_fp16_*"
    assert generate.main(["--out", tmp_path / "one", "--filter", pattern, "--jobs", "1"]) == 0
    assert generate.main(["--out", tmp_path / "two", "--filter", pattern, "--jobs", "2"]) == 0
    one = {p.name: p.read_bytes() for p in (tmp_path / "one").iterdir()}
    two = {p.name: p.read_bytes() for p in (tmp_path / "two").iterdir()}
    assert one == two and len(one) > 100
    assert not (tmp_path / "one" / "INDEX.md").exists(), "a filtered run leaves INDEX.md alone"


def test_check_names_differing_missing_and_extra_files(tmp_path, capsys):
    out = tmp_path / "cases"
    pattern = "fwd_*_axis0_fp32_*"
    assert generate.main(["--out", out, "--filter", pattern]) == 0
    assert generate.main(["--out", out, "--filter", pattern, "--check"]) == 0
    files = sorted(out.glob("*.yaml"))
    changed, removed = files[0], files[1]
    changed.write_bytes(changed.read_bytes().replace(b"schema: 1", b"schema: 1 "))
    removed.unlink()
    extra = out / "fwd_train_fixgamma_batchstats_meanvar_axis0_fp32_9x9_normal.yaml"
    extra.write_text("stale")
    unrelated = out / "notes.txt"
    unrelated.write_text("mine")
    capsys.readouterr()
    assert generate.main(["--out", out, "--filter", pattern, "--check"]) == 1
    report = capsys.readouterr().out
    assert f"differs: {changed}" in report
    assert f"missing: {removed}" in report
    assert f"extra:   {extra}" in report
    assert "notes.txt" not in report
    assert generate.main(["--out", out, "--filter", pattern]) == 0
    assert not extra.exists() and unrelated.exists()
    assert generate.main(["--out", out, "--filter", pattern, "--check"]) == 0


def test_user_cases_cli(tmp_path):
    out = tmp_path / "mine"
    result = _run("--shape", "3,4,5", "--dtype", "bfloat16", "--axis", "-1", "--flags",
                  "train,batchstats", "--out", out)
    assert result.returncode == 0, result.stderr
    cases = load_cases(out)
    assert len(cases) == 8
    for c in cases:
        assert c.shape == (3, 4, 5) and c.axis == -1 and c.dtype == "bfloat16"
        assert c.flags.training and not c.flags.use_global_stats
        assert c.inputs["gamma"].shape == (5,)
        assert c.path.read_text().startswith(
            "# Generated by `python -m oracle.generate --shape 3,4,5 --dtype bfloat16 --axis -1")
    assert "elements/s" in result.stdout
    refused = _run("--shape", "3,4", "--dtype", "float32")
    assert refused.returncode != 0 and "--out" in refused.stderr


def test_written_cases_agree_with_a_float64_evaluation(tmp_path):
    """The stored inputs and expected outputs belong together (layout, axis, flags)."""
    generate.main(["--out", tmp_path, "--filter", r"^fwd_train_freegamma_batchstats_.*_fp64_.*_normal($|_)"])
    cases = load_cases(tmp_path)
    assert len(cases) > 10
    for c in cases:
        x = c.inputs["x"].astype(np.float64)
        ax = c.axis % x.ndim
        other = tuple(i for i in range(x.ndim) if i != ax)
        shape = [1] * x.ndim
        shape[ax] = -1
        mean = x.mean(axis=other)
        var = x.var(axis=other)
        y = (x - mean.reshape(shape)) / np.sqrt(var + c.eps).reshape(shape) \
            * c.inputs["gamma"].reshape(shape) + c.inputs["beta"].reshape(shape)
        np.testing.assert_allclose(c.expected["y"].rounded, y, rtol=1e-9, atol=1e-12,
                                   err_msg=c.id)


def test_error_cases_written_and_loaded(tmp_path):
    generate.main(["--out", tmp_path, "--filter", "err_*"])
    cases = load_cases(tmp_path)
    assert len(cases) == len([s for s in default_plan() if s.op == "err"])
    by_id = {c.id: c for c in cases}
    rank0 = by_id[error_case_id("rank", "float32", ())]
    assert rank0.inputs["x"].shape == ()
    bool_case = by_id[error_case_id("x_dtype", "bool", (4, 3))]
    assert bool_case.inputs["x"].dtype == np.bool_
    for c in cases:
        args = [c.inputs.get(n) for n in ("x", "gamma", "beta", "running_mean", "running_var")]
        with pytest.raises((ValueError, TypeError), match=c.error.match.replace(".", r"\.")):
            oracle.evaluate(*args, c.inputs.get("dy"), **{k: v for k, v in c.kwargs().items()
                                                          if k != "cudnn_off"})


@pytest.mark.skipif(not (CASES / "INDEX.md").exists(), reason="cases/ not generated yet")
def test_committed_cases_are_current():
    """`python -m oracle.generate --check` on the repository's cases/ (what CI runs)."""
    result = _run("--check", "--jobs", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


@pytest.mark.skipif(not (CASES / "INDEX.md").exists(), reason="cases/ not generated yet")
def test_committed_index_and_budget():
    index = (CASES / "INDEX.md").read_text()
    assert index.startswith("# Golden cases\n\nGenerated by `python -m oracle.generate`")
    assert "Missing combinations: none." in index
    total = sum(p.stat().st_size for p in CASES.iterdir() if p.name != "INDEX.md")
    assert total < 30_000_000, f"cases/ holds {total:,} bytes, over the 30 MB budget"
    some = load_case(next(CASES.glob("bwd_*_long*.yaml")))
    assert some.inputs["x"].size > 65536
