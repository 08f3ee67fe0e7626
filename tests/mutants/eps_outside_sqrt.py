"""Mistake: eps added outside the square root, invstd = 1 / (sqrt(var) + eps).

The formula of some layer-norm code and of "std + eps" tutorials; MXNet uses
1 / sqrt(var + eps). The difference is about eps / (2 sqrt(var)) relative for var >> eps.
"""
import numpy as np

from backends.numpy_backend import NumpyBackend

SELECT = "fwd and (fp32 or fp64)"
OUTPUTS = ("y", "invstd", "dx", "dgamma", "running_var")


class EpsOutsideSqrt(NumpyBackend):
    name = "mutant-eps-outside-sqrt"

    def invstd(self, var, e):
        return 1.0 / (np.sqrt(var) + e)


def factory():
    return EpsOutsideSqrt()
