"""Numerical mistakes the oracle does not model, simulated in float64 numpy for the diagnosis.

The oracle computes semantic variants exactly; some failures come instead from how an
implementation computes (too narrow an accumulator, a one-pass variance). Those cannot be
computed exactly: they are defined by their arithmetic, so this module carries it out, the
way such an implementation does, and returns the outputs as ``oracle.api.Expected``
records (hi = the simulated value, lo = 0, cond from ``oracle.condition`` evaluated at the
simulated statistics), ready for ``conformance.compare``.

Simulations (``SIMULATIONS``):

- ``half_accumulation``: every per-channel sum (of x, (x - mean)^2, dy, (x - mean) dy) is
  formed by numpy in the 16-bit data dtype: terms computed in float64, cast to the data
  dtype, ``.sum()`` over the non-channel axes of the array in its own memory layout
  (numpy adds 16-bit numbers with one rounding to the dtype per inner loop). Only for
  float16 / bfloat16 data; wider data accumulates in at least float32, which the strict
  tolerances allow.
- ``one_pass_float32``: mean and variance in one sweep with float32 running sums of x and
  x^2 (sequential, in row-major order of the non-channel axes, as one thread per channel
  adds them): mean = s1/M, var = s2/M - mean^2, all in float32; the rest in float64.

Everything else follows the formulas of shared/spec in float64 (see
backends/numpy_backend.py for the same math). The gradient's dot product sum((x - mean) dy)
is centred either on the implementation's own mean (``centre="own"``, the plain kernel) or
on the exact mean (``centre="exact"``: the mean-rounding correction careful kernels apply,
dotp - mean(x - mean) sum(dy)); the diagnosis tries both.

The declared profile is followed for the variants modelled here (``MODELLED_VARIANTS``); a
profile with any other variant gets no simulation (``simulate`` returns None).
"""
from __future__ import annotations

import numpy as np

from bnspec.flags import DTYPES, numpy_dtype
from bnspec.formats import FORMATS, round_float64
from oracle import condition
from oracle.api import Expected

SIMULATIONS = {
    "half_accumulation": "accumulates the per-channel sums in the 16-bit data dtype "
                         "(numpy float16/bfloat16 sums) instead of float32",
    "one_pass_float32": "one-pass variance E[x^2] - E[x]^2 with float32 running sums",
}
CENTRES = ("own", "exact")
MODELLED_VARIANTS = frozenset({
    "variance_unbiased", "running_var_unbiased", "stats_updated_in_forward",
    "stats_not_updated", "eps_outside_sqrt", "eps_min_1e-5", "eps_not_cast",
    "momentum_inverted", "fix_gamma_ignored", "invstd_as_var"})


def applies(name: str, dtype: str) -> bool:
    """Return True if simulation `name` can differ from correct arithmetic for this dtype."""
    if name == "half_accumulation":
        return dtype in ("float16", "bfloat16")
    return name in SIMULATIONS


def _expected(name, dtype, value, cond) -> Expected:
    value = np.asarray(value, dtype=np.float64)
    cond = np.broadcast_to(np.asarray(cond, dtype=np.float64), value.shape).copy()
    rounded = round_float64(value, FORMATS[dtype])
    return Expected(name, dtype, value.copy(), np.zeros_like(value), rounded, cond)


def _unchanged(name, dtype, a) -> Expected:
    a = np.asarray(a).astype(np.float64)
    return Expected(name, dtype, a.copy(), np.zeros_like(a), a.copy(), np.zeros_like(a))


class _Model:
    """One call's arithmetic; per-channel vectors are [C], broadcast with ``self.b``."""

    def __init__(self, case, name: str, centre: str, variants: frozenset):
        self.case, self.name, self.centre, self.variants = case, name, centre, variants
        inputs = case.inputs
        self.x_raw = np.asarray(inputs["x"])
        self.x = self.x_raw.astype(np.float64)
        self.dy = None if "dy" not in inputs else np.asarray(inputs["dy"]).astype(np.float64)
        self.dtype = case.dtype
        self.param = DTYPES[case.dtype].param
        self.ax = case.axis % self.x.ndim
        self.reduce = tuple(i for i in range(self.x.ndim) if i != self.ax)
        self.C = self.x.shape[self.ax]
        self.M = self.x.size // max(self.C, 1)
        flags = case.flags
        self.fix_gamma = flags.fix_gamma and "fix_gamma_ignored" not in variants
        self.batch = flags.batch_stats
        self.flags = flags
        eps = max(case.eps, 1e-5) if "eps_min_1e-5" in variants else case.eps
        self.eps = eps
        self.e = (eps if "eps_not_cast" in variants
                  else float(round_float64(eps, FORMATS[self.dtype])))  # DType(eps)
        m = float(np.float32(case.momentum))
        self.m = 1 - m if "momentum_inverted" in variants else m
        def as64(key):
            return np.asarray(inputs[key]).astype(np.float64)

        self.gamma, self.beta = as64("gamma"), as64("beta")
        self.rm, self.rv = as64("running_mean"), as64("running_var")
        self.g = np.ones(self.C) if self.fix_gamma else self.gamma
        floor = FORMATS["float64" if self.dtype == "float64" else "float32"].min_normal
        self.floor = floor

    def b(self, v):
        """Return a per-channel vector shaped to broadcast against x."""
        shape = [1] * self.x.ndim
        shape[self.ax] = self.C
        return np.reshape(v, shape)

    def mag_mean(self, a):
        return np.maximum(np.abs(np.where(np.isfinite(a), a, 0)), self.floor).mean(axis=self.reduce)

    def mag_sum(self, a):
        return np.maximum(np.abs(np.where(np.isfinite(a), a, 0)), self.floor).sum(axis=self.reduce)

    # --- the simulated reductions ---------------------------------------------------------

    def sums(self, terms):
        """Per-channel sums of float64 terms (x's layout), as the simulated code forms them."""
        if self.name == "half_accumulation":
            return terms.astype(numpy_dtype(self.dtype)).sum(axis=self.reduce).astype(np.float64)
        return terms.sum(axis=self.reduce)

    def moments(self):
        """Return (mean, biased variance) per channel as the simulated code forms them."""
        if self.name == "one_pass_float32":
            rows = np.moveaxis(self.x_raw, self.ax, -1).astype(np.float32).reshape(-1, self.C)
            n = np.float32(self.M)
            s1 = np.cumsum(rows, axis=0, dtype=np.float32)[-1]
            s2 = np.cumsum(rows * rows, axis=0, dtype=np.float32)[-1]
            mean = s1 / n
            return mean.astype(np.float64), (s2 / n - mean * mean).astype(np.float64)
        mean = self.sums(self.x) / self.M
        return mean, self.sums(np.square(self.x - self.b(mean))) / self.M

    # --- the outputs ----------------------------------------------------------------------

    def statistics(self):
        if self.batch:
            mean, var = self.moments()
            self.var_biased = var
            if "variance_unbiased" in self.variants:
                var = var * self.M / (self.M - 1) if self.M > 1 else np.full(self.C, np.nan)
        else:
            mean, var = self.rm, self.rv
        if "eps_outside_sqrt" in self.variants:
            invstd = 1 / (np.sqrt(var) + self.e)
        else:
            invstd = 1 / np.sqrt(var + self.e)
        if self.batch:
            invstd = np.where(var + self.e == 0, 0.0, invstd)
        self.mean, self.var, self.invstd = mean, var, invstd

    def forward(self) -> dict:
        b, x = self.b, self.x
        s = self.invstd * self.g
        y = (x - b(self.mean)) * b(s) + b(self.beta)
        mean_abs_x = self.mag_mean(x)
        out = {"y": _expected("y", self.dtype, y, condition.cond_y(
            x, b(self.mean), b(s), b(self.beta), b(mean_abs_x), self.batch))}
        if self.flags.output_mean_var:
            out["mean"] = (_expected("mean", self.param, self.mean, mean_abs_x) if self.batch
                           else _unchanged("mean", self.param, self.mean))  # running mean
            second = self.var if "invstd_as_var" in self.variants else self.invstd
            out["invstd"] = _expected("invstd", self.param, second, np.abs(second))
        return out

    def backward(self) -> dict:
        b, x, dy = self.b, self.x, self.dy
        xc = x - b(self.mean)
        sdy, dotp = self.sums(dy), self.sums(xc * dy)
        if self.batch and self.centre == "exact":
            dotp = dotp - xc.sum(axis=self.reduce) / self.M * sdy
        r, w = self.invstd, self.invstd * self.g
        if self.batch:
            k = dotp * r * r / self.M
            dx = (dy - b(sdy / self.M) - xc * b(k)) * b(w)
        else:
            k = np.zeros(self.C)
            dx = dy * b(w)
        abs_d, abs_dy = np.abs(xc), np.abs(dy)
        mean_abs_x = self.mag_mean(x)
        cond_dx = condition.cond_dx(dy, abs_d, b(w), b(np.abs(k)), b(np.abs(r)),
                                    b(self.mag_mean(dy)), b(mean_abs_x),
                                    b(self.mag_mean(abs_d * abs_dy)), self.batch)
        out = {"dx": _expected("dx", self.dtype, dx, cond_dx)}
        if self.fix_gamma:
            out["dgamma"] = _unchanged("dgamma", self.param, np.zeros(self.C))
        else:
            out["dgamma"] = _expected("dgamma", self.param, dotp * r, condition.cond_dgamma(
                r, self.mag_sum(abs_d * abs_dy), mean_abs_x, self.mag_sum(dy), self.batch))
        out["dbeta"] = _expected("dbeta", self.param, sdy, self.mag_sum(dy))
        return out

    def running(self, after_backward: bool) -> dict:
        updates = self.batch and "stats_not_updated" not in self.variants
        in_forward = "stats_updated_in_forward" in self.variants
        if not updates or (after_backward is False and not in_forward):
            return {"running_mean": _unchanged("running_mean", self.param, self.rm),
                    "running_var": _unchanged("running_var", self.param, self.rv)}
        m = self.m
        if "running_var_unbiased" in self.variants:
            batch_var = (self.var_biased * self.M / (self.M - 1) if self.M > 1
                         else np.full(self.C, np.nan))
        else:
            batch_var = np.where(self.invstd == 0, np.inf, self.var + (self.e - self.eps))
        mean_abs_x = self.mag_mean(self.x)
        new_mean = self.rm * m + self.mean * (1 - m)
        new_var = self.rv * m + batch_var * (1 - m)
        return {"running_mean": _expected("running_mean", self.param, new_mean,
                                          condition.cond_running_mean(self.rm, m, mean_abs_x)),
                "running_var": _expected("running_var", self.param, new_var,
                                         condition.cond_running_var(self.rv, m,
                                                                    self.var + self.e,
                                                                    self.eps))}


def simulate(case, name: str, centre: str = "own", variants=()) -> dict | None:
    """Return the outputs of the case's call (Expected records by name) computed with the
    simulated mistake `name` (SIMULATIONS) under the declared variants, or None when the
    simulation does not apply (dtype, or a variant it does not model)."""
    if name not in SIMULATIONS:
        raise ValueError(f"simulation={name!r} is not one of {sorted(SIMULATIONS)}")
    if centre not in CENTRES:
        raise ValueError(f"centre={centre!r} is not one of {CENTRES}")
    variants = frozenset(variants)
    if not applies(name, case.dtype) or not variants <= MODELLED_VARIANTS:
        return None
    if case.op not in ("fwd", "bwd"):
        return None
    model = _Model(case, name, centre, variants)
    with np.errstate(all="ignore"):
        model.statistics()
        if model.dy is None:
            return {**model.forward(), **model.running(after_backward=False)}
        return {**model.backward(), **model.running(after_backward=True)}
