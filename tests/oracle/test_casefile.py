"""Case files: exact round trips, deterministic bytes, and rejection of every kind of damage.

The cases here are built by hand (no oracle, no generator): values are chosen in the test,
so a writer or loader bug cannot hide behind the code that produced the data.
"""
from __future__ import annotations

import hashlib
import math
import re
from decimal import Decimal, localcontext
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import yaml

from bnspec.flags import DTYPES, Flags, case_id, error_case_id, numpy_dtype
from oracle.api import Expected
from oracle.casefile import (INLINE_LIMIT, Case, CaseFileError, ErrorSpec, decimal_value, hex_float,
                             iter_case_paths, load_case, load_cases, render_case, write_case)

FLAGS = Flags(training=True, fix_gamma=False, use_global_stats=False, output_mean_var=True)

# Special values every dtype can hold, as float64: signed zeros, infinities, NaN, the smallest
# subnormal of each format, and ordinary numbers with full mantissas.
SMALLEST_SUBNORMAL = {"float64": 2.0**-1074, "float32": 2.0**-149, "float16": 2.0**-24,
                      "bfloat16": 2.0**-133}
FULL_MANTISSA = {"float64": 1 + 2.0**-52, "float32": 1 + 2.0**-23, "float16": 1 + 2.0**-10,
                 "bfloat16": 1 + 2.0**-7}


def _data(dtype: str, shape) -> np.ndarray:
    """Return an array of dtype holding -0.0, +0.0, +-inf, NaN, a subnormal and full mantissas."""
    specials = [-0.0, 0.0, math.inf, -math.inf, math.nan, SMALLEST_SUBNORMAL[dtype],
                -FULL_MANTISSA[dtype], 3 * FULL_MANTISSA[dtype], 0.75]
    n = int(np.prod(shape))
    values = np.array([specials[i % len(specials)] * (1 if i < len(specials) else 2.0 ** (i % 7))
                       for i in range(n)])
    return values.astype(numpy_dtype(dtype)).reshape(shape)


def _expected(name: str, dtype: str, shape, seed: int) -> Expected:
    """Return an Expected with hand-made hi/lo (|lo| < ulp(hi)/2), rounded = hi, cond >= 0
    and finite (0 where the value is not finite, as the oracle writes it)."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.float64) + seed
    hi = ((i * 0.37 + 1.0) * np.where(i % 3 == 0, -1.0, 1.0)).astype(numpy_dtype(dtype))
    hi = hi.astype(np.float64)
    lo = np.spacing(np.abs(hi)) * np.where(i % 2 == 0, 0.3, -0.11) * 2.0**-40
    hi[0], lo[0] = -0.0, 0.0
    if n > 2:
        hi[1], lo[1] = math.nan, 0.0
        hi[2], lo[2] = math.inf, 0.0
    cond = np.abs(hi) * 1.5 + i
    cond[0] = 0.0
    cond = np.where(np.isfinite(cond), cond, 0.0)
    return Expected(name, dtype, hi.reshape(shape), lo.reshape(shape), hi.copy().reshape(shape),
                    cond.reshape(shape))


def make_case(dtype: str = "float32", op: str = "fwd", shape=(4, 3), axis: int = 1,
              flags: Flags = FLAGS) -> Case:
    """Return a hand-made fwd or bwd Case of the schema's shapes and dtypes."""
    pdtype = DTYPES[dtype].param
    c = shape[axis]
    inputs = {"x": _data(dtype, shape)}
    for k, name in enumerate(("gamma", "beta", "running_mean", "running_var")):
        inputs[name] = (np.arange(c) * 0.5 + 1.25 + k).astype(numpy_dtype(pdtype))
    if op == "bwd":
        inputs["dy"] = _data(dtype, shape)[::-1].copy()
        names = {"dx": dtype, "dgamma": pdtype, "dbeta": pdtype, "running_mean": pdtype,
                 "running_var": pdtype}
    else:
        names = {"y": dtype, "mean": pdtype, "invstd": pdtype, "running_mean": pdtype,
                 "running_var": pdtype}
        if not flags.output_mean_var:
            del names["mean"], names["invstd"]
    expected = {n: _expected(n, d, shape if n in ("y", "dx") else (c,), k)
                for k, (n, d) in enumerate(names.items())}
    cid = case_id(op, flags, axis, dtype, shape, "normal")
    return Case(id=cid, op=op, family="normal", summary=f"hand-made {dtype} case", path=None,
                dtype=dtype, shape=tuple(shape), axis=axis, flags=flags, eps=1e-3,
                momentum=0.9, cudnn_off=False, inputs=inputs, expected=expected)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(f"u{a.dtype.itemsize}")


def _assert_same_bits(a: np.ndarray, b: np.ndarray, what: str):
    __tracebackhide__ = True
    assert a.dtype == b.dtype, f"{what}.dtype={b.dtype}, but should be {a.dtype}"
    assert a.shape == b.shape, f"{what}.shape={b.shape}, but should be {a.shape}"
    diff = np.flatnonzero(_bits(a) != _bits(b))
    assert diff.size == 0, (f"{what}[{diff[0]}]={b.ravel()[diff[0]]!r}, but should be "
                            f"{a.ravel()[diff[0]]!r} (bits differ)")


def _assert_value_close(e: Expected, got: Expected, what: str):
    """hi + lo read back equals the written hi + lo to 32 significant digits."""
    __tracebackhide__ = True
    with localcontext() as ctx:
        ctx.prec = 60
        for i, (h, l, h2, l2) in enumerate(zip(e.hi.ravel(), e.lo.ravel(), got.hi.ravel(),
                                              got.lo.ravel())):
            if not math.isfinite(h):
                assert (h2 == h or (math.isnan(h) and math.isnan(h2))) and l2 == 0, f"{what}[{i}]"
                continue
            want, have = Decimal(float(h)) + Decimal(float(l)), Decimal(float(h2)) + Decimal(float(l2))
            assert abs(want - have) <= abs(want) * Decimal("1e-31"), (
                f"{what}[{i}]={have}, but should be {want}")
            assert math.copysign(1, h2) == math.copysign(1, h), f"{what}[{i}] lost its sign"


def _assert_round_trip(case: Case, loaded: Case):
    __tracebackhide__ = True
    assert (loaded.id, loaded.op, loaded.dtype, loaded.shape, loaded.axis, loaded.flags,
            loaded.eps, loaded.momentum, loaded.cudnn_off) == (
        case.id, case.op, case.dtype, case.shape, case.axis, case.flags, case.eps,
        case.momentum, case.cudnn_off)
    assert list(loaded.inputs) == list(case.inputs)
    for name, a in case.inputs.items():
        _assert_same_bits(a, loaded.inputs[name], f"inputs.{name}")
    assert list(loaded.expected) == list(case.expected)
    for name, e in case.expected.items():
        got = loaded.expected[name]
        assert got.dtype == e.dtype
        _assert_same_bits(e.rounded, got.rounded, f"expected.{name}.rounded")
        if got.cond.size > INLINE_LIMIT:  # sidecar: float32, rounded up
            c = np.asarray(e.cond, dtype=np.float64)
            assert np.all(got.cond >= c) and np.all(got.cond <= c * (1 + 2.0**-23)), (
                f"expected.{name}.cond is not the float32 rounding up of the written values")
        else:
            _assert_same_bits(e.cond, got.cond, f"expected.{name}.cond")
        _assert_value_close(e, got, f"expected.{name}.value")


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("op", ["fwd", "bwd"])
def test_round_trip_inline_is_exact(tmp_path, dtype, op):
    case = make_case(dtype, op)
    loaded = load_case(write_case(case, tmp_path))
    _assert_round_trip(case, loaded)
    assert loaded.inputs["x"].dtype == numpy_dtype(dtype)
    if dtype == "bfloat16":
        assert loaded.inputs["x"].dtype == np.dtype(ml_dtypes.bfloat16)


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_round_trip_sidecar_is_exact_including_hi_lo(tmp_path, dtype):
    case = make_case(dtype, "bwd", shape=(5000, 2), axis=-1)
    path = write_case(case, tmp_path)
    assert path.with_suffix(".bin").exists()
    loaded = load_case(path)
    _assert_round_trip(case, loaded)
    for name in ("dx",):
        _assert_same_bits(case.expected[name].hi, loaded.expected[name].hi, f"{name}.hi")
        _assert_same_bits(case.expected[name].lo, loaded.expected[name].lo, f"{name}.lo")


def test_special_values_keep_their_bits(tmp_path):
    case = make_case("float32", "fwd")
    x = load_case(write_case(case, tmp_path)).inputs["x"].ravel()
    assert _bits(x[0]) == 0x80000000  # -0.0
    assert _bits(x[1]) == 0x00000000  # +0.0
    assert _bits(x[2]) == 0x7F800000 and _bits(x[3]) == 0xFF800000
    assert _bits(x[4]) == 0x7FC00000  # canonical quiet NaN
    assert _bits(x[5]) == 0x00000001  # smallest subnormal


def test_kwargs_names_every_call_parameter():
    kw = make_case().kwargs()
    assert kw == {"eps": 1e-3, "momentum": 0.9, "fix_gamma": False, "use_global_stats": False,
                      "output_mean_var": True, "axis": 1, "training": True, "cudnn_off": False}


def test_error_case_round_trip_with_integer_and_bool_inputs(tmp_path):
    for dtype, x in (("int32", np.array([[1, -2, 3], [4, 5, -6]], dtype=np.int32)),
                     ("bool", np.array([[True, False, True]], dtype=bool))):
        cid = error_case_id("x_dtype", dtype, x.shape)
        case = Case(id=cid, op="err", family="normal", summary="bad dtype", path=None,
                    dtype=dtype, shape=x.shape, axis=1, flags=FLAGS, eps=float("nan"),
                    momentum=float("inf"), cudnn_off=True,
                    inputs={"x": x, "gamma": np.ones(3, np.float32)},
                    error=ErrorSpec("TypeError", "x.dtype"))
        loaded = load_case(write_case(case, tmp_path))
        assert loaded.error == ErrorSpec("TypeError", "x.dtype")
        assert loaded.expected == {}
        assert math.isnan(loaded.eps) and loaded.momentum == math.inf
        _assert_same_bits(x, loaded.inputs["x"], "x")


def test_rank_zero_and_empty_inputs_round_trip(tmp_path):
    for shape in ((), (0, 3)):
        cid = error_case_id("rank" if shape == () else "empty", "float32", shape)
        x = np.zeros(shape, np.float32) + np.float32(1.5)
        case = Case(id=cid, op="err", family="normal", summary="s", path=None, dtype="float32",
                    shape=shape, axis=0, flags=FLAGS, eps=1e-3, momentum=0.9, cudnn_off=False,
                    inputs={"x": x}, error=ErrorSpec("ValueError", "x"))
        loaded = load_case(write_case(case, tmp_path))
        assert loaded.inputs["x"].shape == shape and loaded.shape == shape


def test_bytes_are_deterministic(tmp_path):
    first = write_case(make_case("bfloat16", "bwd", shape=(3000, 2)), tmp_path / "a")
    second = write_case(make_case("bfloat16", "bwd", shape=(3000, 2)), tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    assert first.with_suffix(".bin").read_bytes() == second.with_suffix(".bin").read_bytes()
    assert render_case(make_case()) == render_case(make_case())
    text = first.read_text()
    assert not re.search(r"20\d\d-\d\d-\d\d", text), "a case file must not hold a date"


def test_layout_follows_the_schema(tmp_path):
    text = write_case(make_case(), tmp_path).read_text()
    doc = yaml.safe_load(text)  # the pure-Python safe loader reads it too
    assert list(doc) == ["schema", "id", "op", "family", "summary", "oracle", "params", "inputs",
                         "expected", "sha256"]
    assert doc["schema"] == 1
    body, _, last = text.rstrip("\n").rpartition("\n")
    assert last == "sha256: " + hashlib.sha256((body + "\n").encode()).hexdigest()
    assert text.startswith("# Generated by `python -m oracle.generate`")
    assert float.fromhex(doc["params"]["eps"]) == 1e-3
    assert doc["inputs"]["x"]["data"][:5] == ["-0x0.0p+0", "0x0.0p+0", "inf", "-inf", "nan"]


def test_large_arrays_go_to_the_sidecar(tmp_path):
    path = write_case(make_case("float16", "fwd", shape=(2049, 2)), tmp_path)  # 4098 > 4096
    doc = yaml.safe_load(path.read_text())
    assert doc["inputs"]["x"]["sidecar"] == {"offset": 0, "count": 4098}
    assert doc["expected"]["y"]["sidecar"]["count"] == 4098
    assert doc["sidecar"]["file"] == path.stem + ".bin"
    blob = path.with_suffix(".bin").read_bytes()
    assert doc["sidecar"]["sha256"] == hashlib.sha256(blob).hexdigest()
    # x as float16 bits; y as float16 rounded + float64 hi, lo + float32 cond.
    assert len(blob) == 4098 * 2 + 4098 * (2 + 8 + 8 + 4)
    small = write_case(make_case("float16", "fwd", shape=(2048, 2)), tmp_path)  # 4096: inline
    assert "data" in yaml.safe_load(small.read_text())["inputs"]["x"]
    assert not small.with_suffix(".bin").exists()


def test_decimal_values_have_32_significant_digits():
    assert decimal_value(1.0, 2.0**-80) == "1.0000000000000000000000008271806e+00"
    assert decimal_value(-0.0, 0.0) == "-0.0e+00"
    assert decimal_value(1.5, 0.0) == "1.5e+00"
    assert decimal_value(float("nan"), 0.0) == "nan"
    assert decimal_value(-math.inf, 0.0) == "-inf"
    assert decimal_value(1 / 3, 0.0).startswith("3.3333333333333331482961625624739e-01")
    assert hex_float(3.0) == "0x1.8p+1" and hex_float(-0.0) == "-0x0.0p+0"


def test_load_cases_sorted_and_filtered(tmp_path):
    for dtype in ("float64", "float16", "float32"):
        write_case(make_case(dtype), tmp_path)
    (tmp_path / "INDEX.md").write_text("not a case")
    ids = [c.id for c in load_cases(tmp_path)]
    assert ids == sorted(ids) and len(ids) == 3
    assert [p.stem for p in iter_case_paths(tmp_path, "*_fp16_*")] == [make_case("float16").id]
    assert len(load_cases(tmp_path, "fp(32|64)")) == 2


# --- damaged files ------------------------------------------------------------------------


def _reseal(path: Path, text: str) -> None:
    """Write text with a correct final sha256 line: the damage must be caught by later checks."""
    body = text[: text.rindex("sha256: ")]
    path.write_text(body + f"sha256: {hashlib.sha256(body.encode()).hexdigest()}\n")


def _rejects(path: Path, field: str):
    __tracebackhide__ = True
    with pytest.raises(CaseFileError) as info:
        load_case(path)
    message = str(info.value)
    assert str(path) in message, f"message {message!r} does not name the file"
    assert field in message, f"message {message!r} does not name the field {field!r}"
    return message


@pytest.fixture
def written(tmp_path) -> Path:
    return write_case(make_case("float32", "bwd"), tmp_path)


def test_one_edited_hex_digit_breaks_the_digest(written):
    text = written.read_text()
    i = text.index("0x1.", text.index("inputs:"))
    digit = text[i + 4]
    written.write_text(text[: i + 4] + ("3" if digit != "3" else "5") + text[i + 5:])
    _rejects(written, "sha256")


def test_missing_digest_line(written):
    text = written.read_text()
    written.write_text(text[: text.rindex("sha256: ")])
    _rejects(written, "sha256")


def test_wrong_type(written):
    _reseal(written, written.read_text().replace("  axis: 1\n", "  axis: '1'\n"))
    _rejects(written, "params.axis")


def test_bool_is_not_an_integer(written):
    _reseal(written, written.read_text().replace("  axis: 1\n", "  axis: true\n"))
    _rejects(written, "params.axis")


def test_missing_field(written):
    _reseal(written, written.read_text().replace("  cudnn_off: false\n", ""))
    _rejects(written, "params.cudnn_off")


def test_unknown_field(written):
    _reseal(written, written.read_text().replace("schema: 1\n", "schema: 1\nextra: 3\n"))
    _rejects(written, "extra")


def test_unknown_schema(written):
    _reseal(written, written.read_text().replace("schema: 1\n", "schema: 2\n"))
    assert "schema=2" in _rejects(written, "schema")


def test_data_length_mismatch(written):
    text = written.read_text()
    start = text.index("data: [", text.index("  x:")) + len("data: [")
    end = text.index(",", start) + 2
    _reseal(written, text[:start] + text[end:])
    _rejects(written, "inputs.x.data")


def test_expected_length_mismatch(written):
    text = written.read_text()
    start = text.index("cond: [", text.index("  dx:")) + len("cond: [")
    end = text.index(",", start) + 2
    _reseal(written, text[:start] + text[end:])
    _rejects(written, "expected.dx.cond")


def test_value_not_representable_in_the_dtype(written):
    text = written.read_text()
    _reseal(written, text.replace("0x1.000002p+0'", "0x1.0000021p+0'", 1))
    _rejects(written, "inputs.x.data")


def test_gamma_of_the_wrong_length(written):
    text = written.read_text()
    g = text.index("  gamma:")
    start = text.index("data: [", g) + len("data: [")
    end = text.index(",", start) + 2
    _reseal(written, text[:g] + text[g:start].replace("shape: [3]", "shape: [2]") + text[end:])
    _rejects(written, "inputs.gamma")


def test_id_must_match_the_file_name(written):
    other = written.with_name("fwd_" + written.name[4:])
    written.rename(other)
    _rejects(other, "id")


def test_sidecar_digest_mismatch(tmp_path):
    path = write_case(make_case("float64", "fwd", shape=(2100, 2)), tmp_path)
    blob = bytearray(path.with_suffix(".bin").read_bytes())
    blob[100] ^= 0x01
    path.with_suffix(".bin").write_bytes(bytes(blob))
    _rejects(path, "sidecar.sha256")


def test_sidecar_of_the_wrong_size(tmp_path):
    path = write_case(make_case("float64", "fwd", shape=(2100, 2)), tmp_path)
    bin_path = path.with_suffix(".bin")
    blob = bin_path.read_bytes() + b"\0" * 8
    bin_path.write_bytes(blob)
    text = path.read_text()
    old = re.search(r"sha256: ([0-9a-f]{64})}", text).group(1)
    _reseal(path, text.replace(old, hashlib.sha256(blob).hexdigest()))
    _rejects(path, "sidecar.file")


def test_missing_sidecar(tmp_path):
    path = write_case(make_case("float64", "fwd", shape=(2100, 2)), tmp_path)
    path.with_suffix(".bin").unlink()
    _rejects(path, "sidecar.file")


def test_huge_declared_size_is_rejected_before_allocation(written):
    text = written.read_text().replace("  shape: [4, 3]\n", "  shape: [100000000000, 3]\n", 1)
    _reseal(written, text)
    _rejects(written, "params.shape")


def test_huge_sidecar_count_is_rejected(tmp_path):
    path = write_case(make_case("float64", "fwd", shape=(2100, 2)), tmp_path)
    text = path.read_text().replace("    shape: [2100, 2]\n    sidecar: {offset: 0, count: 4200}",
                                    "    shape: [2100, 2000000]\n    sidecar: {offset: 0, count: 4200000000}")
    _reseal(path, text)
    _rejects(path, "inputs.x.shape")


def test_python_object_tag_is_rejected(written):
    text = written.read_text().replace("family: normal\n",
                                       "family: !!python/object/apply:os.system ['true']\n")
    _reseal(written, text)
    _rejects(written, "<yaml>")


def test_python_tag_is_rejected_even_by_the_parser(tmp_path):
    # Whatever the pre-scan, yaml's safe constructor alone refuses the tag too.
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.load("a: !!python/object/apply:os.system ['true']\n",
                  Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def test_alias_bomb_is_rejected(written):
    bomb = ["a: &a ['lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol']"]
    for k in "bcdefghi":
        prev = chr(ord(k) - 1)
        bomb.append(f"{k}: &{k} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, "
                    f"*{prev}, *{prev}]")
    text = written.read_text().replace("schema: 1\n", "schema: 1\n" + "\n".join(bomb) + "\n")
    _reseal(written, text)
    _rejects(written, "<yaml>")


def test_single_alias_is_rejected(written):
    text = written.read_text()
    text = text.replace("family: normal\n", "family: &f normal\n").replace(
        "summary: ", "nick: *f\nsummary: ")
    _reseal(written, text)
    _rejects(written, "<yaml>")


def test_not_yaml_at_all(tmp_path):
    path = tmp_path / "fwd_x.yaml"
    body = "schema: [1,\n"
    path.write_text(body + f"sha256: {hashlib.sha256(body.encode()).hexdigest()}\n")
    _rejects(path, "<yaml>")


def test_wrong_expected_dtype(written):
    text = written.read_text().replace("  dgamma:\n    dtype: float32", "  dgamma:\n    dtype: float64")
    _reseal(written, text)
    _rejects(written, "expected.dgamma")


def test_negative_condition_scale(written):
    text = written.read_text()
    start = text.index("cond: [", text.index("  dbeta:")) + len("cond: [")
    _reseal(written, text[:start] + "-1.0" + text[text.index(",", start):])
    _rejects(written, "expected.dbeta.cond")
