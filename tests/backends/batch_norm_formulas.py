"""The batch-norm formulas written out in float64 numpy, for the framework adapters' tests.

The adapter tests (jax, tensorflow, paddle, openvino) check each framework's flag mapping
against these formulas, never against the adapter's own output:

    mean_c = sum_i x_ci / M                         (M elements per channel c)
    var_c  = sum_i (x_ci - mean_c)^2 / M            (biased, MXNet's)
    y_ci   = (x_ci - mean_c) / sqrt(var_c + eps) * gamma_c + beta_c
    running_c <- momentum * running_c + (1 - momentum) * batch_c    (MXNet's momentum)
"""
from __future__ import annotations

import numpy as np

from conformance.cases import DEFAULT_CASES_DIR, load, skip_reason

EPS = 1e-3
MOMENTUM = 0.9


def data(shape=(6, 3, 5), dtype=np.float32, seed=0, axis=1, offset=0.0, param_dtype=None):
    """Return x, gamma, beta, running_mean, running_var for one call.

    The parameters are float32 for 16-bit x (MXNet's rule) and float64 for float64 x,
    unless param_dtype says otherwise (Paddle wants them in x's dtype).
    """
    rng = np.random.default_rng(seed)
    c = shape[axis]
    if param_dtype is None:
        param_dtype = np.float64 if dtype == np.float64 else np.float32
    return ((rng.normal(size=shape) + offset).astype(dtype),
            rng.uniform(0.5, 2, c).astype(param_dtype), rng.normal(size=c).astype(param_dtype),
            rng.normal(size=c).astype(param_dtype), rng.uniform(0.5, 2, c).astype(param_dtype))


def flags(**overrides):
    """Return the keyword flags of a training call with batch statistics, overridden."""
    base = {"eps": EPS, "momentum": MOMENTUM, "fix_gamma": False, "use_global_stats": False,
            "output_mean_var": False, "axis": 1, "training": True}
    return {**base, **overrides}


def batch_stats(x, axis=1):
    """Return the float64 batch mean and biased variance per channel."""
    x = np.moveaxis(np.asarray(x, np.float64), axis, 0).reshape(x.shape[axis], -1)
    mean = x.mean(axis=1)
    return mean, ((x - mean[:, None]) ** 2).mean(axis=1)


def normalized(x, mean, var, gamma, beta, axis=1, eps=EPS):
    """Return (x - mean) / sqrt(var + eps) * gamma + beta in float64, per channel of axis."""
    shape = [1] * x.ndim
    shape[axis] = -1

    def per_channel(a):
        return np.asarray(a, np.float64).reshape(shape)

    return ((np.asarray(x, np.float64) - per_channel(mean)) / np.sqrt(per_channel(var) + eps)
            * per_channel(gamma) + per_channel(beta))


def assert_mxnet_running_update(out, rm0, rv0, mean, var, momentum=MOMENTUM, rtol=1e-6):
    """Assert out's running statistics follow MXNet's momentum with the biased variance."""
    np.testing.assert_allclose(out["running_mean"], momentum * rm0 + (1 - momentum) * mean,
                               rtol=rtol)
    np.testing.assert_allclose(out["running_var"], momentum * rv0 + (1 - momentum) * var,
                               rtol=rtol)


def assert_running_stats_kept_and_used(out, x, gamma, beta, rm0, rv0, atol):
    """Assert y was normalized with the running statistics and those came back unchanged."""
    np.testing.assert_allclose(out["y"], normalized(x, rm0, rv0, gamma, beta), rtol=0, atol=atol)
    np.testing.assert_array_equal(out["running_mean"], rm0)
    np.testing.assert_array_equal(out["running_var"], rv0)


def first_case(pattern: str):
    """Return the first golden case (by id) whose file name matches pattern."""
    return load(DEFAULT_CASES_DIR, min(p.stem for p in DEFAULT_CASES_DIR.glob(pattern)))


def first_case_skip_reason(backend) -> str:
    """Return the reason backend gives for skipping the first float32 training case."""
    return skip_reason(backend, first_case("fwd_train_*_fp32_*.yaml"))
