"""The CPU backend's int8 kernel (backends/cpu/src/quantized.h): the oracle's integer rule on
every layout, the same bits for every instruction set, thread count and buffer offset, and
its own checks. Skipped when the extension is not built (or built without the kernel)."""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from conformance.quantized import compare_int
from conformance.tolerances import quantized_limit_for

cpu = pytest.importorskip("backends.cpu")
try:
    EXT = cpu.extension()
except ImportError as exc:  # not built
    pytest.skip(f"backends.cpu is not built: {exc}", allow_module_level=True)
if not hasattr(EXT, "quantized"):
    pytest.skip("backends.cpu was built without the quantized kernel: rebuild it",
                allow_module_level=True)

F32 = np.float32
RANGES = {"min_data": -2.0, "max_data": 1.5, "min_calib_range": -3.0, "max_calib_range": 2.5}
LIMIT = quantized_limit_for("strict").units


def _inputs(rng, dtype, shape, axis):
    C = shape[axis]
    low, high = (-128, 128) if dtype == "int8" else (0, 256)
    x = rng.integers(low, high, shape).astype(dtype)
    params = [rng.normal(0.3, 0.4, C).astype(F32), rng.normal(0, 1, C).astype(F32),
              rng.normal(0, 0.5, C).astype(F32), rng.uniform(0.05, 2, C).astype(F32)]
    return x, params


def _run(x, params, axis, eps=1e-3):
    return cpu.CpuBackend().quantized(x, *params, eps=eps, axis=axis, **RANGES)


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("shape, axis", [
    ((3, 5), 1), ((7, 3), 0), ((2, 3, 67), 1), ((2, 67, 3), -1), ((4, 17, 5, 7), 1),
    ((2, 5, 7, 33), 3), ((2, 3, 2, 2, 41), 4), ((1, 1, 1000), 1), ((1000, 1), 1)])
def test_integer_rule_on_every_layout(dtype, shape, axis):
    rng = np.random.default_rng(abs(hash((dtype, shape, axis))) % 2**32)
    x, params = _inputs(rng, dtype, shape, axis)
    got = _run(x, params, axis)
    expected = oracle.evaluate_quantized(x, *params, eps=1e-3, axis=axis, **RANGES)
    result = compare_int(got["out"], expected["out"], LIMIT)
    assert result.ok, (result, shape, axis)
    assert got["min_out"].tolist() == [-3.0] and got["max_out"].dtype == np.float32


def test_ties_to_even_and_saturation_are_exact():
    x = np.arange(-128, 128).astype(np.int8).reshape(1, 2, 128)
    params = [np.array([0.5, 1000.0], F32), np.zeros(2, F32), np.zeros(2, F32),
              np.ones(2, F32)]
    out = cpu.CpuBackend().quantized(x, *params, eps=0.0, axis=1, min_data=-1.0, max_data=1.0,
                                     min_calib_range=-1.0, max_calib_range=1.0)["out"]
    q = x.astype(np.int64)
    halves = q[0, 0] / 2
    assert np.array_equal(out[0, 0], np.rint(halves).astype(np.int8))  # numpy rint: ties even
    assert np.array_equal(out[0, 1], np.where(q[0, 1] > 0, 127, np.where(q[0, 1] < 0, -128, 0)))


def test_same_bits_for_every_isa_thread_count_and_offset():
    rng = np.random.default_rng(11)
    shape, axis = (3, 40, 1031), 1
    x, params = _inputs(rng, "int8", shape, axis)
    buffer = np.empty(x.size + 1, np.int8)
    shifted = buffer[1:].reshape(shape)
    shifted[...] = x
    isa, threads = cpu.get_isa(), cpu.get_num_threads()
    results = []
    try:
        for name in cpu.available_isas():
            cpu.set_isa(name)
            for n in (1, 2):
                cpu.set_num_threads(n)
                results += [_run(x, params, axis)["out"], _run(shifted, params, axis)["out"]]
    finally:
        cpu.set_isa(isa)
        cpu.set_num_threads(threads)
    assert all(np.array_equal(results[0], r) for r in results[1:])


def test_non_contiguous_input_is_computed_as_its_values():
    rng = np.random.default_rng(5)
    x, params = _inputs(rng, "uint8", (6, 3, 8), 1)
    view = x[::2, :, ::-1]
    assert np.array_equal(_run(view, params, 1)["out"], _run(view.copy(), params, 1)["out"])


def test_python_checks_name_the_parameter():
    x = np.zeros((2, 3), np.int8)
    params = [np.ones(3, F32) for _ in range(4)]
    backend = cpu.CpuBackend()
    with pytest.raises(TypeError, match="x.dtype"):
        backend.quantized(x.astype(F32), *params, eps=1e-3, axis=1, **RANGES)
    with pytest.raises(ValueError, match="max_calib_range"):
        backend.quantized(x, *params, eps=1e-3, axis=1, min_data=-1.0, max_data=1.0,
                          min_calib_range=-1.0, max_calib_range=None)


def test_kernel_checks_its_buffers():
    x = np.zeros((2, 3, 4), np.int8)
    params = [np.ones(3, F32) for _ in range(4)]
    with pytest.raises(ValueError, match="out"):
        EXT.quantized(x, *params, np.empty((2, 3, 4), np.int16), 1, 1e-3, 1.0, 1.0)
    with pytest.raises(ValueError, match="not C-contiguous"):
        EXT.quantized(x, *params, np.empty((2, 3, 8), np.int8)[:, :, ::2], 1, 1e-3, 1.0, 1.0)
    with pytest.raises(ValueError, match="overlaps"):
        EXT.quantized(x, *params, x.view(np.int8), 1, 1e-3, 1.0, 1.0)
    with pytest.raises(ValueError, match="gamma"):
        EXT.quantized(x, np.ones(2, F32), *params[1:], np.empty_like(x), 1, 1e-3, 1.0, 1.0)
    with pytest.raises(ValueError, match="calibration"):
        EXT.quantized(x, *params, np.empty_like(x), 1, 1e-3, 1.0, 0.0)
