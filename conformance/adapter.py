"""The adapter contract: the only thing a backend must implement to be checked.

A backend is any object with the attributes and methods of ``Backend``. Arrays go in and
come out as numpy arrays (bfloat16 as ``ml_dtypes.bfloat16``); flags are keyword arguments
with the names and meanings of ``mxnet.npx.batch_norm``. A complete adapter::

    import numpy as np
    from conformance.adapter import Capabilities

    class MyBatchNorm:
        name = "mine"
        version = "1.0"
        capabilities = Capabilities(dtypes=frozenset({"float32"}), backward=False)

        def supports(self, case):
            return None  # or a reason string to skip the case

        def forward(self, x, gamma, beta, running_mean, running_var, *, eps, momentum,
                    fix_gamma, use_global_stats, output_mean_var, axis, training,
                    cudnn_off=False):
            ...
            return {"y": y, "running_mean": running_mean, "running_var": running_var}

    def factory():
        return MyBatchNorm()

and ``pytest conformance/ --backend mypackage.mymodule:factory``.

A backend with ``Capabilities(quantized=True)`` also implements ``quantized``, MXNet's
``_contrib_quantized_batch_norm``: int8/uint8 ``x``, float32 parameters, the data's float
range (min_data, max_data) and the output's calibration range (min_calib_range,
max_calib_range; both required, min <= max), returning int8 ``out`` and float32
``min_out``/``max_out`` of shape (1,) (spec "Quantized path"; the oracle is
oracle/quantized.py). The float operator's other flags are passed too; they have no effect.

Inputs are the harness's own copies: a backend may update running_mean/running_var (and,
with fix_gamma, gamma) in place as MXNet does, and must return the running statistics it
ends with. On invalid input a backend raises (ValueError or TypeError, naming the parameter
and its value) before it writes anything.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

ALL_DTYPES = frozenset({"float64", "float32", "float16", "bfloat16"})


@dataclass(frozen=True)
class Capabilities:
    """What a backend can run; cases outside it are skipped with the reason."""

    dtypes: frozenset[str] = ALL_DTYPES
    min_rank: int = 2
    max_rank: int | None = None
    forward: bool = True
    backward: bool = True
    quantized: bool = False
    device: str = "cpu"
    #: Known, documented differences from MXNet CPU semantics (names of oracle variants).
    profile: tuple[str, ...] = field(default_factory=tuple)
    #: Known differences of the quantized path from the spec's formula (names of
    #: oracle.variants.QUANTIZED_VARIANTS; MXNet 1.9.1 follows
    #: bnspec.profiles.MXNET_QUANTIZED_PROFILE).
    quantized_profile: tuple[str, ...] = field(default_factory=tuple)


@runtime_checkable
class Backend(Protocol):
    """A batch-norm implementation under test."""

    name: str
    version: str
    capabilities: Capabilities

    def supports(self, case: Any) -> str | None:
        """Return None if the backend can run this case (an oracle.casefile.Case), else the
        reason it cannot, which becomes the skip message."""
        ...

    def forward(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                running_mean: np.ndarray, running_var: np.ndarray, *, eps: float,
                momentum: float, fix_gamma: bool, use_global_stats: bool,
                output_mean_var: bool, axis: int, training: bool,
                cudnn_off: bool = False) -> dict[str, np.ndarray]:
        """One forward call. Returns ``y``; ``mean`` and ``invstd`` when output_mean_var;
        and ``running_mean``/``running_var`` as they stand after this forward call."""
        ...

    def backward(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                 running_mean: np.ndarray, running_var: np.ndarray, dy: np.ndarray, *,
                 eps: float, momentum: float, fix_gamma: bool, use_global_stats: bool,
                 output_mean_var: bool, axis: int, training: bool,
                 cudnn_off: bool = False) -> dict[str, np.ndarray]:
        """One training step (forward then backward with head gradient dy). Returns ``dx``,
        ``dgamma``, ``dbeta``, and ``running_mean``/``running_var`` as they stand after the
        backward pass."""
        ...


    def quantized(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                  running_mean: np.ndarray, running_var: np.ndarray, *, min_data: float,
                  max_data: float, min_calib_range: float | None,
                  max_calib_range: float | None, eps: float, axis: int,
                  **flags: Any) -> dict[str, np.ndarray]:
        """The quantized forward (only with ``capabilities.quantized``). Returns ``out``
        (int8, x's shape), ``min_out`` and ``max_out`` (float32, shape (1,)). ``flags``:
        momentum, fix_gamma, use_global_stats, output_mean_var, training, cudnn_off, which
        the quantized operator accepts and ignores. Invalid calls raise as ``forward``
        does (a missing calibration value or min > max: ValueError naming it)."""
        ...


FORWARD_KWARGS = ("eps", "momentum", "fix_gamma", "use_global_stats", "output_mean_var",
                  "axis", "training", "cudnn_off")
QUANTIZED_KWARGS = FORWARD_KWARGS + ("min_data", "max_data", "min_calib_range",
                                     "max_calib_range")
