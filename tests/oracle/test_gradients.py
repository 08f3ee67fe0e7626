"""dx, dgamma and dbeta are the derivatives of the forward pass, by finite differences.

For L = sum(dy * y) the oracle's backward must give dx = dL/dx, dgamma = dL/dgamma (0 with
fix_gamma) and dbeta = dL/dbeta, in batch-statistics mode (gradient through mean and var)
and in running-statistics mode. Two independent checks:

1. a central difference of a forward pass written here in mpmath at 90 digits (step 1e-30,
   truncation error ~1e-60), on every dtype (the data dtype only enters through DType(eps));
2. a central difference of the oracle's own forward, ``evaluate(...)['y'].hi + lo`` with
   exact binary steps h = 2**-20 and 2**-21 on float64 data, Richardson-extrapolated
   (error ~h**4 ~ 1e-24; asserted to 1e-20), which ties the oracle's backward to its forward.
"""
from __future__ import annotations

import itertools
from fractions import Fraction

import mpmath
import numpy as np
import pytest

import oracle
from fraction_reference import DTYPE_NAMES, PARAM_DTYPE, cast, draw_case, repro, round_exact

MP = mpmath.mp.clone() if hasattr(mpmath.mp, "clone") else mpmath.mp
FLAG_COMBOS = [dict(training=t, fix_gamma=f, use_global_stats=u)
               for t, f, u in itertools.product((True, False), repeat=3)]


def flag_id(f):
    return "-".join(("train" if f["training"] else "infer",
                     "fixgamma" if f["fix_gamma"] else "freegamma",
                     "globalstats" if f["use_global_stats"] else "batchstats"))


def columns(a, axis):
    """a as [C, M] float64 (channel first)."""
    a = np.asarray(a).astype(np.float64)
    return np.moveaxis(a, axis % a.ndim, 0).reshape(a.shape[axis % a.ndim], -1)


def loss_mp(x, w, g, b, rm, rv, eps_d, batch):
    """L = sum_j w_j y_j for one channel, in mpmath: y = (x - mean) / sqrt(var + eps_d) g + b."""
    M = len(x)
    if batch:
        mean = MP.fsum(x) / M
        var = MP.fsum((t - mean) ** 2 for t in x) / M
    else:
        mean, var = rm, rv
    r = 1 / MP.sqrt(var + eps_d)
    return MP.fsum(wj * ((t - mean) * r * g + b) for t, wj in zip(x, w))


def central(f, h):
    return (f(h) - f(-h)) / (2 * h)


def check_channel_mp(case, flags, c, got, call):
    """Compare the oracle's dx, dgamma, dbeta of channel c with mpmath differences."""
    __tracebackhide__ = True
    dtype = case["x"].dtype.name
    ax = case["axis"]
    x = [MP.mpf(float(t)) for t in columns(case["x"], ax)[c]]
    w = [MP.mpf(float(t)) for t in columns(case["dy"], ax)[c]]
    g = MP.mpf(1) if flags["fix_gamma"] else MP.mpf(float(case["gamma"][c]))
    b = MP.mpf(float(case["beta"][c]))
    rm = MP.mpf(float(case["running_mean"][c]))
    rv = MP.mpf(float(case["running_var"][c]))
    eps_d = MP.mpf(round_exact(Fraction(case["eps"]), dtype))
    batch = flags["training"] and not flags["use_global_stats"]
    if batch:
        mean = MP.fsum(x) / len(x)
        if MP.fsum((t - mean) ** 2 for t in x) / len(x) + eps_d < MP.mpf(2) ** -200:
            return  # var + eps = 0: not differentiable
    h = MP.mpf(10) ** -30
    scale = max([abs(t) for t in w] + [MP.mpf(1)]) * abs(g) * (1 + max(abs(t) for t in x))
    want_dx = []
    for i in range(len(x)):
        def f(d, i=i):
            xp = list(x)
            xp[i] += d
            return loss_mp(xp, w, g, b, rm, rv, eps_d, batch)
        want_dx.append(central(f, h))
    dx_idx = list(np.ndindex(*[n for k, n in enumerate(case["x"].shape) if k != ax % case["x"].ndim]))
    for j, (want, idx) in enumerate(zip(want_dx, dx_idx)):
        full = list(idx)
        full.insert(ax % case["x"].ndim, c)
        e = got["dx"]
        value = MP.mpf(float(e.hi[tuple(full)])) + MP.mpf(float(e.lo[tuple(full)]))
        r_scale = scale / MP.sqrt(rv + eps_d if not batch else
                                  MP.fsum((t - MP.fsum(x) / len(x)) ** 2 for t in x) / len(x) + eps_d)
        assert abs(value - want) <= MP.mpf(10) ** -28 * r_scale, (
            f"dx{full}={MP.nstr(value, 30)}, but the finite difference gives {MP.nstr(want, 30)} "
            f"[{call}]")
    want_dgamma = central(lambda d: loss_mp(x, w, g + d, b, rm, rv, eps_d, batch), h)
    value = MP.mpf(float(got["dgamma"].hi[c])) + MP.mpf(float(got["dgamma"].lo[c]))
    if flags["fix_gamma"]:
        assert value == 0 and got["dgamma"].rounded[c] == 0, f"dgamma[{c}]={value} [{call}]"
    else:
        assert abs(value - want_dgamma) <= MP.mpf(10) ** -28 * (1 + abs(want_dgamma)) * scale, (
            f"dgamma[{c}]={MP.nstr(value, 30)}, but the finite difference gives "
            f"{MP.nstr(want_dgamma, 30)} [{call}]")
    want_dbeta = central(lambda d: loss_mp(x, w, g, b + d, rm, rv, eps_d, batch), h)
    value = MP.mpf(float(got["dbeta"].hi[c])) + MP.mpf(float(got["dbeta"].lo[c]))
    assert abs(value - want_dbeta) <= MP.mpf(10) ** -40 * (1 + abs(want_dbeta)), (
        f"dbeta[{c}]={MP.nstr(value, 30)}, but should be {MP.nstr(want_dbeta, 30)} [{call}]")


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("flags", FLAG_COMBOS, ids=flag_id)
def test_backward_is_derivative_of_mpmath_forward(flags, dtype):
    rng = np.random.default_rng(100 + 8 * FLAG_COMBOS.index(flags) + DTYPE_NAMES.index(dtype))
    with MP.workdps(90):
        for _ in range(3):
            case = draw_case(rng, dtype, max_size=12)
            while case["x"].size < 2 * case["gamma"].size:  # M >= 2: dx is not trivially 0
                case = draw_case(rng, dtype, max_size=12)
            call = repro("evaluate", case, **flags)
            got = oracle.evaluate(**case, **flags)
            for c in range(case["gamma"].size):
                check_channel_mp(case, flags, c, got, call)


# --- finite differences of the oracle's own forward ------------------------------------------


def oracle_loss(case, flags) -> Fraction:
    """sum(dy * y) with y = the oracle's hi + lo, exactly."""
    fwd = {k: v for k, v in case.items() if k != "dy"}
    y = oracle.evaluate(**fwd, **flags)["y"]
    total = Fraction(0)
    for idx in np.ndindex(y.shape):
        total += (Fraction(float(y.hi[idx])) + Fraction(float(y.lo[idx]))) * \
            Fraction(float(case["dy"][idx]))
    return total


def richardson(f, h: Fraction) -> Fraction:
    """(4 D(h) - D(2h)) / 3 with D(h) = (f(h) - f(-h)) / 2h: error O(h**4)."""
    d1 = (f(h) - f(-h)) / (2 * h)
    d2 = (f(2 * h) - f(-2 * h)) / (4 * h)
    return (4 * d1 - d2) / 3


@pytest.mark.parametrize("flags", FLAG_COMBOS, ids=flag_id)
def test_backward_is_derivative_of_oracle_forward(flags):
    """float64 data on a 2**-10 grid, steps 2**-21 and 2**-20: x +- h is exact."""
    rng = np.random.default_rng(200 + FLAG_COMBOS.index(flags))
    C, M = 2, 3
    x = rng.integers(-64, 65, size=(M, C)) / 16.0
    x[:, 1] += 1e3  # a large offset in channel 1
    case = dict(x=x, gamma=np.array([1.25, -0.75]), beta=np.array([0.5, -2.0]),
                running_mean=np.array([0.25, 1e3]), running_var=np.array([1.5, 3.0]),
                dy=rng.integers(-8, 9, size=(M, C)) / 8.0, eps=1e-3, momentum=0.9, axis=1)
    call = repro("evaluate", case, **flags)
    got = oracle.evaluate(**case, **flags)
    h = Fraction(1, 2**21)
    fwd_flags = dict(flags, output_mean_var=False)

    def perturbed(name, idx):
        def f(d):
            arr = case[name].copy()
            arr[idx] = float(Fraction(float(arr[idx])) + d)
            assert Fraction(float(arr[idx])) == Fraction(float(case[name][idx])) + d
            return oracle_loss(dict(case, **{name: arr}), fwd_flags)
        return f

    for idx in np.ndindex(x.shape):
        want = richardson(perturbed("x", idx), h)
        value = Fraction(float(got["dx"].hi[idx])) + Fraction(float(got["dx"].lo[idx]))
        assert abs(value - want) <= Fraction(1, 10**20), (
            f"dx{list(idx)}={float(value)!r}, but the oracle's forward differences give "
            f"{float(want)!r} [{call}]")
    for c in range(C):
        want = richardson(perturbed("gamma", c), h)
        value = Fraction(float(got["dgamma"].hi[c])) + Fraction(float(got["dgamma"].lo[c]))
        if flags["fix_gamma"]:
            assert want == 0 and value == 0, f"dgamma[{c}]={float(value)!r} [{call}]"
        else:
            assert abs(value - want) <= Fraction(1, 10**20), (
                f"dgamma[{c}]={float(value)!r}, but the oracle's forward differences give "
                f"{float(want)!r} [{call}]")
        want = richardson(perturbed("beta", c), h)
        value = Fraction(float(got["dbeta"].hi[c])) + Fraction(float(got["dbeta"].lo[c]))
        assert abs(value - want) <= Fraction(1, 10**20), (
            f"dbeta[{c}]={float(value)!r}, but should be {float(want)!r} [{call}]")
