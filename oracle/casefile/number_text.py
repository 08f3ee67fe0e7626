"""The exact text forms of numbers in a case file, both ways: hex floats for data and params,
32-digit decimals for expected values, shortest round-trip decimals for condition scales.

- float data: ``float.hex`` with the trailing zero digits of the mantissa dropped
  (``'0x1.8p+1'``), or ``'nan'``, ``'inf'``, ``'-inf'``; ``eps`` and ``momentum``: plain
  ``float.hex`` (``'0x1.0624de0000000p-10'``);
- expected ``value``: hi + lo (a double-double) rounded once to 32 significant digits
  (``decimal`` arithmetic on the exact binary values), trailing zeros dropped; read back as the
  double-double nearest the decimal;
- ``cond``: the shortest decimal that reads back as the same double (``repr``), always with a
  ``.`` so that YAML 1.1 reads it as a float.
"""
from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Context, Decimal

#: Significant digits of the decimal ``value`` strings.
VALUE_DIGITS = 32

_VALUE_CONTEXT = Context(prec=VALUE_DIGITS, rounding=ROUND_HALF_EVEN)
_WIDE_CONTEXT = Context(prec=80)


def hex_float(v: float, strip: bool = True) -> str:
    """Return float.hex(v), with the mantissa's trailing zeros dropped unless strip is False,
    or nan / inf / -inf."""
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if not strip:
        return float(v).hex()
    mant, exp = float(v).hex().split("p")
    mant = mant.rstrip("0")
    if mant.endswith("."):
        mant += "0"
    return f"{mant}p{exp}"


def decimal_value(hi: float, lo: float) -> str:
    """Return hi + lo rounded once (ties to even) to 32 significant digits, as text.

    The sum is formed from the exact decimal expansions of the two doubles and rounded by one
    correctly rounded decimal addition. Trailing zeros are dropped: ``1.5e+00``; zero keeps its
    sign (``-0.0e+00``); NaN and infinities are ``nan``, ``inf``, ``-inf``.
    """
    if math.isnan(hi) or math.isnan(lo):
        return "nan"
    if math.isinf(hi):
        return "inf" if hi > 0 else "-inf"
    if hi == 0 and lo == 0:
        return "-0.0e+00" if math.copysign(1.0, hi) < 0 else "0.0e+00"
    d = _VALUE_CONTEXT.add(Decimal(hi), Decimal(lo))
    sign, digits, exponent = d.as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    adjusted = exponent + len(digits) - 1
    mantissa = text[0] + "." + (text[1:] or "0")
    return f"{'-' if sign else ''}{mantissa}e{adjusted:+03d}"


def yaml_float(v: float) -> str:
    """Return the shortest round-trip text of a double that YAML 1.1 reads as a float."""
    if math.isnan(v):
        return ".nan"
    if math.isinf(v):
        return ".inf" if v > 0 else "-.inf"
    text = repr(float(v))
    if "." not in text:
        mant, _, exp = text.partition("e")
        text = f"{mant}.0e{exp}"
    return text


def parse_value(text: str) -> tuple[float, float]:
    """Return (hi, lo): the double-double nearest a decimal ``value`` string.

    hi = the double nearest the decimal, lo = the double nearest (decimal - hi); nan and
    +-inf give (value, 0.0).
    """
    if not isinstance(text, str):
        raise TypeError(f"value={text!r} is not a string")
    if text in ("nan", "inf", "-inf"):
        return float(text), 0.0
    d = Decimal(text)
    if not d.is_finite():
        raise ValueError(f"value={text!r} is not finite")
    hi = float(d)
    if math.isinf(hi):
        return hi, 0.0
    lo = float(_WIDE_CONTEXT.subtract(d, Decimal(hi)))
    return hi, lo


def parse_hex(text) -> float:
    if text in ("nan", "inf", "-inf"):
        return float(text)
    if not isinstance(text, str) or "0x" not in text:
        raise ValueError(f"{text!r} is not a hex float")
    return float.fromhex(text)


def is_hex(text) -> bool:
    try:
        parse_hex(text)
        return True
    except (TypeError, ValueError, AttributeError):
        return False
