"""The tolerance table: complete, explained, and consistent with correct rounding."""
import numpy as np
import pytest

from bnspec.flags import DTYPES
from bnspec.formats import FORMATS, round_float64
from conformance import tolerances as tol
from conformance.compare import compare
from oracle.api import Expected, output_dtype


def test_every_key_has_a_positive_limit_and_a_reason():
    tol.check_table(tol.TABLE)
    for key in ((p, o, d) for p in tol.PROFILES for o in tol.OUTPUTS for d in DTYPES):
        limit = tol.limit_for(*key)
        assert limit.units > 0 and len(limit.reason) > 20, key


def test_a_gap_or_a_duplicate_is_an_error():
    table = dict(tol.TABLE)
    del table[("strict", "y", "float16")]
    with pytest.raises(ValueError, match="'strict', 'y', 'float16'"):
        tol.check_table(table)
    row = (("strict",), ("y",), ("float32",), tol.Limit(1.0, "twice"))
    with pytest.raises(ValueError, match="given twice"):
        tol._expand((row, row))


def test_framework_is_never_stricter_than_strict():
    for (profile, output, dtype), limit in tol.TABLE.items():
        if profile == "framework":
            assert limit.units >= tol.TABLE[("strict", output, dtype)].units


@pytest.mark.parametrize("bad", ["loose", "", "STRICT"])
def test_unknown_profile_is_named(bad):
    with pytest.raises(ValueError, match=f"profile={bad!r}"):
        tol.limit_for(bad, "y", "float32")


def test_unknown_output_is_named():
    with pytest.raises(ValueError, match="output='z'"):
        tol.limit_for("strict", "z", "float32")


@pytest.mark.parametrize("profile", tol.PROFILES)
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("output", tol.OUTPUTS)
def test_correctly_rounded_output_passes(profile, dtype, output):
    # With cond = |value| (the least any condition scale can be), the correctly rounded
    # value is within 1 unit: every limit must accept it.
    out_dtype = output_dtype(output, dtype)
    fmt = FORMATS[out_dtype]
    rng = np.random.default_rng(3)
    value = rng.normal(size=200) * 2.0 ** rng.integers(-6, 6, size=200)
    value[:20] = rng.uniform(-600, 600, size=20) * fmt.min_subnormal  # gradual underflow
    rounded = round_float64(value, fmt)
    e = Expected(output, out_dtype, value, np.zeros_like(value), rounded, np.abs(value))
    result = compare(output, rounded.astype(fmt.numpy), e, tol.limit_for(profile, output,
                                                                          dtype).units)
    assert result.ok and result.worst_units <= 1.0
