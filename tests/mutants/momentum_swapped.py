"""Mistake: momentum applied the wrong way round.

MXNet keeps momentum of the old value: running <- running * m + batch * (1 - m).
PyTorch's momentum means the opposite (running <- running * (1 - m) + batch * m); carrying
that convention over weights the batch statistic with 0.9 instead of 0.1.
"""
import numpy as np

from backends.numpy_backend import NumpyBackend, to_dtype
from bnspec.flags import DTYPES
from bnspec.formats import FORMATS, round_float64

SELECT = "bwd and train and batchstats"
OUTPUTS = ("running_mean", "running_var")


class MomentumSwapped(NumpyBackend):
    name = "mutant-momentum-swapped"

    def update_running_stats(self, running_mean, running_var, mean, var, invstd, dtype,
                             eps, momentum):
        e = float(round_float64(eps, FORMATS[dtype]))
        m = float(np.float32(momentum))
        recovered = np.where(invstd == 0, np.inf, var + (e - eps))
        new_mean = running_mean.astype(np.float64) * (1 - m) + mean * m
        new_var = running_var.astype(np.float64) * (1 - m) + recovered * m
        param = DTYPES[dtype].param
        running_mean[...] = to_dtype(new_mean, param)
        running_var[...] = to_dtype(new_var, param)


def factory():
    return MomentumSwapped()
