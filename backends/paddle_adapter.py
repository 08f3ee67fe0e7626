"""The ``paddle`` backend: PaddlePaddle's ``paddle.nn.functional.batch_norm`` on the CPU,
gradients by ``paddle.grad``.

    python -m backends.env paddle      # pip install paddlepaddle==3.3.1 (the [paddle] extra)
    pytest conformance/ --backend paddle

PaddlePaddle 3.3.1's pins agree with the suite's (numpy 2, protobuf as installed), so the
adapter runs in process. Every call makes fresh CPU tensors (``paddle.to_tensor``) and runs,
in Paddle's dynamic-graph mode, what a Paddle user writes:

    y = F.batch_norm(x, running_mean, running_var, weight, bias, training=training,
                     momentum=momentum, epsilon=eps, data_format=fmt,
                     use_global_stats=use_global_stats or not training)
    dx, dweight, dbias = paddle.grad([y], [x, weight, bias], grad_outputs=[dy])

Flag mapping, MXNet -> Paddle (read from paddle/nn/functional/norm.py and
paddle/phi/kernels/cpu/batch_norm_kernel.cc, 3.3.1, and pinned down by running it):

- axis: Paddle has no axis, only ``data_format``: channels first (``NC``, ``NCL``, ``NCHW``,
  ``NCDHW``) or channels last (``NLC``, ``NHWC``, ``NDHWC``), by rank. Axis 1 is passed as
  channels first, the last axis of a rank-3..5 x as channels last; any other axis is moved to
  1 in the adapter (``np.moveaxis`` on x and dy, and back on y and dx), as a Paddle user
  transposes first. Paddle takes at most 5 dimensions (``x_dims.size() <= 5``): a rank-6+ x is
  moved to channels first and viewed as (N, C, rest) (``NCL``), which normalises the same
  elements per channel. An axis np.moveaxis refuses raises naming ``axis``; a rank < 2 x goes
  to Paddle as it is, which refuses it.
- training / use_global_stats: ``training`` as given; Paddle's ``use_global_stats`` is
  MXNet's ``use_global_stats or not training``. (Paddle's own default, None, means ``not
  training``; an explicit False with ``training=False`` would normalise an inference call
  with the batch statistics and update the running statistics.)
- momentum: the same convention as MXNet, ``running = momentum * running + (1 - momentum) *
  batch``, and, like MXNet's, Paddle's momentum attribute is a float32 (verified on float64
  data); passed as given.
- eps: Paddle's ``epsilon`` attribute is a float32: float64 data gets var + float32(eps)
  (verified: y agrees with float32(1e-5) to 1e-15 and not with 1e-5): ``eps_float32``.
- variance: two-pass and biased for the normalisation; the running variance is updated with
  the biased batch variance itself (with the profile's float32 eps the same as MXNet's
  1/invstd^2 - eps, so no variant says it), **in the forward call**
  (``stats_updated_in_forward``): F.batch_norm writes into the running_mean/running_var
  tensors, which the adapter returns (``backward`` returns them as that step's forward left
  them) and writes back into the caller's arrays.
- var + eps = 0: saved inverse std 1/sqrt(0) = inf, y NaN (``invstd_inf_at_zero``).
- fix_gamma=True: ``weight`` is ones of gamma's shape and dtype (so Paddle still checks its
  length), and dgamma is reported as 0. The ones are a trainable tensor whose gradient is
  computed and dropped, because Paddle returns **no dbias when the scale is frozen**: with
  ``weight.stop_gradient=True`` (or ``weight=None``, or ``nn.BatchNorm1D`` with its weight
  frozen) ``paddle.grad``/``backward()`` give the bias no gradient (None) though it requires
  one (its batch_norm_grad writes d_bias only together with d_scale; reports/FRAMEWORKS.md).
  The caller's gamma is left as it is (Paddle has no in-place overwrite).
- output_mean_var: F.batch_norm returns y only; the kernel's saved mean and saved inverse
  standard deviation are outputs 3 and 4 of ``paddle._C_ops.batch_norm``, the call
  F.batch_norm makes in dynamic mode. With batch statistics the adapter makes that call a
  second time with the same arguments (``x, running_mean copy, running_var copy, weight,
  bias, is_test=not training, momentum, epsilon, data_layout, use_global_stats,
  trainable_statistics=not use_global_stats``) and returns them. With the running statistics
  Paddle leaves both outputs unwritten (uninitialised memory, observed), so nothing is
  returned there: ``no_mean_invstd_with_running_stats``.
- dtypes: the CPU kernel is registered for float32 and float64 only (float16 and bfloat16:
  RuntimeError "kernel ... is not registered"); the parameters must have x's dtype.
- cudnn_off: no meaning on the CPU.

Exceptions: Paddle raises builtin ValueError (its InvalidArgument) and TypeError, which pass
unchanged; its RuntimeError (NotFound, PreconditionNotMet, ...), IndexError, and the
AssertionError of F.batch_norm's rank check are reported as
``backends.frameworks.RejectedInput`` with the message on one line. The adapter checks
only what it must convert itself: axis (see above).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from bnspec.profiles import PADDLE_PROFILE
from conformance.adapter import Capabilities

from .frameworks import UnavailableBackend, native, rejections, write_back

PIN = "paddlepaddle==3.3.1"
INSTALL = f"python -m backends.env paddle (pip install {PIN}, the [paddle] extra)"
#: Paddle's CPU batch_norm kernel exists for these dtypes only.
DTYPES = frozenset({"float32", "float64"})
#: data_format by rank: channels first, channels last (Paddle's names).
FIRST = {2: "NC", 3: "NCL", 4: "NCHW", 5: "NCDHW"}
LAST = {3: "NLC", 4: "NHWC", 5: "NDHWC"}
MAX_RANK = 5


def _capabilities() -> Capabilities:
    return Capabilities(dtypes=DTYPES, forward=True, backward=True, quantized=False,
                        device="cpu", profile=PADDLE_PROFILE)


@dataclass(frozen=True)
class Layout:
    """How x reaches Paddle: its data_format, and whether the adapter moves the channel axis
    to 1 (``moved_from``) and views the rest as one dimension (rank > 5)."""

    data_format: str
    moved_from: int | None = None  # the caller's channel axis, when moved to 1
    moved_shape: tuple[int, ...] | None = None  # x's shape after the move, when reshaped

    def to_paddle(self, a: np.ndarray) -> np.ndarray:
        """Return the caller's array (x or dy) as Paddle gets it."""
        if self.moved_from is not None:
            a = np.moveaxis(a, self.moved_from, 1)
        if self.moved_shape is not None:
            a = a.reshape(a.shape[0], a.shape[1], math.prod(a.shape[2:]))
        return a

    def from_paddle(self, a: np.ndarray) -> np.ndarray:
        """Return Paddle's array (y or dx) in the caller's layout."""
        if self.moved_shape is not None:
            a = a.reshape(self.moved_shape)
        if self.moved_from is not None:
            a = np.moveaxis(a, 1, self.moved_from)
        return a


def layout(shape: tuple[int, ...], axis) -> Layout:
    """Return the Layout of an x of this shape with MXNet's channel axis: channels first for
    axis 1, channels last for the last axis of rank 3..5, else moved to 1 (and, above rank 5,
    viewed as (N, C, rest)). A rank < 2 x goes as it is (Paddle refuses it)."""
    rank = len(shape)
    if rank < 2:
        return Layout(FIRST[2])
    channel = channel_axis(axis, rank)
    if rank <= MAX_RANK and channel == 1:
        return Layout(FIRST[rank])
    if rank <= MAX_RANK and channel == rank - 1:
        return Layout(LAST[rank])
    if rank <= MAX_RANK:
        return Layout(FIRST[rank], moved_from=channel)
    order = [i for i in range(rank) if i != channel]
    order.insert(1, channel)  # np.moveaxis(x, channel, 1)'s order of dimensions
    return Layout(FIRST[3], moved_from=channel, moved_shape=tuple(shape[i] for i in order))


def channel_axis(axis, rank: int) -> int:
    """Return MXNet's axis as an index in 0..rank-1 (negative counts from the end). Paddle has
    no axis argument, so the adapter must place the channel itself: an axis that is not an
    integer raises TypeError, one out of range ValueError, each naming axis."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis={axis!r} is not an integer, so it names no channel dimension "
                        "for Paddle's data_format")
    if not -rank <= axis < rank:
        raise ValueError(f"axis={axis!r} is out of range for x of {rank} dimensions "
                         f"(-{rank}..{rank - 1})")
    return int(axis) % rank


class PaddleBackend:
    """PaddlePaddle's F.batch_norm on the CPU, gradients from paddle.grad (see module doc)."""

    name = "paddle"

    def __init__(self):
        with warnings.catch_warnings():  # its import warns that no ccache is installed
            warnings.simplefilter("ignore", UserWarning)
            import paddle
            import paddle.nn.functional as F
            from paddle import _C_ops

        paddle.set_device("cpu")
        paddle.disable_static()
        self._paddle, self._F, self._C_ops = paddle, F, _C_ops
        self.version = f"{paddle.__version__} (cpu, dynamic graph)"
        self.capabilities = _capabilities()
        self._errors = (RuntimeError, IndexError, AssertionError)

    def supports(self, case) -> str | None:
        """Return None for every float case; there is no quantized path."""
        if getattr(case, "op", None) == "qnt":
            return "PaddlePaddle has no quantized batch norm on the CPU"
        return None

    def forward(self, x, gamma, beta, running_mean, running_var, *, eps, momentum,
                fix_gamma, use_global_stats, output_mean_var, axis, training,
                cudnn_off=False) -> dict[str, np.ndarray]:
        """Return y (mean and invstd with output_mean_var and batch statistics) and the
        running statistics as Paddle leaves them after the forward call."""
        with rejections("paddle", self._errors, _one_line):
            where = layout(np.shape(x), axis)
            t = self._tensors(where, x, gamma, beta, running_mean, running_var, fix_gamma)
            global_stats = bool(use_global_stats) or not training
            with self._paddle.no_grad():
                y = self._batch_norm(t, where, training, global_stats, momentum, eps)
            out = {"y": where.from_paddle(y.numpy())}
            if output_mean_var and not global_stats:
                out.update(self._saved(t, where, training, momentum, eps))
            out.update(self._running(t, running_mean, running_var))
        return out

    def backward(self, x, gamma, beta, running_mean, running_var, dy, *, eps, momentum,
                 fix_gamma, use_global_stats, output_mean_var, axis, training,
                 cudnn_off=False) -> dict[str, np.ndarray]:
        """Return dx, dgamma (0 under fix_gamma), dbeta of paddle.grad with grad_outputs dy,
        and the running statistics as the forward call of that step left them."""
        with rejections("paddle", self._errors, _one_line):
            where = layout(np.shape(x), axis)
            t = self._tensors(where, x, gamma, beta, running_mean, running_var, fix_gamma)
            head = self._tensor("dy", where.to_paddle(native(dy)))
            inputs = ("x", "weight", "bias")  # weight too under fix_gamma: see module doc
            for name in inputs:
                t[name].stop_gradient = False
            y = self._batch_norm(t, where, training, bool(use_global_stats) or not training,
                                 momentum, eps)
            grads = dict(zip(inputs, self._paddle.grad([y], [t[n] for n in inputs],
                                                       grad_outputs=[head])))
            if any(g is None for g in grads.values()):  # an input autograd did not reach
                raise RuntimeError(f"paddle.grad gave no gradient for "
                                   f"{sorted(n for n, g in grads.items() if g is None)}")
            out = {"dx": where.from_paddle(grads["x"].numpy()),
                   "dgamma": (np.zeros(np.shape(gamma), np.asarray(gamma).dtype) if fix_gamma
                              else grads["weight"].numpy()),
                   "dbeta": grads["bias"].numpy()}
            out.update(self._running(t, running_mean, running_var))
        return out

    # --- steps ------------------------------------------------------------------------

    def _batch_norm(self, t, where: Layout, training, global_stats, momentum, eps):
        """Return y of one F.batch_norm call (in Paddle's layout); it updates t's running
        statistics in place when it normalises with the batch statistics."""
        return self._F.batch_norm(t["x"], t["running_mean"], t["running_var"],
                                  weight=t["weight"], bias=t["bias"], training=bool(training),
                                  momentum=momentum, epsilon=eps,
                                  data_format=where.data_format, use_global_stats=global_stats)

    def _saved(self, t, where: Layout, training, momentum, eps) -> dict[str, np.ndarray]:
        """Return {mean, invstd}: the saved mean and saved inverse standard deviation of
        _C_ops.batch_norm (outputs 3 and 4), called as F.batch_norm calls it with batch
        statistics, on copies of the running statistics (the first call updated those)."""
        data_layout = "NCHW" if where.data_format[1] == "C" else "NHWC"  # as F.batch_norm
        with self._paddle.no_grad():
            outs = self._C_ops.batch_norm(
                t["x"], t["running_mean_before"], t["running_var_before"], t["weight"],
                t["bias"], not training, momentum, eps, data_layout, False, True)
        return {"mean": outs[3].numpy(), "invstd": outs[4].numpy()}

    def _tensors(self, where: Layout, x, gamma, beta, running_mean, running_var,
                 fix_gamma) -> dict:
        """Return fresh CPU tensors by Paddle's argument names (x in Paddle's layout; weight
        ones under fix_gamma), all with stop_gradient=True, and copies of the running
        statistics as they were before the call."""
        weight = (np.ones(np.shape(gamma), np.asarray(gamma).dtype) if fix_gamma else gamma)
        t = {"x": self._tensor("x", where.to_paddle(native(x))),
             "weight": self._tensor("gamma", weight), "bias": self._tensor("beta", beta),
             "running_mean": self._tensor("running_mean", running_mean),
             "running_var": self._tensor("running_var", running_var)}
        t["running_mean_before"] = self._tensor("running_mean", running_mean)
        t["running_var_before"] = self._tensor("running_var", running_var)
        return t

    def _tensor(self, name: str, a):
        """Return a fresh CPU tensor with a's values and dtype (native byte order). An array
        Paddle cannot hold raises TypeError naming the parameter."""
        a = np.ascontiguousarray(native(a))
        try:
            return self._paddle.to_tensor(a, place=self._paddle.CPUPlace(), stop_gradient=True)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name}.dtype={a.dtype.name}: paddle.to_tensor refused it: "
                            f"{_one_line(str(exc))}") from exc

    def _running(self, t, running_mean, running_var) -> dict[str, np.ndarray]:
        """Return Paddle's running statistics after the call, written into the caller's
        arrays (backends.frameworks.write_back)."""
        out = {}
        for name, target in (("running_mean", running_mean), ("running_var", running_var)):
            out[name] = value = t[name].numpy()
            write_back(target, value)
        return out


def _one_line(text: str) -> str:
    """Return Paddle's error message on one line (it spans several: message, then hint)."""
    return " ".join(text.split())


def factory():
    """Return the paddle backend, or one that skips every case when Paddle is missing."""
    try:
        return PaddleBackend()
    except ImportError as exc:
        return UnavailableBackend("paddle", _capabilities(),
                                  f"PaddlePaddle is not installed ({exc}): {INSTALL}")
