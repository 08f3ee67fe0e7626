"""An exact reference of batch_norm in rational arithmetic, independent of the oracle.

Returns, for every output element, a ``Value`` = A * r + B with A, B exact ``Fraction``s and
r = 1/sqrt(v) the channel's inverse standard deviation (v = var + DType(eps), rational), so
every output is known exactly; r is bracketed with integer square roots to any width, and
the rounding to a binary format is decided by rounding both ends of the bracket (rounding
is monotone) and widening the precision until they agree.

Nothing here imports the oracle: the formats, the rounding and the formulas are written
again from the IEEE 754 definition and shared/spec/batch_norm_semantics.md:

    mean = sum(x)/M, var = sum((x - mean)**2)/M               (batch statistics, biased)
    mean = running_mean, var = running_var                    (running statistics)
    r = 1/sqrt(var + DType(eps)), r = 0 when var == 0 and eps == 0 (batch statistics);
    var + DType(eps) == 0 otherwise raises NotCovered (r = inf)
    y = (x - mean) * r * g + beta,  g = 1 if fix_gamma else gamma
    dx = (dy - sum(dy)/M - (x - mean) * sum((x - mean) dy) r**2 / M) * r * g   (batch)
    dx = dy * r * g                                                           (running)
    dgamma = sum((x - mean) dy) r (0 with fix_gamma), dbeta = sum(dy)
    running_mean' = running_mean m + mean (1 - m)
    running_var'  = running_var m + (1/r**2 - eps) (1 - m) = running_var m + (v - eps)(1 - m)
with m = float32(momentum), eps the double, DType(eps) = eps rounded to the data dtype.
Inputs must be finite (NaN and Inf are covered by closed-form tests).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

#: name -> (precision p with the implicit bit, emin, emax), from IEEE 754 / bfloat16 docs.
FORMATS = {
    "float64": (53, -1022, 1023),
    "float32": (24, -126, 127),
    "float16": (11, -14, 15),
    "bfloat16": (8, -126, 127),
}
PARAM_DTYPE = {"float64": "float64", "float32": "float32", "float16": "float32",
               "bfloat16": "float32"}


def _floor_log2(q: Fraction) -> int:
    """Return e with 2**e <= q < 2**(e+1), for q > 0."""
    e = q.numerator.bit_length() - q.denominator.bit_length()
    while Fraction(2) ** e > q:
        e -= 1
    while Fraction(2) ** (e + 1) <= q:
        e += 1
    return e


def round_exact(q, dtype: str) -> float:
    """Return the value of `dtype` nearest to the rational q, ties to even (IEEE 754
    roundTiesToEven with gradual underflow), as a Python float (+-inf on overflow).

    Written from the definition: the representable magnitudes in the binade of q are the
    integer multiples of 2**(max(e, emin) - p + 1); q lies between two consecutive ones, and
    the nearer wins, the one with the even multiple on a tie. A magnitude that is at least
    2**emax * (2 - 2**-p) rounds to infinity (IEEE 754 section 4.3.1).
    """
    p, emin, emax = FORMATS[dtype]
    q = Fraction(q)
    if q == 0:
        return 0.0
    negative = q < 0
    a = -q if negative else q
    if a >= Fraction(2) ** emax * (2 - Fraction(1, 2**p)):
        return -math.inf if negative else math.inf
    e = max(_floor_log2(a), emin)
    quantum = Fraction(2) ** (e - p + 1)
    k, rest = divmod(a, quantum)  # a = k * quantum + rest, 0 <= rest < quantum
    k = int(k)
    twice = 2 * rest
    if twice > quantum or (twice == quantum and k % 2 == 1):
        k += 1
    value = Fraction(k) * quantum
    # value <= max finite here: the overflow case was handled above.
    out = _fraction_to_float(value)
    return -out if negative else out


def _fraction_to_float(value: Fraction) -> float:
    """Exact conversion of a dyadic rational that is a float64 (checked)."""
    out = math.ldexp(value.numerator, 0) if value.denominator == 1 else None
    if out is None:
        shift = value.denominator.bit_length() - 1
        assert value.denominator == 1 << shift, value
        out = math.ldexp(value.numerator, -shift)
    assert Fraction(out) == value, value
    return out


class InvSqrt:
    """r = 1/sqrt(v) for a rational v >= 0 (r = 0 when v == 0), bracketed exactly."""

    def __init__(self, v: Fraction):
        v = Fraction(v)
        if v < 0:
            raise ValueError(f"v={v} < 0: 1/sqrt(v) is not real")
        self.v = v
        self.exact: Fraction | None = None
        if v == 0:
            self.exact = Fraction(0)
            return
        # r = sqrt(q/p) = sqrt(p*q)/p with v = p/q in lowest terms.
        self._n = v.numerator * v.denominator
        self._p = v.numerator
        s = math.isqrt(self._n)
        if s * s == self._n:
            self.exact = Fraction(s, self._p)

    def bracket(self, bits: int) -> tuple[Fraction, Fraction]:
        """Return (lo, hi) rationals with lo <= r <= hi and hi - lo <= 2**-bits * r (about)."""
        if self.exact is not None:
            return self.exact, self.exact
        # Scale so that sqrt(n) * 2**k has about `bits` + 2 bits: relative width 2**-bits.
        k = max(0, bits + 2 - self._n.bit_length() // 2)
        s = math.isqrt(self._n << (2 * k))  # s <= sqrt(n) 2**k < s + 1 (n not a square)
        den = self._p << k
        return Fraction(s, den), Fraction(s + 1, den)

    @property
    def square(self) -> Fraction:
        """r**2 = 1/v exactly (0 when v == 0)."""
        return Fraction(0) if self.v == 0 else 1 / self.v


@dataclass(frozen=True)
class Value:
    """The exact real A * r + B, with r an InvSqrt (or None: the value is B)."""

    A: Fraction
    B: Fraction
    r: InvSqrt | None = None

    @property
    def exact(self) -> Fraction | None:
        """The value as a Fraction when it is rational, else None."""
        if self.r is None or self.A == 0:
            return self.B
        if self.r.exact is not None:
            return self.A * self.r.exact + self.B
        return None

    def bracket(self, bits: int) -> tuple[Fraction, Fraction]:
        exact = self.exact
        if exact is not None:
            return exact, exact
        lo, hi = self.r.bracket(bits)
        a, b = self.A * lo + self.B, self.A * hi + self.B
        return (a, b) if a <= b else (b, a)

    def rounded(self, dtype: str, max_bits: int = 1 << 14) -> float:
        """Return the value correctly rounded to dtype, widening the bracket until decided."""
        bits = 96
        while True:
            lo, hi = self.bracket(bits)
            a, b = round_exact(lo, dtype), round_exact(hi, dtype)
            if a == b:
                return a
            if bits > max_bits:
                raise ArithmeticError(f"rounding of {self} to {dtype} undecided at {bits} bits")
            bits *= 2

    def tight_bracket(self, rel_bits: int = 200) -> tuple[Fraction, Fraction]:
        """Return a bracket whose width is below 2**-rel_bits of the value's magnitude (the
        value is nonzero unless it is exactly 0, in which case (0, 0))."""
        bits = rel_bits + 16
        while True:
            lo, hi = self.bracket(bits)
            if lo == hi:
                return lo, hi
            if (lo > 0 or hi < 0) and (hi - lo) <= min(abs(lo), abs(hi)) / 2**rel_bits:
                return lo, hi
            bits *= 2


@dataclass
class Output:
    name: str
    dtype: str
    values: np.ndarray  # object array of Value, in the output's shape

    @property
    def undefined(self) -> np.ndarray:
        """Mask of the elements this reference leaves out (None)."""
        return np.vectorize(lambda v: v is None, otypes=[bool])(self.values)

    def rounded(self) -> np.ndarray:
        """Correctly rounded values (float64 array); NaN where the reference leaves the value
        out (None)."""
        return np.vectorize(lambda v: math.nan if v is None else v.rounded(self.dtype),
                            otypes=[np.float64])(self.values)


def to_fractions(a) -> np.ndarray:
    """Exact Fractions of the binary floats in a (any of the four dtypes)."""
    f64 = np.asarray(a).astype(np.float64)  # widening casts are exact
    return np.vectorize(lambda t: Fraction(float(t)), otypes=[object])(f64)


def rational(v) -> Value:
    return Value(Fraction(0), Fraction(v), None)


class NotCovered(ValueError):
    """Inputs whose exact answer is not finite, which this reference does not model."""


def reference(x, gamma, beta, running_mean, running_var, dy=None, *, eps, momentum,
              fix_gamma, use_global_stats, output_mean_var, axis, training) -> dict[str, Output]:
    """Return the exact outputs of one call by name, like oracle.evaluate: forward without dy
    (y, mean/invstd with output_mean_var, running stats unchanged), a training step with dy
    (dx, dgamma, dbeta, running stats after backward)."""
    data_dtype = np.asarray(x).dtype.name
    param_dtype = PARAM_DTYPE[data_dtype]
    ndim = np.ndim(x)
    ax = axis % ndim
    xs = np.moveaxis(to_fractions(x), ax, 0)
    shape_moved = xs.shape
    C = xs.shape[0]
    xs = xs.reshape(C, -1)
    M = xs.shape[1]
    g = [Fraction(1)] * C if fix_gamma else list(to_fractions(gamma))
    b = list(to_fractions(beta))
    rm = list(to_fractions(running_mean))
    rv = list(to_fractions(running_var))
    eps_q = Fraction(eps)
    eps_d = Fraction(round_exact(eps_q, data_dtype))
    m = Fraction(round_exact(Fraction(momentum), "float32"))
    batch = training and not use_global_stats
    dys = None if dy is None else np.moveaxis(to_fractions(dy), ax, 0).reshape(C, -1)

    y = np.empty((C, M), dtype=object)
    dx = np.empty((C, M), dtype=object)
    mean_out, invstd_out, rm_out, rv_out, dgamma, dbeta = [], [], [], [], [], []
    for c in range(C):
        row = list(xs[c])
        if batch:
            mean = sum(row, Fraction(0)) / M
            var = sum(((t - mean) ** 2 for t in row), Fraction(0)) / M
        else:
            mean, var = rm[c], rv[c]
        r = InvSqrt(var + eps_d)
        if r.v == 0 and (not batch or eps_q != 0):
            # invstd = 1/sqrt(0) = inf: the spec defines invstd = 0 only for a zero batch
            # variance with eps == 0; infinities are outside this finite reference.
            raise NotCovered("var + DType(eps) == 0 with eps != 0 (or running statistics)")
        mean_out.append(rational(mean))
        invstd_out.append(Value(Fraction(1), Fraction(0), r))
        for j, t in enumerate(row):
            y[c, j] = Value((t - mean) * g[c], b[c], r)
        if dys is None:
            rm_out.append(rational(rm[c]))
            rv_out.append(rational(rv[c]))
            continue
        drow = list(dys[c])
        sdy = sum(drow, Fraction(0))
        dotp = sum(((t - mean) * d for t, d in zip(row, drow)), Fraction(0))
        if batch:
            k = dotp * r.square / M
            for j, (t, d) in enumerate(zip(row, drow)):
                dx[c, j] = Value((d - sdy / M - (t - mean) * k) * g[c], Fraction(0), r)
            rm_out.append(rational(rm[c] * m + mean * (1 - m)))
            # r = 0 (var + DType(eps) == 0): 1/r**2 - eps is not a real number; the
            # closed-form tests pin that case, here it is left out (None).
            rv_out.append(None if r.v == 0 else rational(rv[c] * m + (r.v - eps_q) * (1 - m)))
        else:
            for j, d in enumerate(drow):
                dx[c, j] = Value(d * g[c], Fraction(0), r)
            rm_out.append(rational(rm[c]))
            rv_out.append(rational(rv[c]))
        dgamma.append(rational(0) if fix_gamma else Value(dotp, Fraction(0), r))
        dbeta.append(rational(sdy))

    def data_shaped(a):
        return np.moveaxis(a.reshape(shape_moved), 0, ax)

    def vec(values):
        out = np.empty(C, dtype=object)
        out[:] = values
        return out

    out: dict[str, Output] = {}
    if dys is None:
        out["y"] = Output("y", data_dtype, data_shaped(y))
        if output_mean_var:
            out["mean"] = Output("mean", param_dtype, vec(mean_out))
            out["invstd"] = Output("invstd", param_dtype, vec(invstd_out))
    else:
        out["dx"] = Output("dx", data_dtype, data_shaped(dx))
        out["dgamma"] = Output("dgamma", param_dtype, vec(dgamma))
        out["dbeta"] = Output("dbeta", param_dtype, vec(dbeta))
    out["running_mean"] = Output("running_mean", param_dtype, vec(rm_out))
    out["running_var"] = Output("running_var", param_dtype, vec(rv_out))
    return out


# --- inputs and messages shared by the tests ---------------------------------------------

DTYPE_NAMES = ("float64", "float32", "float16", "bfloat16")
EPS_VALUES = (float(np.float32(1e-3)), 1e-5, 0.0, 1.0)
MOMENTUM_VALUES = (0.9, 0.0, 1.0)


def np_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def cast(values, dtype: str) -> np.ndarray:
    """values (float64) cast to dtype; for bfloat16 through float32 (values are drawn so that
    the cast is a plain rounding, no exactness is claimed: the result is the input)."""
    a = np.asarray(values, dtype=np.float64)
    if dtype == "bfloat16":
        a = a.astype(np.float32)
    return a.astype(np_dtype(dtype))


def draw_case(rng: np.random.Generator, dtype: str, *, rank=None, axis=None, eps=None,
              momentum=None, max_size=24, scale=None, with_dy=True) -> dict:
    """Return the keyword arguments of one small random call (x, gamma, ..., dy, eps, ...).

    Values are random floats of the dtype at a random scale, sometimes small integers; the
    running variance is positive, so running-statistics mode is always defined."""
    rank = rank if rank is not None else int(rng.integers(2, 5))
    shape = [1] * rank
    while True:
        shape = [int(rng.integers(1, 5)) for _ in range(rank)]
        if int(np.prod(shape)) <= max_size:
            break
    if axis is None:
        axis = int(rng.integers(-rank, rank))
    C = shape[axis % rank]
    param = PARAM_DTYPE[dtype]
    scale = scale if scale is not None else float(2.0 ** rng.integers(-6, 7))

    def data(size_shape, positive=False):
        if rng.random() < 0.25:
            v = rng.integers(-8, 9, size=size_shape).astype(np.float64)
        else:
            v = rng.normal(size=size_shape) * scale
        return np.abs(v) + 0.25 if positive else v

    case = dict(
        x=cast(data(shape), dtype),
        gamma=cast(rng.normal(size=C) * 2, param),
        beta=cast(rng.normal(size=C), param),
        running_mean=cast(data(C), param),
        running_var=cast(np.abs(data(C)) + scale * 0.25, param),
        eps=eps if eps is not None else EPS_VALUES[int(rng.integers(len(EPS_VALUES)))],
        momentum=momentum if momentum is not None
        else MOMENTUM_VALUES[int(rng.integers(len(MOMENTUM_VALUES)))],
        axis=axis,
    )
    if with_dy:
        case["dy"] = cast(rng.normal(size=shape), dtype)
    return case


def hexlist(a) -> str:
    """A reproducible spelling of an array: its float64 values in hex."""
    a = np.asarray(a)
    body = [float(t).hex() for t in a.astype(np.float64).ravel()]
    return (f"np.array([float.fromhex(h) for h in {body}]).reshape({a.shape})"
            f".astype({'ml_dtypes.bfloat16' if a.dtype.name == 'bfloat16' else repr(a.dtype.name)})")


def repro(fn: str, case: dict, **flags) -> str:
    """A Python call that reproduces `fn` on `case` (arrays spelled in hex)."""
    args = [f"{k}={hexlist(v)}" for k, v in case.items() if isinstance(v, np.ndarray)]
    kw = [f"{k}={v!r}" for k, v in case.items() if not isinstance(v, np.ndarray)]
    kw += [f"{k}={v!r}" for k, v in flags.items()]
    return f"oracle.{fn}({', '.join(args + kw)})"


def same(a: float, b: float) -> bool:
    """Equal as values, NaN equal to NaN (the sign of zero is not compared: an exact zero
    result has no sign in the exact arithmetic)."""
    return (math.isnan(a) and math.isnan(b)) or a == b


def assert_rounded_equal(name: str, got, want, call: str) -> None:
    """Fail, naming the first element that differs, when got and want differ anywhere."""
    __tracebackhide__ = True
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{name}.shape={got.shape}, but should be {want.shape} [{call}]"
    for idx in np.ndindex(want.shape):
        if not same(float(got[idx]), float(want[idx])):
            raise AssertionError(
                f"{name}{list(idx)}={float(got[idx])!r} ({float(got[idx]).hex()}), but should be "
                f"{float(want[idx])!r} ({float(want[idx]).hex()}) [{call}]")


REL_1E30 = Fraction(1, 10**30)


def assert_hi_lo_close(name: str, hi, lo, values, call: str, rel: Fraction = REL_1E30) -> None:
    """Fail unless hi + lo is within rel * |value| of every exact value (exact zero: hi + lo
    must be 0); values beyond the float64 range are skipped (hi + lo cannot hold them), and
    in the subnormal range an error of 2**-1074 (the granularity of lo) is allowed."""
    __tracebackhide__ = True
    hi = np.asarray(hi, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    big = Fraction(np.finfo(np.float64).max)
    for idx in np.ndindex(values.shape):
        v = values[idx]
        if v is None:
            continue
        a, b = v.tight_bracket()
        if max(abs(a), abs(b)) > big:
            continue
        h, l_ = float(hi[idx]), float(lo[idx])
        if not (math.isfinite(h) and math.isfinite(l_)):
            raise AssertionError(f"{name}{list(idx)}: hi={h!r} lo={l_!r} but should be "
                                 f"{float(a)!r} [{call}]")
        got = Fraction(h) + Fraction(l_)
        err = max(abs(got - a), abs(got - b))
        if err > rel * min(abs(a), abs(b)) and err > Fraction(1, 2**1074):
            rel_err = float(err / max(abs(a), Fraction(1, 2**2000))) if a else math.inf
            raise AssertionError(
                f"{name}{list(idx)}: hi+lo={h!r}{l_:+.17g}, but should be {float(a)!r} "
                f"(exact {_decimal(a)}; relative error {rel_err:.3g} > {float(rel):.0e}) [{call}]")


def _decimal(q: Fraction, digits: int = 40) -> str:
    """q as a decimal with `digits` significant digits."""
    if q == 0:
        return "0"
    import decimal

    with decimal.localcontext() as ctx:
        ctx.prec = digits
        return str(decimal.Decimal(q.numerator) / decimal.Decimal(q.denominator))
