"""Deliberately crashing and hanging backends, for the isolation tests.

Each is the numpy backend, except on the one case named by ``$BN_CRASH_CASE``: there its
forward and backward calls segfault (``ctypes.string_at(0)``), abort (``os.abort``), exit
the process (``os._exit(3)``), raise SystemExit, or hang: in Python (a sleep loop, which
pytest-timeout's signal method interrupts) or in C with every signal blocked (``pause()``
that nothing wakes: only a watchdog thread or a parent process can end it). The backend
learns the case from ``supports(case)``, which the suite calls right before running a case
(also through backends.worker, which forwards it with the case id). ``$BN_CRASH_CASE`` is a
shell-style pattern of case ids: ``*`` fails every case, ``*_2x3x5_*`` one shape class.

    BN_CRASH_CASE=<id> pytest conformance/ --backend tests.robustness.crashing_backends:segfault
"""
from __future__ import annotations

import ctypes
import fnmatch
import os
import signal
import time

from backends.numpy_backend import NumpyBackend

ENV_VAR = "BN_CRASH_CASE"


def _segfault():
    ctypes.string_at(0)


def _abort():
    os.abort()


def _exit():
    os._exit(3)


def _system_exit():
    raise SystemExit(3)


def _hang_in_c():
    signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.valid_signals()) - {signal.SIGKILL,
                                                                         signal.SIGSTOP})
    libc = ctypes.CDLL(None)
    while True:  # with every signal blocked, pause() never returns
        libc.pause()


def _hang_in_python():
    while True:
        time.sleep(0.01)


class CrashingBackend(NumpyBackend):
    """The numpy backend that runs `failure` instead of the target case's calls."""

    def __init__(self, failure, kind: str):
        self.failure = failure
        self.name = f"crash-{kind}"
        self.target = os.environ.get(ENV_VAR, "")
        self.current = None

    def supports(self, case) -> str | None:
        self.current = getattr(case, "id", None)
        return super().supports(case)

    def targeted(self) -> bool:
        return bool(self.target) and fnmatch.fnmatchcase(self.current or "", self.target)

    def forward(self, *args, **kwargs):
        if self.targeted():
            self.failure()
        return super().forward(*args, **kwargs)

    def backward(self, *args, **kwargs):
        if self.targeted():
            self.failure()
        return super().backward(*args, **kwargs)


def segfault() -> CrashingBackend:
    return CrashingBackend(_segfault, "segfault")


def abort() -> CrashingBackend:
    return CrashingBackend(_abort, "abort")


def exit_process() -> CrashingBackend:
    return CrashingBackend(_exit, "exit")


def system_exit() -> CrashingBackend:
    return CrashingBackend(_system_exit, "systemexit")


def hang_in_c() -> CrashingBackend:
    return CrashingBackend(_hang_in_c, "hang-c")


def hang_in_python() -> CrashingBackend:
    return CrashingBackend(_hang_in_python, "hang-python")
