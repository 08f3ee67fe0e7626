"""Mistake: the running statistics are updated in forward (the PyTorch / cuDNN habit).

MXNet's CPU operator updates them in the backward pass; after a forward call alone they
must come back unchanged. A training step (forward + backward) ends with one update either
way, so backward is inherited and only forward cases can tell.
"""
from backends.numpy_backend import NumpyBackend, channels_last, ieee

SELECT = "fwd and train and batchstats"
OUTPUTS = ("running_mean", "running_var")


class RunningStatsInForward(NumpyBackend):
    name = "mutant-running-stats-in-forward"

    @ieee
    def forward(self, x, gamma, beta, running_mean, running_var, *, eps, momentum,
                use_global_stats, training, axis, **kwargs):
        out = super().forward(x, gamma, beta, running_mean, running_var, eps=eps,
                              momentum=momentum, use_global_stats=use_global_stats,
                              training=training, axis=axis, **kwargs)
        if training and not use_global_stats:
            dtype = out["y"].dtype.name
            xs = channels_last(x, axis % x.ndim)
            mean, var, invstd = self.statistics(xs, running_mean, running_var, dtype, eps,
                                                batch=True)
            self.update_running_stats(running_mean, running_var, mean, var, invstd, dtype,
                                      eps, momentum)
        return out


def factory():
    return RunningStatsInForward()
