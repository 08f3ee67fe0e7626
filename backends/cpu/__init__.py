"""The optimized CPU backend: compiled C++ kernels (OpenMP, AVX-512/AVX2/portable at run time).

    from backends.cpu import CpuBackend
    out = CpuBackend().forward(x, gamma, beta, rm, rv, eps=1e-3, momentum=0.9, fix_gamma=False,
                               use_global_stats=False, output_mean_var=True, axis=1,
                               training=True)

Registered as conformance backend ``cpu`` (``pytest conformance/ --backend cpu``). Semantics:
shared/spec/batch_norm_semantics.md (MXNet 1.9.1 CPU path: running statistics updated in the
backward pass from the biased variance; ``cudnn_off`` has no effect). The kernel source opens with
the math and the algorithm: backends/cpu/src/bn.h and kernels.inc.

Threads: ``OMP_NUM_THREADS`` or :func:`set_num_threads`; results are bit-identical for any thread
count and any buffer alignment. Kernels: :func:`set_isa` ("avx512", "avx2", "portable", "auto");
``BN_CPU_ISA`` chooses at load time. ``BN_CPU_STREAM=1`` writes outputs of 8 MiB and more with
non-temporal stores (read once; the values are the same either way; up to a quarter faster when
the output does not 4K-alias the input, two to five times slower when it does: bn.h
``streaming_allowed``; compare with ``python -m backends.bench``).
"""
from __future__ import annotations

import os

import numpy as np

from bnspec.flags import DTYPES, numpy_dtype
from bnspec.validate import check_arguments, check_quantized_arguments
from conformance.adapter import ALL_DTYPES, Capabilities


def _load_extension():
    """Import the compiled module; BN_CPU_EXTENSION=path loads another build of it (the
    sanitizer build of .ci/sanitize.sh)."""
    path = os.environ.get("BN_CPU_EXTENSION")
    if not path:
        from . import _bn_cpu

        return _bn_cpu
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{__name__}._bn_cpu", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"BN_CPU_EXTENSION={path!r} is not a loadable extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


try:
    _ext = _load_extension()
except (ImportError, OSError) as error:  # not built (no compiler at install time), or stale
    _ext = None
    _LOAD_ERROR: Exception | None = error
else:
    _LOAD_ERROR = None

__all__ = ["CpuBackend", "factory", "set_num_threads", "get_num_threads", "set_isa", "get_isa",
           "available_isas", "extension", "DTYPE_CODES"]

#: dtype name -> the extension's dtype code
DTYPE_CODES = {"float64": 0, "float32": 1, "float16": 2, "bfloat16": 3}


def extension():
    """Return the compiled module, or raise ImportError saying how to build it."""
    if _ext is None:
        raise ImportError(
            "backends.cpu: the compiled extension backends/cpu/_bn_cpu is not built or does not "
            "load. Install a C++17 compiler (g++ or clang++) and run `pip install -e .` (it "
            f"builds the extension through scikit-build-core). Import error: {_LOAD_ERROR}"
        )
    return _ext


def set_num_threads(n: int) -> None:
    """Set the threads each call uses (0: the OpenMP default, i.e. OMP_NUM_THREADS)."""
    extension().set_num_threads(int(n))


def get_num_threads() -> int:
    """Return the threads each call uses."""
    return extension().get_num_threads()


def set_isa(name: str) -> None:
    """Choose the kernels: "avx512", "avx2", "portable" or "auto" (ValueError if unavailable)."""
    extension().set_isa(str(name))


def get_isa() -> str:
    """Return the name of the kernels in use."""
    return extension().get_isa()


def available_isas() -> list[str]:
    """Return the kernel sets this build and this CPU can run."""
    return extension().available_isas().split(",")


def _storage(a: np.ndarray) -> np.ndarray:
    """Return a (view of) a as the extension receives it: 16-bit floats as uint16."""
    return a.view(np.uint16) if a.dtype.itemsize == 2 else a


def _check_writable(name: str, a) -> None:
    if not isinstance(a, np.ndarray) or not a.flags.writeable:
        raise ValueError(f"{name} must be a writeable numpy array: batch_norm updates it in place")


class CpuBackend:
    """A conformance backend (conformance.adapter.Backend) running the compiled kernels."""

    name = "cpu"
    version = "0.1.0"
    capabilities = Capabilities(dtypes=ALL_DTYPES, backward=True, quantized=True, device="cpu")

    def __init__(self) -> None:
        extension()

    def supports(self, case) -> str | None:
        return None

    @staticmethod
    def _prepare(x, gamma, beta, running_mean, running_var, axis, eps, momentum, dy=None):
        name, ax = check_arguments(x, gamma, beta, running_mean, running_var, axis=axis,
                                   eps=eps, momentum=momentum, dy=dy)
        arrays = {"x": x, "gamma": gamma, "beta": beta, "running_mean": running_mean,
                  "running_var": running_var, "dy": dy}
        for pname, value in arrays.items():
            if value is not None and not np.asarray(value).dtype.isnative:
                raise ValueError(f"{pname}.dtype={np.asarray(value).dtype.str!r} is not in the "
                                 "machine's byte order: pass it through np.asarray(..., "
                                 "dtype=...) with a native dtype")
        return name, ax, np.asarray(x), np.dtype(numpy_dtype(DTYPES[name].param))

    def forward(self, x, gamma, beta, running_mean, running_var, *, eps, momentum, fix_gamma,
                use_global_stats, output_mean_var, axis, training, cudnn_off=False):
        """Return y (and mean, invstd with output_mean_var) and the running statistics, which a
        forward call leaves unchanged. With fix_gamma, gamma is overwritten with ones."""
        name, ax, x, pdt = self._prepare(x, gamma, beta, running_mean, running_var, axis, eps,
                                         momentum)
        if fix_gamma:
            _check_writable("gamma", gamma)
        channels = x.shape[ax]
        y = np.empty(x.shape, dtype=x.dtype)
        mean = np.empty(channels, dtype=pdt)
        invstd = np.empty(channels, dtype=pdt)
        extension().forward(DTYPE_CODES[name], _storage(x), gamma, beta, running_mean,
                            running_var, _storage(y), mean, invstd, ax, float(eps),
                            bool(fix_gamma), bool(training and not use_global_stats))
        out = {"y": y, "running_mean": running_mean, "running_var": running_var}
        if output_mean_var:
            out["mean"] = mean
            out["invstd"] = invstd
        return out

    def backward(self, x, gamma, beta, running_mean, running_var, dy, *, eps, momentum,
                 fix_gamma, use_global_stats, output_mean_var, axis, training, cudnn_off=False):
        """Return dx, dgamma, dbeta of one training step and the running statistics after it
        (updated in place when training with batch statistics)."""
        name, ax, x, pdt = self._prepare(x, gamma, beta, running_mean, running_var, axis, eps,
                                         momentum, dy=dy)
        batch_stats = bool(training and not use_global_stats)
        if fix_gamma:
            _check_writable("gamma", gamma)
        if batch_stats:
            _check_writable("running_mean", running_mean)
            _check_writable("running_var", running_var)
        channels = x.shape[ax]
        dy = np.asarray(dy)
        dx = np.empty(x.shape, dtype=x.dtype)
        dgamma = np.empty(channels, dtype=pdt)
        dbeta = np.empty(channels, dtype=pdt)
        extension().train_step(DTYPE_CODES[name], _storage(x), _storage(dy), gamma, beta,
                               running_mean, running_var, None, None, _storage(dx), dgamma,
                               dbeta, ax, float(eps), float(momentum), bool(fix_gamma),
                               batch_stats, True)
        return {"dx": dx, "dgamma": dgamma, "dbeta": dbeta, "running_mean": running_mean,
                "running_var": running_var}

    # --- the quantized path (int8 kernel: src/quantized.h) -------------------------------

    def quantized(self, x, gamma, beta, running_mean, running_var, *, min_data, max_data,
                  min_calib_range, max_calib_range, eps, axis, **flags):
        """Return int8 out and float32 min_out/max_out (shape (1,)) of the quantized batch
        norm (spec "Quantized path"); the float operator's flags are accepted and ignored."""
        _, ax = check_quantized_arguments(
            x, gamma, beta, running_mean, running_var, axis=axis, eps=eps, min_data=min_data,
            max_data=max_data, min_calib_range=min_calib_range,
            max_calib_range=max_calib_range)
        f32 = lambda v: float(np.float32(v))  # noqa: E731 - MXNet holds the ranges as float
        data_scale = max(abs(f32(min_data)), abs(f32(max_data)))
        output_scale = max(abs(f32(min_calib_range)), abs(f32(max_calib_range)))
        x = np.ascontiguousarray(x)
        params = [np.ascontiguousarray(p, dtype=np.float32)  # native byte order
                  for p in (gamma, beta, running_mean, running_var)]
        out = np.empty(x.shape, dtype=np.int8)
        extension().quantized(x, *params, out, ax, float(eps), data_scale, output_scale)
        return {"out": out, "min_out": np.array([min_calib_range], dtype=np.float32),
                "max_out": np.array([max_calib_range], dtype=np.float32)}


def factory() -> CpuBackend:
    """Return a CpuBackend (raises ImportError with build instructions if not built)."""
    return CpuBackend()
