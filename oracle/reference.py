"""The oracle's evaluation of batch_norm: exact statistics, expansions, mpmath fallback.

Inputs are exact binary numbers. Per channel c (x viewed as [C, M], channel first):

    S = sum x, Q = sum x^2 exactly (oracle.exact), mu = S/M, var = Q/M - mu^2   (rationals)
    ve = var + DType(eps)        (running stats: mu = running_mean, ve = running_var + DType(eps))
    r = 1/sqrt(ve) at 256 bits   (r = 0 when var == 0 and eps == 0 with batch statistics)
    g = 1 if fix_gamma else gamma; s = g r; w = r g
    y = (x - mu) s + beta
    backward (batch stats): a = sum(dy)/M, dotp = sum(x dy) - mu sum(dy), k = dotp/(M ve)
        dx = (dy - a - (x - mu) k) w,  dgamma = dotp r,  dbeta = sum(dy)
    backward (running stats): dx = dy w, dgamma = (sum(x dy) - mu sum(dy)) r, dbeta = sum(dy)
    step update (batch stats): m = float32(momentum)
        running_mean' = running_mean m + mu (1 - m)
        running_var'  = running_var m + (ve - eps) (1 - m)      [1/r^2 - eps, eps the double]

Per-channel scalars are exact rationals or 256-bit mpmath numbers. Per-element outputs use
the fast path: each is written as a sum of float64 terms that is exact up to the stated
error (``oracle.dd``: x - mu1 - mu2 - mu3 by two_sum, products by two_prod with the
three-part split of the per-channel scalars), reduced to hi + lo with a bound err. An
element goes to the slow path (mpmath at 256 bits from the exact inputs) when err does not
prove 30 significant digits (err > 2**-100 |hi|), when err does not decide the rounding to
the output dtype, or when a product could underflow. Elements whose inputs are not finite
(and channels whose statistics are not) follow IEEE float64 arithmetic of the same formulas,
which yields their NaN or infinity exactly.
"""
from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np

from bnspec.flags import DTYPES, Flags
from bnspec.formats import FORMATS, round_fraction
from bnspec.validate import check_arguments

from . import condition, fastpath
from .assemble import (channel_view, expected_from_scalars, finish, from_channel_view,
                       triple_columns, unsafe, unsafe_scalars)
from . import channels
from .channels import ChannelSource, first_pass, layout_tiles, second_pass, tile_to_layout
from .mp import (MAX_PRECISION_BITS, MP, PRECISION_BITS, decided, exact_sqrt, mpf, quotient,
                 same_kind, to_float)
from .results import Expected, ExpectedBlocks
from .variants import check_variants


class _Scalars:
    """Per-channel exact statistics and scales; None entries mark non-finite channels."""

    def __init__(self, channels: int):
        self.exact = np.zeros(channels, dtype=bool)
        self.mu = [Fraction(0)] * channels
        self.ve = [Fraction(1)] * channels
        self.r = [MP.mpf(1)] * channels
        self.s = [MP.mpf(1)] * channels
        #: r and s as exact rationals where var + DType(eps) is the square of a rational.
        self.r_exact: list[Fraction | None] = [None] * channels
        self.var = [Fraction(0)] * channels  # the variance r is computed from
        self.var_biased = [Fraction(0)] * channels  # batch statistics only
        self.s_exact: list[Fraction | None] = [None] * channels


def evaluate_reference(x, gamma, beta, running_mean, running_var, dy, *, flags: Flags, eps,
                       momentum, axis, variants=()) -> dict[str, Expected]:
    """Return the expected outputs (see oracle.api.evaluate for what is returned), under the
    named semantic variants (oracle.variants) if any."""
    streamed = evaluate_reference_streamed(x, gamma, beta, running_mean, running_var, dy,
                                           flags=flags, eps=eps, momentum=momentum, axis=axis,
                                           variants=variants)
    return {name: e.collect() if isinstance(e, ExpectedBlocks) else e
            for name, e in streamed.items()}


def evaluate_reference_streamed(x, gamma, beta, running_mean, running_var, dy, *,
                                flags: Flags, eps, momentum, axis, variants=(),
                                chunk: int | None = None) -> dict[str, Expected | ExpectedBlocks]:
    """Return the expected outputs as evaluate_reference does, but the per-element output
    (y or dx) as ``ExpectedBlocks``: computed block by block (about chunk elements each) when
    iterated, in layout order, so that memory does not grow with the tensor (oracle.channels;
    chunk defaults to oracle.channels.CHUNK).
    The per-channel outputs are computed here, in one or two passes over x and dy."""
    dtype, ax = check_arguments(x, gamma, beta, running_mean, running_var, axis=axis, eps=eps,
                                momentum=momentum, dy=dy)
    names = check_variants(variants)
    with MP.workprec(PRECISION_BITS), np.errstate(all="ignore"):
        return _Evaluation(x, gamma, beta, running_mean, running_var, dy, flags, float(eps),
                           float(momentum), dtype, ax, names, chunk or channels.CHUNK).outputs()


class _Evaluation:
    def __init__(self, x, gamma, beta, running_mean, running_var, dy, flags, eps, momentum,
                 dtype, axis, variants=frozenset(), chunk: int = channels.CHUNK):
        self.variants = variants
        if "eps_min_1e-5" in variants:
            eps = max(eps, 1e-5)
        if "eps_float32" in variants and math.isfinite(eps):
            eps = float(np.float32(eps))  # and added as such (eps_d below)
        if "fix_gamma_ignored" in variants:
            flags = Flags(flags.training, False, flags.use_global_stats, flags.output_mean_var)
        self.shape = np.shape(x)
        self.axis = axis
        self.flags = flags
        self.dtype = dtype
        self.param = DTYPES[dtype].param
        self._x, self._dy = x, dy
        self.source = ChannelSource(x, dy, axis, chunk)
        self.C, self.M = self.source.C, self.source.M
        self.has_dy = dy is not None
        as64 = lambda a: np.asarray(a).astype(np.float64)  # noqa: E731
        self.G, self.B = as64(gamma), as64(beta)
        self.RM, self.RV = as64(running_mean), as64(running_var)
        self.eps = eps
        eps_d = (eps if {"eps_not_cast", "eps_float32"} & variants or not math.isfinite(eps)
                 else round_fraction(Fraction(eps), FORMATS[dtype]))
        # DType(eps), exact; an eps that overflows the data dtype (or is inf) makes every
        # channel follow IEEE float64 arithmetic: invstd = 1/sqrt(var + inf) = 0.
        self.eps_finite = math.isfinite(eps_d)
        self.eps_d = Fraction(eps_d) if self.eps_finite else Fraction(0)
        self.eps_d64 = eps_d
        self.mom = Fraction(round_fraction(Fraction(momentum), FORMATS["float32"]))
        if "momentum_inverted" in variants:
            self.mom = 1 - self.mom
        self.G_eff = np.ones(self.C) if flags.fix_gamma else self.G
        self._statistics()

    # --- per-channel statistics -------------------------------------------------------

    @functools.cached_property
    def X(self) -> np.ndarray:
        """The whole [C, M] channel view of x (float64): only the variants' paths use it."""
        return channel_view(np.asarray(self._x), self.axis)

    @functools.cached_property
    def DY(self) -> np.ndarray | None:
        """The whole channel view of dy, or None (variants' paths only)."""
        return None if self._dy is None else channel_view(np.asarray(self._dy), self.axis)

    def _statistics(self):
        C, M, flags = self.C, self.M, self.flags
        st = _Scalars(C)
        # gamma/beta enter only y, dx (and dgamma through nothing): a non-finite one leaves
        # the statistics exact and sends that channel's y and dx down the IEEE path.
        self.params_ok = np.isfinite(self.G_eff) & np.isfinite(self.B)
        # Terms of a reduction count at least as the smallest normal number of the
        # accumulation dtype: below it rounding errors are absolute (oracle.condition).
        self.floor = FORMATS["float64" if self.dtype == "float64" else "float32"].min_normal
        sums = self.sums = first_pass(self.source, self.floor,
                                      flags.batch_stats and self.eps_finite)
        x_ok = sums.x_ok
        for c in range(C if self.eps_finite else 0):
            if flags.batch_stats:
                if not x_ok[c]:
                    continue
                S = sums.exact_x[c]
                mu = S / M
                var = st.var_biased[c] = sums.exact_xx[c] / M - mu * mu
                if "variance_unbiased" in self.variants:
                    if M == 1:
                        continue  # 0/0: NaN, from the IEEE shadow
                    var = var * M / (M - 1)
                if var + self.eps_d == 0 and (self.eps != 0
                                              or "invstd_inf_at_zero" in self.variants):
                    # The spec defines invstd = 0 only for var == 0 with eps == 0; an eps
                    # that rounds to 0 in the data dtype gives 1/sqrt(0) = inf (IEEE path),
                    # as invstd_inf_at_zero does for eps == 0 too.
                    continue
            else:
                if not (np.isfinite(self.RM[c]) and np.isfinite(self.RV[c])):
                    continue
                mu = Fraction(self.RM[c])
                var = Fraction(self.RV[c])
                if var + self.eps_d <= 0 or var < 0:
                    continue
            st.var[c] = var
            r, r_exact, ve = self._invstd(var, PRECISION_BITS)
            st.exact[c] = True
            st.mu[c], st.ve[c], st.r[c], st.r_exact[c] = mu, ve, r, r_exact
            if self.params_ok[c]:
                g = Fraction(self.G_eff[c])
                st.s[c] = r * mpf(g)
                if st.r_exact[c] is not None:
                    st.s_exact[c] = st.r_exact[c] * g
        self.st = st
        # IEEE float64 shadow of the statistics, for channels the exact path does not take.
        with np.errstate(all="ignore"):
            mu64 = sums.sum_x / M if flags.batch_stats else self.RM.copy()
            self.mu_cols = triple_columns(st.mu)
            self.centered = second_pass(self.source, self.floor, mu64, self.mu_cols[0][:, 0],
                                        flags.batch_stats)
            if flags.batch_stats:
                var64 = self.centered.sq_dev / M
            else:
                var64 = self.RV.copy()
            if "variance_unbiased" in self.variants and flags.batch_stats:
                var64 = var64 * M / np.float64(M - 1)
            ve64 = var64 + self.eps_d64
            r64 = 1 / np.sqrt(ve64)
            if "eps_outside_sqrt" in self.variants:
                r64 = 1 / (np.sqrt(var64) + self.eps_d64)
            if flags.batch_stats and self.eps == 0 and "invstd_inf_at_zero" not in self.variants:
                r64 = np.where(ve64 == 0, 0.0, r64)
        self.mu64, self.ve64, self.r64 = mu64, ve64, r64
        self.mean_abs_x = sums.sum_mag_x / M

    def _invstd(self, var: Fraction, prec: int):
        """(r as mpf at prec bits, r as a Fraction when rational else None, 1/r^2 as a
        Fraction when rational else mpf). r = 1/sqrt(var + DType(eps)), or 1/(sqrt(var) +
        DType(eps)) under eps_outside_sqrt; r = 0 when the denominator is 0."""
        with MP.workprec(prec):
            if "eps_outside_sqrt" in self.variants:
                root = exact_sqrt(var)
                if root is not None:
                    den = root + self.eps_d
                    r_exact = Fraction(0) if den == 0 else 1 / den
                    return mpf(r_exact), r_exact, (den * den if den else Fraction(0))
                den = MP.sqrt(mpf(var)) + mpf(self.eps_d)
                return 1 / den, None, den * den
            ve = var + self.eps_d
            if ve == 0:  # batch statistics with var == 0 and eps == 0 (see _statistics)
                return MP.mpf(0), Fraction(0), ve
            root = exact_sqrt(ve)
            if root is not None:
                return mpf(1 / root), 1 / root, ve
            return 1 / MP.sqrt(mpf(ve)), None, ve

    def _magnitude(self, a):
        """|a| with non-finite entries as 0 and every entry at least the underflow floor."""
        return np.maximum(np.abs(np.where(np.isfinite(a), a, 0)), self.floor)

    def _dotp_times_r(self, c: int, dotp: Fraction):
        """dgamma = dotp r: exact when r is rational, else decided by decided."""
        if self.st.r_exact[c] is not None:
            return dotp * self.st.r_exact[c]
        return decided(lambda prec: mpf(dotp) * self._invstd(self.st.var[c], prec)[0],
                        FORMATS[self.param])

    def _s_at(self, c: int, prec: int):
        """s = g r of channel c: a Fraction when rational, else an mpf at prec bits."""
        if self.st.s_exact[c] is not None:
            return self.st.s_exact[c]
        return mpf(Fraction(self.G_eff[c])) * self._invstd(self.st.var[c], prec)[0]

    def _y_slow(self, c: int, x: float, prec: int):
        """y = (x - mu) s + beta, exact when s is rational; otherwise in mpmath from prec
        bits, doubled until the cancellation against beta leaves prec/2 good bits."""
        st = self.st
        d = Fraction(x) - st.mu[c]
        beta = Fraction(self.B[c])
        if st.s_exact[c] is not None or d == 0:
            return d * (st.s_exact[c] or 0) + beta
        work = prec
        while True:
            with MP.workprec(work):
                ds = mpf(d) * self._s_at(c, work)
                value = ds + mpf(beta)
                size = abs(ds) + abs(mpf(beta))
                if abs(value) > MP.ldexp(size, prec // 2 - work) or work >= MAX_PRECISION_BITS:
                    return +value
            work *= 2

    # --- outputs ----------------------------------------------------------------------

    def stats_update_due(self, forward: bool) -> bool:
        """Return whether this call updates the running statistics: MXNet updates them in
        the backward pass of a training step with batch statistics; the variants move or
        drop the update."""
        updates = self.flags.batch_stats and "stats_not_updated" not in self.variants
        return updates and (not forward or "stats_updated_in_forward" in self.variants)

    def mean_invstd_returned(self) -> bool:
        """Return whether a forward call returns mean and invstd (output_mean_var, unless a
        variant says the implementation has none to return)."""
        if "no_mean_invstd" in self.variants:
            return False
        if "no_mean_invstd_with_running_stats" in self.variants and not self.flags.batch_stats:
            return False
        return self.flags.output_mean_var

    def outputs(self) -> dict[str, Expected]:
        if "fp16_stepwise_rounding" in self.variants and self.dtype == "float16":
            from . import fp16_steps

            out = fp16_steps.outputs(self)
            if not self.mean_invstd_returned():
                out.pop("mean", None)
                out.pop("invstd", None)
            return out
        out = {}
        if not self.has_dy:
            out["y"] = self._blocks("y", self._y_tile)
            if self.mean_invstd_returned():
                out["mean"], out["invstd"] = self._mean_invstd()
        else:
            out.update(self._backward())
        if self.stats_update_due(not self.has_dy):
            out["running_mean"], out["running_var"] = self._updated_running_stats()
        else:
            out["running_mean"], out["running_var"] = self._unchanged_running_stats()
        return out

    def _reshape(self, e: Expected) -> Expected:
        f = lambda a: from_channel_view(a, self.shape, self.axis)  # noqa: E731
        return Expected(e.name, e.dtype, f(e.hi), f(e.lo), f(e.rounded), f(e.cond))

    def _element_mask(self, rows: slice, *arrays):
        exact = (self.st.exact & self.params_ok)[rows, None]
        mask = np.broadcast_to(exact, arrays[0].shape).copy()
        for a in arrays:
            mask &= np.isfinite(a)
        return mask

    def _blocks(self, name: str, tile_fn) -> ExpectedBlocks:
        """Return the per-element output `name` whose tile (c0, c1, j0, j1) of the channel
        view tile_fn evaluates, as blocks in layout order (oracle.channels.layout_tiles)."""
        q = self.source.Q

        def make():
            for c0, c1, j0, j1 in layout_tiles(self.shape, self.axis, self.source.chunk):
                with MP.workprec(PRECISION_BITS), np.errstate(all="ignore"):
                    e = tile_fn(slice(c0, c1), j0, j1)
                yield Expected(e.name, e.dtype, *(tile_to_layout(getattr(e, key), q)
                                                  for key in ("hi", "lo", "rounded", "cond")))

        return ExpectedBlocks(name, self.dtype, tuple(self.shape), make)

    def _columns(self, values: list) -> tuple:
        """Return triple_columns(values), computed once per list."""
        cache = self.__dict__.setdefault("_column_cache", {})
        if id(values) not in cache:
            cache[id(values)] = (values, triple_columns(values), unsafe_scalars(values))
        return cache[id(values)][1:]

    def _y_tile(self, rows: slice, j0: int, j1: int) -> Expected:
        st = self.st
        X = self.source.block("x", rows.start, rows.stop, j0, j1)
        mu = tuple(t[rows] for t in self.mu_cols)
        s_cols, unsafe_s = self._columns(st.s)
        _, unsafe_mu = self._columns(st.mu)
        B = self.B[rows, None]
        hi, lo, err = fastpath.blockwise(fastpath.y_value, [X],
                                         [mu, tuple(t[rows] for t in s_cols), B])
        exact_mask = self._element_mask(rows, X)

        def slow(index, prec):
            return self._y_slow(rows.start + index[0], X[index], prec)

        with np.errstate(all="ignore"):
            ieee = ((X - self.mu64[rows, None]) * self.r64[rows, None] * self.G_eff[rows, None]
                    + B)
        s64 = s_cols[0][rows]
        cond = condition.cond_y(X, mu[0], s64, B, self.mean_abs_x[rows, None],
                                self.flags.batch_stats)
        return finish("y", self.dtype, hi, lo, err, exact_mask, slow, ieee, cond,
                      unsafe(X) | unsafe_s[rows] | unsafe_mu[rows])

    def _mean_invstd(self) -> tuple[Expected, Expected]:
        st = self.st
        means, invstds = [], []
        for c in range(self.C):
            if st.exact[c]:
                means.append(st.mu[c])
                if "invstd_as_var" in self.variants:
                    invstds.append(st.var[c])
                else:
                    invstds.append(st.r_exact[c] if st.r_exact[c] is not None else decided(
                        lambda prec, c=c: self._invstd(st.var[c], prec)[0],
                        FORMATS[self.param]))
            else:
                means.append(float(self.mu64[c]))
                invstds.append(float(self.r64[c]))
        if self.flags.batch_stats:
            mean_cond = self.mean_abs_x
        else:
            mean_cond = np.zeros(self.C)  # the running mean itself: exact
        invstd_cond = np.abs(np.array([to_float(r) for r in st.r]))
        return (expected_from_scalars("mean", self.param, means, mean_cond),
                expected_from_scalars("invstd", self.param, invstds, invstd_cond))

    def _unchanged_running_stats(self) -> tuple[Expected, Expected]:
        zeros = np.zeros(self.C)
        return tuple(
            Expected(name, self.param, a.copy(), zeros.copy(), a.copy(), zeros.copy())
            for name, a in (("running_mean", self.RM), ("running_var", self.RV)))

    def _updated_running_stats(self) -> tuple[Expected, Expected]:
        st, m = self.st, self.mom
        means, variances = [], []
        for c in range(self.C):
            if st.exact[c] and np.isfinite(self.RM[c]):
                means.append(Fraction(self.RM[c]) * m + st.mu[c] * (1 - m))
            else:
                with np.errstate(all="ignore"):
                    means.append(float(self.RM[c] * float(m) + self.mu64[c] * float(1 - m)))
            if "running_var_from_batch_var" in self.variants:
                if self.eps_finite and np.isfinite(self.X[c]).all() and np.isfinite(self.RV[c]):
                    variances.append(Fraction(self.RV[c]) * m + st.var_biased[c] * (1 - m))
                else:
                    with np.errstate(all="ignore"):
                        var64 = ((self.X[c] - self.X[c].mean()) ** 2).mean()
                        variances.append(float(self.RV[c] * float(m) + var64 * float(1 - m)))
            elif "running_var_unbiased" in self.variants:
                if st.exact[c] and np.isfinite(self.RV[c]) and self.M > 1:
                    unbiased = st.var_biased[c] * self.M / (self.M - 1)
                    variances.append(Fraction(self.RV[c]) * m + unbiased * (1 - m))
                else:
                    variances.append(math.nan)
            elif st.exact[c] and np.isfinite(self.RV[c]) and st.ve[c] != 0:
                recovered = st.ve[c] - same_kind(st.ve[c], self.eps)  # 1/r^2 - eps, exactly
                variances.append(same_kind(recovered, self.RV[c]) * same_kind(recovered, m)
                                 + recovered * same_kind(recovered, 1 - m))
            else:
                with np.errstate(all="ignore"):
                    recovered64 = 1 / self.r64[c] ** 2 - self.eps
                    variances.append(float(self.RV[c] * float(m) + recovered64 * float(1 - m)))
        mf = float(m)
        ve = np.array([to_float(v) for v in st.ve])
        return (
            expected_from_scalars("running_mean", self.param, means,
                                   condition.cond_running_mean(self.RM, mf, self.mean_abs_x)),
            expected_from_scalars("running_var", self.param, variances,
                                   condition.cond_running_var(self.RV, mf, ve, self.eps)),
        )

    def _backward(self) -> dict:
        st, M, flags, sums = self.st, self.M, self.flags, self.sums
        dy_ok = sums.dy_ok
        sdy, dotp = [], []
        for c in range(self.C):
            sdy.append(sums.exact_dy[c] if dy_ok[c] else None)
            if st.exact[c] and dy_ok[c] and sums.x_ok[c]:
                dotp.append(sums.exact_xdy[c] - st.mu[c] * sdy[c])
            else:
                dotp.append(None)
        sdy64, dotp64 = sums.sum_dy, self.centered.dev_dy
        self.bwd = _BackwardScalars(sdy, dotp, sdy64, dotp64)
        if flags.batch_stats:
            self.bwd.a_vals = [s / M if s is not None else Fraction(0) for s in sdy]
            # k = dotp r^2 / M = dotp / (M ve), ve = 1/r^2 (0 where r = 0)
            self.bwd.k_vals = [quotient(p, M * st.ve[c]) if p is not None and st.ve[c] != 0
                               else Fraction(0) for c, p in enumerate(dotp)]
        dx = self._blocks("dx", self._dx_tile)

        dgammas, dbetas = [], []
        for c in range(self.C):
            if flags.fix_gamma:
                dgammas.append(Fraction(0))
            elif dotp[c] is not None:
                dgammas.append(self._dotp_times_r(c, dotp[c]))
            else:
                with np.errstate(all="ignore"):
                    dgammas.append(float(dotp64[c] * self.r64[c]))
            dbetas.append(sdy[c] if sdy[c] is not None else float(sdy64[c]))
        r_abs = np.abs(np.array([to_float(r) for r in st.r]))
        sum_abs_dy = sums.sum_mag_dy
        if flags.fix_gamma:
            dgamma_cond = np.zeros(self.C)
        else:
            dgamma_cond = condition.cond_dgamma(r_abs, self.centered.mag_d_dy,
                                                self.mean_abs_x, sum_abs_dy, flags.batch_stats)
        return {
            "dx": dx,
            "dgamma": expected_from_scalars("dgamma", self.param, dgammas, dgamma_cond),
            "dbeta": expected_from_scalars("dbeta", self.param, dbetas, sum_abs_dy),
        }

    def _dx_tile(self, rows: slice, j0: int, j1: int) -> Expected:
        st, M, flags, bwd = self.st, self.M, self.flags, self.bwd
        X = self.source.block("x", rows.start, rows.stop, j0, j1)
        DY = self.source.block("dy", rows.start, rows.stop, j0, j1)
        s_cols, unsafe_s = self._columns(st.s)
        _, unsafe_mu = self._columns(st.mu)
        w_terms = tuple(t[rows] for t in s_cols)  # w = r g = s
        mu = tuple(t[rows] for t in self.mu_cols)
        abs_d = np.abs(X - mu[0])
        with np.errstate(all="ignore"):
            d64 = X - self.mu64[rows, None]
            w64 = (self.r64 * self.G_eff)[rows, None]
        c0 = rows.start
        if flags.batch_stats:
            a_cols, unsafe_a = self._columns(bwd.a_vals)
            k_cols, unsafe_k = self._columns(bwd.k_vals)
            hi, lo, err = fastpath.blockwise(
                fastpath.dx_batch_value, [X, DY],
                [mu, tuple(t[rows] for t in a_cols), tuple(t[rows] for t in k_cols), w_terms])
            exact_mask = self._element_mask(rows, X, DY) & self.sums.dy_ok[rows, None] & (
                np.array([p is not None for p in bwd.dotp])[rows, None])
            with np.errstate(all="ignore"):
                k64 = bwd.dotp64 * self.r64**2 / M
                ieee = (DY - (bwd.sdy64 / M)[rows, None] - d64 * k64[rows, None]) * w64
            a_vals, k_vals = bwd.a_vals, bwd.k_vals

            def slow(index, prec):
                c = c0 + index[0]
                d = Fraction(X[index]) - st.mu[c]
                if isinstance(k_vals[c], Fraction):  # the inner sum is exact
                    t = Fraction(DY[index]) - a_vals[c] - d * k_vals[c]
                else:  # a variant with an irrational k: at the working precision
                    t = mpf(Fraction(DY[index]) - a_vals[c]) - mpf(d) * k_vals[c]
                s_c = self._s_at(c, prec)
                if isinstance(t, Fraction) and isinstance(s_c, Fraction):
                    return t * s_c
                return mpf(t) * mpf(s_c)

            k_abs = np.abs(k_cols[0][rows])
            r_abs = np.abs(np.array([to_float(r) for r in st.r[rows]]))[:, None]
            cond = condition.cond_dx(DY, abs_d, w_terms[0], k_abs, r_abs,
                                     (self.sums.sum_mag_dy / M)[rows, None],
                                     self.mean_abs_x[rows, None],
                                     (self.centered.mag_d_dy / M)[rows, None], True)
            risky = unsafe_k[rows] | unsafe_a[rows]
        else:
            hi, lo, err = fastpath.blockwise(fastpath.dx_running_value, [DY], [w_terms])
            exact_mask = self._element_mask(rows, DY)
            with np.errstate(all="ignore"):
                ieee = DY * w64

            def slow(index, prec):
                s_c = self._s_at(c0 + index[0], prec)
                dy = Fraction(DY[index])
                return dy * s_c if isinstance(s_c, Fraction) else mpf(dy) * s_c

            cond = condition.cond_dx(DY, abs_d, w_terms[0], 0, 0, 0, 0, 0, False)
            risky = False
        risky = unsafe(X) | unsafe(DY) | unsafe_s[rows] | unsafe_mu[rows] | risky
        return finish("dx", self.dtype, hi, lo, err, exact_mask, slow, ieee, cond, risky)


class _BackwardScalars:
    """Per-channel sums of the backward pass: exact sum(dy) and dotp = sum(x dy) - mu sum(dy)
    (None where not finite), their float64 shadows, and a = sum(dy)/M, k = dotp/(M ve)."""

    def __init__(self, sdy, dotp, sdy64, dotp64):
        self.sdy, self.dotp, self.sdy64, self.dotp64 = sdy, dotp, sdy64, dotp64
        self.a_vals: list = []
        self.k_vals: list = []
