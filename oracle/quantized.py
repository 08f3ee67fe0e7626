"""The oracle of the quantized batch norm (``_contrib_quantized_batch_norm``, op "qnt").

Spec (shared/spec/batch_norm_semantics.md, "Quantized path"). Inputs: int8 or uint8 data q
whose float range is [min_data, max_data], float32 gamma, beta, running_mean, running_var,
eps (a double) and the calibration range [min_calib_range, max_calib_range] of the output.
Per channel c of ``axis`` (always running statistics; fix_gamma, use_global_stats,
output_mean_var, training and momentum have no effect: gamma is used as given)::

    A = max(|min_data|, |max_data|),  B = max(|min_calib_range|, |max_calib_range|)
    r_c = 1/sqrt(running_var_c + eps)                          (eps the double, exactly)
    w_c = gamma_c r_c A / B
    b_c = (beta_c - running_mean_c gamma_c r_c) 127 / B
    v   = w_c q' + b_c,  q' = q (int8) or q 127/255 (uint8)     (the exact pre-rounding value)
    out = min(127, max(-128, rint(v)))                          (ties to even; int8)
    min_out = min_calib_range, max_out = max_calib_range        (float32)

min_data, max_data and the calibration values are float32 in MXNet; they are rounded to
float32 first (ties to even). Saturation is to -128..127 and rint is round half to even:
both observed on MXNet 1.9.1 (its oneDNN kernel converts with vcvtps2dq and packs with
signed saturation). Arguments are checked by ``bnspec.validate.check_quantized_arguments``.

Variants (``oracle.variants.QUANTIZED_VARIANTS``; MXNet 1.9.1 follows all three):

- ``qnt_slope_eps_twice``: w_c is further divided by sqrt(1 + float32(eps));
- ``qnt_shift_127.5``: b_c uses 127.5 (MXNet's kInt8Range) instead of 127;
- ``qnt_uint8_requantized``: uint8 q is first rounded to int8, q8 = rint(q 127.5/255.5)
  (never a tie, never saturated), and q' = q8.

Exactness. With s1 = sqrt(rho1) the slope's radical (rho1 = 1/(running_var + eps), times
1/(1 + float32(eps)) under qnt_slope_eps_twice) and s2 = sqrt(rho2) = r_c the shift's,
v = s1 c1 q + s2 c2 + c0 with rationals c1, c2, c0. Radicals that are rational (rho a
square) are taken exactly; two irrational ones are combined when rho1/rho2 is a square.
What is left is either a rational (computed exactly, Fraction) or provably irrational, so
never a tie: it is evaluated in mpmath from 256 bits up, the precision doubled until the
nearest integer is certain. Values are computed once per distinct q of a channel (at most
256), so the cost does not grow with the size of x.

Per element of ``out`` the oracle also states (``oracle.results.QuantizedExpected``):

- ``dist``: |v - the nearest rounding boundary|, the boundaries being k + 1/2 for
  k = -128..126 (beyond them saturation makes both sides equal); 0 at an exact tie;
- ``cond``: |w_c q'| + (|beta_c| + |running_mean_c gamma_c r_c|) R / B (R = 127, or 127.5),
  the magnitude of the terms a float32 evaluation rounds; 0 where the formula, evaluated in
  float32 in the order written above (every intermediate listed in ``_f32_steps``), is
  exact: then a correct implementation lands on v exactly (ties included) and must match.
"""
from __future__ import annotations

from fractions import Fraction
from math import floor, isqrt

import mpmath
import numpy as np

from bnspec.flags import DEFAULT_EPS
from bnspec.formats import FORMATS, round_fraction
from bnspec.validate import check_quantized_arguments

from .results import Expected, QuantizedExpected
from .variants import check_quantized_variants

PRECISION_BITS = 256
_MP = mpmath.mp.clone() if hasattr(mpmath.mp, "clone") else mpmath.mp
_F32 = FORMATS["float32"]
#: The int8 output's range and its rounding boundaries k + 1/2, k = -128..126.
INT8_MIN, INT8_MAX = -128, 127
_LOW_BOUNDARY = Fraction(2 * INT8_MIN + 1, 2)  # -127.5
_HIGH_BOUNDARY = Fraction(2 * INT8_MAX - 1, 2)  # 126.5
#: uint8 rescale of the spec (127/255) and of MXNet's reorder (kInt8Range / kUint8Range).
UINT8_SCALE = Fraction(127, 255)
UINT8_REORDER = Fraction(255, 511)  # 127.5 / 255.5


def evaluate_quantized(x, gamma, beta, running_mean, running_var, *, min_data, max_data,
                       min_calib_range, max_calib_range, eps=DEFAULT_EPS, axis=1,
                       variants=(), **ignored) -> dict[str, Expected]:
    """Return the expected outputs of the quantized operator: ``out`` (a QuantizedExpected
    of dtype int8, x's shape), ``min_out`` and ``max_out`` (float32, shape (1,), exact).

    Formula, exactness and variants: see the module docstring. ``ignored`` takes the float
    operator's other keyword arguments (momentum, fix_gamma, use_global_stats,
    output_mean_var, training, cudnn_off), which the quantized path does not use.
    """
    unknown = set(ignored) - {"momentum", "fix_gamma", "use_global_stats", "output_mean_var",
                              "training", "cudnn_off"}
    if unknown:
        raise TypeError(f"evaluate_quantized() got unexpected keyword arguments {sorted(unknown)}")
    dtype, ax = check_quantized_arguments(
        x, gamma, beta, running_mean, running_var, axis=axis, eps=eps, min_data=min_data,
        max_data=max_data, min_calib_range=min_calib_range, max_calib_range=max_calib_range)
    names = check_quantized_variants(variants)
    f32 = lambda v: Fraction(round_fraction(Fraction(float(v)), _F32))
    A = max(abs(f32(min_data)), abs(f32(max_data)))
    B = max(abs(f32(min_calib_range)), abs(f32(max_calib_range)))
    X = np.moveaxis(np.asarray(x), ax, 0).astype(np.int64)
    params = [np.asarray(a, dtype=np.float64) for a in (gamma, beta, running_mean, running_var)]
    rounded = np.empty(X.shape, dtype=np.float64)
    hi, lo = np.empty(X.shape), np.empty(X.shape)
    dist, cond = np.empty(X.shape), np.empty(X.shape)
    with _MP.workprec(PRECISION_BITS):
        for c in range(X.shape[0]):
            channel = _Channel(*(Fraction(float(p[c])) for p in params), Fraction(float(eps)),
                               A, B, dtype, names)
            values, inverse = np.unique(X[c], return_inverse=True)
            table = [channel.element(int(q)) for q in values]
            for k, column in enumerate((rounded, hi, lo, dist, cond)):
                column[c] = np.array([row[k] for row in table])[inverse.reshape(X[c].shape)]
    back = lambda a: np.moveaxis(a, 0, ax)
    out = QuantizedExpected("out", "int8", back(hi), back(lo), back(rounded), back(cond),
                            back(dist))
    return {"out": out,
            "min_out": _exact_float32("min_out", f32(min_calib_range)),
            "max_out": _exact_float32("max_out", f32(max_calib_range))}


def quantized_batch_norm(x, gamma, beta, running_mean, running_var, *, min_data, max_data,
                         min_calib_range, max_calib_range, eps=DEFAULT_EPS, axis=1,
                         variants=(), **ignored) -> dict[str, np.ndarray]:
    """Return the quantized operator's outputs as arrays: ``out`` (int8, x's shape),
    ``min_out`` and ``max_out`` (float32, shape (1,)). See ``evaluate_quantized``."""
    e = evaluate_quantized(x, gamma, beta, running_mean, running_var, min_data=min_data,
                           max_data=max_data, min_calib_range=min_calib_range,
                           max_calib_range=max_calib_range, eps=eps, axis=axis,
                           variants=variants, **ignored)
    return {name: v.as_dtype() for name, v in e.items()}


def _exact_float32(name: str, value: Fraction) -> Expected:
    v = np.array([float(value)])
    return Expected(name, "float32", v, np.zeros(1), v.copy(), np.zeros(1))


# --- exact arithmetic helpers ---------------------------------------------------------------


def exact_sqrt(q: Fraction) -> Fraction | None:
    """Return sqrt(q) for q >= 0 when it is rational, else None."""
    n, d = q.numerator, q.denominator
    rn, rd = isqrt(n), isqrt(d)
    return Fraction(rn, rd) if rn * rn == n and rd * rd == d else None


def round_half_even(v: Fraction) -> int:
    """Return the integer nearest to v, ties to the even one."""
    n = floor(v)
    rest = v - n
    return n + (1 if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and n % 2) else 0)


def saturate(n: int) -> int:
    """Return n clamped to the int8 range -128..127."""
    return min(INT8_MAX, max(INT8_MIN, n))


def boundary_distance(v):
    """Return |v - b| (a Fraction, or an mpf for an mpf v) for the rounding boundary
    b = k + 1/2 (k = -128..126) nearest to v."""
    n = floor(v) if isinstance(v, Fraction) else int(_MP.floor(v))
    b = min(max(n + Fraction(1, 2), _LOW_BOUNDARY), _HIGH_BOUNDARY)
    return abs(v - b) if isinstance(v, Fraction) else abs(v - _mpf(b))


def is_float32(v: Fraction) -> bool:
    """Return True if the rational v is exactly a (finite) float32 value."""
    return Fraction(round_fraction(v, _F32)) == v


def _mpf(q: Fraction):
    return _MP.mpf(q.numerator) / q.denominator


def _dd(value) -> tuple[float, float]:
    """(hi, lo): hi the nearest double to value, lo the nearest double to the rest."""
    hi = float(value)
    rest = value - (Fraction(hi) if isinstance(value, Fraction) else _MP.mpf(hi))
    return hi, float(rest)


class _Channel:
    """One channel's formula v(q) = s1 c1 q' + s2 c2 + c0 (see the module docstring)."""

    def __init__(self, g, beta, rm, rv, eps, A, B, dtype, variants):
        self.dtype, self.variants = dtype, variants
        R = Fraction(255, 2) if "qnt_shift_127.5" in variants else Fraction(127)
        ve = rv + eps
        self.rho2 = 1 / ve  # r = sqrt(rho2)
        self.rho1 = self.rho2
        if "qnt_slope_eps_twice" in variants:
            self.rho1 = self.rho2 / (1 + Fraction(round_fraction(eps, _F32)))
        self.c1 = g * A / B
        self.c2 = -rm * g * R / B
        self.c0 = beta * R / B
        self.s1, self.s2 = exact_sqrt(self.rho1), exact_sqrt(self.rho2)
        ratio = exact_sqrt(self.rho1 / self.rho2)
        # s1 = ratio * s2 when the ratio is rational: one radical left.
        self.merged = ratio if (self.s2 is None and ratio is not None) else None
        self.f32_steps_ok = self._f32_steps(g, beta, rm, A, B, R)
        self.mag_shift = abs(self.c0) + abs(float(self.c2) * float(_MP.sqrt(_mpf(self.rho2))))
        self.w_abs = abs(float(self.c1)) * float(_MP.sqrt(_mpf(self.rho1)))

    def scaled(self, q: int) -> Fraction:
        """q' : q itself, q 127/255 (uint8), or the requantized q8 (qnt_uint8_requantized)."""
        if self.dtype == "int8":
            return Fraction(q)
        if "qnt_uint8_requantized" in self.variants:
            return Fraction(saturate(round_half_even(q * UINT8_REORDER)))
        return q * UINT8_SCALE

    def value(self, qs: Fraction):
        """Return v(q') exactly (Fraction) when rational, else as an mpf whose nearest
        integer and distance to the nearest boundary are certain; (value, is_exact)."""
        t1 = self.c1 * qs
        if self.s1 is not None and self.s2 is not None:
            return self.s1 * t1 + self.s2 * self.c2 + self.c0, True
        if self.merged is not None:  # v = s2 (m t1 + c2) + c0
            d = self.merged * t1 + self.c2
            if d == 0:
                return self.c0, True
            return self._irrational(((self.rho2, d),), self.c0), False
        terms = []
        rational = self.c0
        for s, rho, t in ((self.s1, self.rho1, t1), (self.s2, self.rho2, self.c2)):
            if s is not None:
                rational += s * t
            elif t != 0:
                terms.append((rho, t))
        if not terms:
            return rational, True
        return self._irrational(tuple(terms), rational), False

    def _irrational(self, terms, rational=Fraction(0)):
        """sum sqrt(rho) t + rational, an irrational number: from 256 bits, doubled until
        the interval of the error bound holds no rounding boundary."""
        prec = PRECISION_BITS
        while True:
            with _MP.workprec(prec):
                parts = [_MP.sqrt(_mpf(rho)) * _mpf(t) for rho, t in terms]
                v = _MP.fsum(parts + [_mpf(rational)])
                err = (sum(abs(p) for p in parts) + abs(_mpf(rational))) * _MP.ldexp(1, 8 - prec)
                if abs(v - (_MP.floor(v) + _MP.mpf(0.5))) > err:  # nearest integer certain
                    return +v
            prec *= 2

    def element(self, q: int) -> tuple[float, float, float, float, float]:
        """Return (rounded, hi, lo, dist, cond) of the output for input q."""
        qs = self.scaled(q)
        v, exact = self.value(qs)
        if exact:
            n = round_half_even(v)
        else:
            n = int(_MP.nint(v))  # never a tie: the value is irrational
        hi, lo = _dd(v)
        dist = float(boundary_distance(v))
        t1 = self.c1 * qs
        exact_f32 = (exact and self.f32_steps_ok and self.s1 is not None
                     and is_float32(self.s1 * t1) and is_float32(v))
        cond = 0.0 if exact_f32 else self.w_abs * abs(float(qs)) + self.mag_shift
        return float(saturate(n)), hi, lo, dist, cond

    def _f32_steps(self, g, beta, rm, A, B, R) -> bool:
        """Return True if every per-channel intermediate of the formula, in the order the
        module docstring writes it, is exactly a float32: r, g r, g r A, w = g r A / B (and
        the slope factor and w divided by it under qnt_slope_eps_twice), rm g, rm g r,
        beta - rm g r, (beta - rm g r) R, b. Only int8 data (q' = q or q8) qualifies."""
        if self.s1 is None or self.s2 is None:
            return False
        if self.dtype == "uint8" and "qnt_uint8_requantized" not in self.variants:
            return False
        r = self.s2
        w = g * r * A / B
        steps = [r, g * r, g * r * A, w, rm * g, rm * g * r, beta - rm * g * r,
                 (beta - rm * g * r) * R, (beta - rm * g * r) * R / B]
        if self.rho1 != self.rho2:
            k = self.s1 / self.s2  # 1/sqrt(1 + float32(eps))
            steps += [1 / k, w * k]
        return all(is_float32(s) for s in steps)
