"""Backends that update the running statistics at another time than MXNet does.

MXNet folds the batch statistics into running_mean/running_var in the backward pass of a
training step with batch statistics. ``fold_batch_stats`` performs that update (the numpy
backend's own ``update_running_stats``) at any other point; ``UpdatesInForward`` makes it in
the forward pass of such a step instead (cuDNN's and PyTorch's habit), keeping the backward
pass as it is: a training step (forward + backward) still ends with one update.

Used by the mutants (tests/mutants: running_stats_in_forward, running_stats_global_mode) and
by the cuDNN-style backend of the profile tests (tests/conformance/profiled_backends.py).
"""
from backends.numpy_backend import NumpyBackend, channels_last, ieee


def fold_batch_stats(backend: NumpyBackend, x, running_mean, running_var, *, dtype: str,
                     eps: float, momentum: float, axis: int) -> None:
    """Return None; update running_mean/running_var in place with x's batch statistics, the
    way ``backend.update_running_stats`` does in its backward pass."""
    mean, var, invstd = backend.statistics(channels_last(x, axis % x.ndim), running_mean,
                                           running_var, dtype, eps, batch=True)
    backend.update_running_stats(running_mean, running_var, mean, var, invstd, dtype, eps,
                                 momentum)


class UpdatesInForward(NumpyBackend):
    """The numpy backend, updating the running statistics in the forward pass of a training
    step with batch statistics (and, inherited, in its backward pass)."""

    @ieee
    def forward(self, x, gamma, beta, running_mean, running_var, *, eps, momentum,
                use_global_stats, training, axis, **kwargs):
        out = super().forward(x, gamma, beta, running_mean, running_var, eps=eps,
                              momentum=momentum, use_global_stats=use_global_stats,
                              training=training, axis=axis, **kwargs)
        if training and not use_global_stats:
            fold_batch_stats(self, x, running_mean, running_var, dtype=out["y"].dtype.name,
                             eps=eps, momentum=momentum, axis=axis)
        return out
