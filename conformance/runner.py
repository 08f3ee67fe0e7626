"""Calling a backend on a case: fresh copies of the inputs in, outputs by name out."""
from __future__ import annotations

import numpy as np

from bnspec.flags import FLAG_NAMES, Flags
from oracle.casefile import Case, release

INPUT_ORDER = ("x", "gamma", "beta", "running_mean", "running_var")


def generated_case(op: str, dtype: str, kwargs: dict, arrays: dict, *, case_id: str,
                   family: str, summary: str, shape: tuple | None = None):
    """Return the Case a generated call (op "forward" or "step") would be as a golden case
    (op "fwd"/"bwd", its flags, dtype, shape (default: x's), axis, eps, momentum, arrays), so
    that a backend's supports() judges it as it judges the golden cases."""
    flags = Flags(*(bool(kwargs.get(name, False)) for name in FLAG_NAMES))
    return Case(id=case_id, op="bwd" if op == "step" else "fwd", family=family,
                summary=summary, path=None, dtype=dtype,
                shape=np.shape(arrays.get("x", ())) if shape is None else shape,
                axis=kwargs.get("axis"), flags=flags, eps=kwargs.get("eps"),
                momentum=kwargs.get("momentum"), cudnn_off=bool(kwargs.get("cudnn_off")),
                inputs=arrays)


def fresh_inputs(case) -> dict[str, np.ndarray]:
    """Return writable copies of the case's input arrays, by name (the pages of a
    memory-mapped input of a large case are dropped again once copied)."""
    copies = {}
    for name, value in case.inputs.items():
        copies[name] = np.array(value, copy=True)
        release(value)
    return copies


def call_backend(backend, case, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Return the outputs of one backend call on inputs: ``quantized`` for a quantized case
    (op "qnt", valid or not), backward when the case has a head gradient dy (a training
    step), forward otherwise."""
    args = [inputs[name] for name in INPUT_ORDER]
    if case.op == "qnt":
        return backend.quantized(*args, **case.quantized_kwargs())
    if "dy" in inputs:
        return backend.backward(*args, inputs["dy"], **case.kwargs())
    return backend.forward(*args, **case.kwargs())


def run_case(backend, case) -> dict[str, np.ndarray]:
    """Return the backend's outputs for a valid case, by name (a new dict)."""
    outputs = call_backend(backend, case, fresh_inputs(case))
    if not isinstance(outputs, dict):
        raise TypeError(f"{backend.name} returned a {type(outputs).__name__}, "
                        "not a dict of outputs by name")
    return dict(outputs)


def changed_inputs(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> list[str]:
    """Return the names of the arrays whose dtype, shape or bits differ between the two."""
    return [name for name, old in before.items()
            if old.dtype != after[name].dtype or old.shape != after[name].shape
            or old.tobytes() != after[name].tobytes()]
