"""Mistake: one-pass variance E[x^2] - E[x]^2 with float32 accumulators.

The "fast" single sweep of many hand-written kernels: running sums of x and x^2 in float32
(sequentially, as one thread per channel would), then var = s2/M - (s1/M)^2. The
subtraction cancels catastrophically when |mean| >> std, and float32 sums cannot reach the
accuracy float64 data call for.
"""
import numpy as np

from backends.numpy_backend import NumpyBackend

SELECT = "fwd and train and batchstats and (fp64 or fp32)"
OUTPUTS = ("y", "mean", "invstd", "dx", "dgamma", "running_var")


class OnePassFloat32(NumpyBackend):
    name = "mutant-one-pass-float32"

    def batch_moments(self, xs):
        count = xs.size // xs.shape[-1]
        rows = xs.astype(np.float32).reshape(count, xs.shape[-1])  # [M, C]
        # one sweep, float32 running sums (cumsum adds in order, as a loop would)
        s1 = np.cumsum(rows, axis=0, dtype=np.float32)[-1]
        s2 = np.cumsum(rows * rows, axis=0, dtype=np.float32)[-1]
        mean = s1 / np.float32(count)
        var = s2 / np.float32(count) - mean * mean
        return mean.astype(np.float64), var.astype(np.float64)


def factory():
    return OnePassFloat32()
