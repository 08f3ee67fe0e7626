"""The ``openvino`` backends: OpenVINO's ``BatchNormInference`` on the CPU plugin (inference only).

    pip install -e ".[openvino]"           # openvino, pinned in pyproject.toml
    pytest conformance/ --backend openvino        # the CPU plugin's default inference precision
    pytest conformance/ --backend openvino-f32    # INFERENCE_PRECISION_HINT = f32

Each call runs a model of one ``BatchNormInference`` node (opset16's, which is
BatchNormInference-5, the operator's newest version) built with the opset API and compiled
for the CPU plugin (models are cached by what they depend on: dtypes, shape, eps):

    x = opset16.parameter(shape, x_type); gamma, beta, running_mean, running_var =
        opset16.parameter([C], param_type) (each named so)
    y = opset16.batch_norm_inference(x, gamma, beta, running_mean, running_var, eps)
    compiled = openvino.Core().compile_model(openvino.Model([y], [x, gamma, ...]), "CPU",
                                             config)
    y = compiled.create_infer_request().infer([x, gamma, beta, running_mean, running_var])

``config`` is ``{}`` for ``openvino`` (the plugin's default precision: f32 on a CPU without
bfloat16 arithmetic, bf16 on one with AVX512-BF16/AMX, where it computes float32 models in
bfloat16) and ``{"INFERENCE_PRECISION_HINT": "f32"}`` for ``openvino-f32``. The precision
the plugin chose is read back from the compiled model and shown in the backend's version.

Mapping, MXNet -> OpenVINO:

- inference only: BatchNormInference normalises with the mean and variance it is given,
  ``y = gamma * (x - mean) / sqrt(variance + epsilon) + beta``. The adapter runs the calls
  that normalise with the running statistics (``training=False``, or
  ``use_global_stats=True``) and returns the running statistics unchanged (MXNet changes
  none there). ``supports()`` skips, with the reason, training with batch statistics (no
  batch statistics, no running-statistic update), ``output_mean_var`` (one output, y: no
  mean/invstd), backward (no gradients: ``Capabilities.backward=False``) and the quantized
  path; ``forward`` refuses such a call with NotImplementedError.
- axis: BatchNormInference's channel axis is 1. x is moved with ``np.moveaxis(x, axis, 1)``
  (a contiguous copy) before the call and y moved back (exact; an invalid axis is refused by
  moveaxis, naming axis).
- fix_gamma=True: gamma = ones (the caller's gamma is not overwritten).
- eps: the node's ``epsilon`` attribute (a double). The CPU plugin decomposes the node
  (BatchNormDecomposition) into scale = gamma / sqrt(variance + eps) and
  y = x * scale + (beta - mean * scale), with eps a constant of the node's element type, so
  eps is float32(eps) wherever the plugin computes in float32: declared as ``eps_float32``.
  OpenVINO refuses eps < 0 or NaN naming 'epsilon', and an eps beyond float32's range.
- momentum: not an input (nothing is updated).
- dtypes: BatchNormInference takes one element type for all five inputs. float32 and float64
  data: one node of that type (parameters of the same dtype, as MXNet's). The CPU plugin has
  no float64 kernels: it converts a float64 model to float32 (Convert nodes around the
  float32 computation) and returns float64 values computed in float32. float16 and bfloat16
  data (MXNet's parameters are float32 there): x is converted to float32 by a ``Convert``
  node before the float32 node and y converted back by another (the CPU plugin computes a
  16-bit node in float32 anyway, so this only keeps the parameters unrounded). bfloat16
  arrays go in and out as OpenVINO bf16 tensors made from their bits (OpenVINO's Python API
  reads an ml_dtypes bfloat16 array as float16 and shows bf16 tensors as float16).

Exceptions: OpenVINO raises builtin RuntimeError for everything (node validation, compile,
infer); those are reported as ``backends.frameworks.RejectedInput`` with OpenVINO's reason
(the last line of its message) verbatim. The adapter itself refuses a non-real eps by name
(it must convert it) and the calls it cannot express (above).
"""
from __future__ import annotations

import functools

import numpy as np

from bnspec.profiles import OPENVINO_PROFILE
from conformance.adapter import ALL_DTYPES, Capabilities

from .frameworks import UnavailableBackend, moved_axis, native, rejections, write_back

INSTALL = "pip install -e '.[openvino]' (openvino, pinned in pyproject.toml)"
#: The compile configuration of each registered name (see module doc).
CONFIGS: dict[str, dict[str, str]] = {"openvino": {},
                                      "openvino-f32": {"INFERENCE_PRECISION_HINT": "f32"}}
#: The data dtypes computed by a float32 node between two Convert nodes (module doc).
CONVERTED = ("float16", "bfloat16")
TRAINING_REASON = ("BatchNormInference normalises with the mean and variance it is given: "
                   "training with batch statistics (and the running-statistic update) cannot "
                   "be expressed")
MEAN_VAR_REASON = ("BatchNormInference has one output, y: no mean/invstd for "
                   "output_mean_var")


def _capabilities() -> Capabilities:
    return Capabilities(dtypes=ALL_DTYPES, forward=True, backward=False, quantized=False,
                        device="cpu", profile=OPENVINO_PROFILE)


def unsupported(op: str | None, flags) -> str | None:
    """Return why BatchNormInference cannot express a call (op "fwd"/"bwd"/"err"/"qnt" and
    its flags), or None when it can."""
    if op == "qnt":
        return "OpenVINO's BatchNormInference has no quantized path"
    if flags is None:
        return None
    if flags.training and not flags.use_global_stats:
        return TRAINING_REASON
    if flags.output_mean_var:
        return MEAN_VAR_REASON
    return None


class OpenVinoBackend:
    """One BatchNormInference node compiled for OpenVINO's CPU plugin (see module doc)."""

    def __init__(self, name: str = "openvino"):
        import openvino

        self._ov = openvino
        self._core = openvino.Core()
        self.name = name
        self._config = CONFIGS[name]
        self.capabilities = _capabilities()
        self.precision = self._inference_precision()
        hint = self._config.get("INFERENCE_PRECISION_HINT", "plugin default")
        self.version = (f"{openvino.__version__.split('-')[0]} (CPU plugin, BatchNormInference-5, "
                        f"inference precision {self.precision}: {hint})")
        self._compiled = functools.lru_cache(maxsize=64)(self._compile)

    def supports(self, case) -> str | None:
        """Return None for a call that normalises with the running statistics without
        output_mean_var; otherwise the reason BatchNormInference cannot express it."""
        return unsupported(getattr(case, "op", None), getattr(case, "flags", None))

    def forward(self, x, gamma, beta, running_mean, running_var, *, eps, momentum,
                fix_gamma, use_global_stats, output_mean_var, axis, training,
                cudnn_off=False) -> dict[str, np.ndarray]:
        """Return y of BatchNormInference with the running statistics, and the running
        statistics unchanged; raise NotImplementedError for a call it cannot express."""
        if training and not use_global_stats:
            raise NotImplementedError(f"openvino: {TRAINING_REASON}")
        if output_mean_var:
            raise NotImplementedError(f"openvino: {MEAN_VAR_REASON}")
        epsilon = _epsilon(eps)
        x = native(x)
        params = [native(a) for a in (gamma, beta, running_mean, running_var)]
        if fix_gamma:
            params[0] = np.ones(params[0].shape, dtype=params[0].dtype)
        moved = np.ascontiguousarray(moved_axis(x, axis, 1))
        with rejections("openvino", (RuntimeError,), _reason):
            compiled = self._compiled(moved.dtype.name, moved.shape,
                                      tuple(p.dtype.name for p in params),
                                      tuple(p.shape for p in params), epsilon)
            request = compiled.create_infer_request()
            request.infer([self._tensor(a) for a in [moved, *params]])
            y = self._array(request.get_output_tensor(0), moved.dtype)
        out = {"y": np.moveaxis(y, 1, axis)}
        for name, target, value in (("running_mean", running_mean, params[2]),
                                    ("running_var", running_var, params[3])):
            out[name] = value.copy()
            write_back(target, out[name])
        return out

    # --- the model --------------------------------------------------------------------

    def _compile(self, x_dtype: str, x_shape, param_dtypes, param_shapes, eps: float):
        """Return the compiled model of one BatchNormInference node for these dtypes,
        shapes and eps (16-bit x between two Convert nodes, module doc)."""
        from openvino import opset16 as ops

        x = ops.parameter(list(x_shape), _ov_type(self._ov, "x", x_dtype), name="x")
        params = [ops.parameter(list(shape), _ov_type(self._ov, name, dtype), name=name)
                  for name, dtype, shape in zip(("gamma", "beta", "running_mean", "running_var"),
                                                param_dtypes, param_shapes)]
        data = x
        if x_dtype in CONVERTED:
            data = ops.convert(x, _ov_type(self._ov, "gamma", param_dtypes[0]))
        y = ops.batch_norm_inference(data, *params, eps)
        if x_dtype in CONVERTED:
            y = ops.convert(y, _ov_type(self._ov, "x", x_dtype))
        model = self._ov.Model([y], [x, *params], "batch_norm")
        return self._core.compile_model(model, "CPU", self._config)

    def _inference_precision(self) -> str:
        """Return the inference precision the CPU plugin uses for a float32 model under
        this backend's configuration (read back from a compiled probe model)."""
        compiled = self._compile("float32", (2, 3), ("float32",) * 4, ((3,),) * 4, 1e-5)
        return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()

    def _tensor(self, a: np.ndarray):
        """Return an OpenVINO tensor holding a copy of a (bfloat16 from its bits)."""
        if a.dtype.name == "bfloat16":
            tensor = self._ov.Tensor(self._ov.Type.bf16, list(a.shape))
            np.copyto(tensor.data.view(np.uint16), a.view(np.uint16))
            return tensor
        return self._ov.Tensor(np.array(a, copy=True))

    @staticmethod
    def _array(tensor, dtype: np.dtype) -> np.ndarray:
        """Return a copy of an output tensor as a numpy array of dtype (bf16 from its bits)."""
        data = tensor.data
        if dtype.name == "bfloat16":
            return np.array(data.view(np.uint16), copy=True).view(dtype)
        return np.array(data, dtype=dtype, copy=True)


def _epsilon(value) -> float:
    """Return eps as the float of BatchNormInference's epsilon attribute, or raise TypeError
    naming eps when it is not a real number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise TypeError(f"eps={value!r} is not a real number (BatchNormInference's epsilon "
                        "is a double)")
    return float(value)


def _ov_type(ov, name: str, dtype: str):
    """Return the OpenVINO element type of a numpy dtype name, or raise TypeError naming the
    input (OpenVINO has none for it, or BatchNormInference takes no such type)."""
    types = {"float64": ov.Type.f64, "float32": ov.Type.f32, "float16": ov.Type.f16,
             "bfloat16": ov.Type.bf16}
    if dtype not in types:
        raise TypeError(f"{name}.dtype={dtype} is not a floating type BatchNormInference "
                        f"takes ({', '.join(types)})")
    return types[dtype]


def _reason(message: str) -> str:
    """Return the last non-empty line of an OpenVINO message (its reason; the lines before
    it are source locations and the node's signature)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else message


def factory(name: str = "openvino"):
    """Return the openvino backend, or one that skips every case when OpenVINO is missing."""
    try:
        return OpenVinoBackend(name)
    except ImportError as exc:
        return UnavailableBackend(name, _capabilities(),
                                  f"OpenVINO is not installed ({exc}): {INSTALL}")


def f32_factory():
    """Return the openvino backend compiled with INFERENCE_PRECISION_HINT f32
    (``--backend openvino-f32``)."""
    return factory("openvino-f32")
