"""The scale tier's plan: the cases of a real-network shape set (``bnspec.shape_sets``).

    specs = shape_set_plan(load_shape_set("resnet50"))          # the tier's default selection
    specs = shape_set_plan(shapes, flags="train", dtypes=["float32"], ops=["fwd"])

Each problem of the set (shape x layout x dtype, ``ShapeSet.problems``) gives one case per
selected flag combination and op, built exactly as ``oracle.plan.user_plan`` builds a user's
own shape (normal data, default eps, momentum and seed). A case depends on its parameters
only, never on the set it came from: two sets with a common problem share its cases, and the
header of each case file names the command that makes that one case (``case_command``).

The default selection, ``SCALE_FLAGS`` x ``SCALE_OPS`` x the set's dtypes, is a training step
with batch statistics, free gamma and mean/invstd out, forward and forward + backward: the
path real networks train on, with every output the operator has (y, mean, invstd, dx,
dgamma, dbeta, the running statistics).
"""
from __future__ import annotations

from .case_spec import CaseSpec
from .plan import OPS, parse_flag_tokens, user_plan

#: Flag tokens of the default selection (oracle.plan.parse_flag_tokens): one combination.
SCALE_FLAGS = "train,freegamma,batchstats,meanvar"
#: Ops of the default selection.
SCALE_OPS = OPS


def parse_ops(text) -> tuple[str, ...]:
    """Return the ops named by a comma-separated text (or a list) such as ``fwd,bwd``."""
    names = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    unknown = [n for n in names if n not in OPS]
    if not names or unknown:
        raise ValueError(f"ops={text!r}: name one or more of {list(OPS)}")
    return tuple(n for n in OPS if n in names)


def parse_names(text) -> tuple[str, ...] | None:
    """Return the names of a comma-separated text (or a list); None for None or "all"."""
    if text is None or (isinstance(text, str) and text.strip() in ("", "all")):
        return None
    names = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    return tuple(n for n in names if n)


def shape_set_plan(shape_set, *, flags: str | None = SCALE_FLAGS, dtypes=None, ops=SCALE_OPS,
                   layouts=None) -> list[CaseSpec]:
    """Return the cases of a shape set, sorted by id, without repeats.

    flags: tokens for ``parse_flag_tokens`` ("all" for the 16 combinations); dtypes and
    layouts: names narrowing the set's own lists (None: all of them; a name outside the
    set's lists raises ValueError naming it); ops: "fwd", "bwd" or both.
    """
    parse_flag_tokens(flags)  # a bad token is refused before anything is planned
    ops = parse_ops(ops)
    specs = {}
    for problem in shape_set.problems(parse_names(dtypes), parse_names(layouts)):
        for spec in user_plan(problem.shape, problem.dtype, problem.axis, flags=flags, ops=ops):
            specs[spec.id] = spec
    return [specs[cid] for cid in sorted(specs)]


def case_command(spec: CaseSpec) -> str:
    """Return the command line that writes exactly this one case (its files' header)."""
    shape = ",".join(str(int(n)) for n in spec.shape)
    return (f"python -m oracle.generate --shape {shape} --dtype {spec.dtype} --axis {spec.axis}"
            f" --flags {','.join(spec.flags.tokens)} --filter {spec.id} --out DIR")
