"""The numpy backend: batch norm with mxnet.npx.batch_norm (MXNet 1.9.1) semantics.

The suite's example of a backend and its reference run: it must pass every case under the
``strict`` tolerance profile. Inputs are widened to float64 (exact), statistics are
accumulated in float64 in two passes, everything is computed in float64, and each output
is rounded once, correctly, to its dtype at the end.

Math, per channel c of ``axis`` (sums run over every other axis, M elements per channel;
g_c = 1 if fix_gamma else gamma_c; e = DType(eps), eps rounded to the data dtype)::

    batch stats (training and not use_global_stats):
        mean_c   = sum(x) / M
        var_c    = sum((x - mean_c)^2) / M                 biased: divide by M, not M - 1
        invstd_c = 1 / sqrt(var_c + e)                     0 when var_c + e = 0
    running stats (otherwise):
        mean_c   = running_mean_c
        invstd_c = 1 / sqrt(running_var_c + e)
    forward:
        y = (x - mean_c) * invstd_c * g_c + beta_c
    backward, head gradient dy:
        sdy_c = sum(dy),  dotp_c = sum((x - mean_c) * dy)
        batch stats:    dx = (dy - sdy_c/M - (x - mean_c) k_c) * invstd_c * g_c,
                        k_c = dotp_c * invstd_c^2 / M
        running stats:  dx = dy * invstd_c * g_c
        dgamma_c = dotp_c * invstd_c (0 if fix_gamma),  dbeta_c = sdy_c
    running-stat update, in backward and only with batch stats (m = momentum as float32):
        var'_c         = 1/invstd_c^2 - eps                (the double eps, not e)
        running_mean_c <- running_mean_c * m + mean_c * (1 - m)
        running_var_c  <- running_var_c  * m + var'_c * (1 - m)

Since 1/invstd_c^2 = var_c + e exactly, var'_c is computed as var_c + (e - eps) (e - eps is
exact), which avoids the cancellation of the literal formula; where invstd_c = 0 it is +inf.
With fix_gamma the gamma array passed in is overwritten with ones, as MXNet does.
NaN and Inf follow IEEE arithmetic: one NaN or Inf in a channel makes its statistics NaN.
Outputs: y and dx in the data dtype; mean, invstd, dgamma, dbeta and the running statistics
in the parameter dtype (float32 for 16-bit data).

Layout: x is viewed as [..., C] (np.moveaxis, channel axis last), so per-channel vectors of
shape [C] broadcast against it and every statistic reduces over all axes but the last.

Quantized path (``quantized``, spec "Quantized path", oracle/quantized.py): per channel, in
float64, with A = max(|min_data|, |max_data|) and B = max(|min_calib_range|,
|max_calib_range|)::

    r = 1/sqrt(running_var + eps),  w = gamma r A / B,  b = (beta - running_mean gamma r) 127/B
    out = clip(rint(w q' + b), -128, 127)    q' = q (int8) or q 127/255 (uint8); rint: ties to even
    min_out, max_out = min_calib_range, max_calib_range as float32 arrays of shape (1,)

float64 keeps every result within about 2**-50 cond of the exact value (far inside the
integer rule), and where the formula is exact in float32 it is exact in float64 too.
"""
from __future__ import annotations

import functools

import numpy as np

from bnspec.flags import DTYPES, numpy_dtype
from bnspec.formats import FORMATS, round_float64
from bnspec.validate import check_arguments, check_quantized_arguments, check_written
from conformance.adapter import ALL_DTYPES, Capabilities


def to_dtype(values, dtype: str) -> np.ndarray:
    """Return float64 values correctly rounded (ties to even) to an array of dtype.

    Rounding goes through bnspec.formats because numpy's float64 -> bfloat16 cast rounds
    twice (via float32).
    """
    return round_float64(values, FORMATS[dtype]).astype(numpy_dtype(dtype))


def channels_last(a: np.ndarray, axis: int) -> np.ndarray:
    """Return a as float64 with the channel axis moved last: [..., C]."""
    return np.moveaxis(np.asarray(a).astype(np.float64), axis, -1)


def channel_sum(a: np.ndarray) -> np.ndarray:
    """Return the per-channel sums of a channels-last array: [..., C] -> [C]."""
    return a.sum(axis=tuple(range(a.ndim - 1)))


def ieee(method):
    """Run method with numpy's floating-point warnings off: NaN and Inf are results here."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return method(*args, **kwargs)
    return wrapper


class NumpyBackend:
    """Batch norm in numpy with float64 accumulation; see the module docstring for the math."""

    name = "numpy"
    version = f"0.1.0 (numpy {np.__version__})"
    capabilities = Capabilities(dtypes=ALL_DTYPES, forward=True, backward=True,
                                quantized=True, device="cpu")

    def supports(self, case) -> str | None:
        """Return None: every case, the quantized ones included."""
        return None

    # --- the operator -------------------------------------------------------------------

    @ieee
    def forward(self, x, gamma, beta, running_mean, running_var, *, eps, momentum,
                fix_gamma, use_global_stats, output_mean_var, axis, training,
                cudnn_off=False) -> dict[str, np.ndarray]:
        """Return y (and mean, invstd with output_mean_var) and the running statistics,
        which forward never changes."""
        dtype, ax = check_arguments(x, gamma, beta, running_mean, running_var,
                                    axis=axis, eps=eps, momentum=momentum)
        check_written(["gamma"] if fix_gamma else [], x=x, gamma=gamma, beta=beta,
                      running_mean=running_mean, running_var=running_var)
        if fix_gamma:
            gamma[...] = 1
        xs = channels_last(x, ax)
        mean, _, invstd = self.statistics(xs, running_mean, running_var, dtype, eps,
                                          batch=training and not use_global_stats)
        g = 1.0 if fix_gamma else gamma.astype(np.float64)
        y = (xs - mean) * invstd * g + beta.astype(np.float64)
        out = {"y": to_dtype(np.moveaxis(y, -1, ax), dtype)}
        if output_mean_var:
            param = DTYPES[dtype].param
            out["mean"] = to_dtype(mean, param)
            out["invstd"] = to_dtype(invstd, param)
        out["running_mean"], out["running_var"] = running_mean, running_var
        return out

    @ieee
    def backward(self, x, gamma, beta, running_mean, running_var, dy, *, eps, momentum,
                 fix_gamma, use_global_stats, output_mean_var, axis, training,
                 cudnn_off=False) -> dict[str, np.ndarray]:
        """Return dx, dgamma, dbeta of one training step (forward, then backward with head
        gradient dy) and the running statistics after it (updated with batch stats)."""
        dtype, ax = check_arguments(x, gamma, beta, running_mean, running_var,
                                    axis=axis, eps=eps, momentum=momentum, dy=dy)
        batch = training and not use_global_stats
        check_written((["gamma"] if fix_gamma else [])
                      + (["running_mean", "running_var"] if batch else []),
                      x=x, gamma=gamma, beta=beta, running_mean=running_mean,
                      running_var=running_var, dy=dy)
        if fix_gamma:
            gamma[...] = 1
        xs, dys = channels_last(x, ax), channels_last(dy, ax)
        mean, var, invstd = self.statistics(xs, running_mean, running_var, dtype, eps,
                                            batch=batch)
        g = 1.0 if fix_gamma else gamma.astype(np.float64)
        xc = xs - mean
        count = xs.size // xs.shape[-1]  # M
        sdy, dotp = self.channel_sums(dys, xc)
        if batch:
            # xc carries the rounding error of the float64 mean (up to u |mean|) into every
            # element, and dotp would add it up times sum(dy), swamping a small dotp (data
            # far from 0, dy nearly constant). mean(xc) measures that error: take it out.
            dotp = dotp - channel_sum(xc) / count * sdy
            k = dotp * invstd * invstd / count
            dx = (dys - sdy / count - xc * k) * (invstd * g)
        else:
            dx = dys * (invstd * g)
        dgamma, dbeta = self.param_grads(sdy, dotp, invstd, fix_gamma)
        if batch:
            self.update_running_stats(running_mean, running_var, mean, var, invstd,
                                      dtype, eps, momentum)
        param = DTYPES[dtype].param
        return {"dx": to_dtype(np.moveaxis(dx, -1, ax), dtype),
                "dgamma": to_dtype(dgamma, param), "dbeta": to_dtype(dbeta, param),
                "running_mean": running_mean, "running_var": running_var}

    # --- the steps (one concern each) -----------------------------------------------------

    def statistics(self, xs, running_mean, running_var, dtype, eps, *, batch):
        """Return (mean, var, invstd) per channel, float64 [C]; var is the biased batch
        variance, or None with running stats. With batch stats invstd is defined as 0 where
        var = 0 and eps = 0 (the spec); an eps > 0 that rounds to 0 in the data dtype gives
        1/sqrt(0) = inf, as MXNet's VARIANCE_TO_INVSTD does."""
        e = float(round_float64(eps, FORMATS[dtype]))  # DType(eps)
        if not batch:
            mean = running_mean.astype(np.float64)
            return mean, None, self.invstd(running_var.astype(np.float64), e)
        mean, var = self.batch_moments(xs)
        with np.errstate(divide="ignore"):
            invstd = np.where((var == 0) & (eps == 0), 0.0, self.invstd(var, e))
        return mean, var, invstd

    def batch_moments(self, xs):
        """Return (mean, biased variance) per channel in two float64 passes.

        The mean gets one correction pass (mean += mean(x - mean)), which makes it exact for
        a constant channel, so that the variance of a constant channel is exactly 0.
        """
        count = xs.size // xs.shape[-1]  # M
        mean = channel_sum(xs) / count
        mean = np.where(np.isfinite(mean), mean + channel_sum(xs - mean) / count, mean)
        var = channel_sum(np.square(xs - mean)) / count
        return mean, var

    def invstd(self, var, e):
        """Return 1/sqrt(var + e) (IEEE: +inf at 0, NaN below 0)."""
        return 1.0 / np.sqrt(var + e)

    def channel_sums(self, dys, xc):
        """Return (sum(dy), sum((x - mean) * dy)) per channel, float64 [C]."""
        return channel_sum(dys), channel_sum(xc * dys)

    def param_grads(self, sdy, dotp, invstd, fix_gamma):
        """Return (dgamma, dbeta) per channel: (dotp * invstd or 0 with fix_gamma, sdy)."""
        dgamma = np.zeros_like(dotp) if fix_gamma else dotp * invstd
        return dgamma, sdy

    def update_running_stats(self, running_mean, running_var, mean, var, invstd, dtype,
                             eps, momentum):
        """Update running_mean/running_var in place with the batch statistics."""
        e = float(round_float64(eps, FORMATS[dtype]))
        m = float(np.float32(momentum))
        recovered = np.where(invstd == 0, np.inf, var + (e - eps))  # 1/invstd^2 - eps
        new_mean = running_mean.astype(np.float64) * m + mean * (1 - m)
        new_var = running_var.astype(np.float64) * m + recovered * (1 - m)
        param = DTYPES[dtype].param
        running_mean[...] = to_dtype(new_mean, param)
        running_var[...] = to_dtype(new_var, param)


    # --- the quantized path ---------------------------------------------------------------

    def quantized(self, x, gamma, beta, running_mean, running_var, *, min_data, max_data,
                  min_calib_range, max_calib_range, eps, axis, **flags) -> dict[str, np.ndarray]:
        """Return int8 out and float32 min_out/max_out (shape (1,)); see the module doc.
        The float operator's flags (momentum, fix_gamma, ...) are accepted and ignored."""
        dtype, ax = check_quantized_arguments(
            x, gamma, beta, running_mean, running_var, axis=axis, eps=eps, min_data=min_data,
            max_data=max_data, min_calib_range=min_calib_range, max_calib_range=max_calib_range)
        f32 = lambda v: float(np.float32(v))  # noqa: E731 - MXNet holds the ranges as float
        a = max(abs(f32(min_data)), abs(f32(max_data)))
        b_scale = max(abs(f32(min_calib_range)), abs(f32(max_calib_range)))
        r = 1.0 / np.sqrt(running_var.astype(np.float64) + float(eps))
        g = gamma.astype(np.float64)
        w = g * r * a / b_scale
        b = (beta.astype(np.float64) - running_mean.astype(np.float64) * g * r) * 127 / b_scale
        q = channels_last(x, ax)
        if dtype == "uint8":
            q = q * 127 / 255
        out = np.clip(np.rint(q * w + b), -128, 127).astype(np.int8)
        return {"out": np.moveaxis(out, -1, ax),
                "min_out": np.array([min_calib_range], dtype=np.float32),
                "max_out": np.array([max_calib_range], dtype=np.float32)}


def factory() -> NumpyBackend:
    """Return the numpy backend (for ``--backend backends.numpy_backend:factory``)."""
    return NumpyBackend()
