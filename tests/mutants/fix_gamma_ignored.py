"""Mistake: fix_gamma ignored.

gamma is used as given (so y is scaled by it and dgamma is its real gradient) and the gamma
array is not overwritten with ones; MXNet's default fix_gamma=True treats gamma as 1, sets
it to 1 in place and returns dgamma = 0.
"""
from backends.numpy_backend import NumpyBackend

SELECT = "fixgamma"
OUTPUTS = ("y", "dx", "dgamma")


class FixGammaIgnored(NumpyBackend):
    name = "mutant-fix-gamma-ignored"

    def forward(self, *args, fix_gamma, **kwargs):
        return super().forward(*args, fix_gamma=False, **kwargs)

    def backward(self, *args, fix_gamma, **kwargs):
        return super().backward(*args, fix_gamma=False, **kwargs)


def factory():
    return FixGammaIgnored()
