"""The loader refuses a case file whose expected values mean nothing, even when the file was
re-signed after the edit (oracle/casefile/meaning.py): a ``rounded`` one ulp away from the
correct rounding of its ``value``, a condition scale that is negative or not finite, an
expected output whose shape or presence does not follow from the inputs and flags.

The edits are made to copies of committed golden cases (inline ones, small enough to read)
and re-signed with tests/robustness/hostile_files.py, so the digest check passes and the
meaning checks behind it must refuse. The expected roundings in the unit tests come from
outside the module under test: numpy's own casts where they are exact, and hand-worked
binary values elsewhere.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from oracle.casefile import CaseFileError, load_case
from oracle.casefile.meaning import cond_problem, rounding_problem
from tests.robustness import hostile_files as hf

ROOT = Path(__file__).resolve().parents[2]
#: Inline golden cases, one per output dtype: float32, float16 (+ float32 mean), bfloat16,
#: float64, and the quantized path's int8 ``out``.
CASES = {
    "float32": "fwd_train_freegamma_batchstats_meanvar_axis1_fp32_4x3_normal",
    "float16": "fwd_train_freegamma_batchstats_meanvar_axis1_fp16_4x3_normal",
    "bfloat16": "bwd_train_freegamma_batchstats_nomeanvar_axis1_bf16_4x3_normal",
    "float64": "fwd_infer_freegamma_globalstats_nomeanvar_axis1_fp64_4x3_normal",
}


def copy_case(tmp_path: Path, case_id: str) -> Path:
    """Copy one golden case (and its sidecar, if any) into tmp_path; return the copy."""
    for source in (ROOT / "cases").glob(f"{case_id}.*"):
        shutil.copy(source, tmp_path)
    return tmp_path / f"{case_id}.yaml"


def refused(path: Path, field: str, index: str | None) -> str:
    """Assert load_case refuses the file naming it, the field and the element (unless index
    is None); return the message."""
    __tracebackhide__ = True
    with pytest.raises(CaseFileError) as info:
        load_case(path)
    message = str(info.value)
    assert str(path) in message, f"message={message!r}, but should name the file"
    assert info.value.field == field, f"field={info.value.field!r}, but should be {field!r}"
    assert index is None or f"[{index}]" in message, (
        f"message={message!r}, but should name element [{index}]")
    return message


def one_ulp_up(text: str, dtype: str) -> str:
    """Return the hex text of the next value of dtype above the hex float text."""
    import ml_dtypes

    np_dtype = {"bfloat16": ml_dtypes.bfloat16}.get(dtype, dtype)
    info = ml_dtypes.finfo(np_dtype) if dtype == "bfloat16" else np.finfo(np_dtype)
    value = np.array(float.fromhex(text), dtype=np_dtype)
    bits = value.view(f"u{info.bits // 8}") + 1
    return float(bits.view(np_dtype)).hex()


@pytest.mark.parametrize("dtype", list(CASES))
@pytest.mark.parametrize("output, element", [("first", 0), ("first", 5), ("last", 1)])
def test_rounded_one_ulp_off_and_resigned_is_refused(tmp_path, dtype, output, element):
    path = copy_case(tmp_path, CASES[dtype])
    assert load_case(path) is not None  # the untouched copy loads
    names = list(hf.yaml.safe_load(hf.body_of(path))["expected"])
    name = names[0] if output == "first" else names[-1]
    doc = hf.yaml.safe_load(hf.body_of(path))
    spec = doc["expected"][name]
    element = min(element, len(spec["rounded"]) - 1)
    shape = spec["shape"]

    def edit(d):
        d["expected"][name]["rounded"][element] = one_ulp_up(spec["rounded"][element],
                                                             spec["dtype"])
    hf.mutate(path, edit)
    index = ", ".join(str(int(i)) for i in np.unravel_index(element, shape))
    message = refused(path, f"expected.{name}.rounded", index)
    assert f"correct rounding to {spec['dtype']}" in message, message


def test_quantized_out_one_off_is_refused(tmp_path):
    case_id = next(p.stem for p in sorted((ROOT / "cases").glob("qnt_*_s8_*.yaml"))
                   if not p.with_suffix(".bin").exists())
    path = copy_case(tmp_path, case_id)
    rounded = hf.yaml.safe_load(hf.body_of(path))["expected"]["out"]["rounded"]
    k = next(i for i, v in enumerate(rounded) if -100 < v < 100)

    def edit(d):
        d["expected"]["out"]["rounded"][k] += 1
    hf.mutate(path, edit)
    shape = hf.yaml.safe_load(hf.body_of(path))["expected"]["out"]["shape"]
    refused(path, "expected.out.rounded", ", ".join(map(str, np.unravel_index(k, shape))))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_bad_cond_is_refused(tmp_path, value):
    path = copy_case(tmp_path, CASES["float32"])

    def edit(d):
        d["expected"]["y"]["cond"][4] = value
    hf.mutate(path, edit)
    with pytest.raises(CaseFileError) as info:
        load_case(path)
    assert info.value.field == "expected.y.cond", str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("edit_name, field", [
    ("running_mean_shape", "expected.running_mean"),  # [3] -> [4]: not the channel count
    ("y_shape", "expected.y"),  # [4, 3] -> [3, 4]: not x's shape
    ("output_mean_var_off", "expected"),  # mean and invstd stored, the flag says none
])
def test_expected_shape_must_follow_inputs_and_flags(tmp_path, edit_name, field):
    path = copy_case(tmp_path, CASES["float32"])

    def edit(d):
        e = d["expected"]
        if edit_name == "running_mean_shape":
            e["running_mean"]["shape"] = [4]
            for key in ("rounded", "value", "cond"):
                e["running_mean"][key].append(e["running_mean"][key][0])
        elif edit_name == "y_shape":
            e["y"]["shape"] = [3, 4]
        else:
            d["params"]["output_mean_var"] = False
    hf.mutate(path, edit)
    with pytest.raises(CaseFileError) as info:
        load_case(path)
    assert info.value.field == field, str(info.value)


# --- the rounding rule itself --------------------------------------------------------------


def test_rounding_matches_numpy_casts_where_they_are_exact():
    """float64 -> float32 / float16 casts round once, to nearest even: an independent
    reference for values given exactly as doubles."""
    rng = np.random.default_rng(18)
    values = rng.standard_normal(2000) * np.exp2(rng.integers(-20, 20, 2000))
    lo = np.zeros_like(values)
    for dtype in ("float32", "float16"):
        with np.errstate(over="ignore"):  # float16 overflows to inf: a rounding too
            good = values.astype(dtype).astype(np.float64)
        assert rounding_problem(dtype, good, values, lo) is None
        bad = good.copy()
        bad[777] = np.nextafter(good[777].astype(dtype), np.inf, dtype=dtype)
        found = rounding_problem(dtype, bad, values, lo)
        assert found is not None and found[0] == 777, found


def test_bfloat16_is_rounded_once():
    """1 + 2**-8 + 2**-30 is nearer 1 + 2**-7 than 1 in bfloat16 (8 bits): a cast through
    float32 would round twice and give 1."""
    value = np.array([1 + 2.0**-8 + 2.0**-30])
    assert rounding_problem("bfloat16", np.array([1 + 2.0**-7]), value, np.zeros(1)) is None
    assert rounding_problem("bfloat16", np.array([1.0]), value, np.zeros(1)) is not None


def test_exact_tie_accepts_both_neighbours_and_nothing_else():
    """1 + 2**-24 is the midpoint of 1 and 1 + 2**-23 in float32: its 32-digit decimal is
    exact, yet the true value may lie on either side of it (module doc)."""
    tie = np.array([1 + 2.0**-24])
    for ok in (1.0, 1 + 2.0**-23):
        assert rounding_problem("float32", np.array([ok]), tie, np.zeros(1)) is None
    assert rounding_problem("float32", np.array([1 + 2.0**-22]), tie, np.zeros(1)) is not None
    # Off the tie by far more than 32 digits could hide: one side only.
    above = (np.array([1 + 2.0**-24]), np.array([2.0**-80]))
    assert rounding_problem("float32", np.array([1 + 2.0**-23]), *above) is None
    assert rounding_problem("float32", np.array([1.0]), *above) is not None


def test_low_part_decides_the_rounding():
    """hi alone is a float32 tie; lo (below hi's last bit) moves the value off it."""
    hi, lo = np.array([1 + 2.0**-24]), np.array([-(2.0**-70)])
    assert rounding_problem("float32", np.array([1.0]), hi, lo) is None
    assert rounding_problem("float32", np.array([1 + 2.0**-23]), hi, lo) is not None


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_overflow_and_non_finite_values(dtype):
    big = np.array([1e300, float("inf"), float("-inf"), float("nan")])
    want = np.array([math.inf if dtype != "float64" else 1e300, math.inf, -math.inf, math.nan])
    assert rounding_problem(dtype, want, big, np.zeros(4)) is None
    for k in range(4):
        bad = want.copy()
        bad[k] = 0.0
        assert rounding_problem(dtype, bad, big, np.zeros(4))[0] == k


def test_int8_rounds_to_nearest_even_and_saturates():
    value = np.array([2.5, 3.5, -2.5, 2.4999, 300.0, -300.0])
    want = np.array([2.0, 4.0, -2.0, 2.0, 127.0, -128.0])
    assert rounding_problem("int8", want, value, np.zeros(6)) is None
    assert rounding_problem("int8", want + np.eye(6)[3], value, np.zeros(6))[0] == 3


def test_cond_problem_names_the_first_bad_element():
    assert cond_problem(np.array([0.0, 1.5, 1e300])) is None
    assert cond_problem(np.array([1.0, 2.0, math.nan, -1.0]))[0] == 2
