"""Crash isolation: the backend under test served from a child process, so that a segfault,
an abort or an exit costs only the test that caused it.

``--isolate`` chooses when (``ISOLATE_MODES``):

- ``always``: every call goes to a child process (``backends.worker``) from the first test;
- ``never``: every call runs in the test's own process (a crash ends it: under pytest-xdist
  the worker is replaced and the test reported as crashed, in one process the run ends);
- ``auto`` (default): in one process, as ``always`` (a crash there would end the run, there
  is no second chance); under pytest-xdist, in process until the first worker crash, then
  as ``always`` in every worker for the rest of the run. The controller touches a flag file
  when a worker crashes (``CrashWatch``); each worker looks for it before each backend call,
  and replacement workers find it at once.

The child runs the backend the run resolved (its ``module:attr`` target) in this
interpreter, with this process's ``sys.path``; it restarts after each crash, and a call past
``CALL_TIMEOUT_SHARE`` of the per-case timeout is killed there, so the hang fails its test
with a message rather than stopping the process. A call whose arrays a pipe cannot carry
exactly (read-only, strided, foreign byte order, or sharing memory with another argument:
the layouts of ``conformance.bad_inputs.UNUSUAL`` and the overlap checks) runs in process,
because its verdict depends on that layout. A backend that already runs out of process
(``runs_out_of_process``, e.g. ``backends.worker:from_env``) is used as it is. A file target
(``path/to/mybn.py:factory``) is imported in the child under its module name. If the child
cannot start at all, auto mode warns (``IsolationUnavailable``) and calls in process.

Failures read ``crashed: forward() of <case> ended the backend's process (signal SIGSEGV
(-11)) [<case> on <backend>]`` (``BackendCrashed``); the suite adds the repro command.
This module imports no backend module: the worker is loaded by name (``WORKER_PACKAGE``).
"""
from __future__ import annotations

import importlib
import itertools
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from .target_import import is_file_path, split_target

ISOLATE_MODES = ("auto", "always", "never")
DEFAULT_MODE = "auto"
#: The package of the out-of-process backend (OutOfProcessBackend, WorkerCrashed,
#: WorkerTimeout), loaded by name when first needed.
WORKER_PACKAGE = "backends.worker"
#: A call in the child may take this share of the per-case timeout: the child is killed and
#: the test fails before pytest-timeout would stop the whole test.
CALL_TIMEOUT_SHARE = 0.9
#: workerinput key: the controller's crash flag file, for the xdist workers.
FLAG_KEY = "bn_crash_flag"


class BackendCrashed(RuntimeError):
    """The process running the backend died (or was killed after a hang) during a call."""


class IsolationUnavailable(UserWarning):
    """--isolate auto: the backend could not be started in a child process; it runs in the
    test process (where a crash ends the run)."""


#: Arguments other than arrays that reach a child as the same value (JSON numbers, strings).
SCALARS = (bool, int, float, str, np.bool_, np.integer, np.floating)


def crosses_intact(args, kwargs) -> bool:
    """Return True if every argument reaches a child exactly as it is here: a scalar or None,
    or an array that is aligned, C-contiguous, writeable, of native byte order, of a dtype
    the pipe carries (no objects, no structured records) and sharing memory with no other
    argument (the pipe copies arrays into fresh C-ordered buffers)."""
    values = list(itertools.chain(args, kwargs.values()))
    arrays = [a for a in values if isinstance(a, np.ndarray)]
    if any(not isinstance(v, (np.ndarray, *SCALARS)) and v is not None for v in values):
        return False
    for a in arrays:
        if not (a.flags.c_contiguous and a.flags.aligned and a.flags.writeable
                and a.dtype.isnative and not a.dtype.hasobject and a.dtype.kind != "V"):
            return False
    return not any(np.may_share_memory(a, b) for a, b in itertools.combinations(arrays, 2))


def _worker():
    return importlib.import_module(WORKER_PACKAGE)


def child_target(target: str) -> str:
    """Return the ``module:attr`` a child imports for the run's target: a file target
    (``path/to/mybn.py:factory``) becomes ``mybn:factory``, the name conformance.target_import
    loaded it under (its directory is on sys.path, which the child gets)."""
    module, attr = split_target(target)
    return f"{Path(module).stem}:{attr}" if is_file_path(module) else target


class IsolatedBackend:
    """The backend under test, its calls served by a child process (see module doc).

    backend: the backend resolved in this process (name, version and capabilities are
    its own). target: its ``module:attr``, as the child loads it. active: a callable
    returning True while calls should go to the child (False: in process). timeout:
    seconds a call may take in the child (None: no limit). fallback: if the child cannot
    start, warn (IsolationUnavailable) and run in process instead of failing the test.
    """

    def __init__(self, backend, target: str, active, timeout: float | None,
                 fallback: bool = False):
        self.inner = backend
        self.target = child_target(target)
        self.active = active
        self.timeout = timeout
        self.fallback = fallback
        self.unavailable = False  # the child could not start: in process from then on
        self.name = backend.name
        self.version = backend.version
        self.capabilities = backend.capabilities
        self._child = None
        self._current = ""  # the case the last supports() was asked about, for messages

    def child(self):
        """Return the out-of-process backend, starting it on first use."""
        if self._child is None:
            paths = list(dict.fromkeys(p for p in sys.path if p))  # this process's imports
            self._child = _worker().OutOfProcessBackend(self.target, timeout=self.timeout,
                                                         pythonpath=paths)
        return self._child

    def isolated(self) -> bool:
        """Return True if calls go to the child now (starting it if needed)."""
        if self.unavailable or not self.active():
            return False
        try:
            self.child()
        except _worker().WorkerStartupError as exc:
            if not self.fallback:
                raise
            self.unavailable = True
            warnings.warn(IsolationUnavailable(
                f"bn-conformance: --isolate auto: the backend cannot run in a child process, "
                f"so it runs in the test process, where a crash ends the run: {exc}"),
                stacklevel=2)
            return False
        return True

    def supports(self, case) -> str | None:
        """Return the backend's answer for the case (from the child while isolated)."""
        self._current = getattr(case, "id", "") or ""
        if not self.isolated():
            return self.inner.supports(case)
        return self._guarded("supports", lambda: self.child().supports(case))

    def forward(self, *args, **kwargs):
        """Return the backend's forward outputs (see conformance.adapter.Backend)."""
        return self._call("forward", args, kwargs)

    def backward(self, *args, **kwargs):
        """Return the backend's training-step outputs (see conformance.adapter.Backend)."""
        return self._call("backward", args, kwargs)

    def quantized(self, *args, **kwargs):
        """Return the backend's quantized outputs (see conformance.adapter.Backend)."""
        return self._call("quantized", args, kwargs)

    def close(self) -> None:
        """Stop the child, if one runs."""
        if self._child is not None:
            self._child.close()
            self._child = None

    def _call(self, method: str, args, kwargs):
        if not crosses_intact(args, kwargs) or not self.isolated():
            return getattr(self.inner, method)(*args, **kwargs)
        return self._guarded(method, lambda: getattr(self.child(), method)(*args, **kwargs))

    def _guarded(self, what: str, call):
        """Return call(); a child that died or hung becomes BackendCrashed."""
        module = _worker()
        try:
            return call()
        except module.WorkerCrashed as exc:
            raise BackendCrashed(self._message(what, "ended the backend's process", exc)) \
                from None
        except module.WorkerTimeout as exc:
            raise BackendCrashed(self._message(
                what, f"ran past {self.timeout:g} s ({CALL_TIMEOUT_SHARE:.0%} of the per-case "
                      "timeout); the backend's process was killed", exc)) from None

    def _message(self, what: str, happened: str, exc: Exception) -> str:
        text = str(exc)
        status = re.search(r"\((signal \w+ \(-?\d+\)|exit status -?\d+)", text)
        tail = text.partition("\n")[2]
        where = f"[{self._current} on {self.name}]" if self._current else f"[{self.name}]"
        first = (f"{what}() of {self._current or 'a call'} {happened}"
                 f"{f' ({status.group(1)})' if status else ''} {where}")
        kind = "timed out" if "ran past" in happened else "crashed"
        return f"{kind}: {first}" + (f"\n{tail}" if tail else "")


def flag_path(config) -> str | None:
    """Return the crash flag file this process watches (None: not under xdist)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return workerinput.get(FLAG_KEY)
    watch = config.pluginmanager.get_plugin(CrashWatch.NAME)
    return None if watch is None else watch.flag


def activity(mode: str, config):
    """Return a callable that says whether calls go to a child now, for this process."""
    if mode == "never":
        return lambda: False
    flag = flag_path(config)
    if mode == "always" or flag is None:
        return lambda: True
    return lambda: os.path.exists(flag)


def wrap(backend, target: str, mode: str, config, timeout: float | None):
    """Return the backend the tests call: backend itself for mode never or a backend that
    already runs out of process, else an IsolatedBackend."""
    if mode == "never" or getattr(backend, "runs_out_of_process", False):
        return backend
    share = None if timeout is None else timeout * CALL_TIMEOUT_SHARE
    return IsolatedBackend(backend, target, activity(mode, config), share,
                           fallback=mode == "auto")


def start_early(served, config) -> None:
    """Start the child of an IsolatedBackend now, outside any test's timeout, when calls go
    to it from the start (one process or an xdist worker; not for --collect-only)."""
    if (isinstance(served, IsolatedBackend) and not uses_xdist(config)
            and not config.getoption("collectonly")):
        served.isolated()


def uses_xdist(config) -> bool:
    """Return True in an xdist controller that will start workers."""
    return (not hasattr(config, "workerinput") and config.pluginmanager.hasplugin("xdist")
            and bool(getattr(config.option, "numprocesses", None)))


def restart_budget(config, n_tests_bound: int) -> str | None:
    """Return the --max-worker-restart value to set: None when the user gave one (theirs
    stands) or without xdist; else xdist's default (4 per worker) plus one per test, so a
    crash never ends the run early and a worker that dies at startup cannot loop forever."""
    if not uses_xdist(config) or config.option.maxworkerrestart is not None:
        return None
    return str(4 * int(config.option.numprocesses) + n_tests_bound)


class CrashWatch:
    """Registered in an xdist controller under auto mode: hands each worker the crash flag
    file, and touches it when a worker dies, naming the signal in the crashed test's
    report."""

    NAME = "bn_conformance_crash_watch"

    def __init__(self, flag: str, repro):
        self.flag = flag
        self.repro = repro  # case id -> repro command

    @staticmethod
    def exit_status(node) -> str:
        """Return how the worker process of an xdist node ended, e.g. 'signal SIGSEGV
        (-11)' (execnet's popen; 'exit status unknown' where it cannot be read)."""
        popen = getattr(getattr(getattr(node, "gateway", None), "_io", None), "popen", None)
        try:
            code = popen.wait(5) if popen is not None else None
        except Exception:  # noqa: BLE001 - best effort: the message then says unknown
            code = None
        if code is None:
            return "exit status unknown"
        if code < 0:
            import signal

            try:
                return f"signal {signal.Signals(-code).name} ({code})"
            except ValueError:
                return f"signal {-code}"
        return f"exit status {code}"

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        node.workerinput[FLAG_KEY] = self.flag

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem, report, sched) -> None:
        with open(self.flag, "a", encoding="utf-8") as f:
            f.write(f"{crashitem}\n")
        status = self.exit_status(getattr(report, "node", None))
        case_id = crashitem.rpartition("[")[2][:-1] if crashitem.endswith("]") else ""
        repro = self.repro(case_id) if case_id else None
        report.longrepr = (f"{report.longrepr} ({status}); the rest of the run calls the "
                           "backend in a child process" + (f"\nrepro: {repro}" if repro else ""))
