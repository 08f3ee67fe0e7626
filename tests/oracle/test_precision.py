"""The oracle's hi + lo agrees with the formulas evaluated here in mpmath at 100 and 200 digits.

Two working precisions of the same direct evaluation must agree with each other (so the
200-digit value is good far beyond 30 digits), and the oracle's hi + lo must agree with the
200-digit value to 1e-30 relative, on random inputs and on adversarial ones: a large offset
(mean/std = 1e6 and 1e12, which ruins E[x^2] - E[x]^2), a variance far below eps and one close
to it, y cancelling to near 0 (beta ~ -(x - mean) invstd gamma), dx cancelling to near 0
(dy nearly affine in x), and a running variance that is DType(eps) - eps alone.

The only slack beyond 1e-30 relative is 1e-85 of the magnitude of the terms (the noise floor
of the 100-digit evaluation), which matters only for values that are 0 or nearly so.
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
FLAG_COMBOS = [dict(training=t, fix_gamma=f, use_global_stats=u, output_mean_var=True)
               for t, f, u in itertools.product((True, False), repeat=3)]
TRAIN = dict(training=True, use_global_stats=False, output_mean_var=True)


def evaluate_mp(case: dict, flags: dict, dps: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every output of one call evaluated directly in mpmath at `dps` digits, as
    name -> (values, magnitudes of their terms), in the layout of oracle.evaluate: the forward
    outputs (y, mean, invstd) and the training-step outputs (dx, dgamma, dbeta, running
    stats after backward) together."""
    with MP.workdps(dps):
        x_all = np.asarray(case["x"]).astype(np.float64)
        ax = case["axis"] % x_all.ndim
        C = x_all.shape[ax]
        xs = np.moveaxis(x_all, ax, 0).reshape(C, -1)
        dys = np.moveaxis(np.asarray(case["dy"]).astype(np.float64), ax, 0).reshape(C, -1)
        M = xs.shape[1]
        dtype = case["x"].dtype.name
        eps = MP.mpf(case["eps"])
        eps_d = MP.mpf(round_exact(Fraction(case["eps"]), dtype))
        m = MP.mpf(round_exact(Fraction(case["momentum"]), "float32"))
        batch = flags["training"] and not flags["use_global_stats"]
        out = {k: ([], []) for k in ("y", "dx", "mean", "invstd", "dgamma", "dbeta",
                                     "running_mean", "running_var")}
        for c in range(C):
            x = [MP.mpf(float(t)) for t in xs[c]]
            dy = [MP.mpf(float(t)) for t in dys[c]]
            g = MP.mpf(1) if flags["fix_gamma"] else MP.mpf(float(case["gamma"][c]))
            beta = MP.mpf(float(case["beta"][c]))
            rm = MP.mpf(float(case["running_mean"][c]))
            rv = MP.mpf(float(case["running_var"][c]))
            if batch:
                mean = MP.fsum(x) / M
                v = MP.fsum((t - mean) ** 2 for t in x) / M + eps_d
                r = MP.mpf(0) if v == 0 else 1 / MP.sqrt(v)
            else:
                mean, v = rm, rv + eps_d
                r = 1 / MP.sqrt(v)
            out["mean"][0].append(mean)
            out["mean"][1].append(abs(mean))
            out["invstd"][0].append(r)
            out["invstd"][1].append(r)
            for t in x:
                out["y"][0].append((t - mean) * r * g + beta)
                out["y"][1].append(abs(t - mean) * r * abs(g) + abs(beta))
            sdy = MP.fsum(dy)
            dotp = MP.fsum((t - mean) * d for t, d in zip(x, dy))
            if batch:
                k = dotp * r * r / M
                for t, d in zip(x, dy):
                    out["dx"][0].append((d - sdy / M - (t - mean) * k) * r * g)
                    out["dx"][1].append((abs(d) + abs(sdy / M) + abs((t - mean) * k)) * r * abs(g))
                new_rm = rm * m + mean * (1 - m)
                new_rv = rv * m + (1 / (r * r) - eps) * (1 - m) if r else None
                out["running_mean"][0].append(new_rm)
                out["running_mean"][1].append(abs(rm * m) + abs(mean * (1 - m)))
                out["running_var"][0].append(new_rv)
                out["running_var"][1].append(abs(rv * m) + (v + eps) * (1 - m))
            else:
                for d in dy:
                    out["dx"][0].append(d * r * g)
                    out["dx"][1].append(abs(d * r * g))
                out["running_mean"][0].append(rm)
                out["running_mean"][1].append(abs(rm))
                out["running_var"][0].append(rv)
                out["running_var"][1].append(abs(rv))
            out["dgamma"][0].append(MP.mpf(0) if flags["fix_gamma"] else dotp * r)
            out["dgamma"][1].append(MP.fsum(abs((t - mean) * d) for t, d in zip(x, dy)) * r)
            out["dbeta"][0].append(sdy)
            out["dbeta"][1].append(MP.fsum(abs(d) for d in dy))

        def shaped(values):
            a = np.empty(len(values), dtype=object)
            a[:] = values
            moved = (C,) + tuple(n for i, n in enumerate(x_all.shape) if i != ax)
            return np.moveaxis(a.reshape(moved), 0, ax)

        result = {}
        for name, (values, mags) in out.items():
            if name in ("y", "dx"):
                result[name] = (shaped(values), shaped(mags))
            else:
                result[name] = (np.array(values + [None], dtype=object)[:-1],
                                np.array(mags + [None], dtype=object)[:-1])
        return result


def check_precision(case: dict, flags: dict) -> None:
    """Compare 100 and 200 digits with each other and the oracle's hi + lo with 200 digits."""
    __tracebackhide__ = True
    lo_prec = evaluate_mp(case, flags, 100)
    hi_prec = evaluate_mp(case, flags, 200)
    fwd_case = {k: v for k, v in case.items() if k != "dy"}
    got = dict(oracle.evaluate(**fwd_case, **flags))
    step = oracle.evaluate(**case, **flags)
    got.pop("running_mean")
    got.pop("running_var")
    got.update(step)
    call = repro("evaluate", case, **flags)
    with MP.workdps(200):
        for name, e in got.items():
            v100, _ = lo_prec[name]
            v200, mag = hi_prec[name]
            for idx in np.ndindex(e.shape):
                want = v200[idx]
                if want is None:  # running_var after 1/0 - eps: test_closed_forms pins it
                    continue
                floor = MP.mpf(10) ** -85 * mag[idx]
                assert abs(v100[idx] - want) <= floor, (
                    f"{name}{list(idx)}: 100 and 200 digits disagree: {MP.nstr(v100[idx], 40)} "
                    f"vs {MP.nstr(want, 40)} (test defect)")
                value = MP.mpf(float(e.hi[idx])) + MP.mpf(float(e.lo[idx]))
                err = abs(value - want)
                assert err <= MP.mpf(10) ** -30 * abs(want) + floor, (
                    f"{name}{list(idx)}: hi+lo={MP.nstr(value, 35)}, but should be "
                    f"{MP.nstr(want, 35)} (relative error "
                    f"{MP.nstr(err / abs(want), 3) if want else 'inf'} > 1e-30) [{call}]")


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("flags", FLAG_COMBOS, ids=lambda f: "-".join(
    k for k, v in f.items() if v and k != "output_mean_var") or "infer")
def test_random_inputs(flags, dtype):
    rng = np.random.default_rng(300 + 8 * FLAG_COMBOS.index(flags) + DTYPE_NAMES.index(dtype))
    for _ in range(2):
        check_precision(draw_case(rng, dtype, max_size=16), flags)


def offset_case(dtype, rng, offset, std, M=64, C=2, eps=1e-5):
    p = PARAM_DTYPE[dtype]
    x = cast(offset + std * rng.normal(size=(M, C)), dtype)
    return dict(x=x, gamma=cast(rng.normal(size=C), p), beta=cast(rng.normal(size=C), p),
                running_mean=cast(np.full(C, offset), p), running_var=cast(np.full(C, std**2), p),
                dy=cast(rng.normal(size=(M, C)), dtype), eps=eps, momentum=0.9, axis=1)


@pytest.mark.parametrize("dtype,offset,std", [
    ("float64", 1e6, 1.0), ("float64", 1e12, 1e-3), ("float32", 1e6, 1.0),
    ("float32", 4096.0, 2.0**-8), ("float16", 1024.0, 1.0), ("bfloat16", 2.0**20, 2.0**14)])
def test_large_offset(dtype, offset, std):
    rng = np.random.default_rng(310)
    for fix_gamma in (True, False):
        check_precision(offset_case(dtype, rng, offset, std), dict(TRAIN, fix_gamma=fix_gamma))


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_variance_far_below_and_near_eps(dtype):
    rng = np.random.default_rng(320)
    eps = float(np.float32(1e-3))
    tiny = {"float64": 2.0**-40, "float32": 2.0**-20, "float16": 2.0**-10, "bfloat16": 2.0**-7}
    base = cast(1 + tiny[dtype] * rng.integers(-3, 4, size=(16, 2)), dtype)  # var << eps
    near = cast(np.sqrt(eps) * rng.choice([-1.0, 1.0], size=(16, 2)), dtype)  # var ~ eps
    for x in (base, near):
        p = PARAM_DTYPE[dtype]
        case = dict(x=x, gamma=cast([0.75, -1.25], p), beta=cast([0.0, 0.5], p),
                    running_mean=cast([1.0, 0.0], p), running_var=cast([1e-6, eps], p),
                    dy=cast(rng.normal(size=x.shape), dtype), eps=eps, momentum=0.9, axis=1)
        for flags in FLAG_COMBOS:
            check_precision(case, flags)


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_y_cancelling_to_near_zero(dtype):
    """beta = -(x0 - mean) invstd gamma rounded to the parameter dtype: y[x0] is the rounding
    residue, 2**-24 .. 2**-53 of the terms (and smaller by the data's spread)."""
    rng = np.random.default_rng(330 + DTYPE_NAMES.index(dtype))
    p = PARAM_DTYPE[dtype]
    for trial in range(6):
        case = offset_case(dtype, rng, offset=[0.0, 100.0, 1e4][trial % 3], std=1.0, M=8, C=2)
        for flags in (dict(TRAIN, fix_gamma=False), dict(FLAG_COMBOS[-1], fix_gamma=False)):
            y = evaluate_mp(dict(case, beta=cast([0.0, 0.0], p)), flags, 60)["y"][0]
            y0 = y[trial % 8]  # beta = 0 here: y0 = (x0 - mean) r g, one per channel
            beta = cast([-float(t) for t in (y0[0], y0[1])], p)
            check_precision(dict(case, beta=beta), flags)


@pytest.mark.parametrize("dtype", ("float64", "float32"))
def test_dx_cancelling_to_near_zero(dtype):
    """dy = 3 x - 1 (exactly, or with one element nudged by an ulp) and eps far below var:
    dx = (x - mean) eps/(var + eps) r g, a small remainder of much larger terms."""
    rng = np.random.default_rng(340)
    for eps in (1e-5, 2.0**-40):
        x = cast(rng.normal(size=(8, 2)) * 64, dtype)
        dy = cast(3 * x.astype(np.float64) - 1, dtype)
        nudged = dy.copy()
        nudged[3, 1] = np.nextafter(nudged[3, 1], np.inf)
        p = PARAM_DTYPE[dtype]
        for d in (dy, nudged):
            case = dict(x=x, gamma=cast([1.5, -0.5], p), beta=cast([0.0, 0.0], p),
                        running_mean=cast([0.0, 0.0], p), running_var=cast([1.0, 1.0], p),
                        dy=d, eps=eps, momentum=0.9, axis=1)
            for fix_gamma in (True, False):
                check_precision(case, dict(TRAIN, fix_gamma=fix_gamma))


@pytest.mark.parametrize("dtype", ("float16", "bfloat16"))
def test_running_var_is_eps_rounding_residue(dtype):
    """A constant channel with momentum 0: running_var = DType(eps) - eps, a tiny value of
    either sign, must come out to 1e-30 relative (and rounded correctly)."""
    for eps in (float(np.float32(1e-3)), 1e-5, 0.1):
        x = cast(np.full((5, 1), 2.0), dtype)
        case = dict(x=x, gamma=np.ones(1, np.float32), beta=np.zeros(1, np.float32),
                    running_mean=np.zeros(1, np.float32), running_var=np.ones(1, np.float32),
                    dy=cast(np.ones((5, 1)), dtype), eps=eps, momentum=0.0, axis=1)
        check_precision(case, dict(TRAIN, fix_gamma=True))
        e = oracle.evaluate(**case, **dict(TRAIN, fix_gamma=True))["running_var"]
        residue = Fraction(round_exact(Fraction(eps), dtype)) - Fraction(eps)
        assert e.rounded[0] == round_exact(residue, "float32"), (
            f"running_var={e.rounded[0]!r}, but should be {round_exact(residue, 'float32')!r} "
            f"[{repro('evaluate', case, **TRAIN, fix_gamma=True)}]")
