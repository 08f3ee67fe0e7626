"""Deterministic inputs of the golden cases: named data families on a counter-based generator.

Returns of ``make_inputs``: x (and dy for backward) in the data dtype, gamma, beta,
running_mean and running_var (> 0) in the parameter dtype, every value an exact binary number
of its dtype.

Reproducibility. numpy's random streams may change between versions, and transcendental
functions (log, cos, exp) differ in the last bit between libm and SIMD implementations, so
neither is used. Every 64-bit word is splitmix64 of a counter::

    key    = first 8 bytes of blake2b(seed, case id, array name)
    word_i = mix(key + (i + 1) * 0x9E3779B97F4A7C15)           (uint64, wrapping)
    mix(z) = z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB;
             z ^= z >> 31

and every variate comes from exact integer arithmetic and correctly rounded float64 +, -, *,
/, sqrt and ldexp, which IEEE 754 fixes bit for bit:

- uniform on [0, 1): ``(word >> 11) * 2**-53`` (exact);
- standard normal (Irwin-Hall, 12 terms): ``z = (sum of twelve 32-bit halves) / 2**32 - 6``;
  mean 0, variance 1, bounded to (-6, 6); the sum is an exact integer < 2**36, so z is exact.

Values are rounded into the dtype with ``bnspec.formats.round_float64`` (ties to even, gradual
underflow), never with a numpy / ml_dtypes cast (float64 -> bfloat16 casts round twice).

Layout: a family builds channel-major (C, M) float64 matrices; ``to_layout`` moves the channel
axis to ``axis``, so element j of channel c is the j-th element of that channel in row-major
order of the other axes.

Families (``FAMILIES``): normal, uniform, small_int, large_offset, tiny_var, constant,
one_per_channel, long, channels, special, f16_overflow, bf16_rounding. Each docstring states
its data; ``default_params`` makes the parameters of all but small_int and bf16_rounding.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace

import numpy as np

from bnspec.flags import DEFAULT_EPS, DTYPES, numpy_dtype
from bnspec.formats import FORMATS, round_float64

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)


def _mix(z: np.ndarray) -> np.ndarray:
    """Return splitmix64's finalizer applied to uint64 words (wrapping arithmetic), computed
    in place in z (callers pass a temporary) with one scratch array."""
    t = np.empty_like(z)
    with np.errstate(over="ignore"):
        for shift, mul in ((30, _MUL1), (27, _MUL2), (31, None)):
            np.right_shift(z, np.uint64(shift), out=t)
            z ^= t
            if mul is not None:
                z *= mul
    return z


class Stream:
    """Returns successive variates of the counter-based stream keyed by its names."""

    def __init__(self, seed: int, *names: str):
        text = "\x00".join([str(int(seed)), *names]).encode()
        self.key = np.uint64(int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(),
                                            "little"))
        self.counter = 0

    def words(self, count: int) -> np.ndarray:
        """Return the next `count` uint64 words: mix(key + i * golden), i = counter + 1, ..."""
        i = np.arange(self.counter + 1, self.counter + 1 + count, dtype=np.uint64)
        self.counter += count
        with np.errstate(over="ignore"):
            i *= _GOLDEN
            i += self.key
            return _mix(i)

    def uniform(self, shape, low: float = 0.0, high: float = 1.0) -> np.ndarray:
        """Return uniform variates on [low, high): low + (high - low) * k 2**-53."""
        n = int(np.prod(shape))
        u = np.ldexp((self.words(n) >> np.uint64(11)).astype(np.float64), -53)
        return (low + (high - low) * u).reshape(shape)

    def normal(self, shape) -> np.ndarray:
        """Return standard normal variates (Irwin-Hall of 12 uniforms, exact, in (-6, 6))."""
        n = int(np.prod(shape))
        w = self.words(6 * n).reshape(n, 6)
        total = ((w & _LOW32) + (w >> np.uint64(32))).sum(axis=1, dtype=np.uint64)
        return np.ldexp(total.astype(np.float64) - 6 * 2.0**32, -32).reshape(shape)

    def _element_words(self, c: int, m: int, window: tuple, per: int) -> np.ndarray:
        """Return the words of columns window = (j0, j1) of a (c, m) draw of `per` words per
        element as (c, j1 - j0, per), and move the counter past the whole draw."""
        j0, j1 = window
        first = (np.arange(c, dtype=np.uint64)[:, None] * np.uint64(m)
                 + np.arange(j0, j1, dtype=np.uint64)[None, :]) * np.uint64(per)
        i = first[..., None] + np.arange(self.counter + 1, self.counter + 1 + per,
                                         dtype=np.uint64)
        self.counter += c * m * per
        with np.errstate(over="ignore"):
            i *= _GOLDEN
            i += self.key
            return _mix(i)

    def uniform_columns(self, c: int, m: int, window: tuple, low: float = 0.0,
                        high: float = 1.0) -> np.ndarray:
        """Return columns window of uniform((c, m), low, high): the same bits, fewer words."""
        w = self._element_words(c, m, window, 1)[..., 0]
        u = np.ldexp((w >> np.uint64(11)).astype(np.float64), -53)
        return low + (high - low) * u

    def normal_columns(self, c: int, m: int, window: tuple) -> np.ndarray:
        """Return columns window of normal((c, m)): the same bits, fewer words."""
        w = self._element_words(c, m, window, 6)
        high = w >> np.uint64(32)
        w &= _LOW32
        w += high
        total = w.sum(axis=2, dtype=np.uint64)
        return np.ldexp(total.astype(np.float64) - 6 * 2.0**32, -32)

    def integers(self, shape, low: int, high: int) -> np.ndarray:
        """Return integers in [low, high] (inclusive): low + (w >> 32) * span >> 32."""
        n = int(np.prod(shape))
        if not 0 < high - low + 1 <= 1 << 32:
            raise ValueError(f"low={low!r}, high={high!r}: the span must be in 1..2**32")
        span = np.uint64(high - low + 1)
        k = ((self.words(n) >> np.uint64(32)) * span) >> np.uint64(32)
        return (k.astype(np.int64) + low).reshape(shape)

    def signs(self, shape, p_negative: float = 0.5) -> np.ndarray:
        """Return +-1.0 with P(-1) = p_negative."""
        return np.where(self.uniform(shape) < p_negative, -1.0, 1.0)

    def permutation(self, n: int) -> np.ndarray:
        """Return a permutation of range(n) (argsort of distinct-with-certainty-enough keys)."""
        keys = self.words(n)
        return np.lexsort((np.arange(n), keys))


@dataclass(frozen=True)
class Request:
    """What a family is asked for: one case's dtype, shape, channel axis, eps and stream keys."""

    family: str
    dtype: str
    shape: tuple
    axis: int
    eps: float = DEFAULT_EPS
    seed: int = 0
    key: str = ""
    #: Columns (j0, j1) of every channel to make, or None for all; families in WINDOWED
    #: honour it (and then make dy only when dy_wanted).
    window: tuple | None = None
    dy_wanted: bool = True

    @property
    def channels(self) -> int:
        return int(self.shape[self.axis % len(self.shape)])

    @property
    def per_channel(self) -> int:
        """M: the number of elements in one channel."""
        return int(np.prod(self.shape)) // max(self.channels, 1)

    @property
    def fmt(self):
        return FORMATS[self.dtype]

    def stream(self, name: str) -> Stream:
        return Stream(self.seed, self.key, self.family, name)

    @property
    def columns(self) -> np.ndarray:
        """Return the column indices j the family makes (all M, or the window's)."""
        j0, j1 = self.window or (0, self.per_channel)
        return np.arange(j0, j1)

    def normal_matrix(self, s: Stream) -> np.ndarray:
        """Return s.normal((C, M)), or only the window's columns of it."""
        if self.window is None:
            return s.normal((self.channels, self.per_channel))
        return s.normal_columns(self.channels, self.per_channel, self.window)

    def uniform_matrix(self, s: Stream, low: float = 0.0, high: float = 1.0) -> np.ndarray:
        """Return s.uniform((C, M), low, high), or only the window's columns of it."""
        if self.window is None:
            return s.uniform((self.channels, self.per_channel), low, high)
        return s.uniform_columns(self.channels, self.per_channel, self.window, low, high)


@dataclass
class Data:
    """A family's float64 output before rounding: x and dy as (C, M), per-channel loc/scale."""

    x: np.ndarray
    dy: np.ndarray
    loc: np.ndarray
    scale: np.ndarray
    params: dict | None = None  # family-specific gamma/beta/running_mean/running_var


def to_layout(cm: np.ndarray, shape, axis: int) -> np.ndarray:
    """Return the (C, M) channel-major matrix laid out as an array of `shape` with the channel
    dimension at `axis`."""
    ax = axis % len(shape)
    others = tuple(n for i, n in enumerate(shape) if i != ax)
    return np.moveaxis(cm.reshape((shape[ax],) + others), 0, ax)


# --- families ---------------------------------------------------------------------------


def _normal_dy(req: Request) -> np.ndarray | None:
    if req.window is not None and not req.dy_wanted:
        return None
    s = req.stream("dy")
    c = req.channels
    return s.uniform((c, 1), -0.5, 0.5) + s.uniform((c, 1), 0.5, 1.5) * req.normal_matrix(s)


def normal(req: Request) -> Data:
    """x = loc_c + scale_c z, loc_c ~ U(-2, 2), scale_c ~ U(0.5, 2), z standard normal."""
    s = req.stream("x")
    c = req.channels
    loc, scale = s.uniform(c, -2, 2), s.uniform(c, 0.5, 2)
    return Data(loc[:, None] + scale[:, None] * req.normal_matrix(s), _normal_dy(req), loc, scale)


def uniform(req: Request) -> Data:
    """x ~ U(low_c, low_c + width_c), low_c ~ U(-3, 0), width_c ~ U(0.5, 4)."""
    s = req.stream("x")
    c = req.channels
    low, width = s.uniform(c, -3, 0), s.uniform(c, 0.5, 4)
    x = low[:, None] + width[:, None] * req.uniform_matrix(s)
    return Data(x, _normal_dy(req), low + width / 2, width / math.sqrt(12.0))


def small_int(req: Request) -> Data:
    """Integers in [-3, 3] with an integer channel mean and, for even M, variance exactly 1.

    Channel c: center m_c in {-1, 0, 1}; M // 2 pairs m_c +- d with d in {0, 1, 2}, where for
    every d = 2 there are three d = 0 (so the mean of d**2 is 1); odd M adds one m_c.
    Then mean = m_c and var = 2 sum d**2 / M = 1 (M even). dy: integers in [-2, 2].
    Parameters are small dyadics (gamma in {+-1/2, 1, 3/2, 2}, beta in {+-1/2, +-1, 3/2},
    running_mean in {-1, 0, 1}, running_var in {1/4, 1, 4}), so with eps = 0 every output
    is an exact short dyadic.
    """
    s = req.stream("x")
    c, m = req.channels, req.per_channel
    pairs = m // 2
    center = s.integers(c, -1, 1).astype(np.float64)
    x = np.empty((c, m))
    for ch in range(c):
        twos = int(s.integers(1, 0, pairs // 4)[0])
        d = np.array([2.0] * twos + [0.0] * (3 * twos) + [1.0] * (pairs - 4 * twos))
        values = np.concatenate([center[ch] + d, center[ch] - d, [center[ch]] * (m % 2)])
        x[ch] = values[s.permutation(m)]
    dy = req.stream("dy").integers((c, m), -2, 2).astype(np.float64)
    p = req.stream("params")
    params = {
        "gamma": np.array([-0.5, 0.5, 1.0, 1.5, 2.0])[p.integers(c, 0, 4)],
        "beta": np.array([-1.0, -0.5, 0.5, 1.0, 1.5])[p.integers(c, 0, 4)],
        "running_mean": p.integers(c, -1, 1).astype(np.float64),
        "running_var": np.array([0.25, 1.0, 4.0])[p.integers(c, 0, 2)],
    }
    return Data(x, dy, center, np.ones(c), params)


#: mean/std of large_offset data, per dtype: 1e4 where the format has the digits; for the
#: 16-bit formats the largest ratio that leaves std >= 2 ulps of the mean (float16: 11 bits,
#: |mean| in [1024, 2048) has ulp 1, std = |mean|/512 in [2, 4); bfloat16: 8 bits, |mean| in
#: [128, 256) has ulp 1, std = |mean|/64 in [2, 4)). float64 uses 1e8: the one-pass formula
#: E[x^2] - E[x]^2 then loses all 16 digits.
LARGE_OFFSET = {"float64": (1e8, 2.0**26), "float32": (1e4, 2.0**13),
                "float16": (512.0, 1024.0), "bfloat16": (64.0, 128.0)}


def large_offset(req: Request) -> Data:
    """x = loc_c + (|loc_c| / ratio) z with |loc_c| in [base, 2 base): see LARGE_OFFSET."""
    ratio, base = LARGE_OFFSET[req.dtype]
    s = req.stream("x")
    c = req.channels
    loc = s.signs(c, 0.3) * s.uniform(c, base, 2 * base)
    scale = np.abs(loc) / ratio
    return Data(loc[:, None] + scale[:, None] * req.normal_matrix(s), _normal_dy(req), loc, scale)


def tiny_var(req: Request) -> Data:
    """Variance far below and close to eps: even channels std = sqrt(1e-3 e) U(0.7, 1.4),
    odd channels std = sqrt(e) U(0.7, 1.4), e = eps (the default eps when eps = 0); the channel
    mean is within 3 std of 0 so that 16-bit formats keep the spread."""
    e = req.eps if req.eps > 0 else DEFAULT_EPS
    s = req.stream("x")
    c = req.channels
    factor = np.where(np.arange(c) % 2 == 0, math.sqrt(1e-3 * e), math.sqrt(e))
    scale = factor * s.uniform(c, 0.7, 1.4)
    loc = 3 * scale * s.uniform(c, -1, 1)
    return Data(loc[:, None] + scale[:, None] * req.normal_matrix(s), _normal_dy(req), loc, scale)


def constant(req: Request) -> Data:
    """Every channel constant (var = 0): channel 1 is all zeros, the others a normal value."""
    s = req.stream("x")
    c = req.channels
    value = 2 * s.normal(c)
    value[1:2] = 0.0
    return Data(np.repeat(value[:, None], req.columns.size, axis=1), _normal_dy(req), value,
                np.zeros(c))


def one_per_channel(req: Request) -> Data:
    """Normal data with M = 1 (var = 0 in every channel); the shape must have M = 1."""
    if req.per_channel != 1:
        raise ValueError(f"shape={req.shape!r}, axis={req.axis}: one_per_channel needs M = 1")
    return normal(req)


def long(req: Request) -> Data:
    """Normal data with a channel mean of 1 to 4 std (so naive 16-bit sums overflow); the shape
    must have M > 65536."""
    if req.per_channel <= 65536:
        raise ValueError(f"shape={req.shape!r}, axis={req.axis}: long needs M > 65536")
    s = req.stream("x")
    c = req.channels
    scale = s.uniform(c, 0.5, 2)
    loc = s.signs(c) * scale * s.uniform(c, 1, 4)
    return Data(loc[:, None] + scale[:, None] * req.normal_matrix(s), _normal_dy(req), loc, scale)


def channels(req: Request) -> Data:
    """Normal data; the plan gives this family channel counts 1, 3, 9, 17 and 33 (one past
    the 8-, 16- and 32-lane SIMD widths)."""
    return normal(req)


#: Roles of the channels of `special` data, by channel index (channels past the list: normal).
SPECIAL_ROLES = ("mixed", "nan", "tiny", "inf", "infs", "normal")


def special(req: Request) -> Data:
    """Non-finite and extreme values in some channels only (SPECIAL_ROLES by channel index):

    mixed: normal data with +0, -0, and +-subnormals of the dtype in some positions;
    nan: normal data with one NaN; tiny: only +-0 and +-subnormals (var underflows);
    inf: normal data with one +inf; infs: normal data with one +inf and one -inf;
    channels past those: normal. dy is normal everywhere.
    """
    data = normal(req)
    s = req.stream("special")
    fmt = req.fmt
    c, m = req.channels, req.per_channel
    sub_max = math.ldexp(1.0, fmt.emin) - fmt.min_subnormal
    for ch in range(c):
        role = SPECIAL_ROLES[ch] if ch < len(SPECIAL_ROLES) else "normal"
        where = s.permutation(m)
        if role == "mixed":
            picks = [0.0, -0.0, fmt.min_subnormal, -sub_max, 3 * fmt.min_subnormal]
            for j, v in zip(where, picks[: max(1, m // 2)]):
                data.x[ch, j] = v
        elif role == "nan":
            data.x[ch, where[0]] = math.nan
        elif role == "tiny":
            top = min(int(sub_max / fmt.min_subnormal), 2**31 - 1)
            k = s.integers(m, 0, top).astype(np.float64)
            data.x[ch] = s.signs(m) * k * fmt.min_subnormal
            data.x[ch, where[0]] = -0.0
        elif role == "inf":
            data.x[ch, where[0]] = math.inf
        elif role == "infs":
            data.x[ch, where[0]] = math.inf
            data.x[ch, where[-1]] = -math.inf
    return data


def f16_overflow(req: Request) -> Data:
    """Values near the float16 limit, so that float16 sums and squares overflow:

    channel 0: +-65504 alternating (mean near 0, var = 65504**2 up to rounding);
    other channels: loc_c = +-U(40000, 56000), x = loc_c + 8000 U(-1, 1) (all finite in
    float16; a sum of two already overflows float16). The same magnitudes are used for the
    other dtypes, where nothing overflows (a control).
    """
    s = req.stream("x")
    c = req.channels
    loc = s.signs(c, 0.4) * s.uniform(c, 40000, 56000)
    x = loc[:, None] + 8000 * req.uniform_matrix(s, -1, 1)
    scale = np.full(c, 8000 / math.sqrt(3.0))
    x[0] = np.where(req.columns % 2 == 0, 65504.0, -65504.0)
    loc[0], scale[0] = 0.0, 65504.0
    return Data(x, _normal_dy(req), loc, scale)


def bf16_rounding(req: Request) -> Data:
    """Outputs on or a hair from bfloat16 rounding ties (midpoints of two bfloat16 numbers).

    Channel c: x = m_c +- d_c in equal numbers (M even), m_c in {0, +-512, 1024}, d_c = 2**k,
    k in {6, 7, 8}: mean m_c, var d_c**2 exactly. gamma = +-2**a (a in {-1, 0, 1}), beta =
    +-2**e (1 + 2**-8) (e in {3, 4, 5}, a bfloat16 midpoint in float32), running stats equal
    to the batch stats. With eps = 0, y = beta +- g exactly, half of them bfloat16 midpoints;
    with eps > 0, y = beta +- g (1 - eps/(2 d**2) + ...), within eps/(2 d**2) <= 1.2e-7 of the
    midpoint relatively: a float32 intermediate lands on the tie, while the correctly rounded
    bfloat16 result goes the other way. dy: bfloat16 midpoints where the dtype holds them
    (float32, float64, float16), random bfloat16 values for bfloat16 data.
    """
    s = req.stream("x")
    c, m = req.channels, req.per_channel
    center = np.array([0.0, 512.0, -512.0, 1024.0])[s.integers(c, 0, 3)]
    d = np.ldexp(1.0, s.integers(c, 6, 8))
    x = np.empty((c, m))
    for ch in range(c):
        half = np.concatenate([np.full(m - m // 2, 1.0), np.full(m // 2, -1.0)])
        x[ch] = center[ch] + d[ch] * half[s.permutation(m)]
    t = req.stream("dy")
    k = t.integers((c, m), 0, 127).astype(np.float64)
    if req.dtype == "bfloat16":
        dy = t.signs((c, m)) * (1 + k * 2.0**-7) * np.ldexp(1.0, t.integers((c, m), -2, 1))
    else:
        dy = t.signs((c, m)) * (1 + (2 * k + 1) * 2.0**-8) * np.ldexp(1.0, t.integers((c, m), -2, 1))
    p = req.stream("params")
    params = {
        "gamma": p.signs(c, 0.25) * np.ldexp(1.0, p.integers(c, -1, 1)),
        "beta": p.signs(c) * np.ldexp(1.0 + 2.0**-8, p.integers(c, 3, 5)),
        "running_mean": center,
        "running_var": d * d,
    }
    return Data(x, dy, center, d, params)


FAMILIES = {f.__name__: f for f in (
    normal, uniform, small_int, large_offset, tiny_var, constant, one_per_channel, long,
    channels, special, f16_overflow, bf16_rounding)}


# --- parameters and assembly ------------------------------------------------------------


def default_params(req: Request, loc: np.ndarray, scale: np.ndarray) -> dict:
    """Return float64 gamma, beta, running_mean, running_var for data of channel loc/scale.

    gamma = +-U(0.5, 2) (a quarter negative), beta = +-U(0.1, 1), running_mean = loc + scale z/4,
    running_var = scale**2 U(0.5, 2), or U(0.5, 2) where scale = 0; non-finite loc/scale
    count as 0 and 1.
    """
    p = req.stream("params")
    c = req.channels
    loc = np.where(np.isfinite(loc), loc, 0.0)
    scale = np.where(np.isfinite(scale), scale, 1.0)
    gamma = p.signs(c, 0.25) * p.uniform(c, 0.5, 2)
    beta = p.signs(c) * p.uniform(c, 0.1, 1)
    running_mean = loc + scale * p.normal(c) / 4
    var = scale * scale * p.uniform(c, 0.5, 2)
    running_var = np.where(var > 0, var, p.uniform(c, 0.5, 2))
    return {"gamma": gamma, "beta": beta, "running_mean": running_mean, "running_var": running_var}


def round_to(values: np.ndarray, dtype: str) -> np.ndarray:
    """Return float64 values correctly rounded into dtype (ties to even) as an array of that
    dtype (the final cast is exact)."""
    return round_float64(values, FORMATS[dtype]).astype(numpy_dtype(dtype))


def make_inputs(family: str, dtype: str, shape, axis: int, *, with_dy: bool, eps: float =
                DEFAULT_EPS, seed: int = 0, key: str = "") -> dict[str, np.ndarray]:
    """Return the inputs of one case by name: x (and dy) in dtype, gamma, beta, running_mean,
    running_var in dtype's parameter dtype (running_var > 0).

    The same arguments always give the same bits (see the module docstring); `key` (the case
    id) and `seed` select the stream.
    """
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not one of {sorted(FAMILIES)}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {list(DTYPES)}")
    shape = tuple(int(n) for n in shape)
    if len(shape) < 1 or not -len(shape) <= axis < len(shape):
        raise ValueError(f"axis={axis!r} is out of range for shape={shape!r}")
    req = Request(family, dtype, shape, axis, float(eps), int(seed), key, dy_wanted=with_dy)
    if family in WINDOWED and math.prod(shape) > GENERATE_CHUNK:
        return _make_windowed(req, with_dy)
    data = FAMILIES[family](req)
    out = {"x": round_to(to_layout(data.x, shape, axis), dtype)}
    return _finish_inputs(req, data, out, with_dy)


def _finish_inputs(req: Request, data: Data, out: dict, with_dy: bool) -> dict:
    """Add the rounded parameters (and dy unless out has it) to out; return out."""
    dtype, shape, axis = req.dtype, req.shape, req.axis
    params = data.params or default_params(req, data.loc, data.scale)
    pdtype = DTYPES[dtype].param
    for name in ("gamma", "beta", "running_mean", "running_var"):
        out[name] = round_to(np.asarray(params[name], dtype=np.float64), pdtype)
    tiny = FORMATS[pdtype].min_subnormal
    out["running_var"] = np.maximum(out["running_var"], np.asarray(tiny).astype(out["running_var"].dtype))
    if with_dy and "dy" not in out:
        out["dy"] = round_to(to_layout(data.dy, shape, axis), dtype)
    return out


#: Families whose data a window of columns at a time can make (Request.window), and the
#: elements above which make_inputs makes them so: memory then stays a few tens of bytes per
#: element of one window instead of growing with the tensor (48 bytes of stream words per
#: normal variate). The bits are the same either way (tests/oracle/test_streaming.py).
WINDOWED = ("normal", "uniform", "large_offset", "tiny_var", "constant", "long", "channels",
            "f16_overflow")
GENERATE_CHUNK = 1 << 20


def layout_windows(shape, axis: int, chunk: int) -> list[tuple[int, int]]:
    """Return column windows [j0, j1) of the [C, M] channel view, covering 0..M, each of
    about chunk / C columns and each a block of the layout: whole multiples of Q (the
    product of the dimensions after the channel axis) or part of one run of Q."""
    ax = axis % len(shape)
    c, q = int(shape[ax]), math.prod(shape[ax + 1:])
    m = math.prod(shape) // max(c, 1)
    width = max(1, chunk // max(c, 1))
    if q <= width:
        step = (width // q) * q
        return [(j, min(m, j + step)) for j in range(0, m, step)]
    return [(p * q + q0, p * q + min(q, q0 + width)) for p in range(m // q)
            for q0 in range(0, q, width)]


def put_window(out: np.ndarray, block: np.ndarray, axis: int, window: tuple) -> None:
    """Write the [C, j1 - j0] channel-view block of columns window into the layout array
    out (a window of layout_windows)."""
    ax = axis % out.ndim
    c, q = out.shape[ax], math.prod(out.shape[ax + 1:])
    x3 = out.reshape(-1, c, q)
    j0, j1 = window
    if j0 % q == 0 and j1 % q == 0:
        x3[j0 // q: j1 // q] = block.reshape(c, -1, q).transpose(1, 0, 2)
    else:
        x3[j0 // q, :, j0 % q: j0 % q + (j1 - j0)] = block


def _make_windowed(req: Request, with_dy: bool) -> dict:
    """make_inputs for a family of WINDOWED, one layout window at a time."""
    np_dtype = numpy_dtype(req.dtype)
    out = {"x": np.empty(req.shape, dtype=np_dtype)}
    if with_dy:
        out["dy"] = np.empty(req.shape, dtype=np_dtype)
    data = None
    for window in layout_windows(req.shape, req.axis, GENERATE_CHUNK):
        data = FAMILIES[req.family](replace(req, window=window))
        put_window(out["x"], round_to(data.x, req.dtype), req.axis, window)
        if with_dy:
            put_window(out["dy"], round_to(data.dy, req.dtype), req.axis, window)
    return _finish_inputs(req, data, out, with_dy)
