"""Quantized golden case files (op qnt): they round-trip byte for byte, inline and in the
sidecar, and the loader refuses hand edits of the quantized fields, naming the field."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from oracle.api import QuantizedExpected
from oracle.casefile import CaseFileError, load_case, render_case

CASES = Path(__file__).resolve().parents[2] / "cases"
INLINE = "qnt_infer_fixgamma_batchstats_nomeanvar_axis1_s8_2x4x8x4_qties_eps0_unit"
SIDECAR = "qnt_infer_fixgamma_batchstats_nomeanvar_axis1_s8_2x17x9x15_qnormal_sym"
INVALID = "qnt_invalid_calib_only_min_s8_2x3"


@pytest.mark.parametrize("cid", [INLINE, SIDECAR, INVALID])
def test_round_trip_is_byte_exact(cid):
    case = load_case(CASES / f"{cid}.yaml")
    files = render_case(case)
    assert files[f"{cid}.yaml"] == (CASES / f"{cid}.yaml").read_bytes()
    if cid == SIDECAR:
        assert files[f"{cid}.bin"] == (CASES / f"{cid}.bin").read_bytes()


def test_loaded_fields():
    case = load_case(CASES / f"{SIDECAR}.yaml")
    out = case.expected["out"]
    assert isinstance(out, QuantizedExpected) and out.dtype == "int8"
    assert out.rounded.shape == out.dist.shape == case.shape and np.all(out.dist >= 0)
    assert case.inputs["x"].dtype == np.int8 and case.quantized["max_calib_range"] == 4.0
    assert set(case.quantized_kwargs()) >= {"min_data", "max_data", "min_calib_range",
                                           "max_calib_range", "eps", "axis"}
    invalid = load_case(CASES / f"{INVALID}.yaml")
    assert invalid.quantized["max_calib_range"] is None and invalid.error.match == "max_calib_range"


def _edited(tmp_path, cid, old, new):
    for suffix in (".yaml", ".bin"):
        if (CASES / f"{cid}{suffix}").exists():
            shutil.copy(CASES / f"{cid}{suffix}", tmp_path / f"{cid}{suffix}")
    path = tmp_path / f"{cid}.yaml"
    text = path.read_text()
    assert old in text
    body = text[: text.rindex("sha256: ")].replace(old, new, 1)
    path.write_text(body + f"sha256: {hashlib.sha256(body.encode()).hexdigest()}\n")
    return path


@pytest.mark.parametrize("old, new, field", [
    ("  min_calib_range: '", "  min_calib_range: null\n  x_calib: '", "params"),
    ("  max_calib_range: '0x1.0000000000000p+0'", "  max_calib_range: null", "max_calib_range"),
    ("    dist: [", "    distance: [", "expected.out"),
    ("    rounded: [12,", "    rounded: [300,", "expected.out.rounded"),
    ("  out:\n    dtype: int8", "  out:\n    dtype: int16", "expected.out"),
    ("  dtype: int8\n  shape", "  dtype: float32\n  shape", "params.dtype"),
])
def test_hand_edits_are_refused(tmp_path, old, new, field):
    path = _edited(tmp_path, INLINE, old, new)
    with pytest.raises(CaseFileError) as info:
        load_case(path)
    assert field in str(info.value), str(info.value)
