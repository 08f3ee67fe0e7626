"""Tolerance arithmetic of conformance.compare, checked against exact rational arithmetic."""
from fractions import Fraction

import numpy as np
import pytest

from bnspec.formats import FORMATS
from conformance import compare as cmp
from oracle.api import Expected


def expected(values_hi, dtype="float64", lo=None, cond=None, rounded=None, name="y"):
    hi = np.asarray(values_hi, dtype=np.float64)
    lo = np.zeros_like(hi) if lo is None else np.asarray(lo, dtype=np.float64)
    cond = np.abs(hi) if cond is None else np.asarray(cond, dtype=np.float64)
    if rounded is None:
        from bnspec.formats import round_dd

        rounded, _ = round_dd(hi, lo, np.zeros_like(hi), FORMATS[dtype])
    return Expected(name, dtype, hi, lo, np.asarray(rounded, dtype=np.float64), cond)


def exact_units(got: float, hi: float, lo: float, cond: float, dtype: str) -> Fraction:
    """|got - (hi + lo)| / (u * (cond + 2**emin)), in exact rational arithmetic."""
    fmt = FORMATS[dtype]
    diff = abs(Fraction(got) - Fraction(hi) - Fraction(lo))
    return diff / (Fraction(fmt.unit_roundoff) * (Fraction(cond) + Fraction(2) ** fmt.emin))


def test_float64_is_compared_with_hi_plus_lo():
    # got == hi exactly: the whole error is lo, far below float64 resolution of hi.
    hi, lo = 1.0, 2.0**-60
    e = expected([hi], lo=[lo], cond=[1.0])
    r = cmp.compare("y", np.array([hi]), e, limit=8.0)
    assert r.worst_units == pytest.approx(float(exact_units(hi, hi, lo, 1.0, "float64")))
    assert r.worst_units == pytest.approx(2.0**-7)


def test_float64_lo_counts_in_ulp():
    # value = 1 + 0.375 ulp (hi = 1 is its rounding): got = 1 is 0.375 ulp away, the next
    # double 0.625 ulp; a float64-only comparison would call the first exact.
    ulp = 2.0**-52
    e = expected([1.0], lo=[0.375 * ulp], cond=[1.0])
    low = cmp.compare("y", np.array([1.0]), e, limit=8.0)
    high = cmp.compare("y", np.array([1.0 + ulp]), e, limit=8.0)
    assert low.index_ulp == 0.375 and high.index_ulp == 0.625
    assert low.worst_units == 0.375 * 2 and high.worst_units == 0.625 * 2


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_units_match_exact_arithmetic(dtype):
    rng = np.random.default_rng(7)
    fmt = FORMATS[dtype]
    hi = rng.normal(size=50) * 2.0 ** rng.integers(-8, 8, size=50)
    lo = hi * 2.0**-53 * rng.uniform(-1, 1, size=50)
    cond = np.abs(hi) * rng.uniform(0.5, 4, size=50)
    e = expected(hi, dtype=dtype, lo=lo, cond=cond)
    # got: the rounded value moved by -3..3 ulp of the format
    steps = rng.integers(-3, 4, size=50)
    got64 = e.rounded + steps * fmt.ulp(e.rounded)
    got = got64.astype(fmt.numpy)
    errors = cmp.element_errors(got, e)
    for i in range(50):
        exact = exact_units(float(got64[i]), hi[i], lo[i], cond[i], dtype)
        assert errors.units[i] == pytest.approx(float(exact), rel=1e-12, abs=1e-300)
        ulp_exact = abs(Fraction(float(got64[i])) - Fraction(hi[i]) - Fraction(lo[i])) / Fraction(
            float(fmt.ulp(hi[i])))
        assert errors.ulp[i] == pytest.approx(float(ulp_exact), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_correctly_rounded_subnormals_pass(dtype):
    # cond of a subnormal result is itself subnormal: u * cond underflows (to 0 in float64),
    # yet the correctly rounded value must pass and its neighbours be measured finitely.
    fmt = FORMATS[dtype]
    tiny = fmt.min_subnormal
    hi = np.array([1000.3, 7.4, 0.6, -2.5]) * tiny
    e = expected(hi, dtype=dtype, cond=np.abs(hi))
    good = cmp.compare("mean", e.rounded.astype(fmt.numpy), e, limit=1.5)
    assert good.ok and good.worst_units <= 1.0, good
    off = (e.rounded + 3 * tiny).astype(fmt.numpy)
    bad = cmp.compare("mean", off, e, limit=1.5)
    assert not bad.ok and np.isfinite(bad.worst_units)
    for i in range(4):
        exact = exact_units(float(off.astype(np.float64)[i]), hi[i], 0.0, abs(hi[i]), dtype)
        assert cmp.element_errors(off, e).units[i] == pytest.approx(float(exact), rel=1e-12)


def test_worst_element_and_count():
    hi = np.linspace(1, 2, 12).reshape(3, 4)
    e = expected(hi, cond=np.ones_like(hi))
    got = hi.copy()
    got[1, 2] += 100 * 2.0**-53
    got[2, 0] += 20 * 2.0**-53
    r = cmp.compare("y", got, e, limit=8.0)
    assert r.worst_index == (1, 2) and r.n_bad == 2 and r.n == 12
    assert r.worst_units == pytest.approx(100, rel=1e-3)
    assert r.fraction == pytest.approx(100 / 8, rel=1e-3)
    assert r.worst_kind == cmp.KIND_TOL and not r.ok


def test_within_tolerance_passes():
    hi = np.array([1.0, -3.0])
    e = expected(hi, cond=np.abs(hi))
    got = hi + np.array([7.9, -7.9]) * 2.0**-53 * np.abs(hi)
    r = cmp.compare("y", got, e, limit=8.0)
    assert r.ok and r.n_bad == 0 and r.worst_kind is None
    assert 0.9 < r.fraction <= 1.0


def test_cond_zero_must_be_exact():
    e = expected([0.0, 0.5, 0.25], dtype="float32", cond=[0.0, 0.0, 0.0])
    ok = cmp.compare("running_mean", np.array([-0.0, 0.5, 0.25], np.float32), e, limit=1e9)
    assert ok.ok and ok.worst_units == 0.0
    off = np.array([0.0, np.nextafter(np.float32(0.5), np.float32(1)), 0.25], np.float32)
    bad = cmp.compare("running_mean", off, e, limit=1e9)
    assert not bad.ok and bad.worst_index == (1,) and bad.worst_kind == cmp.KIND_EXACT
    assert bad.worst_units == np.inf and bad.index_ulp == pytest.approx(1.0)


@pytest.mark.parametrize("value, got, ok, kind", [
    (np.nan, np.nan, True, None),
    (np.nan, -np.float64("nan"), True, None),  # any NaN
    (np.nan, 0.0, False, cmp.KIND_NOT_NAN),
    (np.inf, np.inf, True, None),
    (np.inf, -np.inf, False, cmp.KIND_WRONG_INF),
    (-np.inf, 1e300, False, cmp.KIND_WRONG_INF),
    (1.0, np.nan, False, cmp.KIND_NAN),
    (1.0, np.inf, False, cmp.KIND_INF),
])
def test_special_values_exactly(value, got, ok, kind):
    e = expected([value], cond=[1e300])  # a huge cond must not excuse a special value
    r = cmp.compare("y", np.array([got]), e, limit=64.0)
    assert r.ok is ok and r.worst_kind == kind
    assert r.worst_units == (0.0 if ok else np.inf)


def test_overflowing_value_accepts_the_rounded_inf():
    fmt = FORMATS["float16"]
    value = fmt.max_finite * 1.01  # rounds to +inf in float16
    e = expected([value], dtype="float16", cond=[value])
    assert e.rounded[0] == np.inf
    assert cmp.compare("y", np.array([np.inf], np.float16), e, limit=1.5).ok
    assert not cmp.compare("y", np.array([-np.inf], np.float16), e, limit=1.5).ok


@pytest.mark.parametrize("got, problem", [
    (None, "returned no 'y'"),
    (np.zeros(3, np.float64), "y.dtype=float64 but should be float32"),
    (np.zeros(4, np.float32), "y.shape=(4,) but should be (3,)"),
    ([0.0, 0.0, 0.0], "not a numpy array"),
])
def test_structural_problems(got, problem):
    e = expected(np.zeros(3), dtype="float32", cond=np.ones(3))
    r = cmp.compare("y", got, e, limit=8.0)
    assert not r.ok and problem in r.problem and r.worst_units == np.inf


def test_record_is_json_ready():
    import json

    e = expected([1.0], cond=[0.0])
    record = cmp.compare("y", np.array([2.0]), e, limit=8.0).as_record()
    text = json.dumps(record, allow_nan=False)
    assert json.loads(text)["fraction"] == "inf"


def _mixed_output(n: int, seed: int = 5):
    """Return (got, Expected) of n float32 elements with in- and out-of-tolerance errors,
    exact (cond 0) elements, NaN and inf, the worst error appearing twice."""
    rng = np.random.default_rng(seed)
    hi = rng.standard_normal(n)
    rounded = hi.astype(np.float32).astype(np.float64)
    cond = np.abs(hi) + 1.0
    cond[::17] = 0.0
    hi[5], rounded[5] = np.nan, np.nan
    hi[9], rounded[9] = np.inf, np.inf
    got = rounded.astype(np.float32)
    got[rng.integers(0, n, 40)] += np.float32(1e-4)
    got[[30, n - 30]] += np.float32(0.5)
    e = Expected("y", "float32", hi, np.zeros(n), rounded, cond)
    return got, e


def test_sliced_verdict_equals_the_whole(monkeypatch):
    got, e = _mixed_output(5000)
    whole = cmp.compare("y", got, e, limit=8.0)
    monkeypatch.setattr(cmp, "SLICE", 7)
    sliced = cmp.compare("y", got, e, limit=8.0)
    # the first exact miss (inf units) wins over later ones in later slices
    assert sliced == whole and whole.n_bad > 0 and whole.worst_units == np.inf


def test_sliced_samples_equal_the_whole(monkeypatch):
    from conformance import samples

    got, e = _mixed_output(3000)
    whole = samples.output_sample(got, e)
    monkeypatch.setattr(cmp, "SLICE", 11)
    assert samples.output_sample(got, e) == whole and len(whole["ulp"]) > samples.SAMPLE_SIZE
