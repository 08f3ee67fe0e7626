"""Tests of backends.worker: the message format, round trips through a child, exception
transport, in-place mutations, crash recovery, timeouts, and the numpy backend out of
process agreeing bit for bit with the numpy backend in process."""
from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from backends.numpy_backend import NumpyBackend
from backends.worker import (
    OutOfProcessBackend,
    ProtocolError,
    WorkerCrashed,
    WorkerError,
    WorkerStartupError,
    WorkerTimeout,
)
from backends.worker.protocol import HEADER, CaseView, decode, encode, pack_case
from conformance.adapter import Capabilities
from conformance.cases import DEFAULT_CASES_DIR, load
from conformance.checks import judge_error
from conformance.runner import call_backend, fresh_inputs

HERE = Path(__file__).resolve().parent
SPEC = "worker_fixtures:ScriptedBackend"


def inputs(dtype=np.float32):
    x = np.arange(12, dtype=np.float64).reshape(4, 3).astype(dtype)
    c = np.full(3, 2.0, dtype=np.float32)
    return x, c.copy(), c.copy(), np.zeros(3, np.float32), np.ones(3, np.float32)


@pytest.fixture(scope="module")
def backend():
    bn = OutOfProcessBackend(SPEC, pythonpath=(HERE,), timeout=30)
    yield bn
    bn.close()


# --- the message format ---------------------------------------------------------------


def roundtrip(meta, arrays):
    message = encode(meta, arrays)
    (length,) = HEADER.unpack(message[:HEADER.size])
    assert length == len(message) - HEADER.size
    return decode(message[HEADER.size:])


def test_encode_decode_keeps_dtypes_shapes_and_bits():
    arrays = {"scalar": np.float32(3.5) * np.ones(()), "empty": np.zeros((0, 3), np.float16),
              "bool": np.array([True, False]), "int": np.arange(5, dtype=np.int32),
              "bf16": np.array([1.5, -0.0, np.inf], dtype=ml_dtypes.bfloat16),
              "nan": np.array([np.nan], np.float64), "f-order": np.asfortranarray(
                  np.arange(6.0).reshape(2, 3)), "big-endian": np.arange(3, dtype=">f4")}
    meta, got = roundtrip({"eps": 1e-5, "nan": math.nan, "inf": -math.inf}, arrays)
    assert meta["eps"] == 1e-5 and math.isnan(meta["nan"]) and meta["inf"] == -math.inf
    for name, array in arrays.items():
        assert got[name].dtype == array.dtype, name
        assert got[name].shape == array.shape, name
        assert got[name].tobytes() == np.ascontiguousarray(array).tobytes(), name


def test_encode_refuses_object_arrays_and_decode_refuses_garbage():
    with pytest.raises(ProtocolError, match="'bad'"):
        encode({}, {"bad": np.array([object()])})
    with pytest.raises(ProtocolError):
        decode(b"not an npz archive")


def test_numpy_scalars_in_meta_are_sent_as_their_value():
    meta, _ = roundtrip({"momentum": np.float32(0.9), "axis": np.int64(-1)}, {})
    assert meta == {"momentum": float(np.float32(0.9)), "axis": -1}


def first_case(pattern: str):
    """Return the first golden case whose id matches pattern (a glob), skipping if none."""
    ids = sorted(p.stem for p in DEFAULT_CASES_DIR.glob(f"{pattern}.yaml"))
    if not ids:
        pytest.skip(f"no golden case matches {pattern}")
    return load(DEFAULT_CASES_DIR, ids[0])


def test_case_view_has_what_supports_reads():
    case = first_case("fwd_train_fixgamma_batchstats_nomeanvar_axis1_fp32_*")
    meta, arrays = pack_case(case)
    assert "expected" not in meta["case"]
    got_meta, got_arrays = roundtrip(meta, arrays)
    view = CaseView(got_meta["case"], got_arrays)
    assert view.kwargs() == case.kwargs()
    assert (view.id, view.op, view.dtype, view.shape) == (case.id, case.op, case.dtype,
                                                          case.shape)
    assert view.flags.batch_stats == case.flags.batch_stats
    assert np.array_equal(view.inputs["x"], case.inputs["x"])


# --- calls through a child ------------------------------------------------------------


def test_hello_gives_name_version_and_capabilities(backend):
    assert (backend.name, backend.version) == ("scripted", "1.0")
    assert backend.capabilities == Capabilities(dtypes=frozenset({"float32", "bfloat16"}),
                                                backward=False,
                                                profile=("running_var_unbiased",))
    assert backend.worker_info["python"]


def test_forward_round_trip_with_keywords_and_in_place_updates(backend):
    x, gamma, beta, rm, rv = inputs()
    out = backend.forward(x, gamma, beta, rm, rv, eps=1e-5, momentum=np.float32(0.9),
                          fix_gamma=True, axis=-1, training=True)
    assert np.array_equal(out["y"], x * 2) and out["y"].dtype == np.float32
    assert out["kw_eps"] == 1e-5 and out["kw_axis"] == -1 and bool(out["kw_fix_gamma"])
    assert np.array_equal(gamma, np.ones(3)), "fix_gamma's in-place write reaches the caller"
    assert np.array_equal(rm, np.ones(3)) and np.array_equal(out["running_mean"], rm)
    assert np.array_equal(beta, np.full(3, 2.0)), "untouched inputs stay as they were"


def test_bfloat16_arrays_cross_both_ways(backend):
    x = np.array([[1.5, -2.25, 3.0]], dtype=ml_dtypes.bfloat16)
    out = backend.forward(x, *inputs()[1:])
    assert out["y"].dtype == x.dtype and np.array_equal(out["y"], x * 2)


@pytest.mark.parametrize("action, cls, text", [
    ("value_error", ValueError, "axis=7 is out of range"),
    ("type_error", TypeError, "x.dtype='int32' is not supported"),
])
def test_builtin_exceptions_come_back_as_themselves(backend, action, cls, text):
    x, gamma, beta, rm, rv = inputs()
    with pytest.raises(cls) as info:
        backend.forward(x, gamma, beta, rm, rv, action=action, axis=7, fix_gamma=True)
    assert type(info.value) is cls and str(info.value) == text
    assert "raised in the worker" in "".join(getattr(info.value, "__notes__", []))
    assert np.array_equal(gamma, np.ones(3)), "what the child wrote before raising shows"


def test_other_exceptions_come_back_as_worker_errors_keeping_builtin_bases(backend):
    with pytest.raises(ValueError) as info:
        backend.forward(*inputs(), action="subclass")
    assert isinstance(info.value, WorkerError) and type(info.value).__name__ == "AxisProblem"
    assert info.value.remote_type == "worker_fixtures.AxisProblem"
    with pytest.raises(WorkerError, match="no such class") as info:
        backend.forward(*inputs(), action="not_builtin")
    assert type(info.value).__name__ == "NotBuiltin"
    assert "NotBuiltin" in info.value.remote_traceback


def test_a_result_that_is_not_a_dict_is_a_type_error(backend):
    with pytest.raises(TypeError, match="returned a list"):
        backend.forward(*inputs(), action="not_dict")


def test_stdout_noise_does_not_corrupt_the_stream(backend):
    out = backend.forward(*inputs(), action="print")
    assert np.array_equal(out["y"], inputs()[0] * 2)


def test_supports_runs_in_the_child(backend):
    case = first_case("fwd_train_fixgamma_batchstats_nomeanvar_axis1_fp32_*")
    assert backend.supports(case) is None
    renamed = dataclasses.replace(case, id="skipme")
    assert backend.supports(renamed) == (f"skipme is skipped (op fwd, shape {case.shape}, "
                                         "training True, x float32)")


# --- crashes, hangs, startup failures -----------------------------------------------


@pytest.mark.parametrize("action, status", [
    ("segfault", "SIGSEGV"), ("abort", "SIGABRT"), ("exit", "exit status 3"),
    ("kill", "SIGKILL"),
])
def test_a_crash_fails_that_call_and_the_next_call_restarts(action, status):
    bn = OutOfProcessBackend(SPEC, pythonpath=(HERE,), timeout=30)
    try:
        first = bn.worker.pid
        with pytest.raises(WorkerCrashed, match=status) as info:
            bn.forward(*inputs(), action=action)
        assert f"pid {first}" in str(info.value) and "restarts on the next call" in str(
            info.value)
        out = bn.forward(*inputs())
        assert int(out["pid"]) != first and bn.worker.starts == 2
    finally:
        bn.close()


def test_a_hang_times_out_kills_the_child_and_the_next_call_restarts():
    bn = OutOfProcessBackend(SPEC, pythonpath=(HERE,), timeout=1.0)
    try:
        first = bn.worker.pid
        with pytest.raises(WorkerTimeout, match=r"forward\(\) took more than 1.0 s"):
            bn.forward(*inputs(), action="hang")
        assert bn.worker.proc is None  # killed, not left running
        assert int(bn.forward(*inputs())["pid"]) != first
    finally:
        bn.close()


def test_a_factory_that_raises_fails_at_startup_with_its_message():
    with pytest.raises(WorkerStartupError, match="RuntimeError: this factory cannot build"):
        OutOfProcessBackend("worker_fixtures:broken_factory", pythonpath=(HERE,))


def test_a_missing_interpreter_fails_at_startup():
    with pytest.raises(WorkerStartupError, match="cannot run"):
        OutOfProcessBackend(SPEC, python="/nonexistent/python", pythonpath=(HERE,))


def test_close_stops_the_child():
    bn = OutOfProcessBackend(SPEC, pythonpath=(HERE,))
    proc = bn.worker.proc
    bn.close()
    assert proc.poll() is not None


# --- a real backend out of process ----------------------------------------------------

CASES = ["fwd_train_freegamma_batchstats_meanvar_*_fp32_*",
         "bwd_train_fixgamma_batchstats_meanvar_*_bf16_*",
         "bwd_infer_freegamma_globalstats_nomeanvar_*_fp16_*",
         "bwd_train_freegamma_batchstats_meanvar_*_fp64_*"]


@pytest.fixture(scope="module")
def numpy_out_of_process():
    bn = OutOfProcessBackend("backends.numpy_backend:factory", python=sys.executable)
    yield bn
    bn.close()


@pytest.mark.parametrize("pattern", CASES)
def test_numpy_backend_out_of_process_is_bit_identical(numpy_out_of_process, pattern):
    case = first_case(pattern)
    here_inputs, there_inputs = fresh_inputs(case), fresh_inputs(case)
    here = call_backend(NumpyBackend(), case, here_inputs)
    there = call_backend(numpy_out_of_process, case, there_inputs)
    assert sorted(here) == sorted(there)
    for name in here:
        assert here[name].dtype == there[name].dtype, name
        assert here[name].tobytes() == there[name].tobytes(), name
    for name in here_inputs:  # the same in-place mutations (gamma, running stats)
        assert here_inputs[name].tobytes() == there_inputs[name].tobytes(), name


def test_invalid_case_out_of_process_raises_as_in_process(numpy_out_of_process):
    err = sorted(p.stem for p in DEFAULT_CASES_DIR.glob("err_*.yaml"))
    for case_id in err[:6]:
        case = load(DEFAULT_CASES_DIR, case_id)
        assert judge_error(numpy_out_of_process, case) is None, case_id
