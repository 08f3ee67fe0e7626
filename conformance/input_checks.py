"""Verdicts on a backend's handling of bad and unusual input (``conformance.bad_inputs``).

``judge_invalid`` and ``judge_unusual`` return None when the backend behaved, else one
sentence saying what went wrong; ``error_names_value`` checks that an error message shows
the offending value, however the backend spells it (``-0.001``, ``-1e-03``, ``(4,)``,
``[4]``, ``nan``, ``NaN``).

"Bit-identical" is checked on bytes: every argument array (and the whole buffer behind a
view, and any guard array next to it) is snapshot before the call and compared after.
"""
from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np

import oracle
from bnspec.flags import dtype_name

from .bad_inputs import ARRAY_NAMES, NAMES_ONLY, Call, Scenario
from .checks import judge_outputs
from .messages import failure_message
from .profiles import declared
from .runner import INPUT_ORDER

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf(?:inity)?"
                     r"|nan)", re.IGNORECASE)


def call_backend(backend, op: str, call: Call) -> dict:
    """Return the backend's outputs of one forward call or training step on call."""
    args = [call.arrays[name] for name in INPUT_ORDER]
    if op == "step":
        return backend.backward(*args, call.arrays["dy"], **call.kwargs)
    return backend.forward(*args, **call.kwargs)


def _root(a):
    """Return the object that owns a view's memory (an ndarray, bytearray, ...)."""
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a


def _bytes_of(obj) -> tuple:
    if isinstance(obj, np.ndarray):
        return (obj.dtype.str, obj.shape, obj.tobytes())
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return ("bytes", len(obj), bytes(obj))
    return (type(obj).__name__, repr(obj))


def snapshot(call: Call) -> dict[str, tuple]:
    """Return the bytes of every argument, of the buffer behind each view, and of the guards."""
    out = {}
    for name, a in {**call.arrays, **call.guards}.items():
        out[name] = _bytes_of(a)
        root = _root(a)
        if root is not a:
            out[f"{name} (its buffer)"] = _bytes_of(root)
    return out


def changed(before: dict[str, tuple], call: Call, allowed=()) -> list[str]:
    """Return the names in before whose bytes differ now, except the allowed arrays and the
    buffers behind them (guard arrays still cover the memory around a written view)."""
    after = snapshot(call)
    arrays = {**call.arrays, **call.guards}
    allowed_roots = [_root(call.arrays[n]) for n in allowed]
    out = []
    for key, old in before.items():
        name, _, buffer = key.partition(" ")
        if name in allowed or after.get(key) == old:
            continue
        if buffer and any(_root(arrays[name]) is root for root in allowed_roots):
            continue
        out.append(key)
    return out


def mentions_value(message: str, value) -> bool:
    """Return True if message shows value: a number (any spelling that parses to it; NaN
    as nan), a shape (its dims in order, e.g. (4,) or [5, 0]), a string, None or a bool."""
    if value is NAMES_ONLY:
        return True
    if value is None or isinstance(value, (bool, np.bool_)):
        return str(value) in message
    if isinstance(value, str):
        return value.lower() in message.lower()
    if isinstance(value, tuple):
        if not value:
            return re.search(r"\(\)|\[\]|scalar|0-d|rank 0|ndim ?=? ?0", message) is not None
        dims = r"\D{1,4}".join(str(int(d)) for d in value)
        return re.search(rf"(?<![\d.]){dims}(?![\d.])", message) is not None
    target = float(value)
    for token in _NUMBER.findall(message):
        try:
            got = float(token)
        except ValueError:
            continue
        if math.isnan(target) and math.isnan(got):
            return True
        if got == target or (math.isfinite(target) and target != 0
                             and abs(got - target) <= 1e-6 * abs(target)):
            return True
    return False


def named_parameters(message: str, call: Call) -> list[str]:
    """Return the argument names a message names as words; a message naming every array
    of the call (a binding's signature dump) names none in particular: []."""
    names = [n for n in (*ARRAY_NAMES, *call.kwargs) if re.search(rf"\b{n}\b", message)]
    arrays = [n for n in ARRAY_NAMES if n in call.arrays]
    return [] if all(n in names for n in arrays) and len(arrays) > 2 else names


def _exception_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}({str(exc)!r:.300})"


def judge_invalid(backend, scenario: Scenario) -> str | None:
    """Return None if the backend rejects the scenario as required (see bad_inputs), else
    what went wrong."""
    call = scenario.build()
    before = snapshot(call)
    classes = " or ".join(c.__name__ for c in scenario.exceptions)
    should = f"should raise {classes} naming {', '.join(scenario.names)}"
    if scenario.value is not NAMES_ONLY:
        should += f" and the value {scenario.value!r}"
    try:
        outputs = call_backend(backend, scenario.op, call)
    except Exception as exc:  # noqa: BLE001 - the backend's exception is the subject
        raised = exc
    else:
        got = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        return f"returned {got} but {should}"
    text, message = _exception_text(raised), str(raised)
    if not isinstance(raised, scenario.exceptions):
        return f"raised {text} but {should}"
    named = named_parameters(message, call)
    missing = [n for n in scenario.names if n not in named]
    if missing:
        return f"raised {text} but its message should name {', '.join(missing)}"
    if not mentions_value(message, scenario.value):
        return f"raised {text} but its message should show the value {scenario.value!r}"
    touched = changed(before, call)
    if touched:
        return f"raised {text} as it should, but first changed {', '.join(touched)} in place"
    return None


def native_copy(a):
    """Return a C-contiguous, native-byte-order, writeable copy of an array."""
    a = np.asarray(a)
    return np.ascontiguousarray(a.astype(a.dtype.newbyteorder("="), copy=True))


def expected_for(op: str, call: Call, variants=()) -> dict:
    """Return the oracle's expected outputs of the call, computed from native copies, with
    the backend's declared semantic variants."""
    args = {name: native_copy(a) for name, a in call.arrays.items()}
    kwargs = {k: v for k, v in call.kwargs.items() if k != "cudnn_off"}
    dy = args["dy"] if op == "step" else None
    return oracle.evaluate(*(args[n] for n in INPUT_ORDER), dy, variants=tuple(variants),
                           **kwargs)


def judge_unusual(backend, scenario: Scenario, profile: str, where: str) -> str | None:
    """Return None if the backend computes the unusual but valid input as the oracle does
    (or, where the scenario allows it, refuses it cleanly), else what went wrong."""
    call = scenario.build()
    before = snapshot(call)
    profile_variants = declared(backend)
    expected = expected_for(scenario.op, call, profile_variants)
    try:
        outputs = call_backend(backend, scenario.op, call)
    except Exception as exc:  # noqa: BLE001 - the backend's exception is the subject
        text = _exception_text(exc)
        if not scenario.may_reject:
            return f"raised {text} on valid input; should return the oracle's outputs"
        if not isinstance(exc, (ValueError, TypeError)):
            return f"raised {text}; should compute the input or raise ValueError or TypeError"
        if not set(scenario.names) & set(named_parameters(str(exc), call)):
            return (f"raised {text}; a refusal should name the parameter "
                    f"({' or '.join(scenario.names)})")
        touched = changed(before, call)
        if touched:
            return f"raised {text}, but first changed {', '.join(touched)} in place"
        return None
    if not isinstance(outputs, dict):
        return f"returned a {type(outputs).__name__}, not a dict of outputs by name"
    dtype = dtype_name(np.asarray(call.arrays["x"]).dtype)
    case = SimpleNamespace(expected=expected, dtype=dtype)
    judged = judge_outputs(case, outputs, list(expected), profile)
    failing = [item for item in judged if not item[0].ok]
    if failing:
        return failure_message(scenario.id, where, scenario.id, failing, "").split("\ncase:")[0]
    written = call.written(scenario.op, profile_variants)
    touched = changed(before, call, allowed=written)
    if touched:
        return f"changed {', '.join(touched)} in place, which the call must not write"
    return _written_consistently(call, outputs, before, written)


def _written_consistently(call: Call, outputs: dict, before: dict, written) -> str | None:
    """Return None if each array the call may write is unchanged or holds what the call
    should leave there (the returned running statistic; ones in gamma under fix_gamma)."""
    after = snapshot(call)
    for name in written:
        if after[name] == before[name]:
            continue
        now = np.asarray(call.arrays[name])
        if name == "gamma":
            ok = bool(np.all(now == 1))
        else:
            got = outputs.get(name)
            ok = got is not None and np.array_equal(now, got, equal_nan=True)
        if not ok:
            return (f"changed {name} in place to {now!r}, which is neither its old value nor "
                    f"{'ones' if name == 'gamma' else 'the returned ' + name}")
    return None
