"""The input generator: reproducible bits, independence from numpy's random state, and the
properties each data family promises (checked with exact arithmetic where they are exact)."""
from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from bnspec.flags import DEFAULT_EPS, DTYPES, numpy_dtype
from bnspec.formats import FORMATS
from oracle.inputs import FAMILIES, LARGE_OFFSET, Stream, make_inputs, round_to

SHAPE, AXIS = (4, 6, 5), 1  # C = 6, M = 20 (even)
GOLDEN = 0x9E3779B97F4A7C15
MASK = (1 << 64) - 1


def _splitmix64(state: int, count: int) -> list[int]:
    """Reference splitmix64 (Steele, Lea, Flood 2014) in Python integers."""
    out = []
    for _ in range(count):
        state = (state + GOLDEN) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        out.append(z ^ (z >> 31))
    return out


def _inputs(family="normal", dtype="float32", shape=SHAPE, axis=AXIS, **kw):
    kw.setdefault("with_dy", True)
    kw.setdefault("key", "case-id")
    return make_inputs(family, dtype, shape, axis, **kw)


def _channels(a: np.ndarray, axis: int = AXIS) -> np.ndarray:
    """Return a as float64 (C, M)."""
    a = np.moveaxis(a.astype(np.float64), axis, 0)
    return a.reshape(a.shape[0], -1)


def _bits(a):
    return np.ascontiguousarray(a).view(f"u{a.dtype.itemsize}")


def test_stream_is_splitmix64():
    s = Stream(0, "x")
    s.key = np.uint64(0)
    assert [int(w) for w in s.words(5)] == _splitmix64(0, 5)
    assert _splitmix64(0, 1) == [0xE220A8397B1DCDAF]  # published first output for seed 0
    s = Stream(0, "x")
    key = int(s.key)
    first = s.words(3)
    assert [int(w) for w in first] == _splitmix64(key, 3)
    assert [int(w) for w in s.words(2)] == _splitmix64(key, 5)[3:]  # the counter advances


def test_variates_have_their_distribution():
    s = Stream(7, "stats")
    u = s.uniform(200_000)
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.005
    z = s.normal(200_000)
    assert abs(z.mean()) < 0.01 and abs(z.var() - 1) < 0.01 and np.abs(z).max() < 6
    k = s.integers(100_000, -3, 3)
    assert set(np.unique(k)) == set(range(-3, 4))


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_same_spec_same_bits_whatever_numpy_random_state(family, dtype):
    shape = {"one_per_channel": (1, 4), "long": (65537, 1)}.get(family, SHAPE)
    np.random.seed(1)
    first = _inputs(family, dtype, shape)
    np.random.seed(12345)
    np.random.default_rng(99).normal(size=1000)
    second = _inputs(family, dtype, shape)
    assert list(first) == ["x", "gamma", "beta", "running_mean", "running_var", "dy"]
    for name in first:
        assert np.array_equal(_bits(first[name]), _bits(second[name])), name
    other = _inputs(family, dtype, shape, key="another-case")
    assert not np.array_equal(_bits(first["x"]), _bits(other["x"])), "the key selects the data"


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_dtypes_and_exact_representability(family, dtype):
    shape = {"one_per_channel": (1, 4), "long": (65537, 1)}.get(family, SHAPE)
    d = _inputs(family, dtype, shape)
    assert d["x"].dtype == numpy_dtype(dtype) and d["dy"].dtype == numpy_dtype(dtype)
    assert d["x"].shape == shape and d["dy"].shape == shape
    c = shape[AXIS]
    for name in ("gamma", "beta", "running_mean", "running_var"):
        assert d[name].dtype == numpy_dtype(DTYPES[dtype].param), name
        assert d[name].shape == (c,)
        assert np.all(np.isfinite(d[name].astype(np.float64))), name
    assert np.all(d["running_var"].astype(np.float64) > 0)
    if c > 1:
        assert len(set(d["gamma"].astype(np.float64))) > 1, "gamma must vary"
    assert np.all(d["beta"].astype(np.float64) != 0)


def test_round_to_rounds_once():
    # ml_dtypes casts float64 -> bfloat16 through float32 and rounds twice.
    v = 1 + 2.0**-8 + 2.0**-30
    assert float(round_to(np.array([v]), "bfloat16")[0]) == 1 + 2.0**-7
    assert round_to(np.array([v]), "bfloat16").dtype == np.dtype(ml_dtypes.bfloat16)
    assert float(round_to(np.array([65520.0]), "float16")[0]) == math.inf
    assert float(round_to(np.array([2.0**-25 * 1.5]), "float16")[0]) == 2.0**-24


def _exact_stats(row) -> tuple[Fraction, Fraction]:
    q = [Fraction(float(v)) for v in row]
    mean = sum(q) / len(q)
    return mean, sum((v - mean) ** 2 for v in q) / len(q)


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_small_int_has_integer_mean_and_unit_variance(dtype):
    d = _inputs("small_int", dtype)
    x = _channels(d["x"])
    assert np.all(np.abs(x) <= 3) and np.all(x == np.rint(x))
    for row in x:
        mean, var = _exact_stats(row)
        assert mean.denominator == 1 and var == 1
    assert np.all(_channels(d["dy"]) == np.rint(_channels(d["dy"])))
    for name in ("gamma", "beta", "running_mean", "running_var"):
        v = d[name].astype(np.float64)
        assert np.all(v * 4 == np.rint(v * 4)), f"{name} must be a short dyadic"


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_large_offset_ratio(dtype):
    ratio, _ = LARGE_OFFSET[dtype]
    assert ratio >= 1e4 or dtype in ("float16", "bfloat16")
    x = _channels(_inputs("large_offset", dtype, shape=(400, 3, 5))["x"])
    mean, std = x.mean(axis=1), x.std(axis=1)
    assert np.all(np.abs(mean) / std > ratio / 2)
    spacing = FORMATS[dtype].ulp(mean)
    assert np.all(std >= 1.5 * spacing), "the spread must stay resolvable in the dtype"


@pytest.mark.parametrize("eps", [DEFAULT_EPS, 1e-5, 1.0, 0.0])
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_tiny_var_is_far_below_and_near_eps(dtype, eps):
    x = _channels(_inputs("tiny_var", dtype, shape=(40, 4, 5), eps=eps)["x"])
    e = eps or DEFAULT_EPS
    var = np.array([float(_exact_stats(row)[1]) for row in x])
    assert np.all(var[0::2] < 1e-2 * e) and np.all(var[0::2] > 0)
    assert np.all((var[1::2] > 0.2 * e) & (var[1::2] < 5 * e))


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_constant_channels(dtype):
    x = _channels(_inputs("constant", dtype)["x"])
    assert np.all(x == x[:, :1])
    assert np.all(x[1] == 0)


def test_shape_requirements_of_one_per_channel_and_long():
    with pytest.raises(ValueError, match="one_per_channel"):
        _inputs("one_per_channel", "float32", SHAPE)
    with pytest.raises(ValueError, match="long"):
        _inputs("long", "float32", (65536, 1))
    assert _inputs("long", "float16", (2, 1, 32769), axis=1)["x"].shape == (2, 1, 32769)


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_special_channels(dtype):
    x = _channels(_inputs("special", dtype)["x"])
    fmt = FORMATS[dtype]
    tiny = math.ldexp(1.0, fmt.emin)
    mixed, nan, sub, inf, infs, normal = x
    assert np.all(np.isfinite(mixed)) and np.any(mixed == 0) and np.any(np.signbit(mixed) & (mixed == 0))
    assert np.any((mixed != 0) & (np.abs(mixed) < tiny)), "mixed channel needs subnormals"
    assert np.isnan(nan).sum() == 1
    assert np.all(np.abs(sub) < tiny) and np.any(sub != 0)
    assert np.sum(inf == math.inf) == 1 and not np.any(np.isnan(inf))
    assert np.sum(infs == math.inf) == 1 and np.sum(infs == -math.inf) == 1
    assert np.all(np.isfinite(normal)) and np.all(np.abs(normal[normal != 0]) >= tiny)


def test_f16_overflow_sums_and_squares_overflow_float16():
    x = _inputs("f16_overflow", "float16")["x"]
    cm = np.moveaxis(x, AXIS, 0).reshape(x.shape[AXIS], -1)
    assert np.all(np.isfinite(x.astype(np.float64)))
    assert np.all(np.abs(x.astype(np.float64)) > 30000)
    with np.errstate(over="ignore"):
        assert np.all(np.isinf(cm[1:, :2].sum(axis=1, dtype=np.float16)))
        assert np.all(np.isinf(cm * cm))
    assert set(np.abs(cm[0].astype(np.float64))) == {65504.0}


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_bf16_rounding_outputs_sit_on_bfloat16_ties(dtype):
    d = _inputs("bf16_rounding", dtype)
    x = _channels(d["x"])
    for row, rm, rv in zip(x, d["running_mean"].astype(np.float64),
                           d["running_var"].astype(np.float64)):
        mean, var = _exact_stats(row)
        assert mean == Fraction(rm) and var == Fraction(rv), "running stats = batch stats"
        assert math.log2(rv) == int(math.log2(rv))
    beta = d["beta"].astype(np.float64)
    as_bf16 = round_to(beta, "bfloat16").astype(np.float64)
    assert np.all(as_bf16 != beta), "beta must not be a bfloat16 number"
    # A tie: the two bfloat16 neighbours are equally far.
    spacing = FORMATS["bfloat16"].ulp(beta)
    assert np.all(np.abs(np.abs(beta - as_bf16) - spacing / 2) == 0)
    gamma = np.abs(d["gamma"].astype(np.float64))
    assert np.all(np.log2(gamma) == np.rint(np.log2(gamma)))


def test_channel_layout_follows_axis():
    a = _inputs("constant", "float64", shape=(2, 3, 4), axis=-1)["x"]
    # axis -1: the channel index is the last index; each channel constant over the others.
    assert np.all(a == a[:1, :1, :])
    b = _inputs("constant", "float64", shape=(5, 2), axis=0)["x"]
    assert np.all(b == b[:, :1])


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="family="):
        make_inputs("nope", "float32", SHAPE, 1, with_dy=False)
    with pytest.raises(ValueError, match="dtype="):
        make_inputs("normal", "int8", SHAPE, 1, with_dy=False)
    with pytest.raises(ValueError, match="axis="):
        make_inputs("normal", "float32", SHAPE, 3, with_dy=False)
