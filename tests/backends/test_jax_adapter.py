"""Tests of the jax adapter (backends.jax_adapter): it skips cleanly without JAX/Flax, and it
maps MXNet's flags to flax.linen.BatchNorm as its module docstring says. The references are
the batch-norm formulas written out in float64 numpy here, never the adapter's output."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from backends.frameworks import UnavailableBackend
from tests.backends.batch_norm_formulas import (EPS, MOMENTUM, assert_mxnet_running_update,
                                                assert_running_stats_kept_and_used,
                                                batch_stats, data, first_case_skip_reason, flags,
                                                normalized)

HAS_JAX = (importlib.util.find_spec("jax") is not None
           and importlib.util.find_spec("flax") is not None)
needs_jax = pytest.mark.skipif(not HAS_JAX, reason="JAX/Flax not installed: pip install -e "
                                                    "'.[jax]' runs these tests")
@pytest.fixture(scope="module")
def jax_backend():
    if not HAS_JAX:
        pytest.skip("JAX/Flax not installed: pip install -e '.[jax]' runs these tests")
    from backends.jax_adapter import factory
    return factory()


def test_absent_flax_loads_and_skips_every_case(monkeypatch):
    monkeypatch.setitem(sys.modules, "flax", None)  # import fails with ImportError
    from backends.jax_adapter import factory, twopass_factory

    for make, name in ((factory, "jax"), (twopass_factory, "jax-twopass")):
        backend = make()
        assert isinstance(backend, UnavailableBackend) and backend.name == name
        reason = first_case_skip_reason(backend)
        assert reason.startswith(f"{name}: ") and ".[jax]" in reason


@needs_jax
def test_training_normalizes_with_batch_stats_and_updates_running_stats_in_forward(
        jax_backend):
    x, gamma, beta, rm, rv = data()
    rm0, rv0 = rm.copy(), rv.copy()
    out = jax_backend.forward(x, gamma, beta, rm, rv, **flags())
    mean, var = batch_stats(x)
    np.testing.assert_allclose(out["y"], normalized(x, mean, var, gamma, beta), rtol=0, atol=2e-6)
    # MXNet's momentum convention (weight of the old value), the biased variance, at forward
    assert_mxnet_running_update(out, rm0, rv0, mean, var)
    np.testing.assert_array_equal(rm, out["running_mean"])  # written back into the caller's
    assert "mean" not in out and "invstd" not in out          # no_mean_invstd


@pytest.mark.parametrize("mode", [{"training": False}, {"use_global_stats": True}])
@needs_jax
def test_running_average_modes_use_and_keep_the_running_stats(jax_backend, mode):
    x, gamma, beta, rm, rv = data(seed=1)
    rm0, rv0 = rm.copy(), rv.copy()
    out = jax_backend.forward(x, gamma, beta, rm, rv, **flags(**mode))
    assert_running_stats_kept_and_used(out, x, gamma, beta, rm0, rv0, atol=2e-6)


@needs_jax
def test_fix_gamma_uses_ones_and_reports_zero_dgamma(jax_backend):
    x, gamma, beta, rm, rv = data(seed=2)
    dy = np.random.default_rng(3).normal(size=x.shape).astype(np.float32)
    y = jax_backend.forward(x, gamma, beta, rm.copy(), rv.copy(), **flags(fix_gamma=True))["y"]
    mean, var = batch_stats(x)
    np.testing.assert_allclose(y, normalized(x, mean, var, np.ones(3), beta), atol=2e-6)
    grads = jax_backend.backward(x, gamma, beta, rm, rv, dy, **flags(fix_gamma=True))
    np.testing.assert_array_equal(grads["dgamma"], np.zeros(3, np.float32))


@needs_jax
def test_backward_is_the_batch_norm_gradient(jax_backend):
    x, gamma, beta, rm, rv = data(seed=4)
    dy = np.random.default_rng(5).normal(size=x.shape)
    grads = jax_backend.backward(x, gamma, beta, rm, rv, dy.astype(np.float32), **flags())
    mean, var = batch_stats(x)
    xhat = normalized(x, mean, var, np.ones(3), np.zeros(3))
    m = x.size // 3
    sum_dy = dy.sum(axis=(0, 2))
    sum_dy_xhat = (dy * xhat).sum(axis=(0, 2))
    r = lambda a: a.reshape(1, -1, 1)  # noqa: E731
    dx = r(gamma / np.sqrt(var + EPS)) * (dy - r(sum_dy) / m - xhat * r(sum_dy_xhat) / m)
    np.testing.assert_allclose(grads["dbeta"], sum_dy, rtol=1e-5)
    np.testing.assert_allclose(grads["dgamma"], sum_dy_xhat, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads["dx"], dx, atol=2e-5)


@needs_jax
def test_negative_axis_is_flax_feature_axis(jax_backend):
    x, gamma, beta, rm, rv = data(shape=(4, 5, 3), seed=6)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    y = jax_backend.forward(x_last, gamma, beta, rm.copy(), rv.copy(), **flags(axis=-1))["y"]
    mean, var = batch_stats(x_last, axis=-1)
    np.testing.assert_allclose(y, normalized(x_last, mean, var, gamma, beta, axis=-1),
                               atol=2e-6)


@needs_jax
def test_float64_data_is_computed_in_float64(jax_backend):
    x, gamma, beta, rm, rv = data(dtype=np.float64, seed=7)
    y = jax_backend.forward(x, gamma, beta, rm, rv, **flags())["y"]
    assert y.dtype == np.float64
    mean, var = batch_stats(x)
    np.testing.assert_allclose(y, normalized(x, mean, var, gamma, beta), rtol=0, atol=1e-13)


@needs_jax
def test_16bit_data_gives_16bit_y_with_float32_statistics(jax_backend):
    x, gamma, beta, rm, rv = data(dtype=np.float16, seed=8)
    out = jax_backend.forward(x, gamma, beta, rm, rv, **flags())
    assert out["y"].dtype == np.float16 and out["running_var"].dtype == np.float32
    mean, var = batch_stats(x)
    np.testing.assert_allclose(out["y"], normalized(x, mean, var, gamma, beta), atol=4e-3)


@needs_jax
def test_default_variance_is_one_pass_and_twopass_is_not(jax_backend):
    """E[x^2] - E[x]^2 in float32 loses the variance of data far from zero; the two-pass
    backend keeps it."""
    from backends.jax_adapter import twopass_factory

    x, gamma, beta, rm, rv = data(shape=(64, 2, 64), seed=9, offset=3000.0)
    _, var = batch_stats(x)
    update = lambda b: b.forward(x, gamma, beta, np.zeros(2, np.float32),  # noqa: E731
                                 np.zeros(2, np.float32), **flags(momentum=0.0))["running_var"]
    fast_error = np.max(np.abs(update(jax_backend) - var) / var)
    twopass_error = np.max(np.abs(update(twopass_factory()) - var) / var)
    assert twopass_error < 1e-5 < fast_error


@needs_jax
def test_wrong_gamma_length_is_refused_and_nothing_written(jax_backend):
    x, gamma, beta, rm, rv = data(seed=10)
    rm0 = rm.copy()
    with pytest.raises((ValueError, TypeError)):
        jax_backend.forward(x, np.ones(4, np.float32), beta, rm, rv, **flags())
    np.testing.assert_array_equal(rm, rm0)


@needs_jax
def test_momentum_is_mxnets_float32_parameter(jax_backend):
    x, gamma, beta, rm, rv = data(dtype=np.float64, seed=11)
    rm0 = rm.copy()
    out = jax_backend.forward(x, gamma, beta, rm, rv, **flags())
    mean, _ = batch_stats(x)
    m32 = float(np.float32(MOMENTUM))
    np.testing.assert_allclose(out["running_mean"], m32 * rm0 + (1 - m32) * mean,
                               rtol=1e-14, atol=1e-15)
    assert np.max(np.abs(out["running_mean"] - (MOMENTUM * rm0 + (1 - MOMENTUM) * mean))) > 1e-9


@pytest.mark.parametrize("name, value", [("eps", None), ("eps", "abc"), ("momentum", None),
                                         ("momentum", True)])
def test_parameters_the_adapter_converts_are_refused_by_name(name, value):
    from backends.jax_adapter import _real

    with pytest.raises(TypeError, match=f"{name}={value!r}"):
        _real(name, value)
