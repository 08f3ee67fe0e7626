"""The property tier draws its scalars from the domain real callers use (property_draws)."""
import math

import numpy as np
from hypothesis import given, settings

from conformance import property_draws as draws
from conformance.adapter import Capabilities

CAPS = Capabilities()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(draws.problems(CAPS, "step"))
def test_scalars_and_shapes_are_in_the_callers_domain(problem):
    eps, momentum = problem.kwargs["eps"], problem.kwargs["momentum"]
    assert 1e-5 <= eps <= 1.0, eps  # no 0, no subnormal, nothing a parser refuses
    assert momentum == 0.0 or 2.0**-7 <= momentum <= 1.0, momentum
    for value in (eps, momentum):
        assert value == 0.0 or abs(value) >= np.finfo(np.float32).tiny, value
    x = problem.arrays["x"]
    channel = problem.kwargs["axis"] % x.ndim
    per_channel = math.prod(x.shape) // x.shape[channel]
    if problem.kwargs["training"] and not problem.kwargs["use_global_stats"]:
        assert per_channel >= 2, x.shape


def test_one_value_per_channel_is_widened_only_where_it_would_train():
    assert draws._two_per_channel((1, 3), 1) == (2, 3)
    assert draws._two_per_channel((3, 1, 1), 0) == (3, 2, 1)
    assert draws._two_per_channel((2, 3), -1) == (2, 3)
