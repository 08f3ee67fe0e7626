r"""Variant ``fp16_stepwise_rounding``: MXNet's float16 CPU kernel, every step rounded to float16.

MXNet 1.9.1 runs batch norm on float16 data with DType = mshadow::half_t, whose operators
return half for ``half op float``: every elementwise step that touches a data element, and
var + eps, is rounded to float16 (src/operator/nn/batch_norm.cc; reports/FRAMEWORKS.md).
With h(.) the correct rounding to float16 (ties to even, inf above 65504), per channel:

    ve = h(var + DType(eps))        r = 1/sqrt(ve)      (r = 0 where ve = inf, and where the
                                                         spec gives 0: batch statistics with
                                                         var + eps = 0 and eps = 0)
    t1 = h(x - mean)   t2 = h(t1 r)   t3 = h(t2 g)  (t3 = t2 under fix_gamma)   y = h(t3 + beta)
    mean output: mean;  invstd output: r
    backward: sdy = sum(dy);  dotp = sum(h(t1 dy))
      batch statistics:   k = dotp r^2 / M = dotp / (M ve)
                          u = h(dy - sdy/M);  t = h(t1 k);  v = h(u - t);  dx = h(v r g)
      running statistics: dx = h(dy r g)
      dgamma = dotp r (0 under fix_gamma);  dbeta = sdy
    running statistics after a step: running_mean m + mean (1 - m),
                                     running_var m + (1/r^2 - eps) (1 - m)   (1/r^2 = ve)

mean and var are the exact statistics (the caller's, with its other variants applied); each
h() is applied to the exact value of its argument (r at 256 bits, decided like the oracle's
own roundings), so the result is a function of the inputs alone.
``tests/backends/mxnet_reference.py`` is an independent float32 emulation of the kernel,
bit-exact against MXNet; the tests compare the two.

Condition. Every h() above is a rounding the variant prescribes, so its magnitude counts in
cond as every unavoidable rounding does (oracle.condition). An implementation of the variant
evaluates the statistics and scalars in float32, so the argument of each h() it rounds is off
by a few float32 roundings of the step's magnitude: where that interval (NEAR times the
magnitude, plus what earlier steps may already differ by) holds a float16 rounding boundary,
the implementation may land on the other neighbour. Each step carries that *slack* (the
neighbour's distance where it is near, plus the inherited slack times the step's factor),
and the output's cond adds slack / u_out, so the neighbour passes and nothing else moves.
Elements or channels whose values are not finite (inf from h() overflow, r = 0 or inf,
non-finite inputs) follow IEEE float64 arithmetic of the same steps, exactly (cond 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from bnspec.formats import FORMATS, round_dd, round_float64, round_fraction

from . import condition
from .assemble import expected_from_scalars
from .dd import accurate_sum, split3, two_sum
from .exact import exact_sum
from .fastpath import _times_triple as times_triple
from .fastpath import centered_terms
from .mp import MP, decided, exact_sqrt, mpf, to_fraction

F16 = FORMATS["float16"]
U16, U32 = F16.unit_roundoff, FORMATS["float32"].unit_roundoff
#: How far, relative to a step's magnitude, a float32 evaluation of the step's argument may
#: sit from the exact one: the strict tolerance's 8 float32 roundings (conformance
#: .tolerances, statistics row), doubled for margin.
NEAR = 16 * U32


@dataclass(frozen=True)
class ChannelScalars:
    """The exact quantities of one channel the steps start from."""

    mu: Fraction | float  # batch mean, or running_mean (a float: not finite, IEEE steps)
    var: Fraction | float  # the variance normalised with (after the caller's variants)
    eps_d: Fraction  # DType(eps) as the caller adds it
    zero_invstd: bool  # the spec's r = 0: batch statistics, var + eps = 0 and eps = 0
    mean_abs_x: float  # mean |x| of the channel in batch mode (the statistics' size), else 0


def h(values) -> np.ndarray:
    """Return float64 values rounded to float16 (held exactly as float64)."""
    return round_float64(np.asarray(values, dtype=np.float64), F16)


def _gap(rounded) -> np.ndarray:
    """Return one float16 ulp at the rounded values (the farther neighbour's distance)."""
    return F16.ulp(np.abs(np.asarray(rounded, dtype=np.float64)))


def _near(value, delta) -> np.ndarray:
    """Return where [value - delta, value + delta] holds a float16 rounding boundary."""
    with np.errstate(all="ignore"):
        return h(value - delta) != h(value + delta)


def slack(rounded, argument, magnitude, inherited) -> np.ndarray:
    """Return how far an implementation's h(argument) may sit from rounded: inherited, plus
    one ulp where the argument is within NEAR * magnitude + inherited of a boundary."""
    near = _near(argument, NEAR * magnitude + inherited)
    return inherited + np.where(near, _gap(rounded), 0.0)


def round_exact(hi, lo, err, exact) -> np.ndarray:
    """Return hi + lo (within err of the exact value) rounded to float16; undecided finite
    elements are rounded from exact(index), a Fraction or an mpf decided to float16."""
    rounded, undecided = round_dd(hi, lo, err, F16)
    for index in zip(*np.nonzero(undecided & np.isfinite(hi))):
        rounded[index] = round_fraction(to_fraction(exact(index)), F16)
    return rounded


def _triple(value) -> tuple:
    return tuple(np.float64(t) for t in split3(value))


class Channel:
    """ve, r and their slack for one channel; r is a Fraction where rational, else mpf."""

    def __init__(self, sc: ChannelScalars):
        self.sc = sc
        if isinstance(sc.var, float) or isinstance(sc.mu, float):  # IEEE steps only
            with np.errstate(all="ignore"):
                self.ve = float(h(sc.var + float(sc.eps_d)))
                self.r64 = 0.0 if sc.zero_invstd else float(1 / np.sqrt(self.ve))
            self.r, self.finite, self.slack_ve, self.slack_r = None, False, 0.0, 0.0
            return
        ve_exact = sc.var + sc.eps_d
        self.ve = round_fraction(ve_exact, F16)  # h(var + DType(eps)): a float, maybe inf
        if sc.zero_invstd or not np.isfinite(self.ve):
            self.r, self.r64 = Fraction(0), 0.0
        elif self.ve <= 0:  # var + DType(eps) below half the smallest float16: 1/sqrt(0)
            self.r, self.r64 = None, np.inf
        else:
            root = exact_sqrt(Fraction(self.ve))
            self.r = 1 / root if root is not None else 1 / MP.sqrt(mpf(Fraction(self.ve)))
            self.r64 = float(self.r)
        self.finite = self.r is not None and 0 < self.r64 < np.inf
        ve_alt = self.ve
        if self.finite and _near(float(ve_exact), NEAR * abs(float(ve_exact))):
            lower = float(ve_exact) < self.ve
            ve_alt = self.ve - float(_gap(self.ve)) if lower else self.ve + float(_gap(self.ve))
        #: how far an implementation's ve and r may sit from these (0 unless near a boundary)
        self.slack_ve = abs(ve_alt - self.ve) if self.finite else 0.0
        self.slack_r = abs(1 / np.sqrt(ve_alt) - self.r64) if self.slack_ve else 0.0

    def r_at(self, prec):
        """Return r at prec bits (the Fraction itself where r is rational)."""
        if isinstance(self.r, Fraction):
            return self.r
        with MP.workprec(prec):
            return 1 / MP.sqrt(mpf(Fraction(self.ve)))

    def h_times_r(self, a, exact_a) -> np.ndarray:
        """Return h(a r) for float64 values a (exact_a(index): a's exact value there)."""
        zero = np.zeros_like(a)
        hi, lo, err = times_triple(a, zero, zero, _triple(self.r))

        def exact(index):
            if isinstance(self.r, Fraction):
                return exact_a(index) * self.r
            return decided(lambda prec: mpf(exact_a(index)) * self.r_at(prec), F16)

        return round_exact(hi, lo, err, exact)

    def times_r(self, q: Fraction, fmt):
        """Return q r exactly (Fraction) or decided to fmt (mpf)."""
        if isinstance(self.r, Fraction):
            return q * self.r
        return decided(lambda prec: mpf(q) * self.r_at(prec), fmt)


def forward(ch: Channel, x, g, beta, fix_gamma: bool, batch: bool) -> dict:
    """Return the variant's y of one channel (float16 values as float64), its cond, t1 and
    t1's slack, for x of the channel (float64 holding float16 values)."""
    sc, gg = ch.sc, (1.0 if fix_gamma else abs(g))
    with np.errstate(all="ignore"):  # IEEE float64 arithmetic of the steps: the fallback
        t1 = h(x - float(sc.mu))
        t2 = h(t1 * ch.r64)
        t3 = t2 if fix_gamma else h(t2 * g)
        y = h(t3 + beta)
    cond, slack_t1 = np.zeros_like(x), np.zeros_like(x)
    exact = np.isfinite(x) & bool(np.isfinite(g) and np.isfinite(beta) and ch.finite)
    if not exact.any():
        return {"y": y, "cond": cond, "t1": t1, "slack_t1": slack_t1}
    xe = x[exact]
    hi, lo, err = accurate_sum(list(centered_terms(xe, _triple(sc.mu))))
    t1e = round_exact(hi, lo, err, lambda i: Fraction(xe[i]) - sc.mu)
    fin = np.isfinite(t1e)  # x - mean beyond 65504: inf, the IEEE steps take it
    t1e = np.where(fin, t1e, 0.0)
    t2e = ch.h_times_r(t1e, lambda i: Fraction(t1e[i]))
    t3e = t2e if fix_gamma else h(t2e * g)
    s, e = two_sum(t3e, np.full_like(t3e, beta))
    ye = round_exact(s, e, np.zeros_like(s), lambda i: Fraction(t3e[i]) + Fraction(beta))
    r = ch.r64
    s1 = slack(t1e, xe - float(sc.mu), np.abs(xe) + abs(float(sc.mu)) + sc.mean_abs_x, 0.0)
    s2 = slack(t2e, t1e * r, np.abs(t1e * r), s1 * r + np.abs(t1e) * ch.slack_r)
    s3 = s2 if fix_gamma else slack(t3e, t2e * g, np.abs(t2e * g), s2 * gg)
    s4 = slack(ye, t3e + beta, np.abs(t3e) + abs(beta), s3)
    base = condition.cond_y(xe, abs(float(sc.mu)), r * gg, beta, sc.mean_abs_x, batch)
    ce = base + np.abs(t2e) * gg + np.abs(t3e) + np.abs(ye) + s4 / U16
    keep = fin & np.isfinite(ye)
    where = np.flatnonzero(exact)[keep]
    t1[where], y[where], cond[where], slack_t1[where] = t1e[keep], ye[keep], ce[keep], s1[keep]
    return {"y": y, "cond": cond, "t1": t1, "slack_t1": slack_t1}


def backward(ch: Channel, x, dy, g, fix_gamma: bool, batch: bool) -> dict:
    """Return the variant's dx (float16 values), its cond, and dgamma (Fraction, mpf or
    float), dbeta (Fraction or float) with their slack, for one channel."""
    fwd = forward(ch, x, g, 0.0, fix_gamma, batch)
    t1, s1 = fwd["t1"], fwd["slack_t1"]
    w = 1.0 if fix_gamma else g
    M = x.size
    with np.errstate(all="ignore"):
        terms = h(t1 * dy)  # t1 dy is exact in float64 (two float16 values)
        s_terms = slack(terms, t1 * dy, np.abs(t1 * dy), s1 * np.abs(dy))
        sdy64, dotp64 = dy.sum(), terms.sum()
        if batch:
            k64 = dotp64 * ch.r64 * ch.r64 / M
            u = h(dy - sdy64 / M)
            t = h(t1 * k64)
            v = h(u - t)
            dx = h(v * ch.r64 * w)
        else:
            dx = h(dy * ch.r64 * w)
    finite_in = bool(np.isfinite(x).all() and np.isfinite(dy).all() and np.isfinite(t1).all())
    exact_ok = ch.finite and finite_in and np.isfinite(g)
    cond = np.zeros_like(x)
    sdy = exact_sum(dy) if np.isfinite(dy).all() else float(sdy64)
    dotp = exact_sum(terms) if finite_in else float(dotp64)
    slack_dotp = float(s_terms.sum()) if finite_in else 0.0
    if exact_ok:
        rw = ch.r64 * abs(w)
        if batch:
            a = sdy / M
            k = dotp / (M * Fraction(ch.ve))  # dotp r^2 / M, r^2 = 1/ve exactly
            hi, lo, err = accurate_sum([dy, *(np.full_like(dy, -p) for p in _triple(a))])
            u = round_exact(hi, lo, err, lambda i: Fraction(dy[i]) - a)
            zero = np.zeros_like(t1)
            hi, lo, err = times_triple(t1, zero, zero, _triple(k))
            t = round_exact(hi, lo, err, lambda i: Fraction(t1[i]) * k)
            v = h(u - t)  # u - t is exact in float64 (two float16 values)
            vw = v * w  # exact in float64 (float16 times float32)
            dx = ch.h_times_r(vw, lambda i: Fraction(v[i]) * Fraction(w))
            k64 = float(k)
            slack_k = slack_dotp / (M * ch.ve) + abs(k64) * ch.slack_ve / ch.ve
            s_u = slack(u, dy - float(a), np.abs(dy) + abs(float(a)), 0.0)
            s_t = slack(t, t1 * k64, np.abs(t1 * k64), s1 * abs(k64) + np.abs(t1) * slack_k)
            s_v = slack(v, u - t, np.abs(u) + np.abs(t), s_u + s_t)
            s_dx = slack(dx, v * ch.r64 * w, np.abs(v) * rw, s_v * rw
                         + np.abs(v * w) * ch.slack_r)
            mean_abs_dy = np.abs(dy).mean()
            d = np.abs(x - float(ch.sc.mu))
            base = condition.cond_dx(dy, d, rw, abs(k64), ch.r64, mean_abs_dy,
                                     ch.sc.mean_abs_x, (d * np.abs(dy)).mean(), True)
            cond = base + rw * (np.abs(u) + np.abs(t) + np.abs(v)) + np.abs(dx) + s_dx / U16
        else:
            dyw = dy * w
            dx = ch.h_times_r(dyw, lambda i: Fraction(dy[i]) * Fraction(w))
            s_dx = slack(dx, dy * ch.r64 * w, np.abs(dy) * rw, np.abs(dyw) * ch.slack_r)
            cond = np.abs(dy) * rw + np.abs(dx) + s_dx / U16
        cond = np.where(np.isfinite(dx), cond, 0.0)
    if fix_gamma:
        dgamma, dgamma_slack = Fraction(0), 0.0
    elif exact_ok:
        dgamma = ch.times_r(dotp, FORMATS["float32"])
        dgamma_slack = slack_dotp * ch.r64 + abs(float(dotp)) * ch.slack_r
    else:
        with np.errstate(all="ignore"):
            dgamma, dgamma_slack = float(dotp64 * ch.r64), 0.0
    return {"dx": dx, "cond": cond, "dgamma": dgamma, "dgamma_slack": dgamma_slack,
            "dgamma_terms": float(np.abs(terms).sum()) if finite_in else 0.0,
            "dbeta": sdy}


def _scalars(ev, c: int) -> ChannelScalars:
    st, batch = ev.st, ev.flags.batch_stats
    mean_abs_x = float(ev.mean_abs_x[c]) if batch else 0.0
    if not st.exact[c]:
        return ChannelScalars(float(ev.mu64[c]), float(ev.ve64[c] - ev.eps_d64), ev.eps_d,
                              bool(batch and ev.eps == 0 and ev.ve64[c] == 0), mean_abs_x)
    zero = batch and ev.eps == 0 and st.var[c] + ev.eps_d == 0
    return ChannelScalars(st.mu[c], st.var[c], ev.eps_d, bool(zero), mean_abs_x)


def outputs(ev) -> dict:
    """Return the variant's expected outputs (oracle.api.Expected by name) of a float16
    evaluation ``ev`` (an oracle.reference._Evaluation: its exact statistics, flags and
    other variants), in the shapes of the call."""
    from .results import Expected

    flags, C = ev.flags, ev.C
    channels = [Channel(_scalars(ev, c)) for c in range(C)]
    out = {}
    data = np.empty_like(ev.X)
    cond = np.zeros_like(ev.X)
    batch = flags.batch_stats
    if ev.DY is None:
        for c, ch in enumerate(channels):
            f = forward(ch, ev.X[c], float(ev.G_eff[c]), float(ev.B[c]), flags.fix_gamma, batch)
            data[c], cond[c] = f["y"], f["cond"]
        out["y"] = ev._reshape(Expected("y", "float16", data, np.zeros_like(data), data.copy(),
                                        cond))
        if flags.output_mean_var:
            means, mean_cond = [], []
            for c, ch in enumerate(channels):
                means.append(ch.sc.mu)
                mean_cond.append(ch.sc.mean_abs_x)
            invstds = [ch.r if ch.finite else ch.r64 for ch in channels]
            invstd_cond = [abs(ch.r64) + ch.slack_r / U32 if ch.finite else 0.0
                           for ch in channels]
            if "invstd_as_var" in ev.variants:
                invstds = [ch.sc.var for ch in channels]
            out["mean"] = expected_from_scalars("mean", "float32", means, mean_cond)
            out["invstd"] = expected_from_scalars("invstd", "float32", invstds, invstd_cond)
    else:
        dgammas, dgamma_cond, dbetas, dbeta_cond = [], [], [], []
        for c, ch in enumerate(channels):
            b = backward(ch, ev.X[c], ev.DY[c], float(ev.G_eff[c]), flags.fix_gamma, batch)
            data[c], cond[c] = b["dx"], b["cond"]
            dgammas.append(b["dgamma"])
            d_dy = ev._magnitude(np.abs(ev.X[c] - float(ch.sc.mu)) * np.abs(ev.DY[c])).sum()
            sum_dy = ev._magnitude(ev.DY[c]).sum()
            base = condition.cond_dgamma(ch.r64, d_dy, ch.sc.mean_abs_x, sum_dy, batch)
            finite = isinstance(b["dgamma"], Fraction) or ch.finite
            dgamma_cond.append(0.0 if flags.fix_gamma or not finite else
                               base + ch.r64 * b["dgamma_terms"] + b["dgamma_slack"] / U32)
            dbetas.append(b["dbeta"])
            dbeta_cond.append(sum_dy)
        out["dx"] = ev._reshape(Expected("dx", "float16", data, np.zeros_like(data),
                                         data.copy(), cond))
        out["dgamma"] = expected_from_scalars("dgamma", "float32", dgammas, dgamma_cond)
        out["dbeta"] = expected_from_scalars("dbeta", "float32", dbetas, dbeta_cond)
    if ev.stats_update_due(ev.DY is None):
        out["running_mean"], out["running_var"] = _updated_running_stats(ev, channels)
    else:
        out["running_mean"], out["running_var"] = ev._unchanged_running_stats()
    return out


def _updated_running_stats(ev, channels):
    """Return the running statistics after a step: the semantics' update with the variance
    recovered from r as 1/r^2 - eps = ve - eps (ve = h(var + DType(eps)))."""
    if {"running_var_unbiased", "running_var_from_batch_var"} & ev.variants:
        return ev._updated_running_stats()  # the running variance does not come from r
    m = ev.mom
    mf = float(m)
    means, variances, var_slack = [], [], []
    for c, ch in enumerate(channels):
        rm, rv = ev.RM[c], ev.RV[c]
        with np.errstate(all="ignore"):
            if isinstance(ch.sc.mu, Fraction) and np.isfinite(rm):
                means.append(Fraction(rm) * m + ch.sc.mu * (1 - m))
            else:
                means.append(float(rm * mf + float(ch.sc.mu) * float(1 - m)))
            if ch.finite and np.isfinite(rv):
                variances.append(Fraction(rv) * m + (Fraction(ch.ve) - Fraction(ev.eps))
                                 * (1 - m))
            else:
                recovered = (1 / ch.r64 ** 2 if ch.r64 else np.inf) - ev.eps
                variances.append(float(rv * mf + recovered * float(1 - m)))
        var_slack.append(ch.slack_ve * float(1 - m) / U32)
    ve = np.array([ch.ve for ch in channels], dtype=np.float64)
    rm_cond = condition.cond_running_mean(ev.RM, mf, ev.mean_abs_x)
    with np.errstate(all="ignore"):
        rv_cond = condition.cond_running_var(ev.RV, mf, ve, ev.eps) + np.array(var_slack)
    rv_cond = np.where(np.isfinite(rv_cond), rv_cond, 0.0)
    return (expected_from_scalars("running_mean", "float32", means, rm_cond),
            expected_from_scalars("running_var", "float32", variances, rv_cond))
