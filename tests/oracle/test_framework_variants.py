"""The variants frameworks follow on purpose, against closed forms and an independent emulation.

Expected values here are written out with Fractions and 60-digit decimals from the formula in
each variant's description (oracle.variants), or come from tests/backends/mxnet_reference.py,
a float32 emulation of MXNet's float16 kernel written operation by operation (bit-exact
against MXNet itself); never from the oracle's code.
"""
import sys
from decimal import Decimal, getcontext
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import oracle
from conformance import cases, profiles
from conformance.checks import judge_outputs
from conformance.runner import fresh_inputs
from oracle.variants import check_variants

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backends"))
import mxnet_reference

getcontext().prec = 60
F16 = np.float16


def invsqrt(q: Fraction) -> Decimal:
    """Return 1/sqrt(q) to 60 digits."""
    return 1 / (Decimal(q.numerator) / Decimal(q.denominator)).sqrt()


def f16(q) -> Fraction:
    """Return q rounded to float16 (numpy's cast of the nearest double: exact for the
    values below, whose doubles are exact or far from a float16 boundary)."""
    return Fraction(float(F16(float(q))))


# --- fp16_stepwise_rounding ------------------------------------------------------------------

def _fp16_call(x, gamma, beta, rm, rv, eps, **flags):
    kw = {"eps": eps, "momentum": 0.9, "fix_gamma": False, "use_global_stats": False,
          "output_mean_var": True, "axis": 1, "training": True, **flags}
    args = (x.astype(F16), gamma.astype(np.float32), beta.astype(np.float32),
            rm.astype(np.float32), rv.astype(np.float32))
    return args, kw


def test_fp16_invstd_is_of_var_plus_eps_rounded_to_float16():
    # One channel [0, 1]: mean 1/2, var 1/4; half(1e-3) = 1049/2**20; var + eps rounds to
    # float16 (spacing 2**-12 at 1/4) before the square root.
    x = np.array([[0.0], [1.0]])
    args, kw = _fp16_call(x, np.ones(1), np.zeros(1), np.zeros(1), np.ones(1), 1e-3)
    out = oracle.evaluate(*args, **kw, variants=("fp16_stepwise_rounding",))
    eps16 = Fraction(float(F16(1e-3)))
    ve16 = f16(Fraction(1, 4) + eps16)
    assert ve16 != Fraction(1, 4) + eps16  # the rounding the variant adds
    want = invsqrt(ve16)
    assert abs(Decimal(out["invstd"].hi[0]) + Decimal(out["invstd"].lo[0]) - want) < \
        Decimal(10) ** -28 * want
    plain = oracle.evaluate(*args, **kw)
    assert plain["invstd"].rounded[0] != out["invstd"].rounded[0]


def test_fp16_y_rounds_each_step():
    # y = h(h(h(h(x - mean) r) g) + beta) against the same steps written with Fractions.
    x = np.array([[0.0], [1.0], [3.0]])
    g, b = np.array([1.7]), np.array([0.3])
    args, kw = _fp16_call(x, g, b, np.zeros(1), np.ones(1), 1e-3)
    out = oracle.evaluate(*args, **kw, variants=("fp16_stepwise_rounding",))
    xs = [Fraction(float(v)) for v in args[0][:, 0]]
    mu = sum(xs) / 3
    var = sum((v - mu) ** 2 for v in xs) / 3
    r = invsqrt(f16(var + Fraction(float(F16(1e-3)))))
    gf, bf = Fraction(float(args[1][0])), Fraction(float(args[2][0]))
    for i, v in enumerate(xs):
        t1 = f16(v - mu)
        t2 = Fraction(float(F16(float(Decimal(t1.numerator) / Decimal(t1.denominator) * r))))
        t3 = f16(t2 * gf)
        assert out["y"].rounded[i, 0] == float(f16(t3 + bf)), i


def test_fp16_var_above_float16_range_gives_invstd_zero_and_y_beta():
    # var = 2**16 > 65504: h(var + eps) = inf, r = 0, y = h(0 g + beta) = h(beta).
    x = np.array([[-256.0], [256.0]])
    args, kw = _fp16_call(x, np.ones(1), np.array([0.1]), np.zeros(1), np.ones(1), 1e-5)
    out = oracle.evaluate(*args, **kw, variants=("fp16_stepwise_rounding",))
    assert out["invstd"].rounded[0] == 0.0
    assert np.all(out["y"].rounded == float(F16(np.float32(0.1))))
    assert np.all(out["y"].cond == 0)  # exact special values


def test_fp16_variant_leaves_other_dtypes_alone():
    x = np.array([[0.0], [1.0], [3.0]])
    for dtype in (np.float32, np.float64):
        args = (x.astype(dtype), *(a.astype(dtype) for a in (np.ones(1), np.zeros(1),
                                                              np.zeros(1), np.ones(1))))
        a = oracle.evaluate(*args, training=True, output_mean_var=True)
        b = oracle.evaluate(*args, training=True, output_mean_var=True,
                            variants=("fp16_stepwise_rounding",))
        assert profiles.same_expected(a, b)


def _emulation(case):
    inputs = fresh_inputs(case)
    args = [inputs[k] for k in ("x", "gamma", "beta", "running_mean", "running_var")]
    if case.op == "bwd":
        return mxnet_reference.backward_fp16(*args, inputs["dy"], **case.kwargs())
    out = mxnet_reference.forward_fp16(*args, **case.kwargs())
    if not case.kwargs()["output_mean_var"]:
        del out["mean"], out["invstd"]
    return out


#: One golden case per family and op of float16 data (the long family is left to the
#: sequential-sum entries of the known deviations: float32 sums over 65,600 elements).
FP16_PATTERNS = ["fwd_train_freegamma_batchstats_meanvar_*_fp16_*", "fwd_infer_*_fp16_*",
                 "fwd_*_globalstats_*_fp16_*", "bwd_train_freegamma_batchstats_*_fp16_*",
                 "bwd_train_fixgamma_*_fp16_*", "bwd_*_globalstats_*_fp16_*"]


def _fp16_cases():
    import fnmatch

    ids = cases.ids_for(cases.default_cases_dir(), ("fwd", "bwd"))
    chosen = set()
    for pattern in FP16_PATTERNS:
        seen_families = set()
        for cid in sorted(fnmatch.filter(ids, pattern)):
            family = cid.split("_fp16_")[1].split("_")[1]
            if "long" in cid or family in seen_families:
                continue
            seen_families.add(family)
            chosen.add(cid)
    return sorted(chosen)


@pytest.mark.parametrize("case_id", _fp16_cases())
def test_fp16_variant_holds_the_independent_emulation(case_id):
    """MXNet's kernel, emulated in float32 step by step, passes the strict tolerance against
    the variant; against the semantics it fails on most of these cases (next test)."""
    case = cases.load(cases.default_cases_dir(), case_id)
    got = _emulation(case)
    variant = profiles.profiled_case(case, ("fp16_stepwise_rounding",))
    judged = judge_outputs(variant, got, list(got), "strict")
    bad = [(r.name, r.worst_kind, r.fraction) for r, _, _ in judged if not r.ok]
    assert not bad, bad


def test_fp16_emulation_fails_the_semantics_the_variant_explains():
    failing = 0
    chosen = _fp16_cases()
    for case_id in chosen:
        case = cases.load(cases.default_cases_dir(), case_id)
        got = _emulation(case)
        judged = judge_outputs(case, got, list(got), "strict")
        failing += any(not r.ok for r, _, _ in judged)
    assert failing >= len(chosen) // 3, (failing, len(chosen))


# --- eps_float32, invstd_inf_at_zero, running_var_from_batch_var ----------------------------

def test_eps_float32_adds_the_float32_eps_to_float64_data():
    x = np.array([[0.0, 1.0], [1.0, 3.0]])
    one = np.ones(2)
    out = oracle.evaluate(x, one, one * 0, one * 0, one, eps=0.1, training=True,
                          output_mean_var=True, variants=("eps_float32",))
    eps32 = Fraction(float(np.float32(0.1)))
    assert eps32 != Fraction(0.1)
    for c, var in enumerate((Fraction(1, 4), Fraction(1))):
        want = invsqrt(var + eps32)
        got = Decimal(out["invstd"].hi[c]) + Decimal(out["invstd"].lo[c])
        assert abs(got - want) < Decimal(10) ** -28, c
    # the running variance recovered with that eps: 1/r^2 - eps32 = var exactly
    step = oracle.evaluate(x, one, one * 0, one * 0, one, x * 0, eps=0.1, momentum=0.5,
                           training=True, variants=("eps_float32",))
    assert list(step["running_var"].rounded) == [0.5 + 0.125, 0.5 + 0.5]


def test_eps_float32_on_float16_data_skips_the_cast_to_float16():
    x = np.array([[0.0], [1.0]], dtype=F16)
    p = np.ones(1, np.float32)
    out = oracle.evaluate(x, p, p * 0, p * 0, p, eps=1e-3, training=True,
                          output_mean_var=True, variants=("eps_float32",))
    want = invsqrt(Fraction(1, 4) + Fraction(float(np.float32(1e-3))))
    assert out["invstd"].rounded[0] == float(np.float32(float(want)))


def test_invstd_inf_at_zero_on_a_constant_channel_with_eps_zero():
    x = np.full((4, 2), 1.5)
    x[:, 1] = [0.0, 1.0, 2.0, 3.0]
    one = np.ones(2)
    kw = {"eps": 0.0, "momentum": 0.5, "fix_gamma": False, "training": True,
          "output_mean_var": True}
    out = oracle.evaluate(x, one, one, one * 0, one * 4, **kw,
                          variants=("invstd_inf_at_zero",))
    assert out["invstd"].rounded[0] == np.inf and np.isnan(out["y"].rounded[:, 0]).all()
    assert out["invstd"].rounded[1] == float(invsqrt(Fraction(5, 4)))  # other channel as is
    step = oracle.evaluate(x, one, one, one * 0, one * 4, np.ones_like(x), **kw,
                           variants=("invstd_inf_at_zero",))
    assert np.isnan(step["dx"].rounded[:, 0]).all() and np.isnan(step["dgamma"].rounded[0])
    assert step["running_var"].rounded[0] == 2.0  # 4 m + (1/inf^2 - 0)(1 - m)
    plain = oracle.evaluate(x, one, one, one * 0, one * 4, **kw)
    assert plain["invstd"].rounded[0] == 0.0 and np.all(plain["y"].rounded[:, 0] == 1.0)


def test_running_var_from_batch_var_skips_the_recovery_from_invstd():
    # float16 data, eps = 1e-3: the semantics recover 1/r^2 - eps = var + half(eps) - eps;
    # the variant takes var itself.
    x = np.array([[0.0], [1.0]], dtype=F16)
    p = np.ones(1, np.float32)
    kw = {"eps": 1e-3, "momentum": 0.5, "training": True}
    step = oracle.evaluate(x, p, p * 0, p * 0, p, np.zeros_like(x), **kw,
                           variants=("running_var_from_batch_var",))
    assert step["running_var"].rounded[0] == float(np.float32(0.5 + 0.125))
    plain = oracle.evaluate(x, p, p * 0, p * 0, p, np.zeros_like(x), **kw)
    recovered = Fraction(1, 4) + Fraction(float(F16(1e-3))) - Fraction(1e-3)
    assert plain["running_var"].rounded[0] == float(np.float32(float(
        Fraction(1, 2) + recovered / 2)))
    assert plain["running_var"].rounded[0] != step["running_var"].rounded[0]


def test_running_var_from_batch_var_with_a_zero_variance_channel():
    # eps = 0 and a constant channel: the semantics give invstd 0 and recover inf; the batch
    # variance itself is 0.
    x = np.full((3, 1), 2.0)
    one = np.ones(1)
    step = oracle.evaluate(x, one, one, one, one * 3, np.zeros_like(x), eps=0.0, momentum=0.5,
                           training=True, variants=("running_var_from_batch_var",))
    assert step["running_var"].rounded[0] == 1.5


# --- no_mean_invstd, no_mean_invstd_with_running_stats ---------------------------------------

@pytest.mark.parametrize("training,use_global_stats,has", [
    (True, False, (True, False)), (False, False, (False, False)), (True, True, (False, False))])
def test_no_mean_invstd_variants_drop_the_outputs(training, use_global_stats, has):
    x = np.arange(6.0).reshape(3, 2)
    one = np.ones(2)
    kw = {"training": training, "use_global_stats": use_global_stats, "output_mean_var": True}
    plain = oracle.evaluate(x, one, one, one, one, **kw)
    assert {"mean", "invstd"} <= set(plain)
    for variant, present in zip(("no_mean_invstd_with_running_stats", "no_mean_invstd"), has):
        out = oracle.evaluate(x, one, one, one, one, **kw, variants=(variant,))
        assert ("mean" in out) == present and ("invstd" in out) == present, variant
        assert profiles.same_expected(out, plain, ["y", "running_mean", "running_var"])


def test_exclusive_variants_are_refused_by_name():
    with pytest.raises(ValueError, match="fp16_stepwise_rounding"):
        check_variants(("fp16_stepwise_rounding", "eps_outside_sqrt"))
