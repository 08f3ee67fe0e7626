"""Mistake: dgamma with the wrong sign: sum((mean - x) * dy) * invstd.

The centred input written the other way round in the gamma gradient only; dx and dbeta
are right.
"""
from backends.numpy_backend import NumpyBackend

SELECT = "bwd and freegamma"
OUTPUTS = ("dgamma",)


class DgammaSign(NumpyBackend):
    name = "mutant-dgamma-sign"

    def param_grads(self, sdy, dotp, invstd, fix_gamma):
        dgamma, dbeta = super().param_grads(sdy, dotp, invstd, fix_gamma)
        return -dgamma, dbeta


def factory():
    return DgammaSign()
