"""Hostile large-case files (oracle/casefile/compact.py): inputs with their own sha256,
expected arrays in the compact layout (hi, lo, cond; rounded derived, exceptions listed).

The fixture is the hand-made fwd case of hostile_files with the large-case threshold
lowered to 4200 elements (the inline limit is 4096), so its 4400-element x and y take the
large layout. Each damage is re-sealed (the case file's final digest, and the sidecar's
digest where the sidecar is edited), so it must be caught by the checks behind the digests.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from oracle.casefile import load_case, read, write
from tests.robustness import hostile_files as hf
from tests.robustness.test_hostile_cases import rejects

THRESHOLD = 4200


@pytest.fixture(autouse=True)
def small_threshold(monkeypatch):
    monkeypatch.setattr(write, "COMPACT_FROM", THRESHOLD)
    monkeypatch.setattr(read, "COMPACT_FROM", THRESHOLD)


@pytest.fixture
def large(tmp_path):
    return write.write_case(hf.make("fwd", shape=(4400, 1), dtype="float32"), tmp_path)


def _edit_sidecar(path, offset: int, data: bytes) -> None:
    """Overwrite sidecar bytes at offset and re-seal the sidecar digest in the case file."""
    binary = path.with_suffix(".bin")
    blob = bytearray(binary.read_bytes())
    blob[offset:offset + len(data)] = data
    binary.write_bytes(bytes(blob))
    hf.set_field(path, "sidecar.sha256", hashlib.sha256(bytes(blob)).hexdigest())


def test_the_fixture_loads_in_the_large_layout(large):
    text = large.read_text()
    assert "layout: hi_lo_cond" in text and "    sha256: " in text
    case = load_case(large)
    e = case.expected["y"]
    assert isinstance(e.hi, np.memmap) and e.rounded.dtype == np.float32
    want = hf.make("fwd", shape=(4400, 1), dtype="float32").expected["y"]
    assert np.array_equal(e.rounded, want.rounded) and np.array_equal(e.hi, want.hi)


def test_an_input_changed_in_the_sidecar_is_refused(large):
    x_offset = 0  # x is the first sidecar array
    _edit_sidecar(large, x_offset + 4 * 7, np.float32(123.0).tobytes())
    rejects(large, "inputs.x.sha256")


def test_a_wrong_input_digest_is_refused(large):
    hf.set_field(large, "inputs.x.sha256", "0" * 64)
    err = rejects(large, "inputs.x.sha256")
    assert "hash to" in str(err)


def test_a_missing_input_digest_is_refused(large):
    hf.delete_field(large, "inputs.x.sha256")
    rejects(large, "inputs.x.sha256", "inputs.x")


def test_a_digest_on_a_small_input_is_refused(large):
    hf.set_field(large, "inputs.gamma.sha256", "0" * 64)
    rejects(large, "inputs.gamma.sha256")


@pytest.mark.parametrize("value", [None, "hi_lo", "rounded_hi_lo_cond", 3])
def test_a_wrong_layout_is_refused(large, value):
    def edit(doc):
        ref = doc["expected"]["y"]["sidecar"]
        if value is None:
            del ref["layout"]
        else:
            ref["layout"] = value
    hf.mutate(large, edit)
    rejects(large, "expected.y.sidecar.layout", "sidecar.file")


def test_a_layout_on_a_small_array_is_refused(tmp_path):
    read.COMPACT_FROM = write.COMPACT_FROM = 1 << 20  # 4200 elements are small again
    path = hf.write_fixture(tmp_path, "sidecar")
    hf.set_field(path, "expected.y.sidecar", {"offset": 0, "count": 4200, "layout": "hi_lo_cond"})
    rejects(path, "expected.y.sidecar.layout", "sidecar.file")


@pytest.mark.parametrize("items", [[[5]], [[5, "0x1p+0", 1]], [[-1, "0x1p+0"]],
                                   [[4400, "0x1p+0"]], [[7, "0x1p+0"], [3, "0x1p+0"]],
                                   [[7, "one"]], [[True, "0x1p+0"]], ["7"]])
def test_malformed_rounded_exceptions_are_refused(large, items):
    hf.set_field(large, "expected.y.rounded_exceptions", items)
    rejects(large, "expected.y.rounded_exceptions")


def test_an_exception_that_is_no_correct_rounding_is_refused(large):
    hf.set_field(large, "expected.y.rounded_exceptions", [[6, "0x1.8p+3"]])
    err = rejects(large, "expected.y.rounded")
    assert "[6, 0]" in str(err)


def test_exceptions_on_a_small_array_are_refused(large):
    hf.set_field(large, "expected.running_mean.rounded_exceptions", [])
    rejects(large, "expected.running_mean.rounded_exceptions")


def test_a_negative_cond_in_the_sidecar_is_refused(large):
    n = 4400
    y_offset = 4 * n  # after x (float32)
    _edit_sidecar(large, y_offset + 16 * n + 4 * 9, np.float32(-1.0).tobytes())
    rejects(large, "expected.y.cond")


def test_a_truncated_large_sidecar_is_refused(large):
    binary = large.with_suffix(".bin")
    binary.write_bytes(binary.read_bytes()[:-3])
    rejects(large, "sidecar.file")


def test_a_sidecar_changed_after_its_digest_is_refused(large):
    binary = large.with_suffix(".bin")
    blob = bytearray(binary.read_bytes())
    blob[-1] ^= 1
    binary.write_bytes(bytes(blob))
    rejects(large, "sidecar.sha256")


def test_released_pages_read_back_the_same(large):
    from oracle.casefile import release

    e = load_case(large).expected["y"]
    before = np.array(e.hi)
    release(e.hi, 0, 100)
    release(e.hi)
    release(before)  # not a memory map: left alone
    assert np.array_equal(e.hi, before) and isinstance(e.hi, np.memmap)
