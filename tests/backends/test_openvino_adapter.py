"""Tests of the openvino adapters (backends.openvino_adapter): without OpenVINO they load and
skip every case with the install command, and the calls BatchNormInference cannot express
are skipped with the reason; with OpenVINO, the mapping of its module docstring. The
references are the batch-norm formula written out in float64 numpy here, never the adapter's
output."""
from __future__ import annotations

import importlib.util
import sys
from types import SimpleNamespace

import ml_dtypes
import numpy as np
import pytest

from backends.frameworks import UnavailableBackend
from backends.openvino_adapter import (MEAN_VAR_REASON, TRAINING_REASON, _capabilities,
                                       _epsilon, _reason, unsupported)
from bnspec.flags import Flags
from conformance import bad_inputs
from conformance.cases import capability_reason, skip_reason
from tests.backends.batch_norm_formulas import (EPS, assert_running_stats_kept_and_used, data,
                                                first_case, normalized)

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="OpenVINO not installed: pip "
                                    "install -e '.[openvino]' runs these tests")
INFERENCE = {"eps": EPS, "momentum": 0.9, "fix_gamma": False, "use_global_stats": False,
             "output_mean_var": False, "axis": 1, "training": False}


# --- without OpenVINO -------------------------------------------------------------------


def test_absent_openvino_loads_and_skips_every_case(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails with ImportError
    from backends.openvino_adapter import f32_factory, factory

    for make, name in ((factory, "openvino"), (f32_factory, "openvino-f32")):
        backend = make()
        assert isinstance(backend, UnavailableBackend) and backend.name == name
        reason = skip_reason(backend, first_case("fwd_infer_*_fp32_*.yaml"))
        assert reason.startswith(f"{name}: ") and ".[openvino]" in reason


@pytest.mark.parametrize("training, use_global_stats, output_mean_var, reason", [
    (False, False, False, None),            # inference: the running statistics
    (True, True, False, None),              # use_global_stats: the running statistics
    (False, True, False, None),
    (True, False, False, TRAINING_REASON),  # batch statistics
    (True, False, True, TRAINING_REASON),
    (False, False, True, MEAN_VAR_REASON),  # no mean/invstd output
    (True, True, True, MEAN_VAR_REASON),
])
def test_only_calls_with_the_running_statistics_are_expressed(training, use_global_stats,
                                                              output_mean_var, reason):
    for fix_gamma in (False, True):
        flags = Flags(training, fix_gamma, use_global_stats, output_mean_var)
        assert unsupported("fwd", flags) == reason
        assert unsupported("err", flags) == reason  # invalid input: in a call it can make


def test_backward_and_quantized_are_skipped_with_the_reason():
    caps = _capabilities()
    assert capability_reason(caps, first_case("bwd_infer_*_fp32_*.yaml")) == "it has no backward"
    assert "quantized" in unsupported("qnt", None)
    assert caps.dtypes == frozenset({"float64", "float32", "float16", "bfloat16"})


def test_generated_training_calls_are_skipped_with_the_reason():
    """The generated bad inputs are training calls with output_mean_var: the suite asks
    supports() about each one's call (conformance/test_errors.py), which refuses them."""
    from conformance.test_errors import _scenario_case

    scenarios = bad_inputs.INVALID + bad_inputs.UNUSUAL
    reasons = {unsupported(case.op, case.flags)
               for case in map(_scenario_case, scenarios)}
    assert reasons <= {TRAINING_REASON, MEAN_VAR_REASON, None} and TRAINING_REASON in reasons
    runnable = [s.id for s in scenarios if unsupported(*_op_flags(_scenario_case(s))) is None]
    for sid in runnable:  # those normalise with the running statistics
        scenario = next(s for s in scenarios if s.id == sid)
        kwargs = scenario.build().kwargs
        assert kwargs["use_global_stats"] or not kwargs["training"], sid


def _op_flags(case):
    return case.op, case.flags


@pytest.mark.parametrize("value", [None, "1e-5", True, 1j])
def test_eps_that_is_no_real_number_is_refused_by_name(value):
    with pytest.raises(TypeError, match=r"eps=.* is not a real number"):
        _epsilon(value)


def test_openvino_reason_is_the_last_line_of_its_message():
    message = ("Check 'm_epsilon >= 0' failed at src/core/src/op/batch_norm.cpp:107:\n"
               "While validating node 'opset5::BatchNormInference ...':\n"
               "Attribute 'epsilon' must be non negative value. Got: -1\n\n")
    assert _reason(message) == "Attribute 'epsilon' must be non negative value. Got: -1"


# --- with OpenVINO ----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["openvino", "openvino-f32"])
def ov_backend(request):
    if not HAS_OPENVINO:
        pytest.skip("OpenVINO not installed: pip install -e '.[openvino]' runs these tests")
    from backends.openvino_adapter import factory
    return factory(request.param)


@needs_openvino
@pytest.mark.parametrize("mode", [{}, {"training": True, "use_global_stats": True}])
def test_y_uses_the_running_statistics_and_leaves_them(ov_backend, mode):
    x, gamma, beta, rm, rv = data()
    rm0, rv0 = rm.copy(), rv.copy()
    out = ov_backend.forward(x, gamma, beta, rm, rv, **{**INFERENCE, **mode})
    assert_running_stats_kept_and_used(out, x, gamma, beta, rm0, rv0, atol=4e-6)
    np.testing.assert_array_equal(rm, rm0)
    assert set(out) == {"y", "running_mean", "running_var"}


@needs_openvino
@pytest.mark.parametrize("flags, reason", [({"training": True}, TRAINING_REASON),
                                           ({"output_mean_var": True}, MEAN_VAR_REASON)])
def test_calls_it_cannot_express_are_refused(ov_backend, flags, reason):
    x, gamma, beta, rm, rv = data()
    with pytest.raises(NotImplementedError, match="BatchNormInference"):
        ov_backend.forward(x, gamma, beta, rm, rv, **{**INFERENCE, **flags})
    assert reason.startswith("BatchNormInference")


@needs_openvino
@pytest.mark.parametrize("axis", [0, 2, -1])
def test_other_channel_axes_are_moved_to_axis_1(ov_backend, axis):
    x, gamma, beta, rm, rv = data(shape=(3, 3, 3), seed=1)
    y = ov_backend.forward(x, gamma, beta, rm, rv, **{**INFERENCE, "axis": axis})["y"]
    np.testing.assert_allclose(y, normalized(x, rm, rv, gamma, beta, axis=axis), atol=4e-6)


@needs_openvino
def test_fix_gamma_normalizes_with_gamma_one_and_keeps_the_callers_gamma(ov_backend):
    x, gamma, beta, rm, rv = data(seed=2)
    gamma0 = gamma.copy()
    y = ov_backend.forward(x, gamma, beta, rm, rv, **{**INFERENCE, "fix_gamma": True})["y"]
    np.testing.assert_allclose(y, normalized(x, rm, rv, np.ones(3), beta), atol=4e-6)
    np.testing.assert_array_equal(gamma, gamma0)


@needs_openvino
def test_float64_data_comes_back_float64_computed_in_float32(ov_backend):
    x, gamma, beta, rm, rv = data(dtype=np.float64, seed=3)
    y = ov_backend.forward(x, gamma, beta, rm, rv, **INFERENCE)["y"]
    error = np.max(np.abs(y - normalized(x, rm, rv, gamma, beta)))
    assert y.dtype == np.float64 and 1e-12 < error < 1e-5  # float32 arithmetic


@needs_openvino
@pytest.mark.parametrize("dtype, tol", [(np.float16, 4e-3), (ml_dtypes.bfloat16, 3e-2)])
def test_16bit_data_gives_16bit_y_from_float32_parameters(ov_backend, dtype, tol):
    x, gamma, beta, rm, rv = data(dtype=dtype, seed=4)
    out = ov_backend.forward(x, gamma, beta, rm, rv, **INFERENCE)
    assert out["y"].dtype == np.dtype(dtype) and out["running_var"].dtype == np.float32
    np.testing.assert_allclose(out["y"].astype(np.float64), normalized(x, rm, rv, gamma, beta),
                               atol=tol)


@needs_openvino
@pytest.mark.parametrize("eps", [-1.0, float("nan")])
def test_invalid_eps_is_refused_naming_epsilon_and_nothing_written(ov_backend, eps):
    x, gamma, beta, rm, rv = data(seed=5)
    rm0 = rm.copy()
    with pytest.raises(ValueError, match="epsilon"):
        ov_backend.forward(x, gamma, beta, rm, rv, **{**INFERENCE, "eps": eps})
    np.testing.assert_array_equal(rm, rm0)


@needs_openvino
def test_version_names_the_inference_precision_the_plugin_chose(ov_backend):
    assert ov_backend.precision in ("f32", "bf16", "f16")
    assert f"inference precision {ov_backend.precision}" in ov_backend.version
    if ov_backend.name == "openvino-f32":
        assert ov_backend.precision == "f32"


def test_env_check_of_an_inference_engine_runs_an_inference_call():
    """backends.env.check asks supports() about a training call; an inference engine gets
    the same y from the batch statistics given as running statistics."""
    from backends import env

    calls = []

    class InferenceOnly:
        name, version, reason = "inference-only", "0", None
        capabilities = _capabilities()

        def backward(self, *args, **kwargs):
            raise NotImplementedError

        def supports(self, case):
            return unsupported(case.op, case.flags)

        def forward(self, x, gamma, beta, running_mean, running_var, **kw):
            calls.append(kw)
            return {"y": normalized(x, running_mean, running_var, gamma, beta,
                                    eps=kw["eps"]).astype(np.float32)}

    sys.modules["inference_only_fake"] = SimpleNamespace(factory=InferenceOnly)
    try:
        assert env.check("fake", env.Framework("inference_only_fake:factory")).endswith("works")
    finally:
        del sys.modules["inference_only_fake"]
    assert calls and calls[0]["training"] is False
