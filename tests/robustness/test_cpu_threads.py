"""Thread safety of the CPU backend: concurrent calls from several Python threads give the
same bits as serial calls.

The kernels release the GIL (backends/cpu/src/bindings.cpp), so Python threads really run
them at once, each possibly with its own OpenMP team. Every call gets its own copies of the
inputs; outputs, and the running statistics and gamma it updates in place, must equal the
serial run's bit for bit (the backend promises bit-identical results for any thread count).
"""
from __future__ import annotations

import itertools
import random
from concurrent.futures import ThreadPoolExecutor

import ml_dtypes
import numpy as np
import pytest

THREADS = 8
ROUNDS = 3


@pytest.fixture(scope="module")
def cpu():
    try:
        from backends.cpu import CpuBackend

        return CpuBackend()
    except ImportError as exc:
        pytest.skip(f"backends.cpu cannot load: {exc}")


def problems() -> list[tuple[str, dict, dict]]:
    """Return (op, arrays, kwargs) calls: every dtype, both layouts, small shapes and shapes
    past the extension's one-thread threshold (32Ki elements), all four flag families."""
    rng = np.random.default_rng(20240611)
    out = []
    shapes = [((4, 3), 1), ((8, 16, 5, 5), 1), ((64, 32, 4, 4), 1), ((32, 6, 6, 48), -1),
              ((3, 70000), 0), ((5, 7, 3), 2)]
    dtypes = ["float32", "float64", "float16", "bfloat16"]
    flags = [(True, False, False), (True, True, False), (False, False, True), (True, False, True)]
    for k, ((shape, axis), dtype, (training, fix_gamma, global_stats), op) in enumerate(
            itertools.product(shapes, dtypes, flags, ("forward", "step"))):
        if k % 3:  # a third of the product keeps the test quick and still covers each axis
            continue
        np_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
        param = np.float64 if dtype == "float64" else np.float32
        c = shape[axis]
        arrays = {"x": (rng.standard_normal(shape) * 3 + 1).astype(np_dtype),
                  "gamma": rng.standard_normal(c).astype(param),
                  "beta": rng.standard_normal(c).astype(param),
                  "running_mean": rng.standard_normal(c).astype(param),
                  "running_var": rng.random(c).astype(param) + 0.5}
        if op == "step":
            arrays["dy"] = rng.standard_normal(shape).astype(np_dtype)
        kwargs = {"eps": 1e-3, "momentum": 0.9, "fix_gamma": fix_gamma,
                  "use_global_stats": global_stats, "output_mean_var": True, "axis": axis,
                  "training": training}
        out.append((op, arrays, kwargs))
    return out


def call(cpu, op, arrays, kwargs) -> dict[str, bytes]:
    """Run one call on fresh copies; return every output and every input afterwards, as
    (dtype, shape, bytes)."""
    a = {k: v.copy() for k, v in arrays.items()}
    args = [a[n] for n in ("x", "gamma", "beta", "running_mean", "running_var")]
    out = cpu.backward(*args, a["dy"], **kwargs) if op == "step" else cpu.forward(*args, **kwargs)
    result = {f"out:{k}": v for k, v in out.items()}
    result.update({f"in:{k}": v for k, v in a.items()})
    return {k: (np.asarray(v).dtype.str, np.shape(v), np.asarray(v).tobytes())
            for k, v in result.items()}


@pytest.mark.parametrize("omp_threads", [1, 2])
def test_concurrent_calls_equal_serial_calls(cpu, omp_threads):
    from backends.cpu import get_num_threads, set_num_threads

    before = get_num_threads()
    set_num_threads(omp_threads)
    try:
        calls = problems()
        serial = [call(cpu, *c) for c in calls]
        jobs = [i for i in range(len(calls)) for _ in range(ROUNDS)]
        random.Random(omp_threads).shuffle(jobs)
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            concurrent = list(pool.map(lambda i: (i, call(cpu, *calls[i])), jobs))
    finally:
        set_num_threads(before)
    assert len(concurrent) == len(jobs)
    for i, got in concurrent:
        op, arrays, kwargs = calls[i]
        where = (f"[{op} {arrays['x'].dtype.name}{list(arrays['x'].shape)} {kwargs}, "
                 f"{THREADS} Python threads x {omp_threads} OpenMP threads]")
        assert got.keys() == serial[i].keys(), f"outputs {sorted(got)} {where}"
        for name, value in got.items():
            assert value == serial[i][name], (
                f"{name} differs from the serial call's bits {where}")
