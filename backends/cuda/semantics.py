"""Which of MXNet's two GPU paths a call follows, and what each path computes.

MXNet 1.9.1 on a GPU (src/operator/nn/batch_norm.cu, BatchNormCompute<gpu>) sends a call to
cuDNN when ``!use_global_stats && !cudnn_off`` and to its own CUDA kernels otherwise
(shared/spec/batch_norm_semantics.md, "cuDNN path"). The two differ:

=========================  ====================================  ==================================
                           "mxnet": own kernels (CPU semantics)  "cudnn": cuDNN path
=========================  ====================================  ==================================
eps                        any eps >= 0; invstd uses DType(eps)  eps >= 1e-5 (CUDNN_BN_MIN_EPSILON)
                           (eps rounded to the data dtype)       or "CuDNN requires eps to be no
                                                                 less than 1e-05"; invstd uses eps
                                                                 in the accumulation type
running stats updated      in backward, only in training with    in forward (training), factor
                           batch statistics                      1 - momentum
running variance           biased, recovered 1/invstd^2 - eps    unbiased: sum((x - mean)^2)/(M-1)
                                                                 (M = 1 gives NaN here: 0/0)
inference forward          running statistics, DType(eps)        running statistics, eps (cuDNN
                                                                 ForwardInference); mean/invstd
                                                                 outputs are not written by cuDNN:
                                                                 returned here as the running mean
                                                                 and 1/sqrt(running_var + eps)
backward with training     running statistics (dx = dy w)        cuDNN gets no saved statistics
off (record, not train)                                          (global_stats = !is_train) and
                                                                 recomputes batch statistics: dx,
                                                                 dgamma as in batch mode, no update
fix_gamma                  gamma := 1 in place, dgamma = 0       the same
=========================  ====================================  ==================================

The cuDNN rows come from src/operator/nn/cudnn/cudnn_batch_norm-inl.h (Init's CHECK_GE on
eps; Forward passes ``1 - momentum`` as cuDNN's exponential-average factor and param eps;
Backward passes null saved statistics when ``!ctx.is_train || use_global_stats``) and cuDNN's
documented running-variance estimator; they were read, not observed on a GPU build.

The CUDA backend takes one of three modes (``CudaBackend(mode=...)``):

- "mxnet" (registered as ``cuda``): the own-kernel path for every call. The golden cases are
  MXNet CPU runs, whose semantics MXNet's own GPU kernels share.
- "cudnn" (``cuda-cudnn``): the cuDNN path for every call, so that one semantic profile
  (``CUDNN_VARIANTS``, judged by the suite on every case) describes the backend.
- "dispatch" (``cuda-dispatch``): MXNet's GPU dispatch, ``cudnn_off`` and ``use_global_stats``
  picking the path per call, as on a GPU build of MXNet.

This module is pure numpy: the per-path scalars and kernel schedules, and a float64
reference of the cuDNN path (``cudnn_reference``) that tests compare the emulation with.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backends.numpy_backend import channels_last, ieee, to_dtype
from bnspec.flags import DTYPES
from bnspec.formats import FORMATS, round_float64
from bnspec.validate import check_arguments, check_eps

from . import kernels

MXNET, CUDNN, DISPATCH = "mxnet", "cudnn", "dispatch"
MODES = (MXNET, CUDNN, DISPATCH)
#: The oracle variants (oracle.variants) the cuDNN path follows, for Capabilities.profile.
#: The recomputed statistics of a backward without training and the eps >= 1e-5 error have no
#: variant (conformance/known_deviations/cuda-cudnn.txt lists the first; the backend skips
#: cases with a smaller eps).
CUDNN_VARIANTS = ("stats_updated_in_forward", "running_var_unbiased", "eps_not_cast")
#: cuDNN's CUDNN_BN_MIN_EPSILON, which MXNet's cuDNN path checks eps against.
CUDNN_BN_MIN_EPSILON = 1e-5
_F = kernels.FLAGS


def select_path(mode: str, *, cudnn_off: bool, use_global_stats: bool) -> str:
    """Return the path ("mxnet" or "cudnn") of one call in a backend mode (see MODES)."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {MODES}")
    if mode == DISPATCH:
        return CUDNN if not cudnn_off and not use_global_stats else MXNET
    return mode


def check_cudnn_eps(eps) -> float:
    """Return eps if the cuDNN path accepts it, else raise ValueError naming eps."""
    value = check_eps(eps)
    if value < CUDNN_BN_MIN_EPSILON:
        raise ValueError(f"eps={eps!r} is below CUDNN_BN_MIN_EPSILON=1e-05: MXNet's cuDNN path "
                         "rejects it ('CuDNN requires eps to be no less than 1e-05'); pass "
                         "cudnn_off=True for MXNet's own kernels")
    return value


@dataclass(frozen=True)
class Scalars:
    """The per-call scalars of the kernels, in the accumulation dtype."""

    eps_data: np.floating  # the eps inside 1/sqrt(var + eps)
    eps_shift: np.floating  # DType(eps) - eps: turns var + DType(eps) into 1/invstd^2 - eps
    keep: np.floating  # running <- running * keep + batch statistic * take
    take: np.floating
    flags: int = 0  # kernels.FLAGS bits of the call itself (kEpsZero), added to every launch


def scalars(path: str, dtype: str, eps: float, momentum: float) -> Scalars:
    """Return the kernel scalars of a call on data of dtype along a path.

    mxnet: eps_data = DType(eps); keep = float32(momentum), take = 1 - keep in Acc.
    cudnn: eps_data = eps in Acc; take = float32(1 - float32(momentum)) (MXNet's factor),
    keep = 1 - take in Acc. Both: kEpsZero where eps == 0, so that a zero batch variance gives
    invstd = 0 (the spec's definition) rather than 1/sqrt(0).
    """
    acc = np.dtype(kernels.ACC_DTYPES[dtype]).type
    momentum32 = np.float32(momentum)
    flags = _F["kEpsZero"] if eps == 0 else 0
    if path == MXNET:
        data_eps = float(round_float64(np.float64(eps), FORMATS[dtype]))  # DType(eps)
        keep = acc(momentum32)
        return Scalars(acc(data_eps), acc(data_eps - eps), keep, acc(1) - keep, flags)
    if path == CUDNN:
        take = acc(np.float32(1) - momentum32)
        return Scalars(acc(eps), acc(0), acc(1) - take, take, flags)
    raise ValueError(f"path={path!r} is not one of {(MXNET, CUDNN)}")


@dataclass(frozen=True)
class Step:
    """One kernel launch of a call."""

    stage: str  # "reduce" | "apply"
    policy: str  # kernels.POLICIES[stage]
    flags: int  # kernels.FLAGS bits
    center: str  # the mean the kernel subtracts: "batch" (chan[kMean]) or "running"


def forward_schedule(path: str, *, training: bool, use_global_stats: bool, fix_gamma: bool,
                     output_mean_var: bool) -> tuple[Step, ...]:
    """Return the launches of a forward call."""
    base = _F["kFixGamma"] if fix_gamma else 0
    if training and not use_global_stats:
        batch = base | _F["kBatchStats"]
        update = _F["kUpdateInForward"] if path == CUDNN else 0
        return (Step("reduce", "StatsReducer", batch | update, "batch"),
                Step("apply", "NormalizeOp", batch, "batch"))
    write = _F["kWriteStats"] if output_mean_var else 0
    return (Step("apply", "NormalizeOp", base | write, "running"),)


def backward_schedule(path: str, *, training: bool, use_global_stats: bool,
                      fix_gamma: bool) -> tuple[Step, ...]:
    """Return the launches of a training step (forward, then backward with dy); y is not
    computed, since a step returns only gradients and running statistics."""
    base = _F["kFixGamma"] if fix_gamma else 0
    recomputed = path == CUDNN and not training and not use_global_stats  # cuDNN, see table
    batch_stats = (training and not use_global_stats) or recomputed
    if not batch_stats:
        return (Step("reduce", "GradReducer", base, "running"),
                Step("apply", "InputGradOp", base, "running"))
    batch = base | _F["kBatchStats"]
    in_forward = _F["kUpdateInForward"] if path == CUDNN and training else 0
    in_backward = _F["kUpdateInBackward"] if path == MXNET else 0
    return (Step("reduce", "StatsReducer", batch | in_forward, "batch"),
            Step("reduce", "GradReducer", batch | in_backward, "batch"),
            Step("apply", "InputGradOp", batch, "batch"))


def updates_running_stats(steps) -> bool:
    """Return True if a schedule changes running_mean/running_var."""
    mask = _F["kUpdateInForward"] | _F["kUpdateInBackward"]
    return any(step.flags & mask for step in steps)


# --- a float64 reference of the cuDNN path ---------------------------------------------------


@ieee
def cudnn_reference(x, gamma, beta, running_mean, running_var, dy=None, *, eps, momentum,
                    fix_gamma, use_global_stats, output_mean_var, axis, training,
                    cudnn_off=False) -> dict[str, np.ndarray]:
    """Return what the cuDNN path gives for one forward call (dy None) or training step, as
    the adapter's output dict: the formulas of the table above in float64, each output
    rounded once, for any flags (use_global_stats: running statistics with eps uncast, no
    update). cudnn_off is ignored. The inputs are not modified. Raises ValueError for an eps
    that cuDNN rejects.
    """
    dtype, ax = check_arguments(x, gamma, beta, running_mean, running_var, axis=axis, eps=eps,
                                momentum=momentum, dy=dy)
    check_cudnn_eps(eps)
    param = DTYPES[dtype].param
    s = scalars(CUDNN, dtype, eps, momentum)
    e, keep, take = float(s.eps_data), float(s.keep), float(s.take)
    xs = channels_last(x, ax)
    count = xs.size // xs.shape[-1]
    g = 1.0 if fix_gamma else gamma.astype(np.float64)
    # batch statistics in training, and in a step without training (recomputed, see table)
    batch = not use_global_stats and (training or dy is not None)
    if batch:
        mean = xs.reshape(-1, xs.shape[-1]).mean(axis=0)
        m2 = np.square(xs - mean).reshape(-1, xs.shape[-1]).sum(axis=0)
        invstd = 1.0 / np.sqrt(m2 / count + e)
    else:
        mean = running_mean.astype(np.float64)
        invstd = 1.0 / np.sqrt(running_var.astype(np.float64) + e)
    out = {"running_mean": running_mean.copy(), "running_var": running_var.copy()}
    if training and not use_global_stats:
        out["running_mean"] = to_dtype(running_mean * keep + mean * take, param)
        out["running_var"] = to_dtype(running_var * keep + m2 / (count - 1) * take, param)
    if dy is None:
        y = (xs - mean) * invstd * g + beta.astype(np.float64)
        out["y"] = to_dtype(np.moveaxis(y, -1, ax), dtype)
        if output_mean_var:
            out["mean"], out["invstd"] = to_dtype(mean, param), to_dtype(invstd, param)
        return out
    dys = channels_last(dy, ax)
    xc = xs - mean
    sdy = dys.reshape(-1, xs.shape[-1]).sum(axis=0)
    dotp = (xc * dys).reshape(-1, xs.shape[-1]).sum(axis=0)
    if batch:
        dx = (dys - sdy / count - xc * dotp * invstd * invstd / count) * (invstd * g)
    else:
        dx = dys * (invstd * g)
    out["dx"] = to_dtype(np.moveaxis(dx, -1, ax), dtype)
    out["dgamma"] = to_dtype(np.zeros_like(dotp) if fix_gamma else dotp * invstd, param)
    out["dbeta"] = to_dtype(sdy, param)
    return out
