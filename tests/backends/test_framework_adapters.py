"""Tests of the framework adapters (backends.mxnet_adapter, torch_adapter,
onnxruntime_adapter): each skips cleanly when its framework is absent, and each maps
MXNet's flags to its framework as its module docstring says. The references here are the
formulas written out in numpy (or, for MXNet, its own arithmetic emulated in
tests/backends/mxnet_reference.py), never the adapter's output."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from backends.frameworks import RejectedInput, UnavailableBackend
from conformance.cases import DEFAULT_CASES_DIR, load, skip_reason
from conformance.runner import call_backend, fresh_inputs

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_ORT = (importlib.util.find_spec("onnxruntime") is not None
           and importlib.util.find_spec("onnx") is not None)
EPS = float(np.float32(1e-3))


def data(shape=(4, 3, 5), dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[1]
    return (rng.normal(size=shape).astype(dtype), rng.uniform(0.5, 2, c).astype(np.float32),
            rng.normal(size=c).astype(np.float32), rng.normal(size=c).astype(np.float32),
            rng.uniform(0.5, 2, c).astype(np.float32))


def flags(**overrides):
    base = {"eps": EPS, "momentum": 0.9, "fix_gamma": False, "use_global_stats": False,
            "output_mean_var": True, "axis": 1, "training": True}
    return {**base, **overrides}


def first_case(pattern: str):
    ids = sorted(p.stem for p in DEFAULT_CASES_DIR.glob(f"{pattern}.yaml"))
    if not ids:
        pytest.skip(f"no golden case matches {pattern}")
    return load(DEFAULT_CASES_DIR, ids[0])


# --- absent frameworks ------------------------------------------------------------------


@pytest.mark.parametrize("module, name, missing, hint", [
    ("backends.torch_adapter", "torch", "torch", "pip install torch==2.13.0"),
    ("backends.onnxruntime_adapter", "onnxruntime", "onnxruntime", ".[onnxruntime]"),
])
def test_absent_framework_loads_and_skips_every_case(monkeypatch, module, name, missing,
                                                     hint):
    monkeypatch.setitem(sys.modules, missing, None)  # import fails with ImportError
    backend = importlib.import_module(module).factory()
    assert isinstance(backend, UnavailableBackend) and backend.name == name
    case = first_case("fwd_train_*_fp32_*")
    reason = skip_reason(backend, case)
    assert reason.startswith(f"{name}: ") and hint in reason


def test_missing_mxnet_venv_loads_and_skips_with_the_setup_command(monkeypatch, tmp_path):
    from backends import mxnet_adapter

    monkeypatch.setenv(mxnet_adapter.PYTHON_ENV_VAR, str(tmp_path / "no" / "python"))
    backend = mxnet_adapter.factory()
    assert isinstance(backend, UnavailableBackend)
    for pattern in ("fwd_train_*_fp32_*", "bwd_infer_*_fp64_*", "err_*"):
        reason = skip_reason(backend, first_case(pattern))
        assert "python -m backends.mxnet_env" in reason, reason
    with pytest.raises(RuntimeError, match="unavailable"):
        backend.forward(*data(), **flags())


def test_rejected_input_is_both_value_and_type_error():
    exc = RejectedInput("fw", RuntimeError("weight should contain 3 elements not 4"))
    assert isinstance(exc, ValueError) and isinstance(exc, TypeError)
    assert str(exc) == "fw rejected the call with RuntimeError: weight should contain 3 " \
                       "elements not 4"


# --- torch ------------------------------------------------------------------------------

torch_only = pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")


@pytest.fixture(scope="module")
def torch_backend():
    if not HAS_TORCH:
        pytest.skip("PyTorch is not installed")
    from backends.torch_adapter import TorchBackend

    return TorchBackend("cpu")


def batch_moments(x, axis=1):
    red = tuple(i for i in range(x.ndim) if i != axis)
    x = x.astype(np.float64)
    return x.mean(axis=red), x.var(axis=red), x.var(axis=red, ddof=1)


@torch_only
def test_torch_momentum_is_one_minus_float32_momentum():
    from backends.torch_adapter import torch_momentum

    assert torch_momentum(0.9) == 1.0 - float(np.float32(0.9))
    with pytest.raises(TypeError, match="momentum=None"):
        torch_momentum(None)


def test_torch_training_forward_statistics_and_update(torch_backend):
    x, g, b, rm, rv = data()
    rm0, rv0 = rm.copy(), rv.copy()
    out = torch_backend.forward(x, g, b, rm, rv, **flags())
    mean, var, unbiased = batch_moments(x)
    np.testing.assert_allclose(out["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(out["invstd"], 1 / np.sqrt(var + EPS), rtol=1e-6)
    m = float(np.float32(0.9))
    np.testing.assert_allclose(out["running_mean"], m * rm0 + (1 - m) * mean, rtol=1e-6)
    np.testing.assert_allclose(out["running_var"], m * rv0 + (1 - m) * unbiased, rtol=1e-6)
    assert np.array_equal(rm, out["running_mean"]), "written back in place, as torch does"
    y = (x - mean[:, None]) / np.sqrt(var[:, None] + EPS) * g[:, None] + b[:, None]
    np.testing.assert_allclose(out["y"], y, rtol=1e-5, atol=1e-5)


def test_torch_global_stats_use_running_stats_and_save_nothing(torch_backend):
    x, g, b, rm, rv = data()
    rm0, rv0 = rm.copy(), rv.copy()
    out = torch_backend.forward(x, g, b, rm, rv, **flags(use_global_stats=True))
    y = (x - rm0[:, None]) / np.sqrt(rv0[:, None] + EPS) * g[:, None] + b[:, None]
    np.testing.assert_allclose(out["y"], y, rtol=1e-5, atol=1e-5)
    assert "mean" not in out and "invstd" not in out
    assert np.array_equal(out["running_mean"], rm0) and np.array_equal(out["running_var"], rv0)


def test_torch_fix_gamma_uses_ones_and_reports_zero_dgamma(torch_backend):
    x, g, b, rm, rv = data()
    dy = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
    fixed = torch_backend.backward(x, g.copy(), b, rm.copy(), rv.copy(), dy,
                                   **flags(fix_gamma=True))
    ones = torch_backend.backward(x, np.ones_like(g), b, rm.copy(), rv.copy(), dy, **flags())
    assert np.array_equal(fixed["dx"], ones["dx"]) and np.array_equal(fixed["dbeta"],
                                                                      ones["dbeta"])
    assert np.array_equal(fixed["dgamma"], np.zeros(3, np.float32))
    assert not np.array_equal(ones["dgamma"], np.zeros(3, np.float32))


def test_torch_axis_is_moved_to_dim_one(torch_backend):
    x, g, b, rm, rv = data()
    last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    a = torch_backend.forward(x, g, b, rm.copy(), rv.copy(), **flags())
    z = torch_backend.forward(last, g, b, rm.copy(), rv.copy(), **flags(axis=-1))
    # the same values; not the same bits: PyTorch's reduction order follows the layout
    np.testing.assert_allclose(np.moveaxis(z["y"], -1, 1), a["y"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(z["mean"], a["mean"], rtol=1e-6, atol=1e-7)


def test_torch_16bit_data_with_float32_parameters(torch_backend):
    import ml_dtypes

    for dtype in (np.float16, ml_dtypes.bfloat16):
        x, g, b, rm, rv = data(dtype=dtype)
        out = torch_backend.forward(x, g, b, rm, rv, **flags())
        assert out["y"].dtype == np.dtype(dtype) and out["mean"].dtype == np.float32


def test_torch_rejections_keep_torch_message_and_write_nothing(torch_backend):
    x, g, b, rm, rv = data()
    before = rm.copy()
    with pytest.raises(RejectedInput, match="weight should contain 3 elements not 4"):
        torch_backend.forward(x, np.ones(4, np.float32), b, rm, rv, **flags())
    assert np.array_equal(rm, before)
    with pytest.raises(ValueError, match="eps must be positive during training"):
        torch_backend.forward(x, g, b, rm, rv, **flags(eps=0.0))
    with pytest.raises(RejectedInput, match=r"axis=5: movedim"):
        torch_backend.forward(x, g, b, rm, rv, **flags(axis=5))


def test_torch_unusual_layouts_are_converted_not_refused(torch_backend):
    x, g, b, rm, rv = data()
    ref = torch_backend.forward(x, g, b, rm.copy(), rv.copy(), **flags())
    rm_ro = rm.copy()
    rm_ro.flags.writeable = False
    out = torch_backend.forward(x.astype(">f4"), g.astype(">f4"), b, rm_ro, rv.copy(),
                                **flags())
    assert np.array_equal(out["y"], ref["y"])
    assert np.array_equal(out["running_mean"], ref["running_mean"])
    assert np.array_equal(rm_ro, rm), "a read-only array is left alone"


# --- onnxruntime ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ort_backend():
    if not HAS_ORT:
        pytest.skip("onnxruntime/onnx are not installed")
    from backends.onnxruntime_adapter import OnnxRuntimeBackend

    return OnnxRuntimeBackend()


def test_ort_capabilities_say_what_it_cannot_do(ort_backend):
    caps = ort_backend.capabilities
    assert not caps.backward and "bfloat16" not in caps.dtypes and not caps.quantized


def test_ort_training_mode_updates_running_stats_biased_with_mxnet_momentum(ort_backend):
    x, g, b, rm, rv = data()
    rm0, rv0 = rm.copy(), rv.copy()
    out = ort_backend.forward(x, g, b, rm, rv, **flags())
    mean, var, _ = batch_moments(x)
    m = 0.9
    np.testing.assert_allclose(out["running_mean"], m * rm0 + (1 - m) * mean, rtol=1e-6)
    np.testing.assert_allclose(out["running_var"], m * rv0 + (1 - m) * var, rtol=1e-6)
    assert "mean" not in out and "invstd" not in out
    y = (x - mean[:, None]) / np.sqrt(var[:, None] + EPS) * g[:, None] + b[:, None]
    np.testing.assert_allclose(out["y"], y, rtol=1e-5, atol=1e-5)


def test_ort_inference_uses_running_stats_and_leaves_them(ort_backend):
    x, g, b, rm, rv = data()
    for kw in ({"training": False}, {"use_global_stats": True}):
        rm1, rv1 = rm.copy(), rv.copy()
        out = ort_backend.forward(x, g, b, rm1, rv1, **flags(fix_gamma=True, **kw))
        y = (x - rm[:, None]) / np.sqrt(rv[:, None] + EPS) + b[:, None]
        np.testing.assert_allclose(out["y"], y, rtol=1e-5, atol=1e-5)
        assert np.array_equal(out["running_mean"], rm) and np.array_equal(rm1, rm)


def test_ort_eps_is_a_float32_attribute(ort_backend):
    x, g, b, rm, rv = (a.astype(np.float64) for a in data())
    eps = 1e-5  # not a float32 value: ONNX stores float32(1e-5)
    out = ort_backend.forward(x, g, b, rm, rv, **flags(eps=eps, use_global_stats=True))
    as_f32 = (x - rm[:, None]) / np.sqrt(rv[:, None] + float(np.float32(eps)))
    as_f32 = as_f32 * g[:, None] + b[:, None]
    np.testing.assert_allclose(out["y"], as_f32, rtol=1e-13, atol=1e-13)


def test_ort_model_declares_the_lowest_ir_version_of_its_opset():
    """Opset 15 came with onnx 1.10, whose IR version is 8 (ONNX's versioning table,
    docs/Versioning.md); onnx 1.23 writes IR 14 by default, which ONNX Runtime 1.27 refuses
    (it reads IR <= 13). Needs onnx only, not onnxruntime."""
    if importlib.util.find_spec("onnx") is None:
        pytest.skip("onnx is not installed (pip install -e '.[onnxruntime]'): no model to build")
    from onnx import TensorProto, checker, helper

    from backends.onnxruntime_adapter import OPSET, one_node_model

    def info(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    inputs = [info("X", [2, 3]), *(info(n, [3]) for n in ("scale", "B", "mean", "var"))]
    node = helper.make_node("BatchNormalization", [i.name for i in inputs], ["Y"],
                            epsilon=1e-3, momentum=0.9, training_mode=0)
    model = one_node_model(node, inputs, [info("Y", [2, 3])])
    assert OPSET == 15 and model.ir_version == 8
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 15)]
    checker.check_model(model)  # IR 8 holds everything the model uses


def test_ort_rejections_are_reported_verbatim(ort_backend):
    x, g, b, rm, rv = data()
    with pytest.raises(RejectedInput, match="onnxruntime rejected the call"):
        ort_backend.forward(x, np.ones(4, np.float32), b, rm, rv, **flags())
    with pytest.raises(ValueError, match="axis=7"):
        ort_backend.forward(x, g, b, rm, rv, **flags(axis=7))


# --- mxnet (through the worker, in .venv-mxnet) -----------------------------------------


@pytest.fixture(scope="module")
def mxnet_backend():
    from backends import mxnet_adapter

    backend = mxnet_adapter.factory()
    if isinstance(backend, UnavailableBackend):
        pytest.skip(backend.reason)
    yield backend
    backend.close()


MXNET_FP16 = ["fwd_train_freegamma_batchstats_meanvar_*_fp16_*_normal*",
              "fwd_infer_freegamma_globalstats_meanvar_*_fp16_*",
              "fwd_*_fp16_*_f16_overflow*", "bwd_train_freegamma_batchstats_*_fp16_*_normal*",
              "bwd_infer_freegamma_globalstats_*_fp16_*"]


@pytest.mark.parametrize("pattern", MXNET_FP16)
def test_mxnet_fp16_is_its_half_arithmetic_bit_for_bit(mxnet_backend, pattern):
    import mxnet_reference

    case = first_case(pattern)
    got = call_backend(mxnet_backend, case, fresh_inputs(case))
    emulate = mxnet_reference.backward_fp16 if case.op == "bwd" else \
        mxnet_reference.forward_fp16
    inputs = fresh_inputs(case)
    want = emulate(*(inputs[k] for k in ("x", "gamma", "beta", "running_mean",
                                         "running_var")),
                   *([inputs["dy"]] if case.op == "bwd" else []), **case.kwargs())
    for name, value in got.items():
        if name in want:
            assert np.array_equal(value, want[name], equal_nan=True), (case.id, name)


def test_mxnet_fp64_is_sequential_double_sums_bit_for_bit(mxnet_backend):
    import mxnet_reference

    case = first_case("fwd_train_freegamma_batchstats_meanvar_*_fp64_*_normal*")
    got = call_backend(mxnet_backend, case, fresh_inputs(case))
    want = mxnet_reference.forward_fp64(*fresh_inputs(case).values(), **case.kwargs())
    for name in ("y", "mean", "invstd"):
        assert np.array_equal(got[name], want[name]), name


def test_mxnet_call_protocol(mxnet_backend):
    x, g, b, rm, rv = data()
    rm0, rv0 = rm.copy(), rv.copy()
    out = mxnet_backend.forward(x, g, b, rm, rv, **flags(fix_gamma=True))
    assert np.array_equal(g, np.ones(3)), "fix_gamma overwrites gamma in place"
    assert np.array_equal(rm, rm0) and np.array_equal(out["running_var"], rv0), \
        "forward leaves the running statistics"
    dy = np.ones_like(x)
    step = mxnet_backend.backward(x, g, b, rm, rv, dy, **flags())
    mean, var, _ = batch_moments(x)
    m = float(np.float32(0.9))
    np.testing.assert_allclose(step["running_mean"], m * rm0 + (1 - m) * mean, rtol=1e-6)
    np.testing.assert_allclose(step["running_var"], m * rv0 + (1 - m) * var, rtol=1e-5)
    # inference-mode step: backward in predict mode too (dx from the running statistics)
    rm1, rv1 = rm.copy(), rv.copy()
    infer = mxnet_backend.backward(x, g, b, rm1, rv1, dy, **flags(training=False))
    np.testing.assert_allclose(infer["dx"], np.broadcast_to(
        (g / np.sqrt(rv + EPS))[:, None], x.shape), rtol=1e-6)
    assert np.array_equal(rm1, rm) and np.array_equal(rv1, rv)


def test_mxnet_errors_are_rejections_and_wrong_lengths_pass(mxnet_backend):
    x, g, b, rm, rv = data()
    with pytest.raises(ValueError, match="Channel axis out of range") as info:
        mxnet_backend.forward(x, g, b, rm, rv, **flags(axis=3))
    # across the worker: a WorkerError named RejectedInput, still a ValueError and TypeError
    assert type(info.value).__name__ == "RejectedInput" and isinstance(info.value, TypeError)
    out = mxnet_backend.forward(x, np.ones(4, np.float32), b, rm, rv, **flags())
    assert out["y"].shape == x.shape, "MXNet 1.9.1 accepts a gamma of the wrong length"
