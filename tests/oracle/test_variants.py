"""The oracle's semantic variants against float64 formulas written out independently."""
import numpy as np
import pytest

import oracle
from oracle.variants import VARIANTS, check_variants

RNG = np.random.default_rng(20261125)
X = RNG.standard_normal((6, 3, 4))
G, B = RNG.standard_normal(3), RNG.standard_normal(3)
RM, RV = RNG.standard_normal(3), RNG.random(3) + 0.5
DY = RNG.standard_normal(X.shape)
M = 24
EPS = float(np.float32(1e-3))
MOM = float(np.float32(0.9))
MEAN = X.mean(axis=(0, 2))
VAR = X.var(axis=(0, 2))


def _bc(v):
    return v[None, :, None]


def expected(variant):
    """(invstd, y, running_var after a step, running_var after forward) in float64."""
    var = VAR * M / (M - 1) if variant == "variance_unbiased" else VAR
    eps = EPS
    if variant == "eps_outside_sqrt":
        invstd = 1 / (np.sqrt(var) + eps)
    else:
        invstd = 1 / np.sqrt(var + eps)
    g = G  # fix_gamma=False below
    y = (X - _bc(MEAN)) * _bc(invstd * g) + _bc(B)
    mom = 1 - MOM if variant == "momentum_inverted" else MOM
    recovered = 1 / invstd**2 - EPS
    if variant == "running_var_unbiased":
        recovered = VAR * M / (M - 1)
    stepped = RV * mom + recovered * (1 - mom)
    if variant == "stats_not_updated":
        stepped = RV
    after_forward = stepped if variant == "stats_updated_in_forward" else RV
    returned_invstd = var if variant == "invstd_as_var" else invstd
    return returned_invstd, y, stepped, after_forward


#: Variants with their own tests (tests/oracle/test_framework_variants.py).
FRAMEWORK_VARIANTS = {"fp16_stepwise_rounding", "eps_float32", "invstd_inf_at_zero",
                      "running_var_from_batch_var", "no_mean_invstd",
                      "no_mean_invstd_with_running_stats"}


@pytest.mark.parametrize("variant", sorted(set(VARIANTS) - {"fix_gamma_ignored", "eps_min_1e-5",
                                                             "eps_not_cast"}
                                           - FRAMEWORK_VARIANTS))
def test_variant_matches_its_formula(variant):
    kw = dict(training=True, fix_gamma=False, output_mean_var=True, variants=[variant])
    fwd = oracle.evaluate(X, G, B, RM, RV, **kw)
    step = oracle.evaluate(X, G, B, RM, RV, DY, **kw)
    invstd, y, stepped, after_forward = expected(variant)
    np.testing.assert_allclose(fwd["invstd"].rounded, invstd, rtol=1e-13)
    np.testing.assert_allclose(fwd["y"].rounded, y, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(step["running_var"].rounded, stepped, rtol=1e-13)
    np.testing.assert_allclose(fwd["running_var"].rounded, after_forward, rtol=1e-13)


def test_fix_gamma_ignored_uses_gamma():
    plain = oracle.evaluate(X, G, B, RM, RV, DY, training=True, fix_gamma=False)
    ignored = oracle.evaluate(X, G, B, RM, RV, DY, training=True, fix_gamma=True,
                              variants=["fix_gamma_ignored"])
    assert np.array_equal(plain["dgamma"].rounded, ignored["dgamma"].rounded)
    assert np.any(ignored["dgamma"].rounded != 0)


def test_eps_min_and_eps_not_cast_change_only_what_they_should():
    x16 = X.astype(np.float16)
    p = dict(gamma=G.astype(np.float32), beta=B.astype(np.float32),
             running_mean=RM.astype(np.float32), running_var=RV.astype(np.float32))
    kw = dict(training=True, output_mean_var=True)
    base = oracle.evaluate(x16, **p, eps=1e-7, **kw)
    clamped = oracle.evaluate(x16, **p, eps=1e-7, variants=["eps_min_1e-5"], **kw)
    explicit = oracle.evaluate(x16, **p, eps=1e-5, **kw)
    assert np.array_equal(clamped["invstd"].rounded, explicit["invstd"].rounded)
    assert not np.array_equal(clamped["invstd"].rounded, base["invstd"].rounded)
    # float16(1e-3) != 1e-3: adding the double eps moves invstd (float32 output).
    cast = oracle.evaluate(x16, **p, eps=1e-3, **kw)
    uncast = oracle.evaluate(x16, **p, eps=1e-3, variants=["eps_not_cast"], **kw)
    var = x16.astype(np.float64).var(axis=(0, 2))
    np.testing.assert_allclose(uncast["invstd"].rounded, 1 / np.sqrt(var + 1e-3), rtol=1e-7)
    np.testing.assert_allclose(cast["invstd"].rounded,
                               1 / np.sqrt(var + float(np.float16(1e-3))), rtol=1e-7)


def test_unknown_variant_is_named():
    with pytest.raises(ValueError, match="no_such_variant"):
        check_variants(["no_such_variant"])
    with pytest.raises(ValueError, match="no_such_variant"):
        oracle.evaluate(X, G, B, RM, RV, variants=["no_such_variant"])
