"""Invalid and unusual input: the expected exception, naming the parameter and its value,
and every input array bit-identical afterwards (nothing written before the check).

- ``test_errors``: every invalid-input golden case (``cases/err_*``): exception class, the
  parameter named (the case's ``match``), nothing written, and the offending value shown.
- ``test_invalid_input``: the generated bad inputs of ``conformance.bad_inputs.INVALID``,
  each as a forward call and as a training step.
- ``test_unusual_input``: valid input in odd layouts or of odd values
  (``conformance.bad_inputs.UNUSUAL``): computed as the oracle does, or refused cleanly
  where the layout allows it.
- ``test_calib_range_check`` / ``test_calib_range_backend``: the quantized path's
  calibration range (spec: both values, min <= max), through
  ``bnspec.validate.check_calib_range`` and through the backend's ``quantized`` call
  (skipped for a backend without ``capabilities.quantized``).

The generated tests (marked ``bn_generated``) run with the default case directory, not
with ``--cases DIR``. A crash or hang fails the one test (pytest-xdist replaces the worker;
the plugin's per-case timeout stops a hang). Repro:
``pytest conformance/test_errors.py --backend NAME -k ID``.
"""
import math

import numpy as np
import pytest

from bnspec.flags import dtype_name
from bnspec.validate import check_calib_range
from conformance import bad_inputs, plugin
from conformance.cases import ALL_DTYPES
from conformance.input_checks import (judge_invalid, judge_unusual, mentions_value,
                                      named_parameters)
from conformance.runner import FLAG_NAMES, call_backend, fresh_inputs, generated_case

#: Defects found by these tests and not yet fixed, by (backend name, scenario id): strict
#: xfails, so a fix shows up as XPASS and fails the run until its entry is removed here.
KNOWN_DEFECTS: dict[tuple[str, str], str] = {}


@pytest.mark.bn_cases("err")
def test_errors(case_id, conformance):
    case = conformance.case(case_id)
    conformance.check_error(case)
    problem = _value_problem(conformance.state.backend, case)
    if problem is not None:
        where = f"[{case.id} on {conformance.state.backend_name}]"
        conformance.record["message"] = f"{problem} {where}"
        pytest.fail(f"{problem} {where}\ncase: {case.summary}\n"
                    f"repro: {conformance.state.repro(case.id)}")


def _golden_value(case):
    """Return the value an err case's message must show, read from the case itself
    (NAMES_ONLY for a case whose match this function has no rule for)."""
    match, inputs = case.error.match, case.inputs
    if match == "axis":
        return case.axis
    if match in ("eps", "momentum"):
        return getattr(case, match)
    if match == "x.ndim":
        return inputs["x"].ndim
    if match == "x.shape":
        return tuple(inputs["x"].shape)
    if match == "x.dtype":
        return dtype_name(inputs["x"].dtype)
    if match in inputs:
        a = inputs[match]
        return dtype_name(a.dtype) if case.error.exception == "TypeError" else tuple(a.shape)
    return bad_inputs.NAMES_ONLY


def _value_problem(backend, case) -> str | None:
    """Return None if the backend's error message on the case shows the offending value."""
    value = _golden_value(case)
    try:
        call_backend(backend, case, fresh_inputs(case))
    except Exception as exc:  # noqa: BLE001 - the message is the subject of the check
        if mentions_value(str(exc), value):
            return None
        return f"message={str(exc)!r:.300}, but should also show the value {value!r}"
    return f"returned outputs on a second call, but should raise {case.error.exception}"


@pytest.fixture
def bn_backend(request):
    """The backend under test (the run's --backend)."""
    return plugin._state(request.config).backend


def _prepare(request, backend, scenario) -> None:
    """Record the scenario for the reports; skip it where the backend lacks the dtype or
    op; mark it as a known defect."""
    request.node.stash[plugin.RECORD] = {
        "id": f"gen_{scenario.id}", "test": request.node.originalname, "op": "err",
        "dtype": scenario.dtype, "family": "generated"}
    caps = backend.capabilities
    if scenario.dtype in ALL_DTYPES and scenario.dtype not in caps.dtypes:
        pytest.skip(f"{backend.name}: dtype {scenario.dtype} is not among its dtypes")
    if scenario.op == "step" and not caps.backward:
        pytest.skip(f"{backend.name}: it has no backward")
    if scenario.op == "forward" and not caps.forward:
        pytest.skip(f"{backend.name}: it has no forward")
    unsupported = backend.supports(_scenario_case(scenario))
    if unsupported is not None:
        pytest.skip(f"{backend.name}: {unsupported}")
    reason = KNOWN_DEFECTS.get((backend.name, scenario.id))
    if reason:
        request.node.add_marker(pytest.mark.xfail(
            strict=True, reason=f"known defect: {reason} (conformance/test_errors.py "
                                f"KNOWN_DEFECTS: remove the entry once fixed)"))


def _scenario_case(scenario):
    """Return the Case of a scenario's call for the backend's supports(): its op, flags,
    dtype and shape; the bad values themselves (the test's subject) stay out of it."""
    call = scenario.build()
    flags = {name: call.kwargs.get(name) for name in FLAG_NAMES}
    try:
        shape = tuple(np.shape(call.arrays.get("x", ())))
    except ValueError:  # a ragged x: no shape
        shape = ()
    return generated_case(scenario.op, scenario.dtype, flags, {}, shape=shape,
                          case_id=f"gen_{scenario.id}", family="generated",
                          summary=f"generated {scenario.op} call: {scenario.id}")


def _repro(request, scenario) -> str:
    spec = plugin._state(request.config).resolved.spec
    return f"repro: pytest conformance/test_errors.py --backend {spec} -k {scenario.id}"


@pytest.mark.bn_generated
@pytest.mark.parametrize("scenario", bad_inputs.INVALID, ids=lambda s: s.id)
def test_invalid_input(scenario, bn_backend, request):
    _prepare(request, bn_backend, scenario)
    problem = judge_invalid(bn_backend, scenario)
    if problem is not None:
        message = f"{problem} [{scenario.id} on {bn_backend.name}]"
        request.node.stash[plugin.RECORD]["message"] = message
        pytest.fail(f"{message}\n{_repro(request, scenario)}")


@pytest.mark.bn_generated
@pytest.mark.parametrize("scenario", bad_inputs.UNUSUAL, ids=lambda s: s.id)
def test_unusual_input(scenario, bn_backend, request):
    _prepare(request, bn_backend, scenario)
    profile = plugin._state(request.config).profile
    problem = judge_unusual(bn_backend, scenario, profile, bn_backend.name)
    if problem is not None:
        message = f"{problem} [{scenario.id} on {bn_backend.name}]"
        request.node.stash[plugin.RECORD]["message"] = message.splitlines()[0]
        pytest.fail(f"{message}\n{_repro(request, scenario)}")


CALIB = [  # (min_calib_range, max_calib_range, names the message must hold, or None: valid)
    (None, None, None), (-1.0, 1.0, None), (0.5, 0.5, None), (-math.inf, math.inf, None),
    (2.0, 1.0, ("min_calib_range", "max_calib_range")),
    (1e-30, -1e-30, ("min_calib_range", "max_calib_range")),
    (None, 1.0, ("min_calib_range", "max_calib_range")),
    (-1.0, None, ("min_calib_range", "max_calib_range")),
    (math.nan, 1.0, ("min_calib_range",)), (-1.0, math.nan, ("max_calib_range",)),
]


def _calib_id(value) -> str:
    return repr(value).replace(" ", "").replace("'", "")


@pytest.mark.bn_generated
@pytest.mark.parametrize("low, high, names", CALIB, ids=_calib_id)
def test_calib_range_check(low, high, names):
    """The shared check (bnspec.validate) that a quantized path runs first."""
    if names is None:
        assert check_calib_range(low, high) is None
        return
    with pytest.raises(ValueError) as info:
        check_calib_range(low, high)
    message = str(info.value)
    for name, value in zip(("min_calib_range", "max_calib_range"), (low, high)):
        if name in names:
            assert f"{name}=" in message and mentions_value(message, value), (
                f"message={message!r}, but should name {name} and its value {value!r}")


#: The quantized call needs both values, finite: (None, None) and (-inf, inf) are errors there.
CALIB_QUANTIZED = [(lo, hi, ("min_calib_range", "max_calib_range")
                    if lo is None and hi is None or lo == -math.inf else names)
                   for lo, hi, names in CALIB]


@pytest.mark.bn_generated
@pytest.mark.parametrize("low, high, names", CALIB_QUANTIZED, ids=_calib_id)
def test_calib_range_backend(low, high, names, bn_backend):
    """The backend's quantized call (conformance/adapter.py): a bad calibration range raises
    ValueError naming it, with nothing written; a good one returns int8 out."""
    if not bn_backend.capabilities.quantized:
        pytest.skip(f"{bn_backend.name}: no quantized path (capabilities.quantized is False)")
    arrays = {"x": np.array([[-5, 0, 7], [127, -128, 3]], np.int8),
              "gamma": np.array([1.5, 0.5, 1.0], np.float32),
              "beta": np.array([0.25, 0.0, -1.0], np.float32),
              "running_mean": np.array([0.5, -0.5, 0.0], np.float32),
              "running_var": np.array([1.0, 2.0, 0.5], np.float32)}
    before = {k: v.tobytes() for k, v in arrays.items()}
    kwargs = {"min_data": -1.0, "max_data": 1.0, "min_calib_range": low,
              "max_calib_range": high, "eps": 1e-3, "axis": 1, "momentum": 0.9,
              "fix_gamma": False, "use_global_stats": False, "output_mean_var": False,
              "training": False, "cudnn_off": False}
    call = bad_inputs.Call(arrays, kwargs)
    if names is None:
        out = bn_backend.quantized(*(arrays[n] for n in arrays), **kwargs)
        assert out["out"].dtype == np.int8 and out["out"].shape == (2, 3), (
            f"out={out['out']!r}, but should be int8 of shape (2, 3)")
        return
    with pytest.raises(ValueError) as info:
        bn_backend.quantized(*(arrays[n] for n in arrays), **kwargs)
    message = str(info.value)
    named = named_parameters(message, call)
    assert set(names) & set(named), (
        f"message={message!r}, but should name {' or '.join(names)} [{bn_backend.name}]")
    changed = [k for k, v in arrays.items() if v.tobytes() != before[k]]
    assert not changed, f"raised as it should, but first changed {changed} in place"
