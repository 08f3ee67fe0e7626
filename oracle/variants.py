"""Named variants of the semantics: the documented ways an implementation may differ.

The oracle computes each variant exactly (``oracle.evaluate(..., variants=(...))``), so a
backend can declare the variants it knowingly follows (its semantic profile) and be held to
them with the same tolerances, and the deviation diagnosis can say which variant explains a
failure. Names are the single source of truth for these differences: backends list them in
``Capabilities.profile``, reports print their descriptions.
"""
from __future__ import annotations

VARIANTS: dict[str, str] = {
    "variance_unbiased": "normalises with the unbiased batch variance sum((x-mean)^2)/(M-1)",
    "running_var_unbiased": "updates running_var with the unbiased batch variance "
                            "sum((x-mean)^2)/(M-1) (cuDNN, PyTorch)",
    "stats_updated_in_forward": "updates the running statistics in the forward pass of a "
                                "training step (cuDNN, PyTorch) instead of in backward",
    "stats_not_updated": "never updates the running statistics",
    "eps_outside_sqrt": "invstd = 1/(sqrt(var) + eps) instead of 1/sqrt(var + eps)",
    "eps_min_1e-5": "uses max(eps, 1e-5) (cuDNN's CUDNN_BN_MIN_EPSILON)",
    "eps_not_cast": "adds eps as a double instead of eps cast to the data dtype",
    "momentum_inverted": "uses 1 - momentum as the weight of the old running statistics "
                         "(PyTorch's convention)",
    "fix_gamma_ignored": "uses gamma (and computes dgamma) even when fix_gamma is set",
    "invstd_as_var": "returns the variance where output_mean_var asks for the inverse "
                     "standard deviation",
    "fp16_stepwise_rounding": "float16 data: rounds var + DType(eps) and every elementwise "
                              "step to float16 (y = h(h(h(h(x - mean) invstd) gamma) + "
                              "beta), the gradient's terms likewise; MXNet's CPU kernel, "
                              "oracle/fp16_steps.py)",
    "eps_float32": "adds eps rounded to float32 (an ONNX attribute is a float32) instead of "
                   "eps cast to the data dtype, and subtracts that eps where the running "
                   "variance is recovered",
    "invstd_inf_at_zero": "batch statistics with var + DType(eps) = 0: invstd = 1/sqrt(0) = "
                          "inf (IEEE), not 0; y, dx, dgamma NaN there",
    "running_var_from_batch_var": "updates running_var with the biased batch variance "
                                  "itself, not with 1/invstd^2 - eps",
    "no_mean_invstd": "returns no mean or invstd outputs (output_mean_var has nothing to "
                      "return)",
    "no_mean_invstd_with_running_stats": "returns no mean or invstd when it normalises with "
                                         "the running statistics (inference, or "
                                         "use_global_stats)",
}

#: Pairs of variants the oracle does not compute together (each changes the same step).
EXCLUSIVE: tuple[frozenset[str], ...] = (
    frozenset({"fp16_stepwise_rounding", "eps_outside_sqrt"}),
    frozenset({"running_var_unbiased", "running_var_from_batch_var"}),
    frozenset({"no_mean_invstd", "no_mean_invstd_with_running_stats"}),
)


def compatible(variants) -> bool:
    """Return True if no two of the variant names are an EXCLUSIVE pair."""
    names = frozenset(variants or ())
    return not any(pair <= names for pair in EXCLUSIVE)


def check_variants(variants) -> frozenset[str]:
    """Return the variant names as a frozenset, or raise ValueError naming an unknown one."""
    names = frozenset(variants or ())
    unknown = sorted(names - VARIANTS.keys())
    if unknown:
        raise ValueError(f"variants={unknown!r} are unknown; known: {sorted(VARIANTS)}")
    clash = [sorted(pair) for pair in EXCLUSIVE if pair <= names]
    if clash:
        raise ValueError(f"variants={sorted(names)!r} combine {clash[0]!r}, which change the "
                         "same step: the oracle computes one or the other")
    return names

#: Named variants of the quantized path (op "qnt", ``oracle.quantized``). Each one is a
#: difference of MXNet 1.9.1's oneDNN kernel (src/operator/quantization/mkldnn/
#: mkldnn_quantized_batch_norm.cc) from the spec's formula, pinned down by running it; a
#: backend declares them in ``Capabilities.quantized_profile``.
QUANTIZED_VARIANTS: dict[str, str] = {
    "qnt_slope_eps_twice": "divides the slope w by sqrt(1 + float32(eps)) a second time: the "
                           "kernel hands oneDNN mean 0 and variance 1 with the same eps",
    "qnt_shift_127.5": "scales the shift by 127.5/B instead of 127/B (MXNet's "
                       "kInt8Range = 127.5f), b = (beta - rm g invstd) 127.5 / B",
    "qnt_uint8_requantized": "rounds uint8 input to int8 first, q8 = rint(q 127.5/255.5) "
                             "(oneDNN reorder; saturated to -128..127), then uses q8 as "
                             "int8 input",
}
#: Profiles that name these variants (MXNet's: all three) live in bnspec.profiles, where
#: backends take them from.


def check_quantized_variants(variants) -> frozenset[str]:
    """Return the quantized variant names as a frozenset, or raise ValueError naming an
    unknown one."""
    names = frozenset(variants or ())
    unknown = sorted(names - QUANTIZED_VARIANTS.keys())
    if unknown:
        raise ValueError(f"variants={unknown!r} are unknown quantized variants; known: "
                         f"{sorted(QUANTIZED_VARIANTS)}")
    return names
