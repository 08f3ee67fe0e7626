"""Backends for the semantic-profile tests: the numpy backend following the cuDNN path.

``CudnnStyle`` updates the running statistics in the forward pass of a training step with
batch statistics, with the unbiased batch variance (running_var <- running_var * m +
sum((x - mean)^2) / (M - 1) * (1 - m)), as cuDNN does; a training step (forward +
backward) ends with that one update. ``declared`` states it in Capabilities.profile,
``undeclared`` does not, ``unknown`` names a variant the oracle does not have, and
``eps_floor_declared`` is the plain numpy backend declaring a variant it can never show on
cases with eps >= 1e-5.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from backends.numpy_backend import NumpyBackend, to_dtype
from bnspec.flags import DTYPES
from tests.mutants._stats_update import UpdatesInForward

CUDNN = ("running_var_unbiased", "stats_updated_in_forward")


class CudnnStyle(UpdatesInForward):
    name = "cudnn-style"
    capabilities = dataclasses.replace(NumpyBackend.capabilities, profile=CUDNN)

    def batch_moments(self, xs):
        self.count = xs.size // xs.shape[-1]  # M, for the unbiased update
        return super().batch_moments(xs)

    def update_running_stats(self, running_mean, running_var, mean, var, invstd, dtype,
                             eps, momentum):
        m = float(np.float32(momentum))
        unbiased = var * self.count / (self.count - 1) if self.count > 1 else var * np.nan
        param = DTYPES[dtype].param
        new_mean = running_mean.astype(np.float64) * m + mean * (1 - m)
        new_var = running_var.astype(np.float64) * m + unbiased * (1 - m)
        running_mean[...] = to_dtype(new_mean, param)
        running_var[...] = to_dtype(new_var, param)


class Undeclared(CudnnStyle):
    name = "cudnn-undeclared"
    capabilities = dataclasses.replace(NumpyBackend.capabilities, profile=())


class Unknown(NumpyBackend):
    name = "unknown-profile"
    capabilities = dataclasses.replace(NumpyBackend.capabilities,
                                       profile=("no_such_variant",))


class EpsFloorDeclared(NumpyBackend):
    name = "eps-floor-declared"
    capabilities = dataclasses.replace(NumpyBackend.capabilities, profile=("eps_min_1e-5",))


def declared():
    return CudnnStyle()


def undeclared():
    return Undeclared()


def unknown():
    return Unknown()


def eps_floor_declared():
    return EpsFloorDeclared()
