"""Hostile or broken golden files: oracle.casefile.load_case rejects each with a
CaseFileError whose message names the file and the field, allocates nothing large first,
constructs no object and runs nothing.

tests/oracle/test_casefile.py covers single instances (one edited digit, axis as a string,
cudnn_off missing, schema 2, a short data list, a flipped sidecar byte, a huge params.shape,
one python/object/apply tag, one billion-laughs bomb). This file covers the families:
truncation anywhere, every field missing, wrong types across the schema, NaN and infinity
where a count belongs, every other unsupported schema value, shape/data mismatches in each
section, sidecar names that leave the directory, huge sizes measured with tracemalloc,
aliases in every position, every object-constructing or custom tag, bad encodings, nesting
bombs and duplicate keys.
"""
from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from oracle.casefile import (
    MAX_ELEMENTS,
    MAX_FILE_BYTES,
    MAX_SIDECAR_BYTES,
    CaseFileError,
    load_case,
)
from tests.robustness import hostile_files as hf

ROOT = Path(__file__).resolve().parents[2]


def rejects(path: Path, *fields: str) -> CaseFileError:
    """Assert load_case(path) raises CaseFileError naming the file and one of fields (a
    field or a dotted path inside one of them)."""
    __tracebackhide__ = True
    with pytest.raises(CaseFileError) as info:
        load_case(path)
    err, message = info.value, str(info.value)
    assert str(path) in message, f"message={message!r}, but should name the file {path}"
    assert f"field {err.field!r}" in message, f"message={message!r} does not name its field"
    assert any(err.field == f or err.field.startswith(f + ".") for f in fields), (
        f"field={err.field!r}, but should be one of {fields} [{message}]")
    return err


@pytest.fixture(params=["bwd", "sidecar", "err"])
def any_fixture(request, tmp_path) -> Path:
    return hf.write_fixture(tmp_path, request.param)


# --- truncation -----------------------------------------------------------------------------

@pytest.mark.parametrize("fraction", [0.03, 0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 0.97])
def test_truncated_and_resealed(any_fixture, fraction):
    """Cut anywhere (mid-token, mid-line), then a newline and a valid digest of what remains:
    the damage reaches the parser and the field checks."""
    body = hf.body_of(any_fixture)
    hf.reseal(any_fixture, body[: int(len(body) * fraction)] + "\n")
    err = rejects(any_fixture, "<yaml>", "<top>", "schema", "id", "op", "family", "summary",
                  "oracle", "params", "inputs", "expected", "error", "sidecar")
    assert err.field != "sha256"


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.99])
def test_truncated_without_digest(any_fixture, fraction):
    data = any_fixture.read_bytes()
    any_fixture.write_bytes(data[: int(len(data) * fraction)])
    rejects(any_fixture, "sha256")


def test_truncated_sidecar(tmp_path):
    path = hf.write_fixture(tmp_path, "sidecar")
    binary = path.with_suffix(".bin")
    binary.write_bytes(binary.read_bytes()[:-1])
    rejects(path, "sidecar.file")


# --- missing fields -------------------------------------------------------------------------

PARAMS = ("dtype", "shape", "axis", "training", "fix_gamma", "use_global_stats",
          "output_mean_var", "eps", "momentum")  # cudnn_off: tests/oracle/test_casefile.py
MISSING_BWD = (["schema", "id", "op", "family", "summary", "oracle", "params", "inputs",
                "expected", "oracle.version", "oracle.precision_bits"]
               + [f"params.{k}" for k in PARAMS]
               + [f"inputs.{k}" for k in ("x", "gamma", "beta", "running_mean", "running_var",
                                          "dy")]
               + ["inputs.x.dtype", "inputs.x.shape", "inputs.x.data", "inputs.gamma.data",
                  "expected.dx", "expected.running_var", "expected.dgamma.rounded",
                  "expected.dgamma.value", "expected.dbeta.cond", "expected.dx.shape"])


@pytest.mark.parametrize("field", MISSING_BWD)
def test_missing_field(tmp_path, field):
    path = hf.write_fixture(tmp_path, "bwd")
    hf.delete_field(path, field)
    # An array without data may be one whose sidecar reference is missing: either names it.
    payload = field.endswith(".data")
    rejects(path, *((field, field.rsplit(".", 1)[0]) if payload else (field,)))


@pytest.mark.parametrize("field", ["error", "error.exception", "error.match", "inputs.x"])
def test_missing_field_of_an_error_case(tmp_path, field):
    path = hf.write_fixture(tmp_path, "err")
    hf.delete_field(path, field)
    rejects(path, field)


@pytest.mark.parametrize("field, where", [
    ("sidecar", ("sidecar", "inputs.x.sidecar")),  # x then refers to a sidecar not named
    ("sidecar.sha256", ("sidecar",)), ("inputs.x.sidecar.count", ("inputs.x.sidecar",)),
    ("expected.y.sidecar.offset", ("expected.y.sidecar",))])
def test_missing_sidecar_field(tmp_path, field, where):
    path = hf.write_fixture(tmp_path, "sidecar")
    hf.delete_field(path, field)
    rejects(path, *where)


# --- wrong types ----------------------------------------------------------------------------

WRONG_TYPES = [
    ("schema", "1"), ("schema", True), ("op", 3), ("id", ["x"]), ("family", {"a": 1}),
    ("summary", 5), ("oracle", "x"), ("oracle.precision_bits", "256"), ("oracle.version", 1.0),
    ("params", []), ("params.shape", "4x3"), ("params.shape", [4, "3"]),
    ("params.shape", [4, 3.0]), ("params.shape", [4, True]), ("params.dtype", 32),
    ("params.dtype", "float31"), ("params.training", "true"), ("params.fix_gamma", 0),
    ("params.eps", 0.001), ("params.eps", "0.001"), ("params.momentum", None),
    ("params.axis", 1.0), ("params.cudnn_off", "false"), ("inputs", [1]), ("inputs.x", [1, 2]),
    ("inputs.x.dtype", ["float32"]), ("inputs.x.shape", {"a": 1}), ("inputs.x.data", "abc"),
    ("inputs.x.data", [1.5] * 12), ("inputs.gamma.data", [None, None, None]),
    ("inputs.gamma.data", ["0x1p+0", "0x1p+1", "one"]),
    ("expected.dbeta.value", [1.0, 2.0, 3.0]), ("expected.dbeta.cond", ["1.0", "2.0", "3.0"]),
    ("expected.dbeta.rounded", [True, False, True]), ("expected.dbeta.cond", [True, 1.0, 1.0]),
    ("expected.dgamma", ["0x1p+0"]), ("expected", "none"),
]


@pytest.mark.parametrize("field, value", WRONG_TYPES,
                         ids=[f"{f}={v!r:.20}" for f, v in WRONG_TYPES])
def test_wrong_type(tmp_path, field, value):
    path = hf.write_fixture(tmp_path, "bwd")
    hf.set_field(path, field, value)
    rejects(path, field)


@pytest.mark.parametrize("field, value", [("error.exception", "SystemExit"),
                                          ("error.exception", "KeyboardInterrupt"),
                                          ("error.exception", 3), ("error.match", ["gamma"]),
                                          ("error", "ValueError")])
def test_wrong_error_spec(tmp_path, field, value):
    path = hf.write_fixture(tmp_path, "err")
    hf.set_field(path, field, value)
    rejects(path, field)


@pytest.mark.parametrize("value", [0, -1, 3, 10**30, 1.5, None, "one"])
def test_unsupported_schema(tmp_path, value):
    path = hf.write_fixture(tmp_path, "bwd")
    hf.set_field(path, "schema", value)
    rejects(path, "schema")


# --- NaN and infinity where a count belongs -------------------------------------------------

NAN_COUNTS = [("params.shape", [math.nan, 3]), ("params.shape", [4, math.inf]),
              ("params.shape", ["nan", 3]), ("inputs.x.shape", [4, math.nan]),
              ("inputs.gamma.shape", [math.inf]), ("expected.dx.shape", [math.nan, 3]),
              ("params.axis", math.nan), ("schema", math.nan),
              ("oracle.precision_bits", math.inf)]


@pytest.mark.parametrize("field, value", NAN_COUNTS, ids=[f"{f}={v!r}" for f, v in NAN_COUNTS])
def test_nan_where_a_count_belongs(tmp_path, field, value):
    path = hf.write_fixture(tmp_path, "bwd")
    hf.set_field(path, field, value)
    rejects(path, field)


@pytest.mark.parametrize("field", ["inputs.x.sidecar.count", "inputs.x.sidecar.offset",
                                   "expected.y.sidecar.count"])
@pytest.mark.parametrize("value", [math.nan, -math.inf, -1])
def test_nan_or_negative_sidecar_position(tmp_path, field, value):
    path = hf.write_fixture(tmp_path, "sidecar")
    hf.set_field(path, field, value)
    rejects(path, field)


# --- shape and data disagree ----------------------------------------------------------------

@pytest.mark.parametrize("field, value, where", [
    ("inputs.x.shape", [3, 4], ("inputs.x",)),
    ("params.shape", [2, 6], ("inputs.x", "params.shape")),
    ("params.dtype", "float64", ("inputs.x", "params.dtype")),
    ("inputs.dy.shape", [12, 1], ("inputs.dy",)),
    ("expected.dx.shape", [12], ("expected.dx",)),
    ("expected.dgamma.shape", [4], ("expected.dgamma",)),
    ("inputs.beta.data", ["0x1p+0"] * 4, ("inputs.beta.data",)),
])
def test_shape_and_data_disagree(tmp_path, field, value, where):
    path = hf.write_fixture(tmp_path, "bwd")
    hf.set_field(path, field, value)
    rejects(path, *where)


@pytest.mark.parametrize("field, value", [("inputs.x.sidecar.count", 4199),
                                          ("inputs.x.shape", [2100, 3]),
                                          ("inputs.x.sidecar.offset", 10**6)])
def test_sidecar_position_disagrees(tmp_path, field, value):
    path = hf.write_fixture(tmp_path, "sidecar")
    hf.set_field(path, field, value)
    rejects(path, "inputs.x", "params.shape", "sidecar.file")


# --- sidecar files --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../escape.bin", "/etc/passwd", "sub/x.bin", "",
                                  "fwd_other.bin"])
def test_sidecar_name_must_be_its_own(tmp_path, name):
    path = hf.write_fixture(tmp_path, "sidecar")
    hf.set_field(path, "sidecar.file", name)
    rejects(path, "sidecar.file")


def test_sidecar_digest_not_hex(tmp_path):
    path = hf.write_fixture(tmp_path, "sidecar")
    hf.set_field(path, "sidecar.sha256", "zz" * 32)
    rejects(path, "sidecar.sha256")


def test_sidecar_of_another_case(tmp_path):
    """Same size, other bytes: only the digest tells them apart."""
    path = hf.write_fixture(tmp_path, "sidecar")
    binary = path.with_suffix(".bin")
    blob = bytearray(binary.read_bytes())
    blob[: 8 * 2100] = blob[8 * 2100: 16 * 2100]  # x's first half replaced by its second
    binary.write_bytes(bytes(blob))
    rejects(path, "sidecar.sha256")


def test_sidecar_is_a_directory(tmp_path):
    path = hf.write_fixture(tmp_path, "sidecar")
    binary = path.with_suffix(".bin")
    binary.unlink()
    binary.mkdir()
    rejects(path, "sidecar.file")


# --- huge declared sizes: rejected before anything large is allocated ----------------------

PEAK_LIMIT = 4 << 20  # bytes: a few MiB of parsing, nothing the declared size would need


def rejects_small(path: Path, *fields: str) -> None:
    """rejects(), and prove the loader's peak Python + numpy allocation stays small."""
    __tracebackhide__ = True
    tracemalloc.start()
    try:
        start = time.perf_counter()
        rejects(path, *fields)
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_LIMIT, f"peak allocation={peak} bytes, but should stay < {PEAK_LIMIT}"
    assert seconds < 5, f"rejection took {seconds:.1f} s"


@pytest.mark.parametrize("field, value, where", [
    ("inputs.x.shape", [MAX_ELEMENTS], ("inputs.x",)),
    ("inputs.x.shape", [MAX_ELEMENTS // 4, 4], ("inputs.x",)),
    ("inputs.x.shape", [2] * 32, ("inputs.x.shape",)),
    ("inputs.x.shape", [2] * 33, ("inputs.x.shape",)),
    ("inputs.gamma.shape", [MAX_ELEMENTS + 1], ("inputs.gamma.shape",)),
    ("expected.dx.shape", [MAX_ELEMENTS // 3, 3], ("expected.dx",)),
    ("params.shape", [MAX_ELEMENTS // 3, 3], ("inputs.x", "params.shape")),
])
def test_huge_declared_size_allocates_nothing(tmp_path, field, value, where):
    path = hf.write_fixture(tmp_path, "bwd")
    hf.set_field(path, field, value)
    rejects_small(path, *where)


def test_huge_sidecar_count_allocates_nothing(tmp_path):
    """Shape and count agree on 2**28 elements (a 2 GiB block) that the .bin lacks."""
    path = hf.write_fixture(tmp_path, "sidecar")
    hf.mutate(path, lambda doc: (doc["inputs"]["x"].update(
        shape=[MAX_ELEMENTS // 2, 2], sidecar={"offset": 0, "count": MAX_ELEMENTS}),
        doc["params"].update(shape=[MAX_ELEMENTS // 2, 2])))
    rejects_small(path, "sidecar.file")


def test_oversized_file_is_not_read(tmp_path):
    """A sparse file one byte over MAX_FILE_BYTES: refused from its size alone."""
    path = hf.write_fixture(tmp_path, "bwd")
    os.truncate(path, MAX_FILE_BYTES + 1)
    rejects_small(path, "<file>")


def test_oversized_sidecar_is_not_read(tmp_path):
    """A sparse .bin over MAX_SIDECAR_BYTES: refused from its size alone."""
    path = hf.write_fixture(tmp_path, "sidecar")
    os.truncate(path.with_suffix(".bin"), MAX_SIDECAR_BYTES + 8)
    rejects_small(path, "sidecar.file")


# --- aliases, anchors, nesting --------------------------------------------------------------

@pytest.mark.parametrize("anchor, text", [
    ("oracle:", "  <<: &m {version: '0.1.0'}\n"),
    ("oracle:", "  extra: &a [1, 2]\n  again: *a\n"),
    ("    data:", "    - &v 0x1.0p+0\n    - *v\n"),
    ("summary:", "nick: &n only-an-anchor\n"),
    ("schema:", "bomb: &b [[[&c x, *c, *c], *c], [*c, *c]]\n"),
])
def test_anchor_or_alias_anywhere(tmp_path, anchor, text):
    path = hf.write_fixture(tmp_path, "bwd")
    hf.insert_after_first(path, anchor, text)
    rejects(path, "<yaml>")


def _load_in_child(path: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        from oracle.casefile import CaseFileError, load_case
        try:
            load_case({str(path)!r})
        except CaseFileError as exc:
            print("CaseFileError", exc.field)
        else:
            print("accepted")
    """)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_nesting_bomb_is_rejected_not_a_crash(tmp_path, opening):
    """A 200 KB file of nested brackets, in a child process (a crash must not end this run)."""
    path = hf.write_fixture(tmp_path, "bwd")
    depth = 100_000
    closing = "]" if opening == "[" else "}"
    hf.insert_after_first(path, "summary:", f"nick: {opening * depth}1{closing * depth}\n")
    proc = _load_in_child(path)
    assert proc.returncode == 0, (
        f"the loader died with exit code {proc.returncode} (signal "
        f"{-proc.returncode if proc.returncode < 0 else 'none'}) on a nesting bomb "
        f"{proc.stderr[-300:]}")
    assert proc.stdout.split() == ["CaseFileError", "<yaml>"], proc.stdout


@pytest.mark.xfail(strict=True, reason="known defect: oracle.casefile accepts duplicate keys "
                   "(PyYAML keeps the last), so one file reads differently in parsers that "
                   "keep the first. Fix: reject a mapping with a repeated key")
@pytest.mark.parametrize("anchor, text, field", [
    ("schema:", "schema: 1\n", "schema"),
    ("inputs:", "  x: {dtype: float32, shape: [1], data: ['0x1p+0']}\n", "inputs"),
])
def test_duplicate_key_is_rejected(tmp_path, anchor, text, field):
    path = hf.write_fixture(tmp_path, "bwd")
    hf.insert_after_first(path, anchor, text)
    rejects(path, field, "<yaml>")


# --- tags that would construct objects, and custom tags -------------------------------------

TAGS = [
    "!!python/object/new:os.system [['touch {marker}']]",
    "!!python/object/apply:subprocess.call [['touch', '{marker}']]",
    "!!python/name:os.system",
    "!!python/module:os",
    "!!python/tuple [1, 2]",
    "!!set {{a: null}}",
    "!!binary aGVsbG8=",
    "!!timestamp 2001-12-14",
    "!!omap [a: 1]",
    "!!str normal",
    "!custom normal",
    "!<tag:yaml.org,2002:python/object/apply:os.system> ['touch {marker}']",
]


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("where", ["family", "data"])
def test_tag_is_rejected_and_runs_nothing(tmp_path, tag, where):
    marker = tmp_path / "constructed"
    path = hf.write_fixture(tmp_path, "bwd")
    value = tag.format(marker=marker)
    if where == "family":
        hf.replace_once(path, "family: normal", f"family: {value}")
    else:
        hf.replace_once(path, "    data: [", f"    data: [{value}, ")
    rejects(path, "<yaml>")
    assert not marker.exists(), "loading the file ran a command"


def test_tag_directive_is_rejected(tmp_path):
    marker = tmp_path / "constructed"
    path = hf.write_fixture(tmp_path, "bwd")
    body = hf.body_of(path).replace("family: normal",
                                    f"family: !py!object/apply:os.system ['touch {marker}']")
    hf.reseal(path, "%TAG !py! tag:yaml.org,2002:python/\n---\n" + body)
    rejects(path, "<yaml>")
    assert not marker.exists()


# --- encodings ------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["\udcff", "\x00", "\x1b[2J", "\udcfe\udcff"])
def test_bad_bytes_in_a_string(tmp_path, bad):
    path = hf.write_fixture(tmp_path, "bwd")
    hf.replace_once(path, "summary: '", f"summary: '{bad}")
    rejects(path, "<yaml>")


def test_utf16_file(tmp_path):
    path = hf.write_fixture(tmp_path, "bwd")
    body = hf.body_of(path).encode("utf-16")
    path.write_bytes(body + f"sha256: {hashlib.sha256(body).hexdigest()}\n".encode())
    rejects(path, "sha256", "<yaml>", "<top>")
