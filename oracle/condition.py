r"""Condition scales: how large an error a correct finite-precision implementation may make.

For each output element the oracle stores a condition scale ``cond``: the sum of the
magnitudes of the terms whose rounding a careful implementation cannot avoid. The
conformance runner's tolerance is ``k * u * cond`` with u the unit roundoff of the output
dtype and k from its tolerance table. Case files hold ``cond`` (a fact about the data),
never k (a policy).

Error analysis (first order in the working precision u_w; M elements per channel, d = x - mu,
s = g * r the per-channel scale, r = invstd, mean|.| taken over the channel):

Statistics. A careful implementation forms mu by a blocked or pairwise sum in at least
float32: |mu^ - mu| <= c u_w mean|x|. Its two-pass variance sum((x - mu^)^2)/M equals
var + (mu^ - mu)^2 (the cross term vanishes), plus rounding c u_w var; so var^ has relative
error c u_w (the second-order term (c u_w mean|x|)^2 / var is ignored), and
r^ = r (1 + c u_w) after the square root and the division.

Forward output, y = d s + beta:
  dy = s (mu^ - mu) + d s (dr/r + rounding of the products) + rounding of the sum with beta
so |y^ - y| <= c u_w (|x| + |mu| + mean|x|) |s| + u_out |y|, and since |y| <= |d s| + |beta|:

    cond_y = (|x| + |mu| + mean|x|) |s| + |beta|          (batch statistics)
    cond_y = (|x| + |mu|) |s| + |beta|                      (running statistics: mu exact)

(|x| + |mu| rather than |x - mu|, because the common factored form y = x s + (beta - mu s)
rounds x s and mu s separately.)

Batch mean and invstd: cond_mean = mean|x|; cond_invstd = r. In running-statistics mode the
mean output is running_mean itself: cond 0 (exact).

Backward, batch statistics: dx = (dy - a - d k) w with a = sum(dy)/M, k = sum(d dy) r^2 / M,
w = r g. The reductions a and k carry errors c u_w mean|dy| and c u_w r^2 mean(|d| |dy|),
the mean error enters through d k, and the rounding of each term is relative:

    cond_dx = |w| (|dy| + mean|dy| + (|d| + mean|x|) |k|
                   + |d| r^2 (mean(|d| |dy|) + mean|x| mean|dy|))

(the last term: the mean's error enters dotp = sum((x - mu^) dy) as (mu^ - mu) sum(dy)).
    cond_dx = |dy w|                                         (running statistics)
    cond_dgamma = r (sum |d| |dy| + mean|x| sum |dy|)         (0 with fix_gamma: exact zero)
    cond_dbeta = sum |dy|

Running statistics after a training step, with m = float32(momentum):

    cond_running_mean = |running_mean| m + (1 - m) mean|x|
    cond_running_var  = |running_var| m + (1 - m) (var + DType(eps) + eps)

(the variance is recovered from the rounded invstd as 1/r^2 - eps, which costs a few u_w of
var + DType(eps), and eps itself is subtracted). Where the statistics are not updated, the
running statistics must come back bit-identical: cond 0.

Underflow. Below the smallest normal number lambda of the accumulation dtype (float32, or
float64 for float64 data) rounding errors are absolute (up to lambda u_w), not relative, so
every term of a reduction counts with magnitude at least lambda: mean|x|, mean|dy|,
sum|dy| and sum |d| |dy| are taken over max(|term|, lambda).

Every formula takes float64 arrays broadcast to the output's shape; values need no more
than a few correct digits.
"""
from __future__ import annotations

import numpy as np


def cond_y(x, mu, s, beta, mean_abs_x, batch_stats: bool):
    """Return the condition scale of y = (x - mu) s + beta (see module doc)."""
    reduction = mean_abs_x if batch_stats else 0.0
    return (np.abs(x) + np.abs(mu) + reduction) * np.abs(s) + np.abs(beta)


def cond_dx(dy, d, w, k, r, mean_abs_dy, mean_abs_x, mean_abs_d_dy, batch_stats: bool):
    """Return the condition scale of dx (see module doc)."""
    if not batch_stats:
        return np.abs(dy * w)
    return np.abs(w) * (np.abs(dy) + mean_abs_dy + (np.abs(d) + mean_abs_x) * np.abs(k)
                        + np.abs(d) * r * r * (mean_abs_d_dy + mean_abs_x * mean_abs_dy))


def cond_dgamma(r, sum_abs_d_dy, mean_abs_x, sum_abs_dy, batch_stats: bool):
    """Return the condition scale of dgamma = sum(d dy) r."""
    reduction = mean_abs_x * sum_abs_dy if batch_stats else 0.0
    return np.abs(r) * (sum_abs_d_dy + reduction)


def cond_running_mean(running_mean, momentum, mean_abs_x):
    """Return the condition scale of running_mean m + mean (1 - m)."""
    return np.abs(running_mean) * momentum + (1 - momentum) * mean_abs_x


def cond_running_var(running_var, momentum, var_plus_eps, eps):
    """Return the condition scale of running_var m + (1/r^2 - eps) (1 - m)."""
    return np.abs(running_var) * momentum + (1 - momentum) * (np.abs(var_plus_eps) + eps)
