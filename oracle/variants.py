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
}


def check_variants(variants) -> frozenset[str]:
    """Return the variant names as a frozenset, or raise ValueError naming an unknown one."""
    names = frozenset(variants or ())
    unknown = sorted(names - VARIANTS.keys())
    if unknown:
        raise ValueError(f"variants={unknown!r} are unknown; known: {sorted(VARIANTS)}")
    return names
