"""Verdicts on one case: the outputs a test checks, or the error an invalid case raises.

Shared by the pytest tests (through the plugin's ``conformance`` fixture) and by
``python -m conformance.repro``, so both judge a case the same way.
"""
from __future__ import annotations

import builtins

from .compare import OutputResult, compare
from .runner import call_backend, changed_inputs, fresh_inputs
from .tolerances import limit_for

#: The outputs each test checks; a case's expected dict says which of them it has.
FORWARD_CHECKED = ("y", "mean", "invstd")
BACKWARD_CHECKED = ("dx", "dgamma", "dbeta")
RUNNING_CHECKED = ("running_mean", "running_var")


def judge_outputs(case, outputs: dict, names,
                  profile: str) -> list[tuple[OutputResult, object, object]]:
    """Return (OutputResult, got, Expected) for each of names that the case expects, in
    the order of names. got is None where the backend did not return that output."""
    judged = []
    for name in names:
        expected = case.expected.get(name)
        if expected is None:
            continue
        got = outputs.get(name)
        limit = limit_for(profile, name, case.dtype).units
        judged.append((compare(name, got, expected, limit), got, expected))
    return judged


def error_spec(case) -> tuple[str, str]:
    """Return (exception class name, message fragment) of an invalid-input case."""
    if case.error is None:
        raise ValueError(f"case {case.id!r} has no error spec: it is not an invalid-input case")
    return case.error.exception, case.error.match


def exception_class(name: str) -> type[BaseException]:
    """Return the builtin exception class of this name, or raise ValueError naming it."""
    cls = getattr(builtins, name, None)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        raise ValueError(f"exception={name!r} is not a builtin exception class")
    return cls


def judge_error(backend, case) -> str | None:
    """Return None if the backend rejects the invalid case as required (the expected
    exception class or a subclass, the fragment in its message, every input array
    bit-identical afterwards), else what went wrong, in one sentence."""
    name, match = error_spec(case)
    cls = exception_class(name)
    inputs = fresh_inputs(case)
    before = fresh_inputs(case)
    should = f"should raise {name} mentioning {match!r}"
    try:
        outputs = call_backend(backend, case, inputs)
    except Exception as exc:  # the backend's exception is the subject of the check
        raised = exc
    else:
        got = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        return f"returned {got} but {should}"
    text = f"{type(raised).__name__}({str(raised)!r})"
    if not isinstance(raised, cls):
        return f"raised {text} but {should}"
    if match not in str(raised):
        return f"raised {text} but its message should mention {match!r}"
    changed = changed_inputs(before, inputs)
    if changed:
        return f"raised {text} as it should, but first changed {', '.join(changed)} in place"
    return None
