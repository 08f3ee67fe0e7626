"""Backends for tests/backends/test_worker.py, loaded inside worker children.

``ScriptedBackend.forward`` does what its ``action`` keyword says: compute (y = 2 x, and
the keyword arguments echoed back as arrays), raise one of several exception classes, kill
its own process in one of several ways, hang, or print to stdout. It writes ones into gamma
under fix_gamma and adds 1 to running_mean, as an in-place-updating backend does.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

import numpy as np

from conformance.adapter import Capabilities


class NotBuiltin(Exception):
    """An exception class the parent cannot import."""


class AxisProblem(ValueError):
    """A ValueError subclass the parent cannot import."""


class ScriptedBackend:
    name = "scripted"
    version = "1.0"
    capabilities = Capabilities(dtypes=frozenset({"float32", "bfloat16"}), backward=False,
                                profile=("running_var_unbiased",))

    def supports(self, case):
        if "skipme" in case.id:
            return f"{case.id} is skipped (op {case.op}, shape {case.shape}, " \
                   f"training {case.flags.training}, x {case.inputs['x'].dtype})"
        return None

    def forward(self, x, gamma, beta, running_mean, running_var, *, action="ok", **kwargs):
        if kwargs.get("fix_gamma"):
            gamma[...] = 1
        running_mean += 1
        if action == "value_error":
            raise ValueError(f"axis={kwargs.get('axis')!r} is out of range")
        if action == "type_error":
            raise TypeError("x.dtype='int32' is not supported")
        if action == "subclass":
            raise AxisProblem("axis problem")
        if action == "not_builtin":
            raise NotBuiltin("no such class in the parent")
        if action == "abort":
            os.abort()
        if action == "segfault":
            ctypes.string_at(0)
        if action == "exit":
            os._exit(3)
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "hang":
            time.sleep(600)
        if action == "print":
            print("noise on stdout " * 1000)
            sys.stdout.flush()
            os.write(1, b"raw noise on fd 1\n")
        if action == "not_dict":
            return [x]
        echo = {f"kw_{name}": np.asarray(value) for name, value in kwargs.items()
                if value is not None}
        return {"y": (x * 2).astype(x.dtype), "pid": np.asarray(os.getpid()), **echo,
                "running_mean": running_mean, "running_var": running_var}


def broken_factory():
    raise RuntimeError("this factory cannot build its backend")
