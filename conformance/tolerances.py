"""The tolerance table: how far a backend's output may sit from the oracle's value.

The error of an output element is measured in *tolerance units*::

    err = |got - value| / (u_out * (cond + tiny_out))

value = hi + lo is the oracle's high-precision value (a double-double, so float64 outputs
are compared against a 106-bit value), u_out = 2**-p is the unit roundoff of the output
dtype (``bnspec.formats.FORMATS[dtype].unit_roundoff``) and cond is the oracle's condition
scale of the element (``oracle.condition``: the magnitude of the terms whose rounding a
careful implementation cannot avoid). tiny_out = 2**emin is the smallest normal number of
the output dtype: u_out * tiny_out is half its smallest subnormal, the absolute error the
rounding of a gradually underflowing result may make (fl(v) = v (1 + d) + e, |d| <= u,
|e| <= u * tiny), which a relative cond cannot express; it leaves normal values untouched
and lets a correctly rounded subnormal pass. An element passes when err <= limit, with
limit from the table below. Special values are exact, whatever the table says:

- cond == 0: got must equal the correctly rounded value (-0.0 == 0.0 allowed);
- NaN where the oracle has NaN (any NaN payload), +-inf of the same sign where it has +-inf;
- NaN or inf where the oracle is finite fails, unless the correctly rounded value itself
  overflows to that inf.

The limits are keyed by (profile, output, data dtype); the output's own dtype (float32 for
the statistics of 16-bit data) gives u_out. The quantized path's int8 output has its own
integer rule and table (``QUANTIZED_TABLE`` below): exact, or one away toward a rounding
boundary that the exact value lies within limit * 2**-24 * cond of. Every row carries its reason. The numbers are
provisional until calibrated against real backends; change them here and nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass

from bnspec.flags import BACKWARD_OUTPUTS, DTYPES, FORWARD_OUTPUTS

PROFILES = ("strict", "framework")
DEFAULT_PROFILE = "strict"
OUTPUTS = tuple(dict.fromkeys(FORWARD_OUTPUTS + BACKWARD_OUTPUTS))
DATA_OUTPUTS = ("y", "dx")  # in the data dtype; every other output is in the parameter dtype
STAT_OUTPUTS = tuple(name for name in OUTPUTS if name not in DATA_OUTPUTS)

_WIDE = ("float64", "float32")
_HALF = ("float16", "bfloat16")


@dataclass(frozen=True)
class Limit:
    """One row of the table: the largest error, in tolerance units, and why."""

    units: float
    reason: str


#: (profiles, outputs, data dtypes, limit). Every (profile, output, dtype) must be covered
#: exactly once; ``check_table`` proves it at import.
_ROWS: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], Limit], ...] = (
    (("strict",), DATA_OUTPUTS, _HALF, Limit(
        1.5,
        "computed in float32 and rounded once to the 16-bit dtype: correct rounding is "
        "<= 1 unit (cond >= |value|); the float32 error before the final rounding can push "
        "a value across a rounding boundary (double rounding), so 1.5, not 1",
    )),
    (("strict",), DATA_OUTPUTS, _WIDE, Limit(
        8.0,
        "a careful implementation accumulating in the data dtype (or wider) makes a few "
        "roundings per term of cond (statistics, scale, product, sum with beta): "
        "a small multiple of u * cond",
    )),
    (("strict",), STAT_OUTPUTS, _WIDE + _HALF, Limit(
        8.0,
        "statistics, gradients of the parameters and running statistics are reductions "
        "and a few operations in float32 (16-bit data, float32 outputs) or the data dtype; "
        "cond already carries the reduction's magnitude, so a small multiple remains",
    )),
    (("framework",), DATA_OUTPUTS, _HALF, Limit(
        4.0,
        "frameworks compute 16-bit batch norm in float32 but may round intermediates "
        "(e.g. the scale and shift) to the 16-bit dtype: a few half-ulps",
    )),
    (("framework",), DATA_OUTPUTS, _WIDE, Limit(
        64.0,
        "frameworks use one-pass or fused formulations (x * scale + shift with "
        "scale = gamma * invstd, Welford merges, float32 rsqrt): tens of roundings",
    )),
    (("framework",), ("mean", "dgamma", "dbeta", "running_mean"), _WIDE + _HALF, Limit(
        64.0,
        "parallel or blocked reductions in the accumulation dtype, and the same fused "
        "formulations as y: tens of roundings",
    )),
    (("framework",), ("invstd", "running_var"), _WIDE, Limit(
        64.0,
        "rsqrt approximations and the variance recovered from invstd as 1/invstd^2 - eps: "
        "tens of roundings",
    )),
    (("framework",), ("invstd", "running_var"), _HALF, Limit(
        16384.0,
        "MXNet's own float16 CPU path rounds var + eps to float16 before the square root "
        "(shared/spec 'dtypes'): a relative error up to u_f16 = 2**13 u_f32, doubled for "
        "margin; invstd and running_var are float32 outputs",
    )),
)


def _expand(rows) -> dict[tuple[str, str, str], Limit]:
    table: dict[tuple[str, str, str], Limit] = {}
    for profiles, outputs, dtypes, limit in rows:
        for key in ((p, o, d) for p in profiles for o in outputs for d in dtypes):
            if key in table:
                raise ValueError(f"tolerance row {key!r} is given twice")
            table[key] = limit
    return table


TABLE: dict[tuple[str, str, str], Limit] = _expand(_ROWS)


def check_table(table: dict[tuple[str, str, str], Limit]) -> None:
    """Return None if the table covers every (profile, output, dtype) with a positive limit
    and a reason; raise ValueError naming the first gap otherwise."""
    for key in ((p, o, d) for p in PROFILES for o in OUTPUTS for d in DTYPES):
        limit = table.get(key)
        if limit is None:
            raise ValueError(f"tolerance table has no row for {key!r}")
        if not limit.units > 0 or not limit.reason.strip():
            raise ValueError(f"tolerance row {key!r}={limit!r} needs units > 0 and a reason")


check_table(TABLE)


# --- the quantized path's integer output (op "qnt") ------------------------------------------
#
# The int8 ``out`` is an integer: exact, or off by one ONLY where the oracle shows that the
# exact pre-rounding value v lies near the rounding boundary between the two integers:
#
#     got == rounded                                               always passes;
#     |got - rounded| == 1, got on the side of v's nearest boundary,
#         and dist <= limit * u_f32 * cond                         passes (near a boundary);
#     anything else, and any miss where cond == 0                  fails.
#
# dist = |v - nearest boundary k + 1/2| and cond (the magnitude of the terms a float32
# evaluation rounds) are stored per element in the case (oracle.quantized); u_f32 = 2**-24.
# A result reported in tolerance units is dist / (u_f32 cond) for an accepted off-by-one.

QUANTIZED_OUTPUTS = ("out",)
#: The unit roundoff the quantized limits are counted in: float32, the precision of the
#: int8 kernels' arithmetic (MXNet/oneDNN, and every vectorized implementation).
QUANTIZED_UNIT = 2.0**-24

QUANTIZED_TABLE: dict[tuple[str, str], Limit] = {
    ("strict", "out"): Limit(
        8.0,
        "a float32 evaluation of the folded formula rounds r, w and b (a few operations "
        "each) and w q + b once more: its value is within a few u_f32 cond of v, so it can "
        "round to the other neighbour only when v is that close to the boundary; exact "
        "elsewhere, and exact where cond is 0 (every step exact in float32, ties included)",
    ),
    ("framework", "out"): Limit(
        64.0,
        "frameworks fold the parameters in float32 in their own order (MXNet: invstd "
        "rounded from double, w and b in 3 and 5 float32 operations, oneDNN's own scale "
        "and shift, then an fma): tens of roundings of the same magnitudes",
    ),
}


def check_quantized_table(table: dict[tuple[str, str], Limit]) -> None:
    """Return None if the quantized table covers every (profile, output) with a positive
    limit and a reason; raise ValueError naming the first gap otherwise."""
    for key in ((p, o) for p in PROFILES for o in QUANTIZED_OUTPUTS):
        limit = table.get(key)
        if limit is None or not limit.units > 0 or not limit.reason.strip():
            raise ValueError(f"quantized tolerance row {key!r}={limit!r} needs units > 0 "
                             "and a reason")


check_quantized_table(QUANTIZED_TABLE)


def quantized_limit_for(profile: str, output: str = "out") -> Limit:
    """Return the Limit of the quantized path's integer output under profile."""
    check_profile(profile)
    try:
        return QUANTIZED_TABLE[(profile, output)]
    except KeyError:
        raise ValueError(f"no quantized tolerance for output={output!r}: outputs are "
                         f"{QUANTIZED_OUTPUTS}") from None


def check_profile(profile: str) -> str:
    """Return profile if it is a known tolerance profile, else raise ValueError naming it."""
    if profile not in PROFILES:
        raise ValueError(f"tolerance profile={profile!r} is not one of {PROFILES}")
    return profile


def limit_for(profile: str, output: str, data_dtype: str) -> Limit:
    """Return the Limit of one output of data of dtype data_dtype under profile."""
    check_profile(profile)
    try:
        return TABLE[(profile, output, data_dtype)]
    except KeyError:
        raise ValueError(
            f"no tolerance for output={output!r}, data dtype={data_dtype!r}: "
            f"outputs are {OUTPUTS}, dtypes {tuple(DTYPES)}"
        ) from None
