"""Mistake: the channel axis is always 1 (an NCHW-only kernel that ignores `axis`).

Right for the default axis=1, wrong (or a shape error) for axis 0, the last axis, a middle
axis or a negative one.
"""
from backends.numpy_backend import NumpyBackend

SELECT = "fwd and not axis1"
OUTPUTS = ("y", "mean", "invstd", "ValueError")


class WrongAxis(NumpyBackend):
    name = "mutant-wrong-axis"

    def forward(self, *args, axis, **kwargs):
        return super().forward(*args, axis=1, **kwargs)

    def backward(self, *args, axis, **kwargs):
        return super().backward(*args, axis=1, **kwargs)


def factory():
    return WrongAxis()
