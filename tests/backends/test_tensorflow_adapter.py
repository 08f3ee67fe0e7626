"""Tests of the tensorflow adapter (backends.tensorflow_adapter): it skips cleanly without
TensorFlow/Keras, its setup command is `python -m backends.env tensorflow`, and it maps MXNet's
flags to keras.layers.BatchNormalization as its module docstring says. The references are the
batch-norm formulas written out in float64 numpy here, never the adapter's output."""
from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest

from backends import env
from backends.frameworks import UnavailableBackend
from tests.backends.batch_norm_formulas import (EPS, MOMENTUM, assert_mxnet_running_update,
                                                assert_running_stats_kept_and_used,
                                                batch_stats, data, first_case_skip_reason, flags,
                                                normalized)

HAS_TF = (importlib.util.find_spec("tensorflow") is not None
          and importlib.util.find_spec("keras") is not None)
REASON = "TensorFlow/Keras not installed: python -m backends.env tensorflow runs these tests"
needs_tf = pytest.mark.skipif(not HAS_TF, reason=REASON)
@pytest.fixture(scope="module")
def tf_backend():
    if not HAS_TF:
        pytest.skip(REASON)
    from backends.tensorflow_adapter import factory
    return factory()


# --- without TensorFlow --------------------------------------------------------------------

def test_absent_tensorflow_loads_and_skips_every_case_with_the_setup_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import fails with ImportError
    from backends.tensorflow_adapter import factory

    backend = factory()
    assert isinstance(backend, UnavailableBackend) and backend.name == "tensorflow"
    reason = first_case_skip_reason(backend)
    assert reason.startswith("tensorflow: ") and "python -m backends.env tensorflow" in reason


def test_keras_on_another_backend_is_unavailable_with_the_reason(monkeypatch):
    """A Keras already loaded on JAX (KERAS_BACKEND=jax) would not run TensorFlow's kernels."""
    fake_keras = types.SimpleNamespace(__version__="3.15.1",
                                       backend=types.SimpleNamespace(backend=lambda: "jax"))
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    monkeypatch.setitem(sys.modules, "keras", fake_keras)
    from backends.tensorflow_adapter import factory

    backend = factory()
    assert isinstance(backend, UnavailableBackend)
    assert "'jax' backend" in backend.reason and "KERAS_BACKEND" in backend.reason


@pytest.mark.parametrize("dtype, policy", [("float64", "float64"), ("float32", "float32"),
                                           ("float16", "mixed_float16"),
                                           ("bfloat16", "mixed_bfloat16"),
                                           ("int32", "float32"), ("bool", "float32")])
def test_dtype_policy_keeps_float32_variables_for_16bit_data(dtype, policy):
    from backends.tensorflow_adapter import policy_of

    if dtype == "bfloat16":
        import ml_dtypes
        x = np.zeros(3, ml_dtypes.bfloat16)
    else:
        x = np.zeros(3, dtype)
    assert policy_of(x) == policy


@pytest.mark.parametrize("value, expected", [(0.9, 0.8999999761581421), (np.float64(0.1),
                                                                         0.10000000149011612),
                                             (1, 1.0), (0, 0.0)])
def test_real_momentum_is_mxnets_float32_value(value, expected):
    from backends.tensorflow_adapter import keras_momentum

    assert keras_momentum(value) == expected and type(keras_momentum(value)) is float


@pytest.mark.parametrize("value", [None, "0.9", True, [0.9]])
def test_other_momentum_goes_to_keras_as_given(value):
    from backends.tensorflow_adapter import keras_momentum

    assert keras_momentum(value) is value


def test_env_entry_installs_the_tensorflow_extra_in_process():
    framework = env.FRAMEWORKS["tensorflow"]
    assert framework.factory == "backends.tensorflow_adapter:factory"
    assert framework.extra == "tensorflow" and framework.own_env is None
    pins = env.extra_requirements("tensorflow")
    assert any(p.startswith("tensorflow-cpu==") for p in pins)
    assert any(p.startswith("keras==") for p in pins)


def test_env_check_without_tensorflow_fails_with_the_setup_command(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    assert env.main(["tensorflow", "--check"]) == 1
    assert "python -m backends.env tensorflow" in capsys.readouterr().err


# --- with TensorFlow -----------------------------------------------------------------------

@needs_tf
def test_keras_runs_moments_and_batch_normalization_never_the_fused_kernel(tf_backend):
    import keras
    import tensorflow as tf

    seen = set()
    for shape, axis, policy in (((4, 3, 5, 5), 1, "float32"), ((4, 5, 5, 3), -1, "float32"),
                                ((2, 3), 1, "float32"), ((2, 3, 4), -2, "float32"),
                                ((4, 5, 5, 3), -1, "mixed_float16"),
                                ((2, 3, 4, 5, 6), -1, "mixed_bfloat16"),
                                ((4, 5, 5, 3), 3, "float64")):
        layer = keras.layers.BatchNormalization(axis=axis, dtype=policy)
        layer.build(shape)
        dtype = layer.compute_dtype
        graph = tf.function(lambda x, layer=layer: layer(x, training=True)).get_concrete_function(
            tf.TensorSpec(shape, dtype)).graph
        ops = {op.type for op in graph.get_operations()}
        assert {"Mean", "SquaredDifference", "Rsqrt"} <= ops, (shape, axis, policy, ops)
        seen |= ops
    assert not {op for op in seen if op.startswith("FusedBatchNorm")}


@needs_tf
def test_training_normalizes_with_batch_stats_and_updates_moving_stats_in_forward(tf_backend):
    x, gamma, beta, rm, rv = data()
    rm0, rv0 = rm.copy(), rv.copy()
    out = tf_backend.forward(x, gamma, beta, rm, rv, **flags())
    mean, var = batch_stats(x)
    np.testing.assert_allclose(out["y"], normalized(x, mean, var, gamma, beta), rtol=0, atol=4e-6)
    # MXNet's momentum convention (weight of the old value), the biased variance, at forward
    assert_mxnet_running_update(out, rm0, rv0, mean, var)
    m = x.size // 3
    assert np.all(np.abs(out["running_var"] - (MOMENTUM * rv0 + (1 - MOMENTUM) * var
                                               * m / (m - 1))) > 1e-4)  # not Bessel-corrected
    np.testing.assert_array_equal(rm, out["running_mean"])  # written back into the caller's
    assert "mean" not in out and "invstd" not in out          # no_mean_invstd


@pytest.mark.parametrize("mode", [{"training": False}, {"use_global_stats": True}])
@needs_tf
def test_running_modes_use_and_keep_the_moving_stats(tf_backend, mode):
    x, gamma, beta, rm, rv = data(seed=1)
    rm0, rv0 = rm.copy(), rv.copy()
    out = tf_backend.forward(x, gamma, beta, rm, rv, **flags(**mode))
    assert_running_stats_kept_and_used(out, x, gamma, beta, rm0, rv0, atol=4e-6)


@needs_tf
def test_fix_gamma_uses_no_scale_and_reports_zero_dgamma(tf_backend):
    x, gamma, beta, rm, rv = data(seed=2)
    dy = np.random.default_rng(3).normal(size=x.shape).astype(np.float32)
    y = tf_backend.forward(x, gamma, beta, rm.copy(), rv.copy(), **flags(fix_gamma=True))["y"]
    mean, var = batch_stats(x)
    np.testing.assert_allclose(y, normalized(x, mean, var, np.ones(3), beta), atol=4e-6)
    grads = tf_backend.backward(x, gamma, beta, rm, rv, dy, **flags(fix_gamma=True))
    np.testing.assert_array_equal(grads["dgamma"], np.zeros(3, np.float32))
    np.testing.assert_allclose(grads["dbeta"], dy.astype(np.float64).sum(axis=(0, 2)), rtol=1e-5)


@needs_tf
def test_backward_is_the_batch_norm_gradient(tf_backend):
    x, gamma, beta, rm, rv = data(seed=4)
    dy = np.random.default_rng(5).normal(size=x.shape)
    grads = tf_backend.backward(x, gamma, beta, rm, rv, dy.astype(np.float32), **flags())
    mean, var = batch_stats(x)
    xhat = normalized(x, mean, var, np.ones(3), np.zeros(3))
    m = x.size // 3
    sum_dy = dy.sum(axis=(0, 2))
    sum_dy_xhat = (dy * xhat).sum(axis=(0, 2))
    r = lambda a: a.reshape(1, -1, 1)
    dx = r(gamma / np.sqrt(var + EPS)) * (dy - r(sum_dy) / m - xhat * r(sum_dy_xhat) / m)
    np.testing.assert_allclose(grads["dbeta"], sum_dy, rtol=1e-5)
    np.testing.assert_allclose(grads["dgamma"], sum_dy_xhat, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads["dx"], dx, atol=2e-5)


@needs_tf
def test_inference_backward_scales_dy_by_the_moving_statistics(tf_backend):
    x, gamma, beta, rm, rv = data(seed=12)
    dy = np.random.default_rng(13).normal(size=x.shape)
    grads = tf_backend.backward(x, gamma, beta, rm, rv, dy.astype(np.float32),
                                **flags(training=False))
    r = lambda a: np.asarray(a, np.float64).reshape(1, -1, 1)
    np.testing.assert_allclose(grads["dx"], dy * r(gamma / np.sqrt(rv.astype(np.float64) + EPS)),
                               rtol=2e-6, atol=1e-6)


@needs_tf
def test_negative_axis_is_keras_axis(tf_backend):
    x, gamma, beta, rm, rv = data(shape=(4, 5, 3), seed=6)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    y = tf_backend.forward(x_last, gamma, beta, rm.copy(), rv.copy(), **flags(axis=-1))["y"]
    mean, var = batch_stats(x_last, axis=-1)
    np.testing.assert_allclose(y, normalized(x_last, mean, var, gamma, beta, axis=-1),
                               atol=4e-6)


@needs_tf
def test_float64_data_is_computed_in_float64(tf_backend):
    x, gamma, beta, rm, rv = data(dtype=np.float64, seed=7)
    out = tf_backend.forward(x, gamma, beta, rm, rv, **flags())
    assert out["y"].dtype == np.float64 and out["running_var"].dtype == np.float64
    mean, var = batch_stats(x)
    np.testing.assert_allclose(out["y"], normalized(x, mean, var, gamma, beta), rtol=0,
                               atol=1e-13)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@needs_tf
def test_16bit_data_gives_16bit_y_with_float32_statistics(tf_backend, dtype):
    import ml_dtypes

    np_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float16
    x, gamma, beta, rm, rv = data(seed=8)
    x = x.astype(np_dtype)
    out = tf_backend.forward(x, gamma, beta, rm, rv, **flags())
    assert out["y"].dtype == np_dtype and out["running_var"].dtype == np.float32
    mean, var = batch_stats(x)
    np.testing.assert_allclose(out["y"].astype(np.float64), normalized(x, mean, var, gamma, beta),
                               atol=4e-3 if dtype == "float16" else 3e-2)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@needs_tf
def test_eps_is_added_in_float32_neither_cast_to_16bit_nor_raised_to_a_minimum(tf_backend,
                                                                            dtype):
    """eps = 1e-7 is 1.19e-7 in float16 and would be 1.001e-5 under the fused kernel's
    minimum: with a zero moving variance y = (x - mean) / sqrt(eps) shows which eps was added."""
    x = np.full((2, 3), 0.01, dtype)
    zeros, ones = np.zeros(3, np.float32), np.ones(3, np.float32)
    y = tf_backend.forward(x, ones, zeros, zeros.copy(), zeros.copy(),
                           **flags(training=False, eps=1e-7))["y"].astype(np.float64)
    expected = float(dtype(0.01)) / np.sqrt(float(np.float32(1e-7)))
    np.testing.assert_allclose(y, expected, rtol=2e-3 if dtype == np.float16 else 1e-6)
    assert abs(y[0, 0] - float(dtype(0.01)) / np.sqrt(float(np.float16(1e-7)))) > 1.0


@needs_tf
def test_momentum_is_mxnets_float32_parameter(tf_backend):
    x, gamma, beta, rm, rv = data(dtype=np.float64, seed=11)
    rm0 = rm.copy()
    out = tf_backend.forward(x, gamma, beta, rm, rv, **flags())
    mean, _ = batch_stats(x)
    m32 = float(np.float32(MOMENTUM))
    np.testing.assert_allclose(out["running_mean"], m32 * rm0 + (1 - m32) * mean,
                               rtol=1e-14, atol=1e-15)
    assert np.max(np.abs(out["running_mean"] - (MOMENTUM * rm0 + (1 - MOMENTUM) * mean))) > 1e-9


@needs_tf
def test_wrong_gamma_length_is_refused_naming_gamma_and_nothing_written(tf_backend):
    x, _, beta, rm, rv = data(seed=10)
    rm0 = rm.copy()
    with pytest.raises(ValueError, match="gamma"):
        tf_backend.forward(x, np.ones(4, np.float32), beta, rm, rv, **flags())
    np.testing.assert_array_equal(rm, rm0)


@needs_tf
def test_keras_session_is_cleared_every_layers_per_session_layers(tf_backend, monkeypatch):
    """Keras keeps global state per built layer; the adapter clears it on a fixed period, and
    the results after a clear are the same."""
    import keras

    import backends.tensorflow_adapter as adapter

    cleared = []
    real_clear = keras.backend.clear_session
    monkeypatch.setattr(adapter, "LAYERS_PER_SESSION", 3)
    monkeypatch.setattr(tf_backend, "_layers_built", 0)
    monkeypatch.setattr(keras.backend, "clear_session", lambda: cleared.append(1) or real_clear())
    x, gamma, beta, rm, rv = data(seed=14)
    ys = [tf_backend.forward(x, gamma, beta, rm.copy(), rv.copy(), **flags())["y"]
          for _ in range(7)]
    assert len(cleared) == 2
    for y in ys[1:]:
        np.testing.assert_array_equal(y, ys[0])
