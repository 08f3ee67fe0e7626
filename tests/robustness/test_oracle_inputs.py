"""The oracle on edge values that bnspec.validate accepts: an answer or a ValueError naming
the parameter, never another exception from deep inside."""
from __future__ import annotations

import math

import numpy as np
import pytest

import oracle


def _call(dtype=np.float32, **kwargs):
    x = np.array([[1.0, 2.0, 4.0], [3.0, -1.0, 0.5]], dtype)
    params = [np.array([1.5, 1.0, 0.5], np.float32), np.zeros(3, np.float32),
              np.zeros(3, np.float32), np.ones(3, np.float32)]
    return oracle.evaluate(x, *params, -x, training=True, fix_gamma=False, **kwargs)


@pytest.mark.parametrize("dtype, eps", [(np.float32, math.inf), (np.float32, 1e300),
                                        (np.float16, 1e5)])
def test_eps_beyond_the_dtype_is_answered_or_rejected(dtype, eps):
    """DType(eps) = inf: invstd = 1/sqrt(var + inf) = 0, so y = beta and dx = 0 (IEEE)."""
    try:
        out = _call(dtype, eps=eps)
    except ValueError as exc:
        assert "eps" in str(exc), f"message={exc!s}, but should name eps"
        return
    assert np.all(out["dx"].rounded == 0)
    assert np.all(out["dgamma"].rounded == 0)


@pytest.mark.parametrize("eps", [0.0, -0.0, 5e-324, 1e30])
@pytest.mark.parametrize("momentum", [-0.5, 0.0, 1.0, 1.5])
def test_extreme_but_valid_scalars(eps, momentum):
    """momentum outside [0, 1] is valid (see conformance/bad_inputs.py): the update formula
    running * m + stat * (1 - m), with m the float32 momentum, holds for it."""
    out = _call(eps=eps, momentum=momentum)
    m = float(np.float32(momentum))
    mean = np.array([2.0, 0.5, 2.25])
    assert np.allclose(out["running_mean"].hi, mean * (1 - m), rtol=1e-6, atol=0), (
        f"running_mean={out['running_mean'].hi}, but should be {mean * (1 - m)}")
