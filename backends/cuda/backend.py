"""The CUDA backend: mxnet.npx.batch_norm on an NVIDIA GPU (sm_80+) through this package's
kernels (bn_channel_first.cu, bn_channel_last.cu), compiled at first use by NVRTC via CuPy.

Three flavours, by the MXNet GPU path they follow (semantics.py has the table of differences):

- ``cuda`` (``CudaBackend()``, mode "mxnet"): MXNet's own GPU kernels, i.e. the CPU semantics
  of the spec, for every call whatever ``cudnn_off`` says (as MXNet with ``cudnn_off=True``).
- ``cuda-cudnn`` (``CudaBackend(mode="cudnn")``, ``--backend backends.cuda:cudnn_factory``):
  the cuDNN path for every call (eps >= 1e-5, running statistics updated in forward with the
  unbiased variance, eps not cast to the data dtype); it declares those oracle variants as
  its profile (semantics.CUDNN_VARIANTS), which the suite judges every case against.
- ``cuda-dispatch`` (``CudaBackend(mode="dispatch")``, ``backends.cuda:dispatch_factory``):
  MXNet's GPU dispatch, where ``cudnn_off=False`` without ``use_global_stats`` takes the cuDNN
  path and every other call the own kernels; no single profile describes it, so its
  differences are known deviations (conformance/known_deviations/cuda-dispatch.txt).

Arguments are checked on the host (bnspec.validate.check_arguments, then the in-place
writes) before anything is copied or launched, so invalid-input cases behave the same with
or without a GPU. Without CuPy or a device every other case is skipped with the reason
(``supports``), and calling ``forward``/``backward`` raises ``RuntimeUnavailable`` with it.
"""
from __future__ import annotations

import numpy as np

from bnspec.flags import numpy_dtype
from bnspec.validate import check_arguments, check_written
from conformance.adapter import ALL_DTYPES, Capabilities

from . import plan, runtime, semantics


class CudaBackend:
    """Batch norm on the GPU; see the module docstring for the two flavours."""

    version = "0.1.0 (CUDA C++ kernels, NVRTC via CuPy)"

    def __init__(self, mode: str = semantics.MXNET, runtime=None):
        """mode: semantics.MODES (see the module docstring). runtime: a runtime.Runtime-like
        object to use instead of CuPy on the GPU (the CPU emulation, backends/cuda/emulation.py);
        the backend's name then ends in "-emulated"."""
        if mode not in semantics.MODES:
            raise ValueError(f"mode={mode!r} is not one of {semantics.MODES}")
        self.mode = mode
        self._runtime = runtime
        self.name = ("cuda" if mode == semantics.MXNET else f"cuda-{mode}") + (
            "-emulated" if runtime is not None else "")
        self.capabilities = Capabilities(
            dtypes=ALL_DTYPES, forward=True, backward=True, quantized=False, device="cuda",
            profile=semantics.CUDNN_VARIANTS if mode == semantics.CUDNN else ())

    def supports(self, case) -> str | None:
        """Return None if this machine can run the case, else the reason (the skip message)."""
        if getattr(case, "op", None) == "qnt":
            return "the CUDA backend has no quantized path"
        if getattr(case, "op", None) == "err":
            return None  # argument checks run on the host, before any launch
        reason = None if self._runtime is not None else runtime.unavailable_reason()
        if reason is not None:
            return f"needs a CUDA GPU (sm_80+) with CuPy: {reason}"
        kwargs = case.kwargs()
        path = self.path(kwargs.get("cudnn_off", False), kwargs["use_global_stats"])
        if path == semantics.CUDNN and float(kwargs["eps"]) < semantics.CUDNN_BN_MIN_EPSILON:
            return f"eps={kwargs['eps']!r} < 1e-05: MXNet's cuDNN path rejects it"
        return None

    def path(self, cudnn_off: bool, use_global_stats: bool) -> str:
        """Return the MXNet GPU path ("mxnet" or "cudnn") a call takes on this backend."""
        return semantics.select_path(self.mode, cudnn_off=cudnn_off,
                                     use_global_stats=use_global_stats)

    # --- the operator -------------------------------------------------------------------

    def forward(self, x, gamma, beta, running_mean, running_var, *, eps, momentum,
                fix_gamma, use_global_stats, output_mean_var, axis, training,
                cudnn_off=False) -> dict[str, np.ndarray]:
        """Return y (and mean, invstd with output_mean_var) and the running statistics as they
        stand after forward (changed only on the cuDNN path in training)."""
        dtype, ax = check_arguments(x, gamma, beta, running_mean, running_var,
                                    axis=axis, eps=eps, momentum=momentum)
        path = self._checked_path(eps, cudnn_off, use_global_stats)
        steps = semantics.forward_schedule(path, training=training,
                                           use_global_stats=use_global_stats,
                                           fix_gamma=fix_gamma, output_mean_var=output_mean_var)
        check_in_place(steps, fix_gamma, x=x, gamma=gamma, beta=beta, running_mean=running_mean,
                       running_var=running_var)
        rt = self._runtime or runtime.get_runtime()
        if fix_gamma:
            gamma[...] = 1
        geom, buffers = self._run(rt, steps, path, dtype, ax, x, None, gamma, beta,
                                  running_mean, running_var, eps, momentum)
        out = {"y": self._data(rt, buffers.out, dtype, np.shape(x))}
        if output_mean_var:
            out["mean"] = rt.cupy.asnumpy(runtime.chan_field(buffers, "kMean", geom.channels))
            out["invstd"] = rt.cupy.asnumpy(runtime.chan_field(buffers, "kInvstd", geom.channels))
        return self._with_running_stats(rt, out, steps, buffers, running_mean, running_var)

    def backward(self, x, gamma, beta, running_mean, running_var, dy, *, eps, momentum,
                 fix_gamma, use_global_stats, output_mean_var, axis, training,
                 cudnn_off=False) -> dict[str, np.ndarray]:
        """Return dx, dgamma, dbeta of one training step and the running statistics after it."""
        dtype, ax = check_arguments(x, gamma, beta, running_mean, running_var,
                                    axis=axis, eps=eps, momentum=momentum, dy=dy)
        path = self._checked_path(eps, cudnn_off, use_global_stats)
        steps = semantics.backward_schedule(path, training=training,
                                            use_global_stats=use_global_stats,
                                            fix_gamma=fix_gamma)
        check_in_place(steps, fix_gamma, x=x, gamma=gamma, beta=beta, running_mean=running_mean,
                       running_var=running_var, dy=dy)
        rt = self._runtime or runtime.get_runtime()
        if fix_gamma:
            gamma[...] = 1
        _, buffers = self._run(rt, steps, path, dtype, ax, x, dy, gamma, beta, running_mean,
                               running_var, eps, momentum)
        out = {"dx": self._data(rt, buffers.out, dtype, np.shape(x)),
               "dgamma": rt.cupy.asnumpy(buffers.dgamma), "dbeta": rt.cupy.asnumpy(buffers.dbeta)}
        return self._with_running_stats(rt, out, steps, buffers, running_mean, running_var)

    # --- the steps ------------------------------------------------------------------------

    def _checked_path(self, eps, cudnn_off, use_global_stats) -> str:
        path = self.path(cudnn_off, use_global_stats)
        if path == semantics.CUDNN:
            semantics.check_cudnn_eps(eps)
        return path

    def _run(self, rt, steps, path, dtype, ax, x, dy, gamma, beta, running_mean, running_var,
             eps, momentum):
        geom = plan.geometry(np.shape(x), ax)
        launch = plan.plan(geom, dtype, rt.device)
        buffers = runtime.allocate(rt.cupy, launch, geom, dtype, x=x, dy=dy, gamma=gamma,
                                   beta=beta, running_mean=running_mean, running_var=running_var)
        scalars = semantics.scalars(path, dtype, eps, momentum)
        runtime.run_schedule(rt, steps, launch, geom, dtype, buffers, scalars)
        return geom, buffers

    @staticmethod
    def _data(rt, array, dtype, shape) -> np.ndarray:
        return rt.cupy.asnumpy(array).view(numpy_dtype(dtype)).reshape(shape)

    @staticmethod
    def _with_running_stats(rt, out, steps, buffers, running_mean, running_var):
        """Update the host running statistics in place where the schedule changed them (else
        they stay bit-identical) and add them to out."""
        if semantics.updates_running_stats(steps):
            running_mean[...] = rt.cupy.asnumpy(buffers.running_mean)
            running_var[...] = rt.cupy.asnumpy(buffers.running_var)
        out["running_mean"], out["running_var"] = running_mean, running_var
        return out


def check_in_place(steps, fix_gamma: bool, **arrays) -> None:
    """Raise ValueError naming the parameter unless every array the call writes in place
    (gamma with fix_gamma; running_mean and running_var where the schedule updates them) is a
    writeable numpy array sharing no memory with another argument. Runs before any write."""
    written = (["gamma"] if fix_gamma else []) + (
        ["running_mean", "running_var"] if semantics.updates_running_stats(steps) else [])
    check_written(written, **arrays)


def factory() -> CudaBackend:
    """Return the ``cuda`` backend (MXNet's own GPU kernels: the CPU semantics)."""
    return CudaBackend()


def cudnn_factory() -> CudaBackend:
    """Return the ``cuda-cudnn`` backend (the cuDNN path for every call)."""
    return CudaBackend(mode=semantics.CUDNN)


def dispatch_factory() -> CudaBackend:
    """Return the ``cuda-dispatch`` backend (MXNet's GPU dispatch: cudnn_off picks the path)."""
    return CudaBackend(mode=semantics.DISPATCH)
