"""The coverage plan: which golden cases exist, as ``CaseSpec`` records.

``default_plan()`` returns, deduplicated by id and sorted:

A. baseline: 16 flag combinations x 4 dtypes x {fwd, bwd} x ranks 2..5, axis 1, normal data,
   default eps/momentum (512);
B. axes: every other (rank, axis class) x dtype x op x two modes (training with batch stats,
   inference);
C. families: every data family x dtype x op x three modes (batch stats, global stats in
   training, inference); ``long`` (65,600 elements per channel, the size budget) only in
   training with batch stats;
D. eps {default, 1e-5, 0, 1} x dtype x op x two modes, plus eps = 0 (and 1e-5) on constant,
   one-element and tiny-variance channels; E. momentum {0.9, 0, 1} x dtype x op;
F. cudnn_off = True x dtype x op x three modes;
G. all-pairs completion: cases added greedily until every pair of values of any two of the
   PAIRWISE parameters appears in some case (``uncovered_pairs`` is then empty); with the
   greedy choices of A-F it currently has nothing left to add, but it keeps the guarantee
   when the phases change;
H. invalid inputs (op ``err``), see ``ERROR_CASES``;
I. shapes whose every axis has the channel count (``EQUAL_EXTENT``), so a wrong axis gives
   wrong numbers rather than a shape error.

Q. The quantized path (op ``qnt``) is planned apart, by ``quantized_plan()`` (joined by
   oracle.generate): every flag combination (all accepted, none changes the result), the
   range classes of oracle.quantized_inputs.RANGES, saturation, exact ties, ranks and axes,
   eps values, SIMD-tail channel counts, int8 and uint8 data, and invalid calls
   (``QUANTIZED_ERROR_CASES``).

Free parameters of A-F (those a phase does not fix) are chosen greedily to cover new pairs
(AETG-style: per parameter, the value completing the most uncovered pairs, ties to the least
used value), so the whole plan is all-pairs with few extra cases.

The four flags count as four two-valued parameters for the pairwise criterion; their 16
combinations are crossed in full with dtype and op (and rank) in phase A.
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

from bnspec.flags import (ALL_FLAGS, AXIS_CLASSES, DEFAULT_EPS, DEFAULT_MOMENTUM, DTYPES, Flags,
                          axis_class_of, axis_for_class, case_id, error_case_id, shape_token)

from .casefile import ErrorSpec
from .inputs import FAMILIES

DEFAULT_SEED = 1
EPS_VALUES = (DEFAULT_EPS, 1e-5, 0.0, 1.0)
MOMENTUM_VALUES = (DEFAULT_MOMENTUM, 0.0, 1.0)
RANKS = (2, 3, 4, 5)
OPS = ("fwd", "bwd")
#: Non-channel dimensions of the small default shapes, by rank (every M even: small_int and
#: bf16_rounding need pairs).
OTHER_DIMS = {2: (4,), 3: (2, 5), 4: (2, 2, 3), 5: (2, 2, 2, 2)}
DEFAULT_CHANNELS = 3
#: long: M = 65,600 > 65,536 elements in one channel (C = 1 keeps cases/ under 30 MB).
LONG_OTHER_DIMS = {2: (65600,), 3: (16, 4100), 4: (4, 16, 1025), 5: (4, 4, 4, 1025)}
#: channels family: 1, 3, and one past the 8-, 16- and 32-lane SIMD widths.
CHANNEL_COUNTS = (1, 3, 9, 17, 33)
#: special family: one channel per role of oracle.inputs.SPECIAL_ROLES.
SPECIAL_CHANNELS = 6

PAIRWISE: dict[str, tuple] = {
    "op": OPS,
    "training": (True, False),
    "fix_gamma": (True, False),
    "use_global_stats": (True, False),
    "output_mean_var": (True, False),
    "dtype": tuple(DTYPES),
    "rank": RANKS,
    "axis_class": AXIS_CLASSES,
    "eps": EPS_VALUES,
    "momentum": MOMENTUM_VALUES,
    "cudnn_off": (False, True),
    "family": tuple(FAMILIES),
}
FLAG_NAMES = ("training", "fix_gamma", "use_global_stats", "output_mean_var")


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


# --- shapes -------------------------------------------------------------------------------


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


# --- pairwise -----------------------------------------------------------------------------

_NAMES = tuple(PAIRWISE)


def compatible(values: dict) -> bool:
    """Return True unless rank and axis class are both given and do not go together."""
    if "rank" in values and "axis_class" in values:
        return values["axis_class"] in axis_classes(values["rank"])
    return True


def _pair(p: str, v, q: str, w):
    return ((p, v), (q, w)) if _NAMES.index(p) < _NAMES.index(q) else ((q, w), (p, v))


def all_pairs() -> set:
    """Return every feasible pair of (parameter, value) of two different PAIRWISE parameters."""
    out = set()
    for p, q in itertools.combinations(_NAMES, 2):
        for v in PAIRWISE[p]:
            for w in PAIRWISE[q]:
                if compatible({p: v, q: w}):
                    out.add(_pair(p, v, q, w))
    return out


def pairs_of(values: dict) -> set:
    """Return the pairs a full assignment covers."""
    return {_pair(p, values[p], q, values[q]) for p, q in itertools.combinations(_NAMES, 2)}


def uncovered_pairs(specs) -> set:
    """Return the feasible pairs no fwd/bwd spec in specs covers."""
    left = all_pairs()
    for s in specs:
        if s.op in OPS:
            left -= pairs_of(s.pairwise_values())
    return left


class _Planner:
    """Greedy all-pairs bookkeeping: completes partial assignments and collects specs."""

    def __init__(self):
        self.uncovered = all_pairs()
        self.usage: Counter = Counter()
        self.specs: dict[str, CaseSpec] = {}
        self.channel_turn = 0

    def gain(self, values: dict, p: str, v) -> int:
        return sum(_pair(p, v, q, w) in self.uncovered for q, w in values.items() if q != p)

    def complete(self, fixed: dict, allow_long: bool = False) -> dict:
        values = {k: v for k, v in fixed.items() if k in PAIRWISE}
        for p in _NAMES:
            if p in values:
                continue
            options = [v for v in PAIRWISE[p] if compatible({**values, p: v})
                       and not (p == "family" and v == "long" and not allow_long)]
            values[p] = max(options, key=lambda v: (self.gain(values, p, v),
                                                    -self.usage[(p, v)],
                                                    -options.index(v)))
        return values

    def add(self, fixed: dict, allow_long: bool = False) -> CaseSpec:
        values = self.complete(fixed, allow_long or fixed.get("family") == "long")
        channels = fixed.get("channels")
        if values["family"] == "channels" and channels is None:
            channels = CHANNEL_COUNTS[self.channel_turn % len(CHANNEL_COUNTS)]
            self.channel_turn += 1
        spec = realize(values, channels)
        if spec.id not in self.specs:
            self.specs[spec.id] = spec
            self.uncovered -= pairs_of(values)
            self.usage.update(values.items())
        return spec

    def cover_rest(self) -> None:
        while self.uncovered:
            (p, v), (q, w) = min(self.uncovered, key=_pair_order)
            self.add({p: v, q: w}, allow_long=("family", "long") in ((p, v), (q, w)))


def _pair_order(pair):
    return tuple((_NAMES.index(p), PAIRWISE[p].index(v)) for p, v in pair)


def realize(values: dict, channels: int | None = None, seed: int = DEFAULT_SEED) -> CaseSpec:
    """Return the CaseSpec of a full assignment of the PAIRWISE parameters."""
    rank, family = values["rank"], values["family"]
    axis = axis_for_class(values["axis_class"], rank)
    flags = Flags(*(values[n] for n in FLAG_NAMES))
    shape = shape_for(family, rank, axis, channels)
    cid = case_id(values["op"], flags, axis, values["dtype"], shape, family,
                  eps=values["eps"], momentum=values["momentum"], cudnn_off=values["cudnn_off"])
    return CaseSpec(id=cid, op=values["op"], family=family, dtype=values["dtype"], shape=shape,
                    axis=axis, flags=flags, eps=values["eps"], momentum=values["momentum"],
                    cudnn_off=values["cudnn_off"], seed=seed)


def _flag_values(flags: Flags) -> dict:
    return {n: getattr(flags, n) for n in FLAG_NAMES}


TRAIN_BATCH = Flags(training=True, fix_gamma=False, use_global_stats=False, output_mean_var=True)
TRAIN_GLOBAL = Flags(training=True, fix_gamma=False, use_global_stats=True, output_mean_var=False)
INFER = Flags(training=False, fix_gamma=True, use_global_stats=False, output_mean_var=False)
INFER_GLOBAL = Flags(training=False, fix_gamma=False, use_global_stats=True, output_mean_var=True)


def default_plan() -> list[CaseSpec]:
    """Return the default golden cases (phases A-H of the module docstring), sorted by id."""
    plan = _Planner()
    dt_ops = list(itertools.product(DTYPES, OPS))
    defaults = {"eps": DEFAULT_EPS, "momentum": DEFAULT_MOMENTUM, "cudnn_off": False}
    for flags, (dtype, op), rank in itertools.product(ALL_FLAGS, dt_ops, RANKS):  # A
        plan.add(dict(_flag_values(flags), dtype=dtype, op=op, rank=rank, family="normal",
                      axis_class=axis_class_of(1, rank), **defaults))
    for rank in RANKS:  # B
        for cls in axis_classes(rank):
            if axis_for_class(cls, rank) == 1:
                continue
            for (dtype, op), flags in itertools.product(dt_ops, (TRAIN_BATCH, INFER)):
                plan.add(dict(_flag_values(flags), dtype=dtype, op=op, rank=rank,
                              axis_class=cls, family="normal"))
    for family in FAMILIES:  # C
        modes = (TRAIN_BATCH,) if family == "long" else (TRAIN_BATCH, TRAIN_GLOBAL, INFER)
        for i, ((dtype, op), flags) in enumerate(itertools.product(dt_ops, modes)):
            fixed = {"dtype": dtype, "op": op, "family": family, "training": flags.training,
                         "use_global_stats": flags.use_global_stats}
            if family != "long":
                fixed.update(_flag_values(flags))
            if family == "channels":
                fixed["channels"] = CHANNEL_COUNTS[i % len(CHANNEL_COUNTS)]
            plan.add(fixed)
    # long in running-stats mode (no reduction: only for the pairs), in the smallest dtype.
    plan.add(dict(_flag_values(INFER_GLOBAL), dtype="float16", op="fwd", family="long"))
    for eps, (dtype, op), flags in itertools.product(EPS_VALUES, dt_ops, (TRAIN_BATCH, INFER_GLOBAL)):
        plan.add(dict(_flag_values(flags), eps=eps, dtype=dtype, op=op, family="normal"))  # D
    for family, eps in (("constant", 0.0), ("one_per_channel", 0.0), ("tiny_var", 0.0),
                        ("tiny_var", 1e-5)):
        for dtype, op in dt_ops:
            plan.add(dict(_flag_values(TRAIN_BATCH), eps=eps, dtype=dtype, op=op, family=family))
    for momentum, (dtype, op) in itertools.product(MOMENTUM_VALUES, dt_ops):  # E
        plan.add(dict(_flag_values(TRAIN_BATCH), momentum=momentum, dtype=dtype, op=op,
                      family="normal"))
    for (dtype, op), flags in itertools.product(dt_ops, (TRAIN_BATCH, TRAIN_GLOBAL, INFER)):
        plan.add(dict(_flag_values(flags), cudnn_off=True, dtype=dtype, op=op))  # F
    plan.cover_rest()  # G
    specs = list(plan.specs.values()) + error_specs() + equal_extent_specs()  # H, I
    return sorted(specs, key=lambda s: s.id)


#: Phase I: every axis of the same length as the channel axis, so that normalising over the
#: wrong axis gives wrong numbers rather than a shape error.
EQUAL_EXTENT = (((3, 3, 3), 0), ((3, 3, 3), 2), ((3, 3, 3, 3), 3), ((3, 3, 3, 3), -2))


def equal_extent_specs() -> list[CaseSpec]:
    """Return phase I: training steps and forwards on shapes whose axes all have C entries."""
    out = []
    for (shape, axis), (dtype, op) in itertools.product(EQUAL_EXTENT,
                                                        itertools.product(DTYPES, OPS)):
        cid = case_id(op, TRAIN_BATCH, axis, dtype, shape, "normal")
        out.append(CaseSpec(id=cid, op=op, family="normal", dtype=dtype, shape=shape, axis=axis,
                            flags=TRAIN_BATCH, eps=DEFAULT_EPS, momentum=DEFAULT_MOMENTUM,
                            cudnn_off=False, seed=DEFAULT_SEED))
    return out



def parse_flag_tokens(text: str | None) -> tuple[Flags, ...]:
    """Return the flag combinations selected by ``all`` or comma-separated tokens (train,
    infer, fixgamma, freegamma, globalstats, batchstats, meanvar, nomeanvar): those whose
    tokens include every given token."""
    if text is None or text.strip() in ("", "all"):
        return ALL_FLAGS
    wanted = {t.strip() for t in text.split(",") if t.strip()}
    known = {t for f in ALL_FLAGS for t in f.tokens}
    unknown = wanted - known
    if unknown:
        raise ValueError(f"flags={text!r}: unknown tokens {sorted(unknown)}, use {sorted(known)}")
    chosen = tuple(f for f in ALL_FLAGS if wanted <= set(f.tokens))
    if not chosen:
        raise ValueError(f"flags={text!r} selects no combination (contradictory tokens)")
    return chosen


def user_plan(shape, dtype: str, axis: int, *, family: str = "normal", flags: str | None = None,
              eps: float = DEFAULT_EPS, momentum: float = DEFAULT_MOMENTUM,
              ops=OPS, seed: int = DEFAULT_SEED) -> list[CaseSpec]:
    """Return the cases of a user's own shape: the selected flag combinations x fwd/bwd."""
    shape = tuple(int(n) for n in shape)
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {list(DTYPES)}")
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not one of {sorted(FAMILIES)}")
    if len(shape) < 2 or any(n < 1 for n in shape):
        raise ValueError(f"shape={shape!r} must have rank >= 2 and no empty dimension")
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"axis={axis!r} is out of range for shape={shape!r}")
    out = []
    for op, f in itertools.product(ops, parse_flag_tokens(flags)):
        cid = case_id(op, f, axis, dtype, shape, family, eps=eps, momentum=momentum)
        out.append(CaseSpec(id=cid, op=op, family=family, dtype=dtype, shape=shape, axis=axis,
                            flags=f, eps=float(eps), momentum=float(momentum), seed=seed))
    return sorted(out, key=lambda s: s.id)


# --- error cases --------------------------------------------------------------------------

#: (defect, tag, dtype, shape, axis, eps, momentum, exception, match). Defects that change an
#: input are applied by oracle.generate.error_inputs; axis/eps/momentum defects are the values.
ERROR_CASES = (
    *((f"{p}_length", tag, "float32", (4, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", p)
      for p in ("gamma", "beta", "running_mean", "running_var") for tag in ("long", "short")),
    ("gamma_length", "long", "float16", (2, 3, 2, 5), -1, DEFAULT_EPS, DEFAULT_MOMENTUM,
     "ValueError", "gamma"),
    ("running_var_length", "short", "float64", (2, 5, 3), 0, DEFAULT_EPS, DEFAULT_MOMENTUM,
     "ValueError", "running_var"),
    ("axis_range", "pos", "float32", (4, 3), 2, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", "axis"),
    ("axis_range", "neg", "float32", (4, 3), -3, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", "axis"),
    ("axis_range", "pos", "float64", (2, 3, 2, 5), 4, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError",
     "axis"),
    ("axis_range", "neg", "float16", (2, 3, 2, 5), -5, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError",
     "axis"),
    ("rank", "", "float32", (5,), 0, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", "x.ndim"),
    ("rank", "", "float16", (5,), 0, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", "x.ndim"),
    ("rank", "", "float32", (), 0, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", "x.ndim"),
    ("empty", "", "float32", (0, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", "x.shape"),
    ("empty", "", "float64", (2, 0, 4), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", "x.shape"),
    ("x_dtype", "", "int32", (4, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "TypeError", "x.dtype"),
    ("x_dtype", "", "bool", (4, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "TypeError", "x.dtype"),
    ("x_dtype", "", "uint8", (2, 3, 2), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "TypeError", "x.dtype"),
    ("param_dtype", "f16params", "float16", (4, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "TypeError",
     "gamma"),
    ("param_dtype", "bf16params", "bfloat16", (4, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM,
     "TypeError", "gamma"),
    ("param_dtype", "f64params", "float32", (4, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "TypeError",
     "gamma"),
    ("param_dtype", "f32params", "float64", (4, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "TypeError",
     "gamma"),
    ("dy_shape", "", "float32", (4, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", "dy"),
    ("dy_shape", "", "float16", (2, 3, 2, 5), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "ValueError", "dy"),
    ("dy_dtype", "", "float32", (4, 3), 1, DEFAULT_EPS, DEFAULT_MOMENTUM, "TypeError", "dy"),
    ("eps", "negative", "float32", (4, 3), 1, -1e-3, DEFAULT_MOMENTUM, "ValueError", "eps"),
    ("eps", "nan", "float32", (4, 3), 1, float("nan"), DEFAULT_MOMENTUM, "ValueError", "eps"),
    ("eps", "neginf", "float64", (4, 3), 1, float("-inf"), DEFAULT_MOMENTUM, "ValueError", "eps"),
    ("momentum", "inf", "float32", (4, 3), 1, DEFAULT_EPS, float("inf"), "ValueError", "momentum"),
    ("momentum", "neginf", "float16", (4, 3), 1, DEFAULT_EPS, float("-inf"), "ValueError",
     "momentum"),
    ("momentum", "nan", "float32", (4, 3), 1, DEFAULT_EPS, float("nan"), "ValueError", "momentum"),
)


def error_specs() -> list[CaseSpec]:
    """Return the invalid-input cases of ERROR_CASES (op 'err', a training step's flags)."""
    flags = Flags(training=True, fix_gamma=False, use_global_stats=False, output_mean_var=False)
    out = []
    for defect, tag, dtype, shape, axis, eps, momentum, exc, match in ERROR_CASES:
        cid = error_case_id(defect, dtype, shape, tag)
        out.append(CaseSpec(id=cid, op="err", family="normal", dtype=dtype, shape=tuple(shape),
                            axis=axis, flags=flags, eps=eps, momentum=momentum,
                            error=ErrorSpec(exc, match), defect=defect + (f":{tag}" if tag else "")))
    return out


# --- the quantized path (phase Q) -------------------------------------------------------------

#: The quantized operator's defaults: inference, fix_gamma (MXNet's default; no effect here).
QUANTIZED_FLAGS = Flags(training=False, fix_gamma=True, use_global_stats=False,
                        output_mean_var=False)
QUANTIZED_SHAPE = (2, 3, 4, 4)
QUANTIZED_DTYPE_NAMES = ("int8", "uint8")


def _qspec(dtype, shape, axis, family, ranges, *, flags=QUANTIZED_FLAGS, eps=DEFAULT_EPS):
    from .quantized_inputs import RANGES

    shape = tuple(shape)
    cid = case_id("qnt", flags, axis, dtype, shape, family, eps=eps, tag=ranges)
    return CaseSpec(id=cid, op="qnt", family=family, dtype=dtype, shape=shape, axis=axis,
                    flags=flags, eps=eps, quantized=RANGES[ranges].values, ranges=ranges)


def quantized_plan() -> list[CaseSpec]:
    """Return phase Q: the quantized golden cases (valid and invalid), sorted by id."""
    specs = []
    for flags, dtype in itertools.product(ALL_FLAGS, QUANTIZED_DTYPE_NAMES):  # every flag
        specs.append(_qspec(dtype, QUANTIZED_SHAPE, 1, "qnormal", "sym", flags=flags))
    for ranges, dtype in itertools.product(("onesided", "asym", "negonly", "huge", "zerodata"),
                                           QUANTIZED_DTYPE_NAMES):
        specs.append(_qspec(dtype, QUANTIZED_SHAPE, 1, "qnormal", ranges))
    for dtype in QUANTIZED_DTYPE_NAMES:
        specs.append(_qspec(dtype, QUANTIZED_SHAPE, 1, "qnormal", "tiny", eps=0.0))
        specs.append(_qspec(dtype, QUANTIZED_SHAPE, 1, "qnormal", "tiny"))
        for ranges in ("sym", "onesided"):
            specs.append(_qspec(dtype, QUANTIZED_SHAPE, 1, "qsaturate", ranges))
        specs.append(_qspec(dtype, QUANTIZED_SHAPE, 1, "qconstant", "asym"))
        specs.append(_qspec(dtype, (2, 4, 8, 4), 1, "qties", "unit", eps=0.0))
        for eps in (1e-5, 0.0, 0.5, 2.0):
            specs.append(_qspec(dtype, QUANTIZED_SHAPE, 1, "qnormal", "asym", eps=eps))
    for rank, cls in ((2, "first"), (2, "negative"), (3, "first"), (3, "middle"), (3, "last"),
                      (4, "first"), (4, "middle"), (4, "last"), (4, "negative"),
                      (5, "first"), (5, "middle"), (5, "last"), (5, "negative"),
                      (2, "one"), (3, "one"), (5, "one")):
        if cls not in axis_classes(rank):  # e.g. "middle" of rank 3 is axis 1 ("one")
            continue
        axis = axis_for_class(cls, rank)
        for dtype in QUANTIZED_DTYPE_NAMES[: 2 if cls in ("last", "one") else 1]:
            specs.append(_qspec(dtype, shape_for("normal", rank, axis), axis, "qnormal", "sym"))
    for channels in (1, 9, 17, 33):  # one channel, and one past the 8-, 16-, 32-lane widths
        specs.append(_qspec("int8", (3, channels, 5), 1, "qnormal", "asym"))
        specs.append(_qspec("uint8", (3, 7, channels), -1, "qnormal", "onesided"))
    specs.append(_qspec("int8", (2, 17, 9, 15), 1, "qnormal", "sym"))  # > 4096: sidecar
    specs.append(_qspec("uint8", (2, 9, 15, 17), -1, "qsaturate", "onesided"))
    return sorted(specs + quantized_error_specs(), key=lambda s: s.id)


#: Invalid calls of the quantized path: (defect, dtype, shape, axis, eps, (min_data,
#: max_data, min_calib_range, max_calib_range), exception, match). Defects that change an
#: input are applied by oracle.generate.quantized_error_inputs.
QUANTIZED_ERROR_CASES = (
    ("calib_only_min", "int8", (2, 3), 1, DEFAULT_EPS, (-1.0, 1.0, -2.0, None), "ValueError",
     "max_calib_range"),
    ("calib_only_max", "uint8", (2, 3, 4), 1, DEFAULT_EPS, (0.0, 1.0, None, 2.0), "ValueError",
     "min_calib_range"),
    ("calib_none", "int8", (2, 3), 1, DEFAULT_EPS, (-1.0, 1.0, None, None), "ValueError",
     "min_calib_range"),
    ("calib_order", "int8", (2, 3), 1, DEFAULT_EPS, (-1.0, 1.0, 2.0, 1.0), "ValueError",
     "min_calib_range"),
    ("calib_order", "uint8", (2, 3, 2, 2), 1, DEFAULT_EPS, (0.0, 1.0, 2.0**-30, -(2.0**-30)),
     "ValueError", "min_calib_range"),
    ("x_float", "float32", (2, 3), 1, DEFAULT_EPS, (-1.0, 1.0, -2.0, 2.0), "TypeError",
     "x.dtype"),
    ("x_float", "float16", (2, 3, 4), 1, DEFAULT_EPS, (-1.0, 1.0, -2.0, 2.0), "TypeError",
     "x.dtype"),
    ("x_dtype", "int32", (2, 3), 1, DEFAULT_EPS, (-1.0, 1.0, -2.0, 2.0), "TypeError", "x.dtype"),
    ("param_dtype", "int8", (2, 3), 1, DEFAULT_EPS, (-1.0, 1.0, -2.0, 2.0), "TypeError",
     "gamma"),
    ("gamma_length", "int8", (2, 3), 1, DEFAULT_EPS, (-1.0, 1.0, -2.0, 2.0), "ValueError",
     "gamma"),
    ("axis_range", "uint8", (2, 3), 2, DEFAULT_EPS, (0.0, 1.0, -2.0, 2.0), "ValueError", "axis"),
    ("rank", "int8", (5,), 0, DEFAULT_EPS, (-1.0, 1.0, -2.0, 2.0), "ValueError", "x.ndim"),
    ("eps", "int8", (2, 3), 1, -1e-3, (-1.0, 1.0, -2.0, 2.0), "ValueError", "eps"),
)


def quantized_error_specs() -> list[CaseSpec]:
    """Return the invalid quantized calls of QUANTIZED_ERROR_CASES (op 'qnt' with an error)."""
    out = []
    for defect, dtype, shape, axis, eps, ranges, exc, match in QUANTIZED_ERROR_CASES:
        cid = error_case_id(defect, dtype, shape, op="qnt")
        out.append(CaseSpec(id=cid, op="qnt", family="qnormal", dtype=dtype, shape=tuple(shape),
                            axis=axis, flags=QUANTIZED_FLAGS, eps=eps, error=ErrorSpec(exc, match),
                            defect=defect, quantized=ranges))
    return out
