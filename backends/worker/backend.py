"""``OutOfProcessBackend``: any backend factory, run in a child process, as a backend here.

    from backends.worker import OutOfProcessBackend
    bn = OutOfProcessBackend("backends.numpy_backend:factory")                 # this Python
    bn = OutOfProcessBackend("backends.mxnet_adapter:MXNetBackend",
                             python=".venv-mxnet/bin/python")                 # another venv

It implements the adapter contract (conformance/adapter.py) by forwarding: ``name``,
``version`` and ``capabilities`` are the child backend's (read from its hello);
``supports(case)`` sends the case's id, flags, shape and inputs (never its expected values)
and the child's backend answers; ``forward``/``backward`` send one request per call with
the arrays and keyword arguments and return the child's outputs. Input arrays the child's
backend changed in place (gamma under fix_gamma, running statistics) are written back into
the caller's arrays, on success and on error alike, so the caller sees exactly the
mutations an in-process call would have made.

Exceptions: a builtin class raised in the child (ValueError, TypeError, ...) is raised here
as the same class and message; any other class as a ``WorkerError`` subclass of the same
name that keeps its builtin bases; the child's traceback is attached as a note. A crash of
the child (``WorkerCrashed``) or a call past ``timeout`` seconds (``WorkerTimeout``, the
child is killed) fails that call only: the next call starts a fresh child.
"""
from __future__ import annotations

import dataclasses
import os
import weakref

import numpy as np

from conformance.adapter import Capabilities

from ..frameworks import write_back
from .process import WorkerProcess, remote_exception
from .protocol import pack_call, pack_case

#: The positional array arguments of forward/backward/quantized, in the contract's order
#: (conformance/adapter.py): their names key the arrays of a request.
ARRAY_ARGUMENTS = ("x", "gamma", "beta", "running_mean", "running_var", "dy")


def capabilities_from(values: dict) -> Capabilities:
    """Return the Capabilities a child reported (unknown fields are ignored)."""
    known = {f.name for f in dataclasses.fields(Capabilities)}
    kwargs = {name: value for name, value in values.items() if name in known}
    if "dtypes" in kwargs:
        kwargs["dtypes"] = frozenset(kwargs["dtypes"])
    if "profile" in kwargs:
        kwargs["profile"] = tuple(kwargs["profile"])
    if "quantized_profile" in kwargs:
        kwargs["quantized_profile"] = tuple(kwargs["quantized_profile"])
    return Capabilities(**kwargs)


class OutOfProcessBackend:
    """A backend running in a worker child (see module doc).

    factory_spec: ``package.module:factory`` as the child imports it. python: the child's
    interpreter (default: this one). timeout: seconds per call (None: no limit).
    startup_timeout: seconds for the child to load the backend. pythonpath: extra import
    paths for the child. The child starts here, so a factory that raises fails now, as a
    WorkerStartupError with the child's message.
    """

    #: Already isolated: the conformance plugin calls it as it is (conformance/isolation.py).
    runs_out_of_process = True

    def __init__(self, factory_spec: str, python: str | os.PathLike | None = None, *,
                 timeout: float | None = 120.0, startup_timeout: float | None = 300.0,
                 pythonpath=(), env: dict | None = None):
        self.factory_spec = factory_spec
        self._worker = WorkerProcess(factory_spec, python, timeout=timeout,
                                     startup_timeout=startup_timeout, pythonpath=pythonpath,
                                     env=env)
        self._finalizer = weakref.finalize(self, self._worker.close)
        hello = self._worker.start()
        self.name: str = hello["name"]
        self.version: str = hello["version"]
        self.capabilities: Capabilities = capabilities_from(hello.get("capabilities") or {})
        self.worker_info = {key: hello.get(key) for key in
                            ("python", "python_version", "numpy", "pid")}

    @property
    def worker(self) -> WorkerProcess:
        """The WorkerProcess (its pid changes when the child is restarted)."""
        return self._worker

    @property
    def timeout(self) -> float | None:
        return self._worker.timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._worker.timeout = value

    def supports(self, case) -> str | None:
        """Return the child backend's answer for this case (None or a skip reason)."""
        meta, arrays = pack_case(case)
        reply, _ = self._worker.request(meta, arrays, what=f"supports({getattr(case, 'id', '')})")
        if reply.get("kind") == "error":
            raise remote_exception(reply["error"], f"{self.name}.supports")
        return reply.get("value")

    def forward(self, *args, **kwargs) -> dict[str, np.ndarray]:
        """Return the child backend's forward outputs (see conformance.adapter.Backend)."""
        return self._call("forward", args, kwargs)

    def backward(self, *args, **kwargs) -> dict[str, np.ndarray]:
        """Return the child backend's training-step outputs (conformance.adapter.Backend)."""
        return self._call("backward", args, kwargs)

    def quantized(self, *args, **kwargs) -> dict[str, np.ndarray]:
        """Return the child backend's quantized outputs (conformance.adapter.Backend)."""
        return self._call("quantized", args, kwargs)

    def close(self) -> None:
        """Stop the child now (it would be stopped at garbage collection or exit anyway)."""
        self._finalizer()

    def _call(self, method: str, args, kwargs) -> dict[str, np.ndarray]:
        meta, arrays = pack_call(method, args, kwargs, names=ARRAY_ARGUMENTS)
        targets = {item["array"]: value for item, value in zip(meta["args"], args)
                   if "array" in item}
        targets.update({f"kw:{name}": value for name, value in kwargs.items()})
        reply, received = self._worker.request(meta, arrays, what=f"{method}()")
        for key in reply.get("inout", []):
            write_back(targets.get(key), received[f"inout:{key}"])
        if reply.get("kind") == "error":
            raise remote_exception(reply["error"], f"{self.name}.{method}")
        if "returned" in reply:
            raise TypeError(f"{self.name} returned a {reply['returned']}, not a dict of "
                            "outputs by name")
        return {name: received[f"out:{name}"] for name in reply["outputs"]}


def factory(spec: str, python: str | os.PathLike | None = None, **options):
    """Return a zero-argument factory of OutOfProcessBackend(spec, python, **options), for
    registering an out-of-process backend under a name."""
    def make() -> OutOfProcessBackend:
        return OutOfProcessBackend(spec, python, **options)
    return make
