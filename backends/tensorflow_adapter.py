"""The ``tensorflow`` backend: Keras 3's ``keras.layers.BatchNormalization`` on TensorFlow (CPU),
gradients by ``tf.GradientTape``.

    python -m backends.env tensorflow   # pip install of the [tensorflow] extra:
                                        # tensorflow-cpu and keras, pinned in pyproject.toml
    pytest conformance/ --backend tensorflow

TensorFlow's pins agree with the suite's (numpy 2, ml_dtypes, protobuf), so the adapter runs
in process. Keras runs on its TensorFlow backend (``KERAS_BACKEND=tensorflow`` is set before
Keras is first imported; a Keras already loaded on another backend makes the backend
unavailable). Every call builds the layer a Keras user writes and runs it eagerly:

    bn = keras.layers.BatchNormalization(axis=axis, momentum=momentum, epsilon=eps,
                                         scale=not fix_gamma, dtype=POLICIES[x.dtype])
    bn.build(x.shape)
    bn.gamma.assign(gamma); bn.beta.assign(beta)            # gamma only when scale
    bn.moving_mean.assign(running_mean); bn.moving_variance.assign(running_var)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = bn(x, training=training and not use_global_stats)
    dx, dbeta, dgamma = tape.gradient(y, [x, bn.beta, bn.gamma], output_gradients=dy)

What Keras 3.15 runs on TensorFlow (found by tracing the call under ``tf.function`` for ranks
2, 3, 4, 5, axis 1 and -1, every dtype): ``tf.nn.moments`` (Mean, SquaredDifference with a
StopGradient on the mean: the two-pass biased variance) and ``tf.nn.batch_normalization``
(``inv = rsqrt(var + eps) * gamma; y = x * inv + (beta - mean * inv)``), never the fused
kernel ``FusedBatchNormV3``: Keras 3's layer has no ``fused`` path (tf-keras, Keras 2, had).

Flag mapping, MXNet -> Keras:

- axis: Keras's ``axis``, as given (Keras converts it with ``int()``; negative axes allowed).
- training / use_global_stats: the call's ``training = training and not use_global_stats``
  (with ``training=False`` Keras normalises with the moving statistics and leaves them).
- momentum: the same convention as MXNet (the weight of the old moving statistic):
  ``moving = moving * momentum + batch_stat * (1 - momentum)``, in the variables' dtype.
  MXNet's momentum is a float32, so a real momentum is passed as ``float(float32(momentum))``;
  anything else is passed as given, for Keras's own ``float()`` to judge.
- eps: Keras's ``epsilon`` (``float(eps)``), added as ``var + eps`` in the compute dtype of
  the statistics: float32(eps) for float32 and 16-bit data, the double for float64 data.
  MXNet adds DType(eps): the same for float32/float64, float16(eps) or bfloat16(eps) for
  16-bit data; declared as ``eps_not_cast``. No minimum eps (the fused kernel's 1.001e-5
  does not apply: it is not run).
- variance: the biased batch variance E[(x - E[x])^2] (tf.nn.moments), for the
  normalisation and for the moving variance (no Bessel correction), as in MXNet.
- y: ``x * inv + (beta - mean * inv)`` with inv = gamma * rsqrt(var + eps): in exact
  arithmetic MXNet's ``(x - mean) * inv + beta``; rsqrt(0) = inf gives NaN where
  var + eps = 0 (``invstd_inf_at_zero``).
- running statistics: updated **in the forward call** (``stats_updated_in_forward``);
  returned by ``forward`` and ``backward`` as Keras leaves its variables and written back
  into the caller's arrays.
- fix_gamma=True: ``scale=False`` (no gamma variable) and dgamma reported as 0.
- output_mean_var: the layer returns y only (``no_mean_invstd``).
- dtypes (Keras dtype policies): float64 -> ``"float64"`` (variables float64);
  float32 -> ``"float32"``; float16 -> ``"mixed_float16"``, bfloat16 -> ``"mixed_bfloat16"``
  (float32 variables, as MXNet's float32 parameters for 16-bit data). The layer casts 16-bit
  input to float32, computes the statistics and y in float32, and casts y to the 16-bit dtype.
  Parameters of another dtype are cast by ``Variable.assign``.

Exceptions: Keras's and Python's ValueError/TypeError pass unchanged; TensorFlow's own errors
(``tf.errors.OpError``, e.g. InvalidArgumentError) and IndexError are reported as
``backends.frameworks.RejectedInput`` with the message verbatim. The adapter validates nothing
itself.
"""
from __future__ import annotations

import importlib
import os

import numpy as np

from bnspec.profiles import TENSORFLOW_PROFILE
from conformance.adapter import ALL_DTYPES, Capabilities

from .frameworks import UnavailableBackend, native, rejections, write_back

INSTALL = ("python -m backends.env tensorflow (pip install -e '.[tensorflow]': tensorflow-cpu "
           "and keras, pinned in pyproject.toml)")
#: The Keras dtype policy of each data dtype: compute dtype = the data's, variables float32
#: for 16-bit data (mixed precision), float64 for float64 data.
POLICIES = {"float64": "float64", "float32": "float32", "float16": "mixed_float16",
            "bfloat16": "mixed_bfloat16"}
#: Keras keeps global state for every layer built (about 140 KiB each on Keras 3.15 /
#: TensorFlow 2.21, which gc.collect does not free); ``keras.backend.clear_session()`` after
#: this many layers bounds a whole suite run's memory. It changes no computation.
LAYERS_PER_SESSION = 256


def _capabilities() -> Capabilities:
    return Capabilities(dtypes=ALL_DTYPES, forward=True, backward=True, quantized=False,
                        device="cpu", profile=TENSORFLOW_PROFILE)


def policy_of(x) -> str:
    """Return the Keras dtype policy for data x: POLICIES by x's dtype, "float32" for any
    other dtype (Keras then judges the data itself)."""
    return POLICIES.get(np.asarray(x).dtype.name, "float32")


def keras_momentum(momentum):
    """Return the momentum Keras is given: MXNet's float32 value as a Python float for a real
    number, anything else unchanged (Keras's own float() judges it)."""
    if isinstance(momentum, (bool, np.bool_)) or not isinstance(
            momentum, (int, float, np.integer, np.floating)):
        return momentum
    return float(np.float32(momentum))


class TensorFlowBackend:
    """Keras 3's BatchNormalization layer on TensorFlow, gradients by tf.GradientTape (see
    module doc)."""

    name = "tensorflow"

    def __init__(self):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no oneDNN/CPU-feature banners
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        # TensorFlow first: Keras imports its backend while it is imported, and a Keras import
        # that fails half-way leaves modules behind that break a later, working import.
        tf = importlib.import_module("tensorflow")
        keras = importlib.import_module("keras")

        if keras.backend.backend() != "tensorflow":
            raise ImportError(f"Keras {keras.__version__} runs on its "
                              f"{keras.backend.backend()!r} backend here (KERAS_BACKEND), "
                              "not on TensorFlow")
        self._tf, self._keras = tf, keras
        onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")
        self.version = (f"tensorflow {tf.__version__}, keras {keras.__version__} "
                        f"(cpu, TF_ENABLE_ONEDNN_OPTS={onednn})")
        self.capabilities = _capabilities()
        self._errors = (tf.errors.OpError, IndexError)
        self._layers_built = 0

    def supports(self, case) -> str | None:
        """Return None for every float case; there is no quantized path."""
        if getattr(case, "op", None) == "qnt":
            return "Keras has no quantized batch norm"
        return None

    def forward(self, x, gamma, beta, running_mean, running_var, *, eps, momentum,
                fix_gamma, use_global_stats, output_mean_var, axis, training,
                cudnn_off=False) -> dict[str, np.ndarray]:
        """Return y and the moving statistics as Keras leaves them after the call."""
        with rejections("tensorflow", self._errors):
            layer = self._layer(x, gamma, beta, running_mean, running_var, eps=eps,
                                momentum=momentum, fix_gamma=fix_gamma, axis=axis)
            y = layer(self._tf.constant(native(x)),
                      training=bool(training and not use_global_stats))
            out = {"y": y.numpy()}
            out.update(_written_back(layer, running_mean, running_var))
        return out

    def backward(self, x, gamma, beta, running_mean, running_var, dy, *, eps, momentum,
                 fix_gamma, use_global_stats, output_mean_var, axis, training,
                 cudnn_off=False) -> dict[str, np.ndarray]:
        """Return dx, dgamma (0 under fix_gamma), dbeta of tf.GradientTape with output
        gradient dy, and the moving statistics as the forward pass of that step left them."""
        tf = self._tf
        with rejections("tensorflow", self._errors):
            layer = self._layer(x, gamma, beta, running_mean, running_var, eps=eps,
                                momentum=momentum, fix_gamma=fix_gamma, axis=axis)
            x_t = tf.constant(native(x))
            with tf.GradientTape() as tape:
                tape.watch(x_t)
                y = layer(x_t, training=bool(training and not use_global_stats))
            names = ["x", "beta"] + ([] if fix_gamma else ["gamma"])
            sources = [x_t, layer.beta] + ([] if fix_gamma else [layer.gamma])
            grads = tape.gradient(y, sources, output_gradients=tf.constant(native(dy)))
            if any(g is None for g in grads):  # e.g. integer x: TensorFlow does not track it
                missing = [n for n, g in zip(names, grads) if g is None]
                raise RuntimeError(f"tf.GradientTape gave no gradient for {missing} "
                                   f"(x.dtype={x_t.dtype.name})")
            dbeta = grads[1].numpy()
            out = {"dx": grads[0].numpy(), "dbeta": dbeta,
                   "dgamma": np.zeros_like(dbeta) if fix_gamma else grads[2].numpy()}
            out.update(_written_back(layer, running_mean, running_var))
        return out

    def _layer(self, x, gamma, beta, running_mean, running_var, *, eps, momentum, fix_gamma,
               axis):
        """Return a built BatchNormalization layer holding the caller's parameters and
        moving statistics (Keras's Variable.assign checks their shapes, casts their dtype)."""
        self._layers_built += 1
        if self._layers_built % LAYERS_PER_SESSION == 0:
            self._keras.backend.clear_session()
        layer = self._keras.layers.BatchNormalization(
            axis=axis, momentum=keras_momentum(momentum), epsilon=eps, scale=not fix_gamma,
            dtype=policy_of(x))
        layer.build(np.shape(x))
        if not fix_gamma:
            layer.gamma.assign(native(gamma))
        layer.beta.assign(native(beta))
        layer.moving_mean.assign(native(running_mean))
        layer.moving_variance.assign(native(running_var))
        return layer


def _written_back(layer, running_mean, running_var) -> dict[str, np.ndarray]:
    """Return Keras's moving statistics after the call, written into the caller's arrays
    (backends.frameworks.write_back)."""
    out = {"running_mean": layer.moving_mean.numpy(),
           "running_var": layer.moving_variance.numpy()}
    write_back(running_mean, out["running_mean"])
    write_back(running_var, out["running_var"])
    return out


def factory():
    """Return the tensorflow backend, or one that skips every case when TensorFlow or Keras
    is missing (or Keras runs on another backend)."""
    try:
        return TensorFlowBackend()
    except ImportError as exc:
        return UnavailableBackend("tensorflow", _capabilities(),
                                  f"TensorFlow/Keras is not usable ({exc}): {INSTALL}")
