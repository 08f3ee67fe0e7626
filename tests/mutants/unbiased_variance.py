"""Mistake: normalising with the unbiased variance sum((x - mean)^2) / (M - 1).

MXNet divides by M (biased) for the normalisation; M - 1 is what np.var(ddof=1) and
torch.var give by default. y comes out too small by sqrt((M - 1)/M) (for var >> eps).
"""
from backends.numpy_backend import NumpyBackend

SELECT = "fwd and train and batchstats"
OUTPUTS = ("y", "invstd", "dx", "dgamma")


class UnbiasedVariance(NumpyBackend):
    name = "mutant-unbiased-variance"

    def batch_moments(self, xs):
        axes = tuple(range(xs.ndim - 1))
        return xs.mean(axis=axes), xs.var(axis=axes, ddof=1)


def factory():
    return UnbiasedVariance()
