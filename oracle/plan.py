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
H. invalid inputs (op ``err``), see ``oracle.plan_errors.ERROR_CASES``;
I. shapes whose every axis has the channel count (``EQUAL_EXTENT``), so a wrong axis gives
   wrong numbers rather than a shape error.

Q. The quantized path (op ``qnt``) is planned apart, by
   ``oracle.plan_quantized.quantized_plan()`` (joined by oracle.generate).

The record of one planned case and its shapes: ``oracle.case_spec``.

Free parameters of A-F (those a phase does not fix) are chosen greedily to cover new pairs
(AETG-style: per parameter, the value completing the most uncovered pairs, ties to the least
used value), so the whole plan is all-pairs with few extra cases.

The four flags count as four two-valued parameters for the pairwise criterion; their 16
combinations are crossed in full with dtype and op (and rank) in phase A.
"""
from __future__ import annotations

import itertools
from collections import Counter

from bnspec.flags import (ALL_FLAGS, AXIS_CLASSES, DEFAULT_EPS, DEFAULT_MOMENTUM, DTYPES, Flags,
                          axis_class_of, axis_for_class, case_id)

from .case_spec import DEFAULT_SEED, FLAG_NAMES, CaseSpec, axis_classes, shape_for
from .inputs import FAMILIES
from .plan_errors import error_specs

EPS_VALUES = (DEFAULT_EPS, 1e-5, 0.0, 1.0)
MOMENTUM_VALUES = (DEFAULT_MOMENTUM, 0.0, 1.0)
RANKS = (2, 3, 4, 5)
OPS = ("fwd", "bwd")
#: channels family: 1, 3, and one past the 8-, 16- and 32-lane SIMD widths.
CHANNEL_COUNTS = (1, 3, 9, 17, 33)

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
