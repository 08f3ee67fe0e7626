"""Mistake: the running statistics are updated in the wrong mode: whenever training, also
with use_global_stats.

With use_global_stats the operator normalises with the running statistics and MXNet leaves
them alone; an implementation that keys the update on `training` alone folds the batch
statistics in anyway.
"""
from backends.numpy_backend import NumpyBackend, ieee

from ._stats_update import fold_batch_stats

SELECT = "bwd and train and globalstats"
OUTPUTS = ("running_mean", "running_var")


class RunningStatsGlobalMode(NumpyBackend):
    name = "mutant-running-stats-global-mode"

    @ieee
    def backward(self, x, gamma, beta, running_mean, running_var, dy, *, eps, momentum,
                 use_global_stats, training, axis, **kwargs):
        out = super().backward(x, gamma, beta, running_mean, running_var, dy, eps=eps,
                               momentum=momentum, use_global_stats=use_global_stats,
                               training=training, axis=axis, **kwargs)
        if training and use_global_stats:  # the batch-stats case is updated by super()
            fold_batch_stats(self, x, running_mean, running_var, dtype=out["dx"].dtype.name,
                             eps=eps, momentum=momentum, axis=axis)
        return out


def factory():
    return RunningStatsGlobalMode()
