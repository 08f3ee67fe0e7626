"""MXNet 1.9.1's own CPU batch norm arithmetic, emulated operation by operation in numpy.

Not the semantics (shared/spec and the oracle are): what MXNet's CPU kernel
(src/operator/nn/batch_norm.cc, BatchNormForwardImpl / BatchNormBackwardImpl) computes,
rounding included. Checked bit for bit against the real MXNet in
tests/backends/test_framework_adapters.py, it is the evidence behind the float16 entries of
conformance/known_deviations/mxnet.txt and reports/FRAMEWORKS.md.

The float16 path (DType = mshadow::half_t, AccReal = float). mshadow's half_t operators
return half_t for ``half op float`` and ``float op half``, so every elementwise expression
that mentions a data element, and ``var + DType(eps)``, is rounded to float16 at each step:

    mean     = (sum_seq x) / M                      float32, sequential
    var      = (sum_seq (x - mean)^2) / M           float32, sequential
    invstd   = float(1.0 / sqrtf(half(var + half(eps))))          0 if sum == 0 and eps == 0
             (running stats: the same with running_var; half(v) = inf above 65504)
    y        = half(half(half(half(x - mean) * invstd) * gamma) + beta)   (no * gamma if fix_gamma)
    sdy      = sum_seq dy                            float32
    dotp     = sum_seq half(half(x - mean) * dy)     each term rounded to float16
    batch:   k = dotp * invstd * invstd / M;  t = half(half(x - mean) * k)
             dx = half(half(half(dy - sdy/M) - t) * (invstd * w))
    running: dx = half(dy * (invstd * w))
    dgamma   = dotp * invstd (0 if fix_gamma);  dbeta = sdy
    running-stat update (batch): var' = float(1.0 / (invstd * invstd) - eps)
             rm = rm * m + mean * (1 - m);  rv = rv * m + var' * (1 - m)     (float32, m float32)

The float64 path is the same with every type double (no intermediate rounding beyond
double), the sums sequential. The float32 path runs oneDNN's kernel instead (not emulated).
"""
from __future__ import annotations

import numpy as np

H, F = np.float16, np.float32


def _seq_sum(values, dtype) -> np.floating:
    """Return the left-to-right sum of values in dtype (np.cumsum is sequential)."""
    values = np.asarray(values, dtype=dtype).ravel()
    return dtype(np.cumsum(values, dtype=dtype)[-1]) if values.size else dtype(0)


def _invstd_half(var, eps) -> np.float32:
    return F(1.0 / np.float64(np.sqrt(F(H(F(var) + F(H(eps)))))))


def _channels(x, axis):
    return np.moveaxis(x, axis % x.ndim, -1)


def forward_fp16(x, gamma, beta, running_mean, running_var, *, eps, fix_gamma,
                 use_global_stats, training, axis, **_) -> dict[str, np.ndarray]:
    """Return MXNet's float16 forward outputs: y (float16), mean and invstd (float32)."""
    xs = _channels(x, axis)
    count = xs.size // xs.shape[-1]
    y = np.empty_like(xs)
    means, invstds = np.empty(xs.shape[-1], F), np.empty(xs.shape[-1], F)
    with np.errstate(all="ignore"):
        for c in range(xs.shape[-1]):
            v = xs[..., c]
            if training and not use_global_stats:
                mean = F(_seq_sum(v, F) / F(count))
                d = (v.astype(F) - mean).astype(F)
                ss = _seq_sum(d * d, F)
                invstd = F(0) if (ss == 0 and eps == 0) else _invstd_half(F(ss / F(count)), eps)
            else:
                mean, invstd = F(running_mean[c]), _invstd_half(running_var[c], eps)
            means[c], invstds[c] = mean, invstd
            t = H(v.astype(F) - mean).astype(F)
            t = H(t * invstd).astype(F)
            if not fix_gamma:
                t = H(t * F(gamma[c])).astype(F)
            y[..., c] = H(t + F(beta[c]))
    return {"y": np.moveaxis(y, -1, axis % x.ndim), "mean": means, "invstd": invstds}


def backward_fp16(x, gamma, beta, running_mean, running_var, dy, *, eps, momentum, fix_gamma,
                  use_global_stats, training, axis, **_) -> dict[str, np.ndarray]:
    """Return MXNet's float16 training-step outputs: dx (float16), dgamma, dbeta and the
    running statistics (float32)."""
    fwd = forward_fp16(x, gamma, beta, running_mean, running_var, eps=eps,
                       fix_gamma=fix_gamma, use_global_stats=use_global_stats,
                       training=training, axis=axis)
    xs, dys = _channels(x, axis), _channels(dy, axis)
    count = xs.size // xs.shape[-1]
    batch = training and not use_global_stats
    m = F(momentum)
    dx = np.empty_like(xs)
    dgamma, dbeta = np.empty(xs.shape[-1], F), np.empty(xs.shape[-1], F)
    rm, rv = running_mean.astype(F), running_var.astype(F)
    with np.errstate(all="ignore"):
        for c in range(xs.shape[-1]):
            mean, invstd = fwd["mean"][c], fwd["invstd"][c]
            w = F(1) if fix_gamma else F(gamma[c])
            v, g = xs[..., c], dys[..., c]
            centered = H(v.astype(F) - mean)
            sdy = _seq_sum(g, F)
            dotp = _seq_sum(H(centered.astype(F) * g.astype(F)), F)
            iw = F(invstd * w)
            if batch:
                k = F(F(F(dotp * invstd) * invstd) / F(count))
                t = H(centered.astype(F) * k).astype(F)
                u = H(g.astype(F) - F(sdy / F(count))).astype(F)
                dx[..., c] = H(H(u - t).astype(F) * iw)
                var = F(1.0 / np.float64(F(invstd * invstd)) - eps)
                rm[c] = F(F(rm[c] * m) + F(mean * F(F(1) - m)))
                rv[c] = F(F(rv[c] * m) + F(var * F(F(1) - m)))
            else:
                dx[..., c] = H(g.astype(F) * iw)
            dgamma[c] = F(0) if fix_gamma else F(F(F(1) * dotp) * invstd)
            dbeta[c] = sdy
    return {"dx": np.moveaxis(dx, -1, axis % x.ndim), "dgamma": dgamma, "dbeta": dbeta,
            "running_mean": rm, "running_var": rv}


def forward_fp64(x, gamma, beta, running_mean, running_var, *, eps, fix_gamma,
                 use_global_stats, training, axis, **_) -> dict[str, np.ndarray]:
    """Return MXNet's float64 forward outputs (sequential double sums)."""
    D = np.float64
    xs = _channels(x, axis)
    count = xs.size // xs.shape[-1]
    y = np.empty_like(xs)
    means, invstds = np.empty(xs.shape[-1]), np.empty(xs.shape[-1])
    with np.errstate(all="ignore"):
        for c in range(xs.shape[-1]):
            v = xs[..., c]
            if training and not use_global_stats:
                mean = D(_seq_sum(v, D) / count)
                ss = _seq_sum((v - mean) ** 2, D)
                invstd = D(0) if (ss == 0 and eps == 0) else D(1.0 / np.sqrt(ss / count + eps))
            else:
                mean, invstd = D(running_mean[c]), D(1.0 / np.sqrt(running_var[c] + eps))
            means[c], invstds[c] = mean, invstd
            t = (v - mean) * invstd
            if not fix_gamma:
                t = t * gamma[c]
            y[..., c] = t + beta[c]
    return {"y": np.moveaxis(y, -1, axis % x.ndim), "mean": means, "invstd": invstds}
