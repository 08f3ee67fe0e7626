"""The verdicts of conformance.input_checks fail the backends they should.

Each deliberately wrong backend below is the numpy backend with one mistake a real backend
makes on bad input (writes before it validates, an unnamed error, accepts garbage, ignores
strides, scribbles next to a view, refuses a valid value); the judge must name the mistake.
The well-behaved numpy backend passes the same scenarios.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from backends.numpy_backend import NumpyBackend
from conformance import bad_inputs
from conformance.input_checks import judge_invalid, judge_unusual, mentions_value


def scenario(scenario_id: str) -> bad_inputs.Scenario:
    return next(s for s in bad_inputs.INVALID + bad_inputs.UNUSUAL if s.id == scenario_id)


class WritesFirst(NumpyBackend):
    """Sets gamma to ones (fix_gamma) before validating, as a careless kernel would."""

    def forward(self, x, gamma, *args, fix_gamma, **kwargs):
        if fix_gamma and isinstance(gamma, np.ndarray):
            gamma[...] = 1
        return super().forward(x, gamma, *args, fix_gamma=fix_gamma, **kwargs)


class Unnamed(NumpyBackend):
    """Raises a ValueError that names nothing."""

    def forward(self, *args, **kwargs):
        try:
            return super().forward(*args, **kwargs)
        except (ValueError, TypeError):
            raise ValueError("invalid argument") from None


class Lenient(NumpyBackend):
    """Trims or pads wrong-length parameters and carries on."""

    def forward(self, x, gamma, beta, running_mean, running_var, **kwargs):
        c = x.shape[kwargs["axis"]]
        fix = [np.resize(np.asarray(p, np.float32), c) for p in (gamma, beta, running_mean,
                                                                  running_var)]
        return super().forward(x, *fix, **kwargs)


class IgnoresStrides(NumpyBackend):
    """Reads x as if it were C-contiguous from its first element (a raw-pointer kernel)."""

    def forward(self, x, *args, **kwargs):
        flat = np.lib.stride_tricks.as_strided(x, shape=(x.size,), strides=(x.itemsize,))
        return super().forward(flat.copy().reshape(x.shape), *args, **kwargs)


class ScribblesNextToView(NumpyBackend):
    """Zeroes the memory between the elements of a strided running_mean (a kernel that
    writes a contiguous block of 2C floats)."""

    def backward(self, x, gamma, beta, running_mean, running_var, dy, **kwargs):
        out = super().backward(x, gamma, beta, running_mean, running_var, dy, **kwargs)
        if running_mean.base is not None:
            running_mean.base[1::2] = 0
        return out


class RefusesZeroEps(NumpyBackend):
    def forward(self, *args, eps, **kwargs):
        if eps <= 0:
            raise ValueError(f"eps={eps} must be > 0")
        return super().forward(*args, eps=eps, **kwargs)


class RefusesMomentumAboveOne(NumpyBackend):
    def backward(self, *args, momentum, **kwargs):
        if momentum > 1:
            raise ValueError(f"momentum={momentum} must be in [0, 1]")
        return super().backward(*args, momentum=momentum, **kwargs)


class SkipsWriteChecks(NumpyBackend):
    """The numpy backend without its in-place checks: writes gamma even when it is a view of x."""

    def forward(self, *args, **kwargs):
        import backends.numpy_backend as module

        saved, module.check_written = module.check_written, lambda *a, **k: None
        try:
            return super().forward(*args, **kwargs)
        finally:
            module.check_written = saved


@pytest.mark.parametrize("backend, scenario_id, words", [
    (WritesFirst(), "gamma_shape_short_forward", "changed gamma"),
    (WritesFirst(), "axis_range_7_rank2_forward", "changed gamma"),
    (Unnamed(), "beta_shape_long_forward", "should name beta"),
    (Lenient(), "running_var_shape_short_forward", "returned"),
    (SkipsWriteChecks(), "overlap_gamma_in_x_forward", "returned"),
])
def test_invalid_verdict_catches(backend, scenario_id, words):
    verdict = judge_invalid(backend, scenario(scenario_id))
    assert verdict is not None and words in verdict, (
        f"verdict={verdict!r}, but should say {words!r} [{type(backend).__name__}]")


@pytest.mark.parametrize("backend, scenario_id, words", [
    (IgnoresStrides(), "x_strided_forward", "y["),
    (IgnoresStrides(), "x_fortran_forward", "y["),
    (ScribblesNextToView(), "running_mean_strided_step", "running_mean_gaps"),
    (RefusesMomentumAboveOne(), "momentum_1p5_step", "on valid input"),
    (RefusesZeroEps(), "eps_zero_forward", "on valid input"),
])
def test_unusual_verdict_catches(backend, scenario_id, words):
    verdict = judge_unusual(backend, scenario(scenario_id), "strict", type(backend).__name__)
    assert verdict is not None and words in verdict, (
        f"verdict={verdict!r}, but should say {words!r} [{type(backend).__name__}]")


@pytest.mark.parametrize("scenario_id", ["gamma_shape_short_forward", "x_dtype_int32_step",
                                         "empty_5x0_forward", "momentum_nan_step"])
def test_numpy_backend_passes_invalid(scenario_id):
    assert judge_invalid(NumpyBackend(), scenario(scenario_id)) is None


@pytest.mark.parametrize("scenario_id", ["x_strided_step", "one_buffer_step",
                                         "momentum_neg0p5_step", "alias_dy_is_x_step"])
def test_numpy_backend_passes_unusual(scenario_id):
    assert judge_unusual(NumpyBackend(), scenario(scenario_id), "strict", "numpy") is None


@pytest.mark.parametrize("message, value, shown", [
    ("eps=-0.001 must be >= 0", -1e-3, True),
    ("eps -1.000000e-03 is negative", -1e-3, True),
    ("eps=-0.01 must be >= 0", -1e-3, False),
    ("momentum=nan must be finite", math.nan, True),
    ("momentum=NaN must be finite", np.float32(math.nan), True),
    ("momentum must be finite", math.nan, False),
    ("axis=-100 is out of range", -100, True),
    ("axis=100 is out of range", -100, False),
    ("gamma.shape=(4,) must be (3,)", (4,), True),
    ("gamma has shape [4]", (4,), True),
    ("gamma.shape=(14,) must be (3,)", (4,), False),
    ("x.shape=(5, 0) is empty", (5, 0), True),
    ("x.shape=(5, 10) is empty", (5, 0), False),
    ("gamma.shape=() must be (3,)", (), True),
    ("x.dtype='int32' is not supported", "int32", True),
    ("axis=None must be an integer", None, True),
])
def test_mentions_value(message, value, shown):
    assert mentions_value(message, value) is shown, (
        f"mentions_value({message!r}, {value!r})={not shown}, but should be {shown}")


@pytest.mark.parametrize("scenario_id", ["x_strided_forward", "gamma_unaligned_forward",
                                         "running_mean_strided_forward", "x_readonly_step"])
def test_profiled_backend_may_update_running_stats_in_forward(scenario_id):
    """A backend that declares stats_updated_in_forward (the cuDNN path: it updates the running
    statistics in the forward call) passes the unusual inputs by following its profile; the
    same backend without the declaration is caught writing them."""
    from tests.conformance.profiled_backends import CudnnStyle, Undeclared

    case = scenario(scenario_id)
    assert case.build().kwargs["training"] and not case.build().kwargs["use_global_stats"]
    assert judge_unusual(CudnnStyle(), case, "strict", "cudnn-style") is None
    verdict = judge_unusual(Undeclared(), case, "strict", "undeclared")
    assert verdict is not None and "running_" in verdict, verdict
