"""Strategies and verdict helpers of the property tier (conformance/test_properties.py).

``problems`` draws a small valid call: dtype among the backend's, rank 2 to 4 with at most
``MAX_ELEMENTS`` elements, any axis (negative too), the four flags, eps and momentum from
the domain real callers use (``EPS_VALUES`` or a float32 in [2**-16, 1]; ``MOMENTUM_VALUES``
or a float32 in [2**-7, 1]), at least two elements per channel when training with batch
statistics, and data from one of ``FAMILIES`` (plain, small integers, a large offset, tiny
values, a constant, NaN and infinities).

The scalar domain is what frameworks accept as batch-norm arguments (cuDNN's
CUDNN_BN_MIN_EPSILON is 1e-5 and PyTorch refuses eps = 0 in training; MXNet parses its
parameters as strings and refuses subnormal values; PyTorch refuses one value per channel in
training). Extreme but valid scalars (eps = 0, subnormal eps or momentum, one element per
channel) stay in the golden cases and in the unusual-input tests (conformance/bad_inputs.py),
where each is a named case rather than a random draw.

``judge`` compares a backend's outputs with the oracle's; ``agree`` compares two outputs of
the backend with each other in the same tolerance model: if both are within the limit of
the same exact value, they are within twice the limit, in units of the larger of their two
condition scales, of each other. Both return ``conformance.compare.OutputResult``s.
"""
from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
from hypothesis import strategies as st

import oracle
from bnspec.flags import DEFAULT_EPS, DEFAULT_MOMENTUM, DTYPES, numpy_dtype
from bnspec.formats import FORMATS, round_float64
from oracle.api import Expected

from .bad_inputs import Call
from .checks import judge_outputs
from .compare import OutputResult, compare
from .tolerances import limit_for

MAX_ELEMENTS = 48
FAMILIES = ("normal", "integers", "offset", "tiny", "constant", "special")
EPS_VALUES = (DEFAULT_EPS, 1e-5, 0.1, 0.5, 1.0)
MOMENTUM_VALUES = (DEFAULT_MOMENTUM, 0.0, 1.0, 0.5, 0.99)
#: The ranges of the random eps and momentum draws (float32 values, see the module doc).
#: Bounds are float32 values: 2**-16 (1.5e-5, above cuDNN's minimum 1e-5) and 2**-7 (0.0078).
EPS_RANGE = (2.0**-16, 1.0)
MOMENTUM_RANGE = (2.0**-7, 1.0)


@dataclasses.dataclass
class Problem:
    """One drawn call: op ("forward" or "step"), its data dtype, arrays and kwargs."""

    op: str
    dtype: str
    arrays: dict
    kwargs: dict
    family: str

    def call(self) -> Call:
        """Return a fresh Call (copies of the arrays, cudnn_off added)."""
        return Call({k: np.array(v, copy=True) for k, v in self.arrays.items()},
                    {**self.kwargs, "cudnn_off": False})

    def replace(self, arrays=None, **kwargs) -> Problem:
        return dataclasses.replace(self, arrays={**self.arrays, **(arrays or {})},
                                   kwargs={**self.kwargs, **kwargs})

    @property
    def channel_axis(self) -> int:
        return self.kwargs["axis"] % self.arrays["x"].ndim

    @property
    def batch_axis(self) -> int:
        """The first axis that is not the channel axis."""
        return 0 if self.channel_axis != 0 else 1


def to_dtype(values, dtype: str) -> np.ndarray:
    """Return float64 values correctly rounded to an array of dtype."""
    return round_float64(np.asarray(values, dtype=np.float64),
                         FORMATS[dtype]).astype(numpy_dtype(dtype))


@st.composite
def family_values(draw, family: str, n: int) -> np.ndarray:
    """Return n float64 values of a data family (rounded to the dtype later)."""
    plain = st.floats(-4, 4, allow_nan=False, allow_infinity=False, width=32)
    if family == "integers":
        return np.array(draw(st.lists(st.integers(-8, 8), min_size=n, max_size=n)), float)
    if family == "constant":
        return np.full(n, draw(plain))
    values = np.array(draw(st.lists(plain, min_size=n, max_size=n)))
    if family == "offset":
        return values / 4 + draw(st.sampled_from([64.0, -1000.0, 3000.0]))
    if family == "tiny":
        return np.ldexp(values, -draw(st.integers(6, 30)))
    if family == "special":
        k = draw(st.integers(1, min(n, 3)))
        where = draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k))
        values[where] = draw(st.lists(st.sampled_from([math.nan, math.inf, -math.inf]),
                                      min_size=k, max_size=k))
    return values


@st.composite
def shapes(draw, min_rank: int = 2, max_rank: int = 4) -> tuple[int, ...]:
    rank = draw(st.integers(min_rank, max_rank))
    dims = draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank))
    while math.prod(dims) > MAX_ELEMENTS:
        dims[dims.index(max(dims))] -= 1
    return tuple(dims)


def _two_per_channel(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    """Return shape with its first non-channel dimension at least 2 where each channel would
    hold a single element (training callers never normalise one value per channel)."""
    channel = axis % len(shape)
    if math.prod(shape) // shape[channel] > 1:
        return shape
    dims = list(shape)
    other = 0 if channel != 0 else 1
    dims[other] = 2
    return tuple(dims)


@st.composite
def problems(draw, caps, op: str, *, min_rank: int = 2, max_rank: int = 4, families=FAMILIES,
             **fixed) -> Problem:
    """Return a Problem for a backend with capabilities caps; fixed pins kwargs (e.g.
    training=True) or the shape (shape=...)."""
    dtype = draw(st.sampled_from(sorted(d for d in caps.dtypes if d in DTYPES)))
    low = max(min_rank, caps.min_rank)
    high = min(max_rank, caps.max_rank or max_rank)
    shape = fixed.pop("shape", None) or draw(shapes(low, high))
    rank = len(shape)
    kwargs = {"axis": draw(st.integers(-rank, rank - 1)),
              "training": draw(st.booleans()), "fix_gamma": draw(st.booleans()),
              "use_global_stats": draw(st.booleans()), "output_mean_var": draw(st.booleans()),
              "eps": draw(st.sampled_from(EPS_VALUES) | st.floats(*EPS_RANGE, width=32)),
              "momentum": draw(st.sampled_from(MOMENTUM_VALUES)
                               | st.floats(*MOMENTUM_RANGE, width=32))}
    kwargs.update(fixed)
    if kwargs["training"] and not kwargs["use_global_stats"]:
        shape = _two_per_channel(shape, kwargs["axis"])
    family = draw(st.sampled_from(families))
    n, channels = math.prod(shape), shape[kwargs["axis"]]
    param = DTYPES[dtype].param
    arrays = {"x": to_dtype(draw(family_values(family, n)), dtype).reshape(shape)}
    signed = st.floats(-3, 3, width=32)
    for name, elements in (("gamma", signed), ("beta", signed), ("running_mean", signed),
                           ("running_var", st.floats(0, 4, width=32))):
        arrays[name] = to_dtype(draw(st.lists(elements, min_size=channels,
                                              max_size=channels)), param)
    if op == "step":
        arrays["dy"] = to_dtype(draw(family_values("normal", n)), dtype).reshape(shape)
    return Problem(op, dtype, arrays, kwargs, family)


def expected(problem: Problem, variants=()) -> dict[str, Expected]:
    """Return the oracle's outputs for the problem (its declared variants applied)."""
    a = problem.arrays
    return oracle.evaluate(a["x"], a["gamma"], a["beta"], a["running_mean"], a["running_var"],
                           a.get("dy") if problem.op == "step" else None,
                           variants=tuple(variants), **problem.kwargs)


def judge(problem: Problem, outputs: dict, want: dict, profile: str):
    """Return [(OutputResult, got, Expected)] for every output the oracle gives."""
    case = SimpleNamespace(expected=want, dtype=problem.dtype)
    return judge_outputs(case, outputs, list(want), profile)


def agree(name: str, got_a, got_b, want_a: Expected, want_b: Expected, dtype: str,
          profile: str) -> tuple[OutputResult, object, Expected]:
    """Return (verdict, got_b, reference): got_b judged against got_a (as the value) with
    twice the output's limit and the larger condition scale of the two exact answers. All
    arrays are in the same layout."""
    a = np.asarray(got_a).astype(np.float64) if got_a is not None else np.full(want_a.shape,
                                                                               np.nan)
    cond = np.fmax(want_a.cond, want_b.cond)
    reference = Expected(name, want_a.dtype, a, np.zeros_like(a), a.copy(), cond)
    limit = 2 * limit_for(profile, name, dtype).units
    return compare(name, got_b, reference, limit), got_b, reference
