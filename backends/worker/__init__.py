"""Out-of-process backends: any backend factory, run in a child process (maybe another venv).

    from backends.worker import OutOfProcessBackend
    bn = OutOfProcessBackend("backends.numpy_backend:factory", python="/path/to/venv/bin/python")

From the command line, any factory can be checked out of process with

    BN_WORKER_FACTORY=backends.numpy_backend:factory [BN_WORKER_PYTHON=...] \\
        pytest conformance/ --backend backends.worker:from_env

Modules, one concern each:

- ``protocol``: length-prefixed npz messages (``allow_pickle=False``), calls and cases;
- ``child``: the serving loop, ``python -m backends.worker.child module:factory``;
- ``process``: one child's lifetime: start, request with a deadline, crash and timeout
  handling, restart on the next call;
- ``backend``: ``OutOfProcessBackend``, the adapter contract on top of a child.

The MXNet backend (``backends.mxnet_adapter``) runs this way, in ``.venv-mxnet``.
"""
from __future__ import annotations

import os

from .backend import OutOfProcessBackend, capabilities_from, factory
from .process import (
    WorkerCrashed,
    WorkerError,
    WorkerProcess,
    WorkerStartupError,
    WorkerTimeout,
)
from .protocol import ProtocolError

__all__ = [
    "OutOfProcessBackend",
    "ProtocolError",
    "WorkerCrashed",
    "WorkerError",
    "WorkerProcess",
    "WorkerStartupError",
    "WorkerTimeout",
    "capabilities_from",
    "factory",
    "from_env",
]


def from_env() -> OutOfProcessBackend:
    """Return OutOfProcessBackend($BN_WORKER_FACTORY, python=$BN_WORKER_PYTHON), with
    $BN_WORKER_TIMEOUT seconds per call if set."""
    spec = os.environ.get("BN_WORKER_FACTORY", "").strip()
    if not spec:
        raise ValueError("BN_WORKER_FACTORY is not set: give the backend factory to run out "
                         "of process, e.g. BN_WORKER_FACTORY=backends.numpy_backend:factory")
    timeout = os.environ.get("BN_WORKER_TIMEOUT")
    return OutOfProcessBackend(spec, os.environ.get("BN_WORKER_PYTHON") or None,
                               timeout=float(timeout) if timeout else 120.0)
