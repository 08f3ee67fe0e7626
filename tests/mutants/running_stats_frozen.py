"""Mistake: the running statistics are never updated.

An implementation that computes the batch statistics for the output but forgets the
moving-average update (or updates a copy). MXNet updates them in the backward pass of a
training step with batch statistics.
"""
from backends.numpy_backend import NumpyBackend

SELECT = "bwd and train and batchstats"
OUTPUTS = ("running_mean", "running_var")


class RunningStatsFrozen(NumpyBackend):
    name = "mutant-running-stats-frozen"

    def update_running_stats(self, running_mean, running_var, mean, var, invstd, dtype,
                             eps, momentum):
        pass


def factory():
    return RunningStatsFrozen()
