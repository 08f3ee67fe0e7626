"""The ``onnxruntime`` backend: the ONNX ``BatchNormalization`` operator run by ONNX Runtime (CPU).

    pip install -e ".[onnxruntime]"
    pytest conformance/ --backend onnxruntime

Each call builds a one-node ONNX model in memory with ``onnx.helper`` (opset 15, the
operator's latest version: 16-bit X with float32 scale/bias/mean/var is allowed there) and
runs it with an ``onnxruntime.InferenceSession`` on the ``CPUExecutionProvider``. The model
declares the lowest IR version its opset needs (``onnx.helper.find_min_ir_version_for``:
opset 15 -> IR 8), not the installed onnx's default (IR 14 for onnx 1.23), which older
ONNX Runtime releases refuse ("Unsupported model IR version"; 1.27 reads up to 13). Sessions are
cached by what the model depends on (dtypes, shape, eps, momentum, mode); the arrays are
fresh for every call.

Mapping, MXNet -> ONNX:

- axis: ONNX's channel dimension is 1; x is moved with ``np.moveaxis(x, axis, 1)`` before
  the call and y moved back (exact; an invalid axis is refused by moveaxis, naming axis).
- training with batch statistics (``training and not use_global_stats``):
  ``training_mode=1``; the outputs are Y and the updated running_mean/running_var (updated
  **in forward**, with the biased batch variance; ONNX's momentum has MXNet's meaning:
  ``running * momentum + batch * (1 - momentum)``). Otherwise ``training_mode=0``: Y from
  input_mean/input_var, and the running statistics come back unchanged (the model has no
  state to change).
- fix_gamma=True: ``scale = ones`` (the caller's gamma is not overwritten).
- eps, momentum: node attributes, which ONNX stores as float32: eps is rounded to float32
  (MXNet adds DType(eps): the double for float64 data, float16(eps) for float16 data).
- output_mean_var: BatchNormalization-15 has no saved mean/inverse-std outputs, so none are
  returned (declared by the missing outputs).
- no backward: ONNX Runtime's CPU package has no gradient operator
  (``Capabilities.backward=False``); no bfloat16 (ONNX Runtime has no CPU kernel for it);
  no quantized path.

Exceptions: ONNX Runtime's own exception classes (Fail, InvalidArgument, NotImplemented,
InvalidGraph, ...) are reported as ``backends.frameworks.RejectedInput``, message verbatim.
Nothing is validated by the adapter itself.
"""
from __future__ import annotations

import functools

import numpy as np

from bnspec.profiles import ONNXRUNTIME_PROFILE
from conformance.adapter import Capabilities

from .frameworks import UnavailableBackend, moved_axis, native, rejections, write_back

INSTALL = "pip install -e '.[onnxruntime]' (onnxruntime and onnx)"
OPSET = 15
#: Declared differences from MXNet semantics (bnspec.profiles.ONNXRUNTIME_PROFILE: names of
#: oracle variants).
PROFILE = ONNXRUNTIME_PROFILE
CAPABILITIES = Capabilities(dtypes=frozenset({"float64", "float32", "float16"}), forward=True,
                            backward=False, quantized=False, device="cpu", profile=PROFILE)


class OnnxRuntimeBackend:
    """ONNX BatchNormalization-15 on ONNX Runtime's CPU provider (see module doc)."""

    name = "onnxruntime"
    capabilities = CAPABILITIES

    def __init__(self):
        import onnx
        import onnxruntime as ort
        from onnxruntime.capi import onnxruntime_pybind11_state as state

        self._onnx, self._ort = onnx, ort
        self.version = f"{ort.__version__} (onnx {onnx.__version__}, opset {OPSET}, cpu)"
        self._errors = tuple(cls for cls in vars(state).values()
                             if isinstance(cls, type) and issubclass(cls, Exception))
        self._session = functools.lru_cache(maxsize=64)(self._make_session)

    def supports(self, case) -> str | None:
        """Return None for every forward float case (capabilities say the rest)."""
        if getattr(case, "op", None) == "qnt":
            return "the onnxruntime adapter has no quantized path"
        return None

    def forward(self, x, gamma, beta, running_mean, running_var, *, eps, momentum,
                fix_gamma, use_global_stats, output_mean_var, axis, training,
                cudnn_off=False) -> dict[str, np.ndarray]:
        """Return y and the running statistics (updated in training mode with batch
        statistics, unchanged otherwise); never mean/invstd (ONNX has no such outputs)."""
        x = native(x)  # ONNX Runtime reads raw memory
        params = [native(a) for a in (gamma, beta, running_mean, running_var)]
        if fix_gamma:
            params[0] = np.ones(params[0].shape, dtype=params[0].dtype)
        moved = np.ascontiguousarray(moved_axis(x, axis, 1))
        train = bool(training and not use_global_stats)
        with rejections("onnxruntime", self._errors):
            session = self._session(_type_key(moved), _type_key(params[2]),
                                    _attribute("eps", eps), _attribute("momentum", momentum),
                                    train,
                                    _type_key(params[0]), _type_key(params[1]),
                                    _type_key(params[3]))
            feeds = dict(zip(("X", "scale", "B", "input_mean", "input_var"),
                             [moved, *params]))
            results = session.run(None, feeds)
        out = {"y": np.moveaxis(results[0], 1, axis)}
        if train:
            new_mean, new_var = results[1], results[2]
        else:
            new_mean, new_var = params[2].copy(), params[3].copy()
        for target, value in ((running_mean, new_mean), (running_var, new_var)):
            write_back(target, value)
        out["running_mean"], out["running_var"] = new_mean, new_var
        return out

    # --- the model --------------------------------------------------------------------

    def _make_session(self, x_key, stat_key, eps, momentum, train,
                      scale_key, bias_key, var_key):
        """Return an InferenceSession of one BatchNormalization-15 node for these types,
        shapes and attributes (x_key etc. are (dtype str, shape) pairs)."""
        from onnx import helper

        def info(name, key):
            dtype, shape = key
            return helper.make_tensor_value_info(name, _tensor_type(name, dtype), list(shape))

        inputs = [info("X", x_key), info("scale", scale_key), info("B", bias_key),
                  info("input_mean", stat_key), info("input_var", var_key)]
        outputs = [info("Y", x_key)]
        names = ["Y"]
        if train:
            outputs += [info("running_mean", stat_key), info("running_var", var_key)]
            names += ["running_mean", "running_var"]
        node = helper.make_node("BatchNormalization", [i.name for i in inputs], names,
                                epsilon=eps, momentum=momentum, training_mode=int(train))
        model = one_node_model(node, inputs, outputs)
        return self._ort.InferenceSession(model.SerializeToString(),
                                          providers=["CPUExecutionProvider"])


def one_node_model(node, inputs, outputs):
    """Return the ModelProto of a graph of this one node at opset OPSET, declaring the lowest
    IR version that opset needs (module doc), so that any ONNX Runtime able to run the
    opset reads the model whatever onnx built it."""
    from onnx import helper

    opsets = [helper.make_opsetid("", OPSET)]
    graph = helper.make_graph([node], "batch_norm", inputs, outputs)
    return helper.make_model(graph, opset_imports=opsets,
                             ir_version=helper.find_min_ir_version_for(opsets))


def _type_key(a: np.ndarray) -> tuple[str, tuple[int, ...]]:
    return a.dtype.str, tuple(a.shape)


def _attribute(name: str, value) -> float:
    """Return value as the float of an ONNX float attribute, or raise TypeError naming the
    parameter when it is not a real number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}={value!r} is not a real number (an ONNX float attribute)")
    return float(value)


def _tensor_type(name: str, dtype_str: str) -> int:
    """Return the ONNX tensor element type of a numpy dtype, or raise TypeError naming the
    input (ONNX has no type for it)."""
    from onnx import helper

    try:
        return helper.np_dtype_to_tensor_dtype(np.dtype(dtype_str))
    except (KeyError, TypeError, ValueError) as exc:
        raise TypeError(f"{name}.dtype={np.dtype(dtype_str)} has no ONNX tensor type: "
                        f"{exc!r}") from exc


def factory():
    """Return the onnxruntime backend, or a backend that skips every case when onnx or
    onnxruntime is not installed."""
    try:
        return OnnxRuntimeBackend()
    except ImportError as exc:
        return UnavailableBackend("onnxruntime", CAPABILITIES,
                                  f"ONNX Runtime is not installed ({exc}): {INSTALL}")
