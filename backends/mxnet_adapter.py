"""The ``mxnet`` backend: the real ``mxnet.npx.batch_norm`` of MXNet 1.9.1, on the CPU.

MXNet 1.9.1 needs numpy < 1.24, so it cannot share the suite's environment: it runs out of
process (``backends.worker``) in the virtual environment ``.venv-mxnet/`` that

    python -m backends.mxnet_env

creates. Without that environment the backend still loads, and every case is skipped with
the reason and that command. ``BN_MXNET_PYTHON=/path/to/python`` uses another interpreter
that has mxnet.

How MXNet is called (``MXNetBackend``, which runs inside the worker), exactly as a user of
MXNet's numpy mode would (``npx.set_np()``):

- every call makes fresh ``mx.np`` arrays on ``mx.cpu()`` from the inputs, in their dtypes;
  running_mean/running_var are passed as the operator's running-statistics inputs, which
  MXNet holds as auxiliary states and updates in place;
- flags go through unchanged: ``npx.batch_norm(x, gamma, beta, running_mean, running_var,
  eps=eps, momentum=momentum, fix_gamma=..., use_global_stats=..., output_mean_var=...,
  axis=axis, cudnn_off=cudnn_off)``; eps as the double given, momentum as given (MXNet
  rounds it to float32 itself);
- training forward: inside ``autograd.record()`` (train mode); inference forward: a plain
  call. A training step (``backward``): ``x``, ``gamma`` and ``beta`` get ``attach_grad()``,
  the forward runs inside ``autograd.record(train_mode=training)``, then
  ``y.backward(dy, train_mode=training)`` with the head gradient dy (with output_mean_var,
  on y alone: the mean and invstd outputs get no head gradient); dx, dgamma, dbeta are the
  ``.grad`` arrays. ``train_mode`` must be passed to backward too: its default (True) runs
  the backward pass of an inference-mode forward in training mode, which takes the
  batch-statistics gradient with statistics the forward never computed and updates the
  running statistics (reports/FRAMEWORKS.md has the numbers);
- then ``mx.nd.waitall()``: MXNet's engine is asynchronous, and fix_gamma's in-place write
  of ones into gamma is not a dependency the engine tracks, so the arrays are read only
  after every pending operation has finished;
- the post-call values of gamma (ones under fix_gamma), running_mean and running_var are
  copied back into the caller's arrays and the running statistics returned.

The quantized path (``quantized``): ``mx.nd.contrib.quantized_batch_norm`` (MXNet's
``_contrib_quantized_batch_norm``, whose only CPU kernel is oneDNN's) on ``mx.nd`` arrays:
x (int8/uint8) and the four float32 parameters, min_data/max_data as float32 arrays of
shape (1,), eps, momentum, the flags and axis as given, and min_calib_range /
max_calib_range only when given (MXNet then refuses the call itself). Its three outputs are
returned as out, min_out, max_out. MXNet's arithmetic differs from the spec's formula in
three ways pinned down by running it (README "Quantized path"), declared as
``Capabilities.quantized_profile`` = bnspec.profiles.MXNET_QUANTIZED_PROFILE.

Nothing is validated here: invalid input reaches MXNet as it is, and MXNet's own
``MXNetError`` is reported as ``backends.frameworks.RejectedInput`` (its message trimmed to
the line MXNet's check wrote). MXNet accepts some invalid input silently (parameters of
the wrong length); the suite reports that as a failure, which is MXNet's behaviour.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from bnspec.profiles import MXNET_PROFILE, MXNET_QUANTIZED_PROFILE
from conformance.adapter import Capabilities

from .frameworks import UnavailableBackend, native, rejections, write_back

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-mxnet"
SETUP_COMMAND = "python -m backends.mxnet_env"
PYTHON_ENV_VAR = "BN_MXNET_PYTHON"

#: Declared differences from the semantics (bnspec.profiles.MXNET_PROFILE: names of oracle
#: variants): the float16 kernel's step-wise rounding, verified bit for bit against MXNet in
#: tests/backends/mxnet_reference.py. Its remaining defects are listed in
#: conformance/known_deviations/mxnet.txt.
PROFILE: tuple[str, ...] = MXNET_PROFILE
CAPABILITIES = Capabilities(dtypes=frozenset({"float64", "float32", "float16"}),
                            forward=True, backward=True, quantized=True, device="cpu",
                            quantized_profile=MXNET_QUANTIZED_PROFILE,
                            profile=PROFILE)


def venv_python(venv: Path = VENV) -> Path:
    """Return the interpreter of the MXNet virtual environment (which may not exist)."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _mxnet_message(text: str) -> str:
    """Return MXNet's error text from the line that starts with 'MXNetError:' on (without
    the C++ stack above it)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("MXNetError:"):
            return " ".join([lines[i][len("MXNetError:"):].strip(), *lines[i + 1:]])
    return " ".join(lines[-3:])


class MXNetBackend:
    """MXNet 1.9.1 ``npx.batch_norm`` on the CPU, in this interpreter (the worker's)."""

    name = "mxnet"
    capabilities = CAPABILITIES

    def __init__(self):
        import mxnet as mx
        from mxnet import autograd, npx
        from mxnet.base import MXNetError

        npx.set_np()
        self._mx, self._autograd, self._npx = mx, autograd, npx
        self._errors = (MXNetError,)
        self.version = (f"{mx.__version__} (numpy {np.__version__}, "
                        f"python {platform.python_version()}, cpu)")

    def supports(self, case) -> str | None:
        """Return None: every case (the quantized ones through ``quantized``)."""
        return None

    def forward(self, x, gamma, beta, running_mean, running_var, *, eps, momentum,
                fix_gamma, use_global_stats, output_mean_var, axis, training,
                cudnn_off=False) -> dict[str, np.ndarray]:
        """Return y (with mean and invstd under output_mean_var) and the running statistics
        as MXNet leaves them after the forward call."""
        params = (gamma, running_mean, running_var)
        with rejections("mxnet", self._errors, _mxnet_message):
            arrays = self._arrays(x, gamma, beta, running_mean, running_var)
            try:
                kwargs = self._kwargs(eps, momentum, fix_gamma, use_global_stats,
                                      output_mean_var, axis, cudnn_off)
                if training:
                    with self._autograd.record(train_mode=True):
                        out = self._npx.batch_norm(*arrays, **kwargs)
                else:
                    out = self._npx.batch_norm(*arrays, **kwargs)
                self._mx.nd.waitall()
                result = self._outputs(out, output_mean_var)
            finally:
                after = self._copy_back(params, (arrays[1], arrays[3], arrays[4]))
        result["running_mean"], result["running_var"] = after[1], after[2]
        return result

    def backward(self, x, gamma, beta, running_mean, running_var, dy, *, eps, momentum,
                 fix_gamma, use_global_stats, output_mean_var, axis, training,
                 cudnn_off=False) -> dict[str, np.ndarray]:
        """Return dx, dgamma, dbeta of forward + ``y.backward(dy)`` and the running
        statistics as MXNet leaves them after the backward pass."""
        params = (gamma, running_mean, running_var)
        with rejections("mxnet", self._errors, _mxnet_message):
            arrays = self._arrays(x, gamma, beta, running_mean, running_var)
            try:
                (head,) = self._arrays(dy, names=("dy",))
                for array in arrays[:3]:
                    array.attach_grad()
                kwargs = self._kwargs(eps, momentum, fix_gamma, use_global_stats,
                                      output_mean_var, axis, cudnn_off)
                with self._autograd.record(train_mode=training):
                    out = self._npx.batch_norm(*arrays, **kwargs)
                    y = out[0] if output_mean_var else out
                y.backward(head, train_mode=training)
                self._mx.nd.waitall()
                result = {"dx": arrays[0].grad.asnumpy(), "dgamma": arrays[1].grad.asnumpy(),
                          "dbeta": arrays[2].grad.asnumpy()}
            finally:
                after = self._copy_back(params, (arrays[1], arrays[3], arrays[4]))
        result["running_mean"], result["running_var"] = after[1], after[2]
        return result

    def quantized(self, x, gamma, beta, running_mean, running_var, *, min_data, max_data,
                  min_calib_range, max_calib_range, eps, axis, momentum=0.9, fix_gamma=True,
                  use_global_stats=False, output_mean_var=False, training=False,
                  cudnn_off=False) -> dict[str, np.ndarray]:
        """Return out, min_out, max_out of ``mx.nd.contrib.quantized_batch_norm`` (see the
        module doc); ``training`` has no meaning for this forward-only operator."""
        mx = self._mx
        with rejections("mxnet", self._errors, _mxnet_message):
            arrays = [mx.nd.array(a, dtype=np.asarray(a).dtype, ctx=mx.cpu())
                      for a in (x, gamma, beta, running_mean, running_var)]
            ranges = [mx.nd.array([v], dtype=np.float32, ctx=mx.cpu())
                      for v in (min_data, max_data)]
            kwargs = self._kwargs(eps, momentum, fix_gamma, use_global_stats, output_mean_var,
                                  axis, cudnn_off)
            for name, value in (("min_calib_range", min_calib_range),
                                ("max_calib_range", max_calib_range)):
                if value is not None:
                    kwargs[name] = value
            out, low, high = mx.nd.contrib.quantized_batch_norm(*arrays, *ranges, **kwargs)
            mx.nd.waitall()
            return {"out": out.asnumpy(), "min_out": low.asnumpy().reshape(1),
                    "max_out": high.asnumpy().reshape(1)}

    # --- steps ------------------------------------------------------------------------

    def _arrays(self, *inputs, names=("x", "gamma", "beta", "running_mean", "running_var")):
        """Return fresh mx.np arrays on the CPU, one per input, in the input's dtype (in
        native byte order: mx.np.array does not convert byte orders). An array mx.np.array
        refuses raises TypeError naming the parameter (MXNet's own error is kept in it)."""
        mx = self._mx
        arrays = []
        for name, a in zip(names, inputs):
            a = native(a)
            try:
                arrays.append(mx.np.array(a, dtype=a.dtype, ctx=mx.cpu()))
            except (KeyError, TypeError, ValueError) as exc:
                raise TypeError(f"{name}.dtype={a.dtype}: mx.np.array refused it: "
                                f"{type(exc).__name__}: {exc}") from exc
        return arrays

    @staticmethod
    def _kwargs(eps, momentum, fix_gamma, use_global_stats, output_mean_var, axis, cudnn_off):
        return {"eps": eps, "momentum": momentum, "fix_gamma": fix_gamma,
                "use_global_stats": use_global_stats, "output_mean_var": output_mean_var,
                "axis": axis, "cudnn_off": cudnn_off}

    @staticmethod
    def _outputs(out, output_mean_var) -> dict[str, np.ndarray]:
        if output_mean_var:
            y, mean, invstd = out
            return {"y": y.asnumpy(), "mean": mean.asnumpy(), "invstd": invstd.asnumpy()}
        return {"y": out.asnumpy()}

    def _copy_back(self, targets, arrays) -> list:
        """Return MXNet's post-call gamma, running_mean, running_var as numpy arrays (the
        targets themselves if MXNet's cannot be read after an error), and write them into
        the caller's arrays where those are writable and of the same shape and dtype."""
        try:
            self._mx.nd.waitall()
            values = [array.asnumpy() for array in arrays]
        except self._errors:  # the call's own error, raised already or about to be
            return list(targets)
        for target, value in zip(targets, values):
            write_back(target, value)
        return values


def factory():
    """Return the mxnet backend: MXNetBackend in a worker running the MXNet venv's Python,
    or, when that environment does not exist, a backend that skips every case saying how
    to create it."""
    python = os.environ.get(PYTHON_ENV_VAR) or venv_python()
    if not Path(python).exists():
        where = (f"${PYTHON_ENV_VAR}={python}" if os.environ.get(PYTHON_ENV_VAR)
                 else f"{VENV.name}/ (looked for {python})")
        return UnavailableBackend(
            "mxnet", CAPABILITIES,
            f"the MXNet 1.9.1 environment is missing: {where}; create it with "
            f"`{SETUP_COMMAND}`")
    from .worker import OutOfProcessBackend

    class MXNetWorker(OutOfProcessBackend):
        """The worker, restarted after a quantized call that MXNet refuses: the refused call
        leaves its primitives registered on oneDNN's stream, and the next quantized call
        runs them (observed: an int8 output of all -128 after a failed weight-size check)."""

        def quantized(self, *args, **kwargs):
            try:
                return super().quantized(*args, **kwargs)
            except Exception:
                self.worker.close()
                raise

    return MXNetWorker(f"{__name__}:MXNetBackend", python=python)
