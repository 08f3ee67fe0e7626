"""Mistake: the running statistics are updated in forward (the PyTorch / cuDNN habit).

MXNet's CPU operator updates them in the backward pass; after a forward call alone they
must come back unchanged. A training step (forward + backward) ends with one update either
way, so backward is inherited and only forward cases can tell.
"""
from ._stats_update import UpdatesInForward

SELECT = "fwd and train and batchstats"
OUTPUTS = ("running_mean", "running_var")


class RunningStatsInForward(UpdatesInForward):
    name = "mutant-running-stats-in-forward"


def factory():
    return RunningStatsInForward()
