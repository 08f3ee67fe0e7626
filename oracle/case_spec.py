"""A planned golden case (``CaseSpec``) and the shapes the plan gives it.

The phases of the plan (``oracle.plan``: A-I, ``oracle.plan_errors``: invalid inputs,
``oracle.plan_quantized``: the quantized path) each return ``CaseSpec`` records;
``oracle.generate`` turns each into inputs, expected values and a case file.
"""
from __future__ import annotations

from dataclasses import dataclass

from bnspec.flags import (AXIS_CLASSES, DEFAULT_EPS, DEFAULT_MOMENTUM, FLAG_NAMES, Flags,
                          axis_class_of, axis_for_class, shape_token)

from .casefile import ErrorSpec

DEFAULT_SEED = 1
#: Non-channel dimensions of the small default shapes, by rank (every M even: small_int and
#: bf16_rounding need pairs).
OTHER_DIMS = {2: (4,), 3: (2, 5), 4: (2, 2, 3), 5: (2, 2, 2, 2)}
DEFAULT_CHANNELS = 3
#: long: M = 65,600 > 65,536 elements in one channel (C = 1 keeps cases/ under 30 MB).
LONG_OTHER_DIMS = {2: (65600,), 3: (16, 4100), 4: (4, 16, 1025), 5: (4, 4, 4, 1025)}
#: special family: one channel per role of oracle.inputs.SPECIAL_ROLES.
SPECIAL_CHANNELS = 6


@dataclass(frozen=True)
class CaseSpec:
    """One planned case: everything needed to build its inputs and expected outputs."""

    id: str
    op: str
    family: str
    dtype: str
    shape: tuple
    axis: int
    flags: Flags
    eps: float = DEFAULT_EPS
    momentum: float = DEFAULT_MOMENTUM
    cudnn_off: bool = False
    seed: int = DEFAULT_SEED
    error: ErrorSpec | None = None
    defect: str = ""  # err cases: the name in DEFECTS of what makes the input invalid
    #: qnt cases: (min_data, max_data, min_calib_range, max_calib_range), None = not given
    quantized: tuple | None = None
    ranges: str = ""  # qnt cases: the range class (oracle.quantized_inputs.RANGES)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def axis_class(self) -> str:
        return axis_class_of(self.axis, self.rank)

    @property
    def elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n

    @property
    def summary(self) -> str:
        """One line that says what the case is, e.g. ``float32 4x3 axis=1, training, ...``."""
        head = f"{self.dtype} {shape_token(self.shape)} axis={self.axis}"
        if self.op == "err" or (self.op == "qnt" and self.error is not None):
            return f"{head}: invalid input ({self.defect}), expect {self.error.exception}"
        if self.op == "qnt":
            lo, hi, clo, chi = self.quantized
            text = (f"{head}, quantized: data range [{lo!r}, {hi!r}], calibration range "
                    f"[{clo!r}, {chi!r}] ({self.ranges}), {self.family} data")
            if self.eps != DEFAULT_EPS:
                text += f", eps={self.eps!r}"
            return text + f", flags (no effect): {self.flags.label}"
        f = self.flags
        parts = [head, "training" if f.training else "inference",
                 "fix_gamma" if f.fix_gamma else "free gamma",
                 "global stats" if f.use_global_stats else "batch stats",
                 "mean/invstd out" if f.output_mean_var else "no mean/invstd out",
                 f"{self.family} data", "forward" if self.op == "fwd" else "forward + backward"]
        if self.eps != DEFAULT_EPS:
            parts.append(f"eps={self.eps!r}")
        if self.momentum != DEFAULT_MOMENTUM:
            parts.append(f"momentum={self.momentum!r}")
        if self.cudnn_off:
            parts.append("cudnn_off")
        return ", ".join(parts)

    def pairwise_values(self) -> dict:
        """Return this case's value of every PAIRWISE parameter."""
        return dict(op=self.op, **{n: getattr(self.flags, n) for n in FLAG_NAMES},
                    dtype=self.dtype, rank=self.rank, axis_class=self.axis_class, eps=self.eps,
                    momentum=self.momentum, cudnn_off=self.cudnn_off, family=self.family)


def insert_channel(others: tuple, axis: int, channels: int) -> tuple:
    """Return the shape with `channels` inserted at position axis (negative counts from the
    end of the result)."""
    rank = len(others) + 1
    ax = axis % rank
    return tuple(others[:ax]) + (channels,) + tuple(others[ax:])


def shape_for(family: str, rank: int, axis: int, channels: int | None = None) -> tuple:
    """Return the planned shape of a family's case of this rank and channel axis."""
    if family == "long":
        return insert_channel(LONG_OTHER_DIMS[rank], axis, 1)
    if family == "one_per_channel":
        return insert_channel((1,) * (rank - 1), axis, channels or DEFAULT_CHANNELS)
    if family == "special":
        channels = channels or SPECIAL_CHANNELS
    return insert_channel(OTHER_DIMS[rank], axis, channels or DEFAULT_CHANNELS)


def axis_classes(rank: int) -> tuple[str, ...]:
    """Return the axis classes that exist as distinct axes of a rank (first, one, ...)."""
    return tuple(c for c in AXIS_CLASSES
                 if axis_for_class(c, rank) is not None
                 and axis_class_of(axis_for_class(c, rank), rank) == c)
