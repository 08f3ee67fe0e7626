"""The integer rule of the quantized path catches wrong quantized kernels and passes right ones.

Each backend below is judged on every golden qnt case (conformance.quantized.judge_quantized,
the function the suite's test_quantized uses): a float32 implementation of the spec's
formula passes under strict, MXNet's observed arithmetic passes only when it declares its
quantized profile, and each classic mistake fails somewhere.
"""
from __future__ import annotations

import numpy as np
import pytest

from bnspec.profiles import MXNET_QUANTIZED_PROFILE
from bnspec.validate import check_quantized_arguments
from conformance.adapter import Capabilities
from conformance.cases import DEFAULT_CASES_DIR
from conformance.checks import judge_error
from conformance.quantized import compare_int, declared_profile, judge_quantized
from conformance.runner import run_case
from oracle.api import QuantizedExpected
from oracle.casefile import load_cases

F32 = np.float32


@pytest.fixture(scope="module")
def qnt_cases():
    cases = load_cases(DEFAULT_CASES_DIR, r"^qnt_")
    assert len(cases) > 50
    return cases


class Float32Kernel:
    """The spec's formula folded into w and b in float32, out = rint(fma-free w q + b)."""

    name, version = "f32", "test"
    capabilities = Capabilities(quantized=True)
    #: knobs the mutants turn
    rounding = staticmethod(np.rint)
    low = -128
    uint8_scale = 127 / 255
    shift_range = 127.0
    slope_eps_twice = False
    requantize_uint8 = False

    def supports(self, case):
        return None

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def backward(self, *args, **kwargs):
        raise NotImplementedError

    def quantized(self, x, gamma, beta, running_mean, running_var, *, min_data, max_data,
                  min_calib_range, max_calib_range, eps, axis, **flags):
        dtype, ax = check_quantized_arguments(
            x, gamma, beta, running_mean, running_var, axis=axis, eps=eps, min_data=min_data,
            max_data=max_data, min_calib_range=min_calib_range, max_calib_range=max_calib_range)
        A = F32(max(abs(F32(min_data)), abs(F32(max_data))))
        B = F32(max(abs(F32(min_calib_range)), abs(F32(max_calib_range))))
        r = (1.0 / np.sqrt(running_var.astype(np.float64) + eps)).astype(F32)
        w = gamma * r * A / B
        if self.slope_eps_twice:
            w = w / np.sqrt(F32(1) + F32(eps))
        b = (beta - running_mean * gamma * r) * F32(self.shift_range) / B
        q = np.moveaxis(x, ax, -1).astype(F32)
        if dtype == "uint8":
            if self.requantize_uint8:
                q = np.rint(q * F32(127.5 / 255.5))
            else:
                w = w * F32(self.uint8_scale)
        out = np.clip(self.rounding(q * w + b), self.low, 127).astype(np.int8)
        return {"out": np.moveaxis(out, -1, ax),
                "min_out": np.array([min_calib_range], F32),
                "max_out": np.array([max_calib_range], F32)}


def _half_away(v):
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


class HalfAway(Float32Kernel):
    rounding = staticmethod(_half_away)


class Symmetric127(Float32Kernel):
    low = -127


class NoUint8Rescale(Float32Kernel):
    uint8_scale = 1.0


class Truncating(Float32Kernel):
    rounding = staticmethod(np.trunc)


class MXNetLike(Float32Kernel):
    """MXNet 1.9.1's arithmetic: slope / sqrt(1 + eps), shift 127.5 / B, uint8 requantized."""

    slope_eps_twice = True
    shift_range = 127.5
    requantize_uint8 = True


class MXNetDeclared(MXNetLike):
    capabilities = Capabilities(quantized=True, quantized_profile=MXNET_QUANTIZED_PROFILE)


def _failures(backend, cases, profile="strict"):
    failed = []
    for case in cases:
        if case.error is not None:
            if judge_error(backend, case) is not None:
                failed.append(case.id)
            continue
        judged = judge_quantized(case, run_case(backend, case), profile, declared_profile(backend))
        if not all(r.ok for r, _, _ in judged):
            failed.append(case.id)
    return failed


def test_float32_kernel_of_the_formula_passes_strict(qnt_cases):
    assert _failures(Float32Kernel(), qnt_cases) == []


def test_mxnet_arithmetic_passes_only_with_its_declared_profile(qnt_cases):
    assert len(_failures(MXNetLike(), qnt_cases)) > 40
    assert _failures(MXNetDeclared(), qnt_cases) == []


@pytest.mark.parametrize("mutant, where", [
    (HalfAway, "qties"), (Symmetric127, "qsaturate"), (NoUint8Rescale, "_u8_"),
    (Truncating, "qnormal")])
def test_mutants_fail(qnt_cases, mutant, where):
    failed = _failures(mutant(), qnt_cases)
    assert any(where in cid for cid in failed), failed[:5]


def _expected(rounded, value, dist, cond):
    a = lambda v: np.array(v, dtype=np.float64)
    return QuantizedExpected("out", "int8", a(value), np.zeros(len(value)), a(rounded), a(cond),
                             a(dist))


def test_rule_allows_one_step_only_toward_a_near_boundary():
    # v = 2.4999999 (dist 1e-7 from 2.5), cond 10: limit 8 u cond = 4.8e-6
    e = _expected([2, 2, 2, 5], [2.4999999, 2.4999999, 2.4999999, 5.0], [1e-7, 1e-7, 1e-7, 0.5],
                  [10.0, 10.0, 10.0, 10.0])
    ok = compare_int(np.array([2, 3, 2, 5], np.int8), e, 8.0)
    assert ok.ok and ok.worst_units == pytest.approx(1e-7 / (2**-24 * 10))
    assert not compare_int(np.array([1, 2, 2, 5], np.int8), e, 8.0).ok  # wrong side
    assert not compare_int(np.array([2, 4, 2, 5], np.int8), e, 8.0).ok  # two away
    assert not compare_int(np.array([2, 2, 2, 6], np.int8), e, 8.0).ok  # far from a boundary
    assert not compare_int(np.array([2, 2, 2, 5], np.int16), e, 8.0).ok  # dtype
    exact = _expected([2], [2.5], [0.0], [0.0])  # an exact tie that float32 reaches exactly
    assert not compare_int(np.array([3], np.int8), exact, 8.0).ok
    assert compare_int(np.array([2], np.int8), exact, 8.0).ok
