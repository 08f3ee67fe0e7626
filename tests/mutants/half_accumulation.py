"""Mistake: 16-bit accumulation: per-channel sums formed in the data dtype.

``x.sum(axis)`` on float16 or bfloat16 arrays accumulates in that dtype; MXNet (and every
careful implementation) accumulates 16-bit data in float32. Sums of a few hundred elements
lose most of an 8- or 11-bit significand, so the statistics and the parameter gradients
(float32 outputs) are far off. For float32 data this is float32 accumulation, which the
strict profile allows; for float64 data nothing changes.
"""
import numpy as np

from backends.numpy_backend import NumpyBackend

SELECT = "(fp16 or bf16) and ((fwd and train and batchstats) or bwd)"
OUTPUTS = ("y", "mean", "invstd", "dx", "dgamma", "dbeta", "running_mean",
           "running_var")


class HalfAccumulation(NumpyBackend):
    name = "mutant-half-accumulation"
    acc = np.dtype(np.float64)

    def forward(self, x, *args, **kwargs):
        self.acc = x.dtype  # accumulate in the data dtype
        return super().forward(x, *args, **kwargs)

    def backward(self, x, *args, **kwargs):
        self.acc = x.dtype
        return super().backward(x, *args, **kwargs)

    def _sum(self, a):
        """Per-channel sums of a channels-last array, accumulated in self.acc."""
        return a.astype(self.acc).sum(axis=tuple(range(a.ndim - 1))).astype(np.float64)

    def batch_moments(self, xs):
        count = xs.size // xs.shape[-1]
        mean = self._sum(xs) / count
        return mean, self._sum(np.square(xs - mean)) / count

    def channel_sums(self, dys, xc):
        return self._sum(dys), self._sum(xc * dys)


def factory():
    return HalfAccumulation()
