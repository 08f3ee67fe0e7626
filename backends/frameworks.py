"""What the framework adapters (mxnet, torch, onnxruntime) share: a stand-in backend for a
framework that is not installed, and how a framework's own input-rejection exception is
reported through the adapter contract.

``UnavailableBackend``: the adapter's factory returns it when its framework is missing, so
``--backend NAME`` still loads, lists its capabilities, and skips every case with the
reason and the command that installs the framework.

``RejectedInput``: frameworks reject invalid input with their own exception classes
(``mxnet.base.MXNetError``, torch's ``RuntimeError``/``IndexError``, onnxruntime's
``Fail``/``InvalidArgument``), never with the contract's ValueError/TypeError split. An
adapter re-raises such an exception as ``RejectedInput``, which is both a ValueError and a
TypeError, with the framework's class name and message kept verbatim. So an invalid-input
case checks what the framework really does (does it reject the call at all, does its
message name the parameter, does it write nothing first) and not a class it cannot know.
A framework that raises a builtin ValueError or TypeError itself keeps it: its class is
then checked as for any backend.
"""
from __future__ import annotations

import contextlib

import numpy as np

from conformance.adapter import Capabilities


class RejectedInput(ValueError, TypeError):
    """A framework refused a call with its own exception class (see module doc)."""

    def __init__(self, framework: str, exc: BaseException, message: str | None = None):
        text = str(exc) if message is None else message
        super().__init__(f"{framework} rejected the call with {type(exc).__name__}: {text}")
        self.framework = framework
        self.original_type = f"{type(exc).__module__}.{type(exc).__name__}"


@contextlib.contextmanager
def rejections(framework: str, classes: tuple[type[BaseException], ...], shorten=None):
    """Re-raise exceptions of the given framework classes as RejectedInput (chained);
    builtin ValueError/TypeError pass unchanged. shorten(text) may trim the message."""
    try:
        yield
    except (ValueError, TypeError):
        raise
    except classes as exc:
        message = shorten(str(exc)) if shorten is not None else None
        raise RejectedInput(framework, exc, message) from exc


class UnavailableBackend:
    """A framework backend whose framework is not installed: it loads, and every case is
    skipped with ``reason`` (which should say how to install it)."""

    def __init__(self, name: str, capabilities: Capabilities, reason: str):
        self.name = name
        self.version = "unavailable"
        self.capabilities = capabilities
        self.reason = reason

    def supports(self, case) -> str:
        """Return the reason this backend cannot run anything."""
        return self.reason

    def forward(self, *args, **kwargs):
        raise RuntimeError(f"{self.name} is unavailable: {self.reason}")

    def backward(self, *args, **kwargs):
        raise RuntimeError(f"{self.name} is unavailable: {self.reason}")


def native(a) -> np.ndarray:
    """Return a as a numpy array in native byte order (converted only where it was not):
    frameworks read an array's raw memory as native."""
    a = np.asarray(a)
    return a.astype(a.dtype.newbyteorder("=")) if not a.dtype.isnative else a


def write_back(target, value: np.ndarray) -> None:
    """Copy a framework's post-call value of a running statistic into the caller's array
    where that is a writable ndarray of the same shape and dtype, as a training step updates
    it in place; leave anything else as it is."""
    if (isinstance(target, np.ndarray) and target.flags.writeable
            and target.shape == value.shape and target.dtype == value.dtype):
        np.copyto(target, value)



def moved_axis(x: np.ndarray, axis, to: int) -> np.ndarray:
    """Return np.moveaxis(x, axis, to) for a framework whose operator has a fixed channel
    axis (ONNX, OpenVINO: 1); a refusal of the axis is reported naming axis."""
    try:
        return np.moveaxis(x, axis, to)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"axis={axis!r}: moveaxis(x, axis, {to}) refused it: {exc}") from exc
    except OverflowError as exc:
        raise ValueError(f"axis={axis!r}: moveaxis(x, axis, {to}) refused it: {exc}") from exc
    except IndexError as exc:
        raise RejectedInput("numpy", exc, f"axis={axis!r}: {exc}") from exc
