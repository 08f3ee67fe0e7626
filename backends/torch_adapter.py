"""The ``torch`` backend: PyTorch's ``torch.nn.functional.batch_norm`` on the CPU (or CUDA).

    pip install -e ".[torch]"      # on this project's machines: pip install torch==2.13.0 (CPU)
    pytest conformance/ --backend torch

Every call runs ``F.batch_norm`` exactly as a PyTorch user calls it (its Python checks
included) with autograd on, so that its autograd node (``NativeBatchNormBackward0``)
keeps ``native_batch_norm``'s saved mean and inverse standard deviation
(``_saved_result1``/``_saved_result2``: save_mean, save_invstd). Gradients come from
autograd, ``y.backward(dy)`` (``native_batch_norm_backward`` on the CPU). Fresh tensors
per call.

Flag mapping, MXNet -> PyTorch:

- axis: PyTorch's channel dimension is 1; x (and dy) are moved with ``movedim(axis, 1)``
  and the results moved back (negative axes as given; an invalid axis fails in movedim). The
  moved tensor is a view, non-contiguous unless axis is 1, so PyTorch takes its channels-last
  kernels there, as it would for a user's channels-last tensor (their bfloat16 dbeta is
  rounded to bfloat16: reports/FRAMEWORKS.md).
- fix_gamma=True: ``weight = ones`` (float, the parameter dtype), and dgamma is reported
  as 0 (PyTorch computes the gradient of the ones it was given; MXNet defines it as 0). The
  caller's gamma is left as it is (PyTorch has no in-place overwrite).
- use_global_stats=True: ``training=False`` with the running statistics, also in MXNet's
  training mode; so PyTorch's ``training = training and not use_global_stats``.
- momentum: PyTorch's momentum is the weight of the *new* statistic:
  ``momentum_torch = 1 - float32(momentum)`` (MXNet's momentum is a float32).
- eps: passed through unchanged (a double). PyTorch adds it in the accumulation type
  (float32 for 16-bit data), where MXNet adds ``DType(eps)`` (rounded to float16/bfloat16).
  ``F.batch_norm`` refuses eps <= 0 in training and eps < 0 otherwise (ValueError).
- output_mean_var: ``mean = save_mean``, ``invstd = save_invstd`` of the batch statistics.
  With running statistics (inference or use_global_stats) PyTorch saves nothing (empty
  tensors), so the adapter returns no mean/invstd there: a declared difference.
- running statistics: PyTorch updates them **in forward** (in training with batch
  statistics), with the **unbiased** batch variance ``sum (x-mean)^2 / (M-1)``; the values
  after forward are returned by ``forward`` and by ``backward`` (backward changes nothing),
  and written back into the caller's arrays as PyTorch wrote its tensors.
- dtypes: float64, float32, float16, bfloat16 data; PyTorch accepts float32 parameters with
  16-bit data (MXNet's rule), and also 16-bit parameters (MXNet refuses those).
- cudnn_off: ignored on the CPU (``torch.backends.cudnn.enabled`` as set).

Exceptions: PyTorch's builtin ValueError/TypeError pass unchanged; its RuntimeError and
IndexError are reported as ``backends.frameworks.RejectedInput`` with the message verbatim.
Nothing is validated by the adapter itself.
"""
from __future__ import annotations

import numpy as np

from bnspec.profiles import TORCH_PROFILE
from conformance.adapter import ALL_DTYPES, Capabilities

from .frameworks import RejectedInput, UnavailableBackend, native, rejections, write_back

INSTALL = "pip install torch==2.13.0 (CPU wheel), or pip install -e '.[torch]'"
#: Declared differences from MXNet semantics (bnspec.profiles.TORCH_PROFILE: names of oracle
#: variants), which the suite then holds this backend to (conformance/profiles.py). What no
#: variant expresses is in conformance/known_deviations/torch.txt with its reason: F.batch_norm
#: refuses eps <= 0 and one element per channel in training, and its channels-last bfloat16
#: backward rounds dbeta to bfloat16.
PROFILE = TORCH_PROFILE


def _capabilities(device: str) -> Capabilities:
    return Capabilities(dtypes=ALL_DTYPES, forward=True, backward=True, quantized=False,
                        device=device, profile=PROFILE)


class TorchBackend:
    """PyTorch batch norm through ``F.batch_norm`` (see module doc for the mapping)."""

    name = "torch"

    def __init__(self, device: str = "cpu"):
        import torch
        import torch.nn.functional as F

        self._torch, self._F = torch, F
        self.device = device
        if device != "cpu":
            self.name = f"torch-{device.split(':')[0]}"
        self.version = f"{torch.__version__} ({device})"
        self.capabilities = _capabilities(device)
        self._errors = (RuntimeError, IndexError)

    def supports(self, case) -> str | None:
        """Return None for every float case; there is no quantized path."""
        if getattr(case, "op", None) == "qnt":
            return "the torch adapter has no quantized path"
        return None

    def forward(self, x, gamma, beta, running_mean, running_var, *, eps, momentum,
                fix_gamma, use_global_stats, output_mean_var, axis, training,
                cudnn_off=False) -> dict[str, np.ndarray]:
        """Return y (mean, invstd with output_mean_var and batch statistics) and the
        running statistics as PyTorch leaves them after forward."""
        with rejections("torch", self._errors):
            t = self._tensors(x, gamma, beta, running_mean, running_var, fix_gamma,
                              grads=("x",))  # autograd keeps the saved statistics
            y, saved = self._batch_norm(t, axis, training and not use_global_stats,
                                        momentum, eps)
            out = {"y": self._numpy(y.movedim(1, axis))}
            out.update(self._saved(saved, output_mean_var))
            out.update(self._running(t, running_mean, running_var))
        return out

    def backward(self, x, gamma, beta, running_mean, running_var, dy, *, eps, momentum,
                 fix_gamma, use_global_stats, output_mean_var, axis, training,
                 cudnn_off=False) -> dict[str, np.ndarray]:
        """Return dx, dgamma (0 under fix_gamma), dbeta of F.batch_norm + y.backward(dy),
        and the running statistics as PyTorch leaves them (updated in forward)."""
        with rejections("torch", self._errors):
            t = self._tensors(x, gamma, beta, running_mean, running_var, fix_gamma,
                              grads=("x", "weight", "bias"))
            head = self._move(self._tensor("dy", dy), axis)
            y, _ = self._batch_norm(t, axis, training and not use_global_stats, momentum, eps)
            y.backward(head)
            grads = {name: t[name].grad for name in ("x", "weight", "bias")}
            if any(g is None for g in grads.values()):  # an input autograd could not track
                raise RuntimeError(f"autograd gave no gradient for {sorted(grads)}")
            dgamma = self._numpy(grads["weight"])
            out = {"dx": self._numpy(grads["x"]),
                   "dgamma": np.zeros_like(dgamma) if fix_gamma else dgamma,
                   "dbeta": self._numpy(grads["bias"])}
            out.update(self._running(t, running_mean, running_var))
        return out

    # --- steps ------------------------------------------------------------------------

    def _batch_norm(self, t, axis, training, momentum, eps):
        """Return (y with the channel at dim 1, (save_mean, save_invstd) or Nones) of one
        F.batch_norm call, with autograd on so that its node keeps the saved statistics."""
        x = self._move(t["x"], axis)
        with self._torch.enable_grad():
            y = self._F.batch_norm(x, t["running_mean"], t["running_var"], weight=t["weight"],
                                   bias=t["bias"], training=training,
                                   momentum=torch_momentum(momentum), eps=eps)
        node = y.grad_fn
        return y, (getattr(node, "_saved_result1", None), getattr(node, "_saved_result2", None))

    @staticmethod
    def _move(tensor, axis):
        """Return tensor with dim axis moved to 1 (PyTorch's channel dim); PyTorch has no
        axis argument, so its refusal of the axis is reported naming axis."""
        try:
            return tensor.movedim(axis, 1)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"axis={axis!r}: movedim(axis, 1) refused it: {exc}") from exc
        except (IndexError, RuntimeError) as exc:
            raise RejectedInput("torch", exc, f"axis={axis!r}: movedim(axis, 1) refused it: "
                                              f"{exc}") from exc

    def _tensors(self, x, gamma, beta, running_mean, running_var, fix_gamma,
                 grads=()) -> dict:
        """Return fresh tensors by PyTorch's argument names; those in grads (when of a
        floating dtype: autograd refuses others) require gradients."""
        weight = (np.ones(np.shape(gamma), dtype=np.asarray(gamma).dtype) if fix_gamma
                  else gamma)
        t = {"x": self._tensor("x", x), "weight": self._tensor("gamma", weight),
             "bias": self._tensor("beta", beta),
             "running_mean": self._tensor("running_mean", running_mean),
             "running_var": self._tensor("running_var", running_var)}
        for name in grads:
            if t[name].is_floating_point():
                t[name].requires_grad_(True)
        return t

    def _tensor(self, name: str, a):
        """Return a fresh tensor on the device with a's values and dtype (native byte
        order; bfloat16 via its bits). A numpy array torch cannot hold raises TypeError
        naming the parameter."""
        torch = self._torch
        a = np.ascontiguousarray(native(a))
        try:
            if a.dtype.name == "bfloat16":
                t = torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
            else:
                t = torch.from_numpy(a.copy())
        except TypeError as exc:
            raise TypeError(f"{name}.dtype={a.dtype}: torch.from_numpy refused it: {exc}") \
                from exc
        return t.to(self.device)

    def _numpy(self, t) -> np.ndarray:
        """Return a tensor as a numpy array (bfloat16 as ml_dtypes.bfloat16)."""
        t = t.detach().cpu().contiguous()
        if t.dtype == self._torch.bfloat16:
            import ml_dtypes

            return t.view(self._torch.int16).numpy().view(ml_dtypes.bfloat16)
        return t.numpy()

    def _saved(self, saved, output_mean_var) -> dict[str, np.ndarray]:
        """Return {mean, invstd} from the saved statistics when PyTorch saved any."""
        mean, invstd = saved
        if not output_mean_var or mean is None or mean.numel() == 0:
            return {}
        return {"mean": self._numpy(mean), "invstd": self._numpy(invstd)}

    def _running(self, t, running_mean, running_var) -> dict[str, np.ndarray]:
        """Return PyTorch's running statistics after the call, and write them into the
        caller's arrays where those are writable (as PyTorch updates its tensors)."""
        out = {}
        for name, target in (("running_mean", running_mean), ("running_var", running_var)):
            out[name] = value = self._numpy(t[name])
            write_back(target, value)
        return out


def torch_momentum(momentum) -> float:
    """Return PyTorch's momentum for MXNet's: 1 - float32(momentum) (the weight of the new
    statistic). A value that is not a real number raises TypeError naming momentum."""
    if isinstance(momentum, (bool, np.bool_)) or not isinstance(
            momentum, (int, float, np.integer, np.floating)):
        raise TypeError(f"momentum={momentum!r} is not a real number, so it has no PyTorch "
                        "momentum 1 - momentum")
    return 1.0 - float(np.float32(momentum))


def factory():
    """Return the torch backend on the CPU, or a backend that skips every case when
    PyTorch is not installed."""
    try:
        return TorchBackend("cpu")
    except ImportError as exc:
        return UnavailableBackend("torch", _capabilities("cpu"),
                                  f"PyTorch is not installed ({exc}): {INSTALL}")


def cuda_factory():
    """Return the torch backend on CUDA (``--backend backends.torch_adapter:cuda_factory``),
    or a backend that skips every case without PyTorch or a CUDA device."""
    try:
        import torch
    except ImportError as exc:
        return UnavailableBackend("torch-cuda", _capabilities("cuda"),
                                  f"PyTorch is not installed ({exc}): {INSTALL}")
    if not torch.cuda.is_available():
        return UnavailableBackend("torch-cuda", _capabilities("cuda"),
                                  f"PyTorch {torch.__version__} sees no CUDA device")
    return TorchBackend("cuda")
