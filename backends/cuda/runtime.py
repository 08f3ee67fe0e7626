"""Loading the kernels through CuPy (NVRTC) and launching a schedule of them.

Nothing here runs at import: ``get_runtime()`` imports CuPy, finds the device and compiles a
layout's module for a dtype the first time a kernel of it is asked for (CuPy keeps the
compiled binary in its kernel cache, ~/.cupy/kernel_cache, for later processes). Without
CuPy or a usable device it raises ``RuntimeUnavailable`` with the reason, which the backend
reports through ``supports()``.

``kernel_arguments`` builds the argument tuple of one launch from plain objects, so its
order and types are tested against the kernels' C++ parameter lists without a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnspec.flags import numpy_dtype

from . import kernels, plan
from .semantics import Scalars, Step

#: Compute capability the kernels need: cvt.rn.bf16.f32 is sm_80+.
MIN_COMPUTE_CAPABILITY = (8, 0)


class RuntimeUnavailable(RuntimeError):
    """CuPy or a usable CUDA device is missing; the message says which and why."""


class Runtime:
    """CuPy, the device and the compiled modules (one per layout and dtype)."""

    def __init__(self):
        try:
            import cupy
        except ImportError as exc:
            raise RuntimeUnavailable(
                f"CuPy is not installed ({exc}); install the wheel matching the CUDA driver, "
                "e.g. `pip install cupy-cuda12x` or `cupy-cuda13x`") from None
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDARuntimeError: no driver, insufficient driver, ...
            raise RuntimeUnavailable(f"no usable CUDA device: {exc}") from None
        if count == 0:
            raise RuntimeUnavailable("no CUDA device is visible (getDeviceCount() == 0)")
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        capability = (int(props["major"]), int(props["minor"]))
        if capability < MIN_COMPUTE_CAPABILITY:
            raise RuntimeUnavailable(
                f"device {name!r} has compute capability {capability[0]}.{capability[1]}; the "
                "kernels need 8.0 or newer (bfloat16 conversion instructions)")
        self.cupy = cupy
        self.device = plan.Device(name, int(props["multiProcessorCount"]))
        self.capability = capability
        self._modules: dict[tuple[str, str], object] = {}

    def function(self, layout: str, stage: str, dtype: str, vec: int, policy: str):
        """Return the compiled kernel (compiling the layout's module for dtype if needed)."""
        key = (layout, dtype)
        if key not in self._modules:
            self._modules[key] = self.cupy.RawModule(
                code=kernels.module_source(layout), options=kernels.compile_options(),
                name_expressions=kernels.kernel_names(layout, dtype))
        return self._modules[key].get_function(
            kernels.kernel_name(layout, stage, dtype, vec, policy))


_RUNTIME: Runtime | None = None
_FAILURE: str | None = None


def get_runtime() -> Runtime:
    """Return the process's Runtime, or raise RuntimeUnavailable (the reason is remembered)."""
    global _RUNTIME, _FAILURE
    if _RUNTIME is None:
        if _FAILURE is not None:
            raise RuntimeUnavailable(_FAILURE)
        try:
            _RUNTIME = Runtime()
        except RuntimeUnavailable as exc:
            _FAILURE = str(exc)
            raise
    return _RUNTIME


def unavailable_reason() -> str | None:
    """Return why the kernels cannot run here, or None if they can."""
    try:
        get_runtime()
    except RuntimeUnavailable as exc:
        return str(exc)
    return None


@dataclass
class Buffers:
    """The device arrays of one problem (16-bit data as uint16 bits; the rest in Acc)."""

    x: object  # [outer, C, inner] storage dtype
    dy: object  # [outer, C, inner] or x itself where no dy is read
    out: object  # [outer, C, inner]: y or dx
    gamma: object  # [C]
    beta: object  # [C]
    running_mean: object  # [C]
    running_var: object  # [C]
    chan: object  # [CHAN_FIELD_COUNT * C]
    dgamma: object  # [C]
    dbeta: object  # [C]
    partials: object  # [max(1, partials) * STATE_BYTES] bytes
    arrivals: object  # [max(1, arrivals)] uint32, zero between launches


def storage_dtype(dtype: str) -> np.dtype:
    """The dtype the kernels read data as (16-bit data travel as raw uint16 bits)."""
    return np.dtype(np.uint16) if kernels.ITEMSIZE[dtype] == 2 else np.dtype(dtype)


def allocate(cupy, launch: plan.Launch, geom: plan.Geometry, dtype: str, *, x, dy=None,
             gamma, beta, running_mean, running_var) -> Buffers:
    """Return device Buffers for one problem, copying the given host (or device) arrays."""
    acc = np.dtype(kernels.ACC_DTYPES[dtype])
    store = storage_dtype(dtype)

    def data(a):
        if isinstance(a, np.ndarray):  # host data: C order, native byte order, as raw bits
            if a.dtype != store:
                a = np.ascontiguousarray(a, dtype=numpy_dtype(dtype))
            a = np.ascontiguousarray(a).view(store)
        return cupy.ascontiguousarray(cupy.asarray(a).view(store))

    def param(a):
        if isinstance(a, np.ndarray):
            a = np.asarray(a, dtype=acc)  # native byte order
        return cupy.array(cupy.asarray(a), dtype=acc, copy=True)

    x_d = data(x)
    channels = geom.channels
    return Buffers(
        x=x_d, dy=data(dy) if dy is not None else x_d, out=cupy.empty_like(x_d),
        gamma=param(gamma), beta=param(beta), running_mean=param(running_mean),
        running_var=param(running_var),
        chan=cupy.zeros(kernels.CHAN_FIELD_COUNT * channels, dtype=acc),
        dgamma=cupy.zeros(channels, dtype=acc), dbeta=cupy.zeros(channels, dtype=acc),
        partials=cupy.zeros(max(1, launch.partials) * kernels.STATE_BYTES, dtype=np.uint8),
        arrivals=cupy.zeros(max(1, launch.arrivals), dtype=np.uint32))


def chan_field(buffers: Buffers, field: str, channels: int):
    """The [C] slice of one per-channel workspace field (kernels.CHAN_FIELDS)."""
    start = kernels.CHAN_FIELDS[field] * channels
    return buffers.chan[start:start + channels]


def kernel_arguments(step: Step, launch: plan.Launch, geom: plan.Geometry, buffers: Buffers,
                     s: Scalars) -> tuple:
    """Return the argument tuple of one launch, in the kernels' parameter order."""
    b = buffers
    center = chan_field(b, "kMean", geom.channels) if step.center == "batch" else b.running_mean
    channel = (b.gamma, b.beta, center, b.running_mean, b.running_var, b.chan, b.dgamma,
               b.dbeta, s.eps_data, s.eps_shift, s.keep, s.take, np.int64(geom.count),
               np.int32(geom.channels), np.uint32(step.flags | s.flags))
    data = (b.x, b.dy) if step.stage == "reduce" else (b.x, b.dy, b.out)
    if launch.layout == "channel_first":
        sizes = (np.int64(geom.outer), np.int64(geom.inner), np.int32(launch.splits))
    else:
        sizes = (np.int64(geom.outer),)
    workspace = (b.partials, b.arrivals) if step.stage == "reduce" else ()
    return data + sizes + workspace + channel


def run_schedule(runtime: Runtime, steps, launch: plan.Launch, geom: plan.Geometry, dtype: str,
                 buffers: Buffers, s: Scalars) -> None:
    """Enqueue the launches of a schedule on the current stream."""
    for step in steps:
        function = runtime.function(launch.layout, step.stage, dtype, launch.vec, step.policy)
        function(launch.grid, launch.block, kernel_arguments(step, launch, geom, buffers, s))
