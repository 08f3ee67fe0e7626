"""Tests of the paddle adapter (backends.paddle_adapter): it skips cleanly without Paddle,
places MXNet's channel axis in Paddle's data_format (or moves it) as its module docstring
says, and maps the flags onto F.batch_norm. The references are the batch-norm formulas
written out in float64 numpy here, never the adapter's output. The layout tests run
everywhere; the ones that call Paddle skip with the reason where it is not installed."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from backends.frameworks import UnavailableBackend
from backends.paddle_adapter import FIRST, LAST, Layout, PaddleBackend, channel_axis, layout
from conformance.cases import DEFAULT_CASES_DIR, load, skip_reason
from tests.backends.batch_norm_formulas import (EPS, MOMENTUM, assert_mxnet_running_update,
                                                assert_running_stats_kept_and_used,
                                                batch_stats, first_case_skip_reason, flags,
                                                normalized)
from tests.backends.batch_norm_formulas import data as formula_data

HAS_PADDLE = importlib.util.find_spec("paddle") is not None
INSTALL = "PaddlePaddle not installed: python -m backends.env paddle runs these tests"
needs_paddle = pytest.mark.skipif(not HAS_PADDLE, reason=INSTALL)
def data(shape=(6, 3, 5), dtype=np.float32, seed=0, axis=1):
    """Return the inputs of one call with the parameters in x's dtype (Paddle's rule)."""
    return formula_data(shape, dtype, seed, axis=axis, param_dtype=dtype)


@pytest.fixture(scope="module")
def paddle_backend():
    if not HAS_PADDLE:
        pytest.skip(INSTALL)
    from backends.paddle_adapter import factory
    return factory()


# --- without Paddle ----------------------------------------------------------------------


def test_absent_paddle_loads_and_skips_every_case_with_the_setup_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "paddle", None)  # import fails with ImportError
    from backends.paddle_adapter import factory

    backend = factory()
    assert isinstance(backend, UnavailableBackend) and backend.name == "paddle"
    reason = first_case_skip_reason(backend)
    assert reason.startswith("paddle: ") and "python -m backends.env paddle" in reason
    assert "paddlepaddle==3.3.1" in reason


def test_16bit_cases_skip_because_paddle_has_no_cpu_kernel_for_them():
    from backends.paddle_adapter import _capabilities

    backend = UnavailableBackend("paddle", _capabilities(), "unused")
    for pattern in ("fwd_train_*_fp16_*.yaml", "bwd_train_*_bf16_*.yaml"):
        case = load(DEFAULT_CASES_DIR, min(DEFAULT_CASES_DIR.glob(pattern)).stem)
        reason = skip_reason(backend, case)
        assert reason == (f"paddle: dtype {case.dtype} is not among its dtypes "
                          "['float32', 'float64']")


def test_quantized_cases_are_refused_with_the_reason():
    case = load(DEFAULT_CASES_DIR, min(DEFAULT_CASES_DIR.glob("qnt_*.yaml")).stem)
    bare = object.__new__(PaddleBackend)  # supports() needs nothing of Paddle
    assert "no quantized batch norm" in bare.supports(case)


@pytest.mark.parametrize("shape, axis, expected", [
    ((4, 3), 1, Layout("NC")), ((4, 3), -1, Layout("NC")),
    ((4, 3), 0, Layout("NC", moved_from=0)),
    ((4, 3, 5), 1, Layout("NCL")), ((4, 5, 3), 2, Layout("NLC")),
    ((4, 5, 3), -1, Layout("NLC")), ((3, 4, 5), 0, Layout("NCL", moved_from=0)),
    ((2, 3, 4, 5), 1, Layout("NCHW")), ((2, 4, 5, 3), 3, Layout("NHWC")),
    ((2, 4, 3, 5), 2, Layout("NCHW", moved_from=2)),
    ((2, 4, 3, 5), -2, Layout("NCHW", moved_from=2)),
    ((2, 3, 2, 2, 2), 1, Layout("NCDHW")), ((2, 2, 2, 2, 3), 4, Layout("NDHWC")),
    ((2, 2, 3, 2, 2), 2, Layout("NCDHW", moved_from=2)),
])
def test_layout_names_paddles_data_format_or_moves_the_axis(shape, axis, expected):
    assert layout(shape, axis) == expected


def test_formats_are_paddles_names_by_rank():
    assert FIRST == {2: "NC", 3: "NCL", 4: "NCHW", 5: "NCDHW"}
    assert LAST == {3: "NLC", 4: "NHWC", 5: "NDHWC"}


@pytest.mark.parametrize("shape, axis", [((2, 3, 2, 2, 2, 4), 1), ((2, 3, 2, 2, 2, 4), -1),
                                         ((2, 2, 5, 2, 3, 2, 2), 2), ((4, 3), 0)])
def test_moved_and_reshaped_arrays_keep_each_channel_and_come_back_unchanged(shape, axis):
    """Above rank 5, x is viewed as (N, C, rest): each channel's elements stay together."""
    where = layout(shape, axis)
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    seen = where.to_paddle(x)
    assert seen.ndim <= 5 and seen.shape[1] == shape[axis]
    channels = np.moveaxis(x, axis, 0).reshape(shape[axis], -1)
    for c in range(shape[axis]):
        assert sorted(seen[:, c].ravel()) == sorted(channels[c])
    np.testing.assert_array_equal(where.from_paddle(seen), x)


def test_rank_below_2_goes_to_paddle_as_it_is():
    assert layout((5,), 0) == Layout("NC") and layout((), 0) == Layout("NC")
    np.testing.assert_array_equal(layout((5,), 0).to_paddle(np.arange(5.0)), np.arange(5.0))


@pytest.mark.parametrize("axis, error", [(3, ValueError), (-4, ValueError),
                                         (1.5, TypeError), ("1", TypeError), (True, TypeError),
                                         (None, TypeError)])
def test_an_axis_the_adapter_cannot_place_is_refused_by_name(axis, error):
    with pytest.raises(error, match=f"axis={axis!r}"):
        channel_axis(axis, 3)


def test_numpy_integer_axes_are_axes():
    assert channel_axis(np.int64(-1), 4) == 3 and channel_axis(np.int32(2), 4) == 2


# --- with Paddle -------------------------------------------------------------------------


@needs_paddle
def test_training_normalizes_with_batch_stats_and_updates_running_stats_in_forward(
        paddle_backend):
    x, gamma, beta, rm, rv = data(dtype=np.float64)
    rm0, rv0 = rm.copy(), rv.copy()
    out = paddle_backend.forward(x, gamma, beta, rm, rv, **flags())
    mean, var = batch_stats(x)
    eps32 = float(np.float32(EPS))
    np.testing.assert_allclose(out["y"], normalized(x, mean, var, gamma, beta, eps=eps32),
                               rtol=0, atol=1e-13)
    # MXNet's momentum convention with a float32 momentum, the biased variance, at forward
    assert_mxnet_running_update(out, rm0, rv0, mean, var, momentum=float(np.float32(MOMENTUM)),
                                rtol=1e-14)
    np.testing.assert_array_equal(rm, out["running_mean"])  # written back into the caller's
    assert "mean" not in out and "invstd" not in out        # not asked for


@needs_paddle
def test_eps_is_paddles_float32_attribute_on_float64_data(paddle_backend):
    x, gamma, beta, rm, rv = data(shape=(8, 3), dtype=np.float64, seed=1)
    x = x * 1e-3  # var ~ 1e-6, so eps 1e-5 and float32(1e-5) differ at 1e-9 relative
    y = paddle_backend.forward(x, gamma, beta, rm, rv, **flags(eps=1e-5))["y"]
    mean, var = batch_stats(x)
    exact = normalized(x, mean, var, gamma, beta, eps=1e-5)
    eps32 = normalized(x, mean, var, gamma, beta, eps=float(np.float32(1e-5)))
    assert np.max(np.abs(y - eps32)) < 1e-13 < np.max(np.abs(y - exact))


@pytest.mark.parametrize("mode", [{"training": False}, {"use_global_stats": True}])
@needs_paddle
def test_running_stats_modes_use_and_keep_the_running_stats(paddle_backend, mode):
    x, gamma, beta, rm, rv = data(seed=2)
    rm0, rv0 = rm.copy(), rv.copy()
    out = paddle_backend.forward(x, gamma, beta, rm, rv, **flags(output_mean_var=True, **mode))
    assert_running_stats_kept_and_used(out, x, gamma, beta, rm0, rv0, atol=2e-6)
    assert "mean" not in out and "invstd" not in out  # no_mean_invstd_with_running_stats


@needs_paddle
def test_output_mean_var_is_the_saved_mean_and_inverse_std(paddle_backend):
    x, gamma, beta, rm, rv = data(seed=3)
    out = paddle_backend.forward(x, gamma, beta, rm, rv, **flags(output_mean_var=True))
    mean, var = batch_stats(x)
    np.testing.assert_allclose(out["mean"], mean, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out["invstd"], 1 / np.sqrt(var + EPS), rtol=1e-6)


@needs_paddle
def test_fix_gamma_uses_ones_and_reports_zero_dgamma_with_dbeta(paddle_backend):
    x, gamma, beta, rm, rv = data(seed=4)
    dy = np.random.default_rng(5).normal(size=x.shape).astype(np.float32)
    y = paddle_backend.forward(x, gamma, beta, rm.copy(), rv.copy(), **flags(fix_gamma=True))["y"]
    mean, var = batch_stats(x)
    np.testing.assert_allclose(y, normalized(x, mean, var, np.ones(3), beta), atol=2e-6)
    grads = paddle_backend.backward(x, gamma, beta, rm, rv, dy, **flags(fix_gamma=True))
    np.testing.assert_array_equal(grads["dgamma"], np.zeros(3, np.float32))
    np.testing.assert_allclose(grads["dbeta"], dy.astype(np.float64).sum(axis=(0, 2)),
                               rtol=1e-5)


@needs_paddle
def test_paddle_gives_no_dbias_when_the_scale_is_frozen():
    """The Paddle defect the adapter works around under fix_gamma (module doc): if this
    starts to fail, Paddle has fixed it and the workaround can go."""
    import paddle
    import paddle.nn.functional as F

    x = paddle.to_tensor(data(seed=6)[0], stop_gradient=False)
    weight = paddle.ones([3])  # stop_gradient=True: a frozen scale
    bias = paddle.zeros([3])
    bias.stop_gradient = False
    y = F.batch_norm(x, paddle.zeros([3]), paddle.ones([3]), weight, bias, training=True)
    y.backward(paddle.ones_like(y))
    assert x.grad is not None and bias.grad is None


@needs_paddle
def test_backward_is_the_batch_norm_gradient(paddle_backend):
    x, gamma, beta, rm, rv = data(dtype=np.float64, seed=7)
    dy = np.random.default_rng(8).normal(size=x.shape)
    grads = paddle_backend.backward(x, gamma, beta, rm, rv, dy, **flags())
    eps32 = float(np.float32(EPS))
    mean, var = batch_stats(x)
    xhat = normalized(x, mean, var, np.ones(3), np.zeros(3), eps=eps32)
    m = x.size // 3
    sum_dy, sum_dy_xhat = dy.sum(axis=(0, 2)), (dy * xhat).sum(axis=(0, 2))
    r = lambda a: a.reshape(1, -1, 1)
    dx = r(gamma / np.sqrt(var + eps32)) * (dy - r(sum_dy) / m - xhat * r(sum_dy_xhat) / m)
    np.testing.assert_allclose(grads["dbeta"], sum_dy, rtol=1e-13)
    np.testing.assert_allclose(grads["dgamma"], sum_dy_xhat, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(grads["dx"], dx, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape, axis", [((4, 5, 3), -1), ((2, 4, 3, 5), 2), ((3, 4, 2), 0),
                                         ((2, 3, 2, 1, 2, 2), 1)])
@needs_paddle
def test_every_axis_and_rank_six_normalize_their_channel(paddle_backend, shape, axis):
    x, gamma, beta, rm, rv = data(shape=shape, seed=9, axis=axis)
    dy = np.random.default_rng(10).normal(size=shape).astype(np.float32)
    y = paddle_backend.forward(x, gamma, beta, rm.copy(), rv.copy(), **flags(axis=axis))["y"]
    mean, var = batch_stats(x, axis)
    np.testing.assert_allclose(y, normalized(x, mean, var, gamma, beta, axis=axis), atol=3e-6)
    grads = paddle_backend.backward(x, gamma, beta, rm, rv, dy, **flags(axis=axis))
    assert grads["dx"].shape == shape
    np.testing.assert_allclose(grads["dbeta"], np.moveaxis(dy, axis, 0).reshape(
        shape[axis], -1).astype(np.float64).sum(axis=1), rtol=1e-5)


@needs_paddle
def test_wrong_gamma_length_is_refused_and_nothing_written(paddle_backend):
    x, _, beta, rm, rv = data(seed=11)
    rm0 = rm.copy()
    with pytest.raises(ValueError, match="scale"):
        paddle_backend.forward(x, np.ones(4, np.float32), beta, rm, rv, **flags())
    np.testing.assert_array_equal(rm, rm0)


@needs_paddle
def test_16bit_data_is_refused_by_paddles_cpu_kernel(paddle_backend):
    x, _, beta, rm, rv = data(seed=12)
    with pytest.raises((ValueError, TypeError), match="not registered"):
        paddle_backend.forward(x.astype(np.float16), np.ones(3, np.float32), beta, rm, rv, **flags())
