"""Public entry points: the trusted answer for any input, as the operator would return it.

``batch_norm`` and ``batch_norm_backward`` mirror ``mxnet.npx.batch_norm`` and return numpy
arrays, correctly rounded to the output dtypes, by name. ``evaluate`` returns the richer
``Expected`` records the golden cases are made of: the value to about 32 significant digits
(as a double-double), its correctly rounded form, and the condition scale of every element.

Output dtypes: ``y`` and ``dx`` in the data dtype; ``mean``, ``invstd``, ``running_mean``,
``running_var``, ``dgamma``, ``dbeta`` in the parameter dtype (float32 for 16-bit data).
"""
from __future__ import annotations

import numpy as np

from bnspec.flags import DEFAULT_EPS, DEFAULT_MOMENTUM, Flags

from .results import Expected, ExpectedBlocks, QuantizedExpected, output_dtype

__all__ = ["Expected", "ExpectedBlocks", "QuantizedExpected", "batch_norm",
           "batch_norm_backward", "evaluate", "evaluate_quantized", "evaluate_streamed",
           "output_dtype", "quantized_batch_norm"]


def evaluate(x, gamma, beta, running_mean, running_var, dy=None, *, eps=DEFAULT_EPS,
             momentum=DEFAULT_MOMENTUM, fix_gamma=True, use_global_stats=False,
             output_mean_var=False, axis=1, training=False, variants=()) -> dict[str, Expected]:
    """Return the expected outputs of one call, by name.

    Without dy (a forward call): ``y``, ``mean`` and ``invstd`` (only with output_mean_var),
    and ``running_mean``/``running_var`` as they stand after the forward pass (unchanged:
    MXNet updates them in backward).
    With dy (a training step, forward + backward): ``dx``, ``dgamma``, ``dbeta`` and
    ``running_mean``/``running_var`` as they stand after the backward pass.
    Arguments are validated first (bnspec.validate); inputs are taken as the exact binary
    values they hold. ``variants`` names documented departures from MXNet's semantics
    (oracle.variants.VARIANTS) to compute instead, e.g. ("running_var_unbiased",
    "stats_updated_in_forward") for the cuDNN path.
    """
    from .reference import evaluate_reference

    flags = Flags(bool(training), bool(fix_gamma), bool(use_global_stats), bool(output_mean_var))
    return evaluate_reference(x, gamma, beta, running_mean, running_var, dy, flags=flags,
                              eps=eps, momentum=momentum, axis=axis, variants=variants)


def evaluate_streamed(x, gamma, beta, running_mean, running_var, dy=None, *, eps=DEFAULT_EPS,
                      momentum=DEFAULT_MOMENTUM, fix_gamma=True, use_global_stats=False,
                      output_mean_var=False, axis=1, training=False, variants=()) -> dict:
    """Return what ``evaluate`` returns, but ``y`` / ``dx`` as ``ExpectedBlocks``: computed
    block by block, in layout order, each time they are iterated (``.collect()`` gives the
    whole ``Expected``). Memory: the inputs, the per-channel values and a few blocks of about
    a million elements, whatever the tensor's size (oracle.channels). The numbers are those
    of ``evaluate``."""
    from .reference import evaluate_reference_streamed

    flags = Flags(bool(training), bool(fix_gamma), bool(use_global_stats), bool(output_mean_var))
    return evaluate_reference_streamed(x, gamma, beta, running_mean, running_var, dy,
                                       flags=flags, eps=eps, momentum=momentum, axis=axis,
                                       variants=variants)


def batch_norm(x, gamma, beta, running_mean, running_var, eps=DEFAULT_EPS,
               momentum=DEFAULT_MOMENTUM, fix_gamma=True, use_global_stats=False,
               output_mean_var=False, axis=1, training=False) -> dict[str, np.ndarray]:
    """Return the correctly rounded outputs of batch_norm: ``y`` (data dtype), ``mean`` and
    ``invstd`` (with output_mean_var), and ``running_mean``/``running_var`` as they stand
    after a complete training step (updated only when training and not use_global_stats).

    y = (x - mean_c) * invstd_c * g_c + beta_c, invstd_c = 1/sqrt(var_c + DType(eps)),
    g_c = 1 if fix_gamma else gamma_c; batch statistics (biased variance) when training and
    not use_global_stats, running statistics otherwise. See shared/spec for edge cases.
    """
    kwargs = dict(eps=eps, momentum=momentum, fix_gamma=fix_gamma,
                  use_global_stats=use_global_stats, output_mean_var=output_mean_var,
                  axis=axis, training=training)
    forward = evaluate(x, gamma, beta, running_mean, running_var, **kwargs)
    out = {name: e.as_dtype() for name, e in forward.items()}
    if training and not use_global_stats:
        # The update needs the backward pass; it does not depend on dy.
        step = evaluate(x, gamma, beta, running_mean, running_var, np.zeros_like(x), **kwargs)
        out["running_mean"] = step["running_mean"].as_dtype()
        out["running_var"] = step["running_var"].as_dtype()
    return out


def batch_norm_backward(x, gamma, beta, running_mean, running_var, dy, eps=DEFAULT_EPS,
                        momentum=DEFAULT_MOMENTUM, fix_gamma=True, use_global_stats=False,
                        output_mean_var=False, axis=1, training=False) -> dict[str, np.ndarray]:
    """Return the correctly rounded gradients ``dx`` (data dtype), ``dgamma`` and ``dbeta``
    (parameter dtype) for head gradient dy.

    batch stats:   dx = (dy - sum(dy)/M - (x - mean) * k) * invstd * g,
                   k = sum((x - mean) * dy) * invstd**2 / M
    running stats: dx = dy * invstd * g
    dgamma = sum((x - mean) * dy) * invstd (0 if fix_gamma); dbeta = sum(dy).
    """
    step = evaluate(x, gamma, beta, running_mean, running_var, dy, eps=eps, momentum=momentum,
                    fix_gamma=fix_gamma, use_global_stats=use_global_stats,
                    output_mean_var=output_mean_var, axis=axis, training=training)
    return {name: step[name].as_dtype() for name in ("dx", "dgamma", "dbeta")}


def evaluate_quantized(x, gamma, beta, running_mean, running_var, **kwargs) -> dict[str, Expected]:
    """Return the expected outputs of the quantized operator (``out``, ``min_out``,
    ``max_out``); see ``oracle.quantized.evaluate_quantized``."""
    from .quantized import evaluate_quantized as evaluate_q

    return evaluate_q(x, gamma, beta, running_mean, running_var, **kwargs)


def quantized_batch_norm(x, gamma, beta, running_mean, running_var, **kwargs) -> dict[str, np.ndarray]:
    """Return the quantized operator's outputs as arrays (int8 ``out``, float32 ``min_out``
    and ``max_out`` of shape (1,)); see ``oracle.quantized.quantized_batch_norm``."""
    from .quantized import quantized_batch_norm as qbn

    return qbn(x, gamma, beta, running_mean, running_var, **kwargs)
