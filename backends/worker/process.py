"""The parent's side of one worker child: start it, send a request, wait for the reply.

``WorkerProcess`` owns one child (``backends.worker.child``) running in any Python
interpreter, talking over the child's stdin/stdout with ``backends.worker.protocol``
messages; its stderr is drained into a tail kept for error messages. Every wait has a
deadline (select on non-blocking pipes):

- the child dies mid-request (segfault, abort, os._exit): ``WorkerCrashed`` for that call,
  naming the exit status or signal and the last lines of its stderr;
- a request takes longer than ``timeout`` seconds: the child is killed (SIGKILL) and
  ``WorkerTimeout`` is raised;
- the hello does not come within ``startup_timeout`` or the factory raises:
  ``WorkerStartupError``.

After any of these the child is gone; the next request starts a fresh one (and so re-runs
the factory). Requests are serialized by a lock: one in flight at a time.

The child finds this repository by a ``sys.path.append`` of its root (appended, so the
child's own site-packages win: a venv's numpy 1.23 is not shadowed by this one's), and its
working directory is the parent's, so ``module:factory`` specs relative to it import as
they would in the parent.
"""
from __future__ import annotations

import builtins
import collections
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .protocol import HEADER, ProtocolError, body_length, decode, encode

#: The directory that holds the ``backends`` package (the repository root in a checkout).
ROOT = Path(__file__).resolve().parent.parent.parent
STDERR_TAIL_LINES = 40
#: How long a child that was asked to shut down gets before it is killed.
SHUTDOWN_GRACE_S = 2.0
#: How long to wait for a dead child's exit status and last stderr lines.
REAP_S = 5.0


class WorkerError(Exception):
    """A worker failed, or its backend raised an exception that is not a builtin class.

    ``remote_type`` is the class name in the child (``None`` when the worker itself failed),
    ``remote_traceback`` the child's formatted traceback.
    """

    def __init__(self, message: str, *, remote_type: str | None = None,
                 remote_traceback: str | None = None):
        super().__init__(message)
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback


class WorkerStartupError(WorkerError):
    """The child could not load its backend, or did not say hello in time."""


class WorkerCrashed(WorkerError):
    """The child died during a request; the next request starts a new one."""


class WorkerTimeout(WorkerError):
    """A request ran past its timeout; the child was killed and restarts on the next call."""


class _Timeout(Exception):
    pass


class _Ended(Exception):
    pass


_REMOTE_CLASSES: dict[tuple, type] = {}


def remote_exception(error: dict, where: str) -> Exception:
    """Return the exception to raise for a child's error report.

    A builtin Exception class (ValueError, TypeError, RuntimeError, ...) comes back as that
    class with the same message. Any other class comes back as a WorkerError subclass of
    the same name that is also an instance of the builtin classes it derives from (a
    child's ``class BadAxis(ValueError)`` is caught by ``except ValueError``); where that
    combination is impossible, as a plain WorkerError naming the class. The child's
    traceback is attached as a note.
    """
    name, message = error["type"], error["message"]
    trace = error.get("traceback") or ""
    exc: Exception | None = None
    cls = getattr(builtins, name, None) if error.get("module") == "builtins" else None
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            exc = cls(message)
        except Exception:  # noqa: BLE001 - a builtin whose constructor wants more
            exc = None
    if exc is None:
        exc = _remote_class(name, error.get("bases", []))(
            message, remote_type=f"{error.get('module')}.{name}", remote_traceback=trace)
    if trace and hasattr(exc, "add_note"):
        exc.add_note(f"raised in the worker ({where}):\n{trace.rstrip()}")
    return exc


def _remote_class(name: str, bases: list[str]) -> type:
    builtin = [getattr(builtins, b) for b in bases if isinstance(getattr(builtins, b, None), type)
               and b not in ("Exception", "BaseException", "object")]
    builtin = [c for c in builtin if issubclass(c, Exception)]
    minimal = tuple(c for c in builtin if not any(o is not c and issubclass(o, c)
                                                     for o in builtin))
    key = (name, minimal)
    if key not in _REMOTE_CLASSES:
        try:
            cls = type(name, (WorkerError, *minimal), {"__module__": "backends.worker.remote"})
        except TypeError:  # incompatible layouts (e.g. OSError with ValueError)
            cls = type(name, (WorkerError,), {"__module__": "backends.worker.remote"})
        _REMOTE_CLASSES[key] = cls
    return _REMOTE_CLASSES[key]


def describe_exit(returncode: int | None) -> str:
    """Return 'exit status N', 'signal SIGSEGV (-11)' or 'no exit status yet'."""
    if returncode is None:
        return "no exit status yet"
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name} ({returncode})"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


class WorkerProcess:
    """One child serving one backend factory (see module doc)."""

    def __init__(self, factory_spec: str, python: str | os.PathLike | None = None, *,
                 timeout: float | None = 120.0, startup_timeout: float | None = 300.0,
                 pythonpath: tuple[str | os.PathLike, ...] = (), env: dict | None = None):
        self.factory_spec = factory_spec
        self.python = str(python or sys.executable)
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.pythonpath = tuple(str(p) for p in pythonpath)
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.hello: dict | None = None
        self.starts = 0
        self._lock = threading.RLock()
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._drain: threading.Thread | None = None

    # --- lifetime ---------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def command(self) -> list[str]:
        paths = [str(ROOT), *self.pythonpath]
        code = (f"import sys; sys.path.extend({paths!r}); "
                "from backends.worker.child import main; sys.exit(main())")
        return [self.python, "-c", code, self.factory_spec]

    def start(self) -> dict:
        """Start the child and return its hello (name, version, capabilities, pid, ...)."""
        with self._lock:
            self.close()
            env = dict(os.environ if self.env is None else self.env)
            env.pop("PYTHONPATH", None)  # this interpreter's paths are not the child's
            env.pop("PYTHONHOME", None)
            env["PYTHONUNBUFFERED"] = "1"
            self._stderr = collections.deque(maxlen=STDERR_TAIL_LINES)
            try:
                self.proc = subprocess.Popen(
                    self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, env=env, cwd=os.getcwd())
            except OSError as exc:
                raise WorkerStartupError(
                    f"worker for {self.factory_spec!r}: cannot run {self.python}: {exc}"
                ) from None
            self.starts += 1
            os.set_blocking(self.proc.stdin.fileno(), False)
            os.set_blocking(self.proc.stdout.fileno(), False)
            self._drain = threading.Thread(target=self._drain_stderr, args=(self.proc,),
                                           daemon=True, name=f"worker-stderr-{self.proc.pid}")
            self._drain.start()
            try:
                hello, _ = self._receive(self.startup_timeout)
            except _Timeout:
                self.kill()
                raise WorkerStartupError(
                    f"worker for {self.factory_spec!r} ({self.python}) did not start within "
                    f"{self.startup_timeout} s; it was killed{self._tail()}") from None
            except (_Ended, ProtocolError) as exc:
                status = self._reap()
                raise WorkerStartupError(
                    f"worker for {self.factory_spec!r} ({self.python}) ended before saying "
                    f"hello ({status}; {exc}){self._tail()}") from None
            except BaseException:  # interrupted while waiting (a timeout signal, Ctrl-C): a
                self.kill()  # hello still on its way would be read as the next reply
                raise
            if not hello.get("ok"):
                error = hello.get("error", {})
                self.close()
                raise WorkerStartupError(
                    f"worker for {self.factory_spec!r} ({self.python}): the factory raised "
                    f"{error.get('type')}: {error.get('message')}",
                    remote_type=error.get("type"), remote_traceback=error.get("traceback"))
            self.hello = hello
            return hello

    def close(self) -> None:
        """Ask the child to exit; kill it if it has not after SHUTDOWN_GRACE_S seconds."""
        with self._lock:
            proc, self.proc = self.proc, None
            if proc is None:
                return
            if proc.poll() is None:
                try:
                    self._write(proc, encode({"kind": "shutdown"}),
                                time.monotonic() + SHUTDOWN_GRACE_S)
                    proc.stdin.close()
                    proc.wait(SHUTDOWN_GRACE_S)
                except (OSError, _Timeout, subprocess.TimeoutExpired):
                    proc.kill()
                    proc.wait()
            self._close_pipes(proc)

    def kill(self) -> None:
        """Kill the child now (SIGKILL) and reap it."""
        with self._lock:
            proc, self.proc = self.proc, None
            if proc is None:
                return
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            self._close_pipes(proc)

    # --- requests ---------------------------------------------------------------------

    def request(self, meta: dict, arrays: dict | None = None, *,
                what: str = "request") -> tuple[dict, dict]:
        """Return the child's reply (meta, arrays) to one request, starting the child first
        if it is not running. Raises WorkerCrashed or WorkerTimeout (see module doc)."""
        with self._lock:
            if not self.alive:
                if self.proc is not None:
                    self._reap()
                self.start()
            proc = self.proc
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            try:
                self._write(proc, encode(meta, arrays), deadline)
                return self._receive(self.timeout, deadline)
            except _Timeout:
                pid = proc.pid
                self.kill()
                raise WorkerTimeout(
                    f"worker for {self.factory_spec!r} (pid {pid}): {what} took more than "
                    f"{self.timeout} s; the worker was killed and restarts on the next call"
                    f"{self._tail()}") from None
            except (_Ended, BrokenPipeError, ProtocolError) as exc:
                pid = proc.pid
                status = self._reap()
                detail = f"; {exc}" if isinstance(exc, ProtocolError) else ""
                raise WorkerCrashed(
                    f"worker for {self.factory_spec!r} (pid {pid}) died during {what} "
                    f"({status}{detail}); it restarts on the next call{self._tail()}"
                ) from None
            except BaseException:  # interrupted mid-request (a timeout signal, Ctrl-C): the
                self.kill()  # child may still answer this request, so it must not serve another
                raise

    def _write(self, proc, data: bytes, deadline: float | None) -> None:
        fd = proc.stdin.fileno()
        view = memoryview(data)
        while view:
            if proc.poll() is not None:
                raise _Ended("the worker exited")
            _, writable, _ = select.select([], [fd], [], _remaining(deadline))
            if not writable:
                raise _Timeout
            try:
                sent = os.write(fd, view[:1 << 20])
            except BlockingIOError:
                continue
            view = view[sent:]

    def _receive(self, timeout: float | None, deadline: float | None = None):
        if deadline is None and timeout is not None:
            deadline = time.monotonic() + timeout
        header = self._read_exact(HEADER.size, deadline)
        return decode(self._read_exact(body_length(header), deadline))

    def _read_exact(self, n: int, deadline: float | None) -> bytes:
        fd = self.proc.stdout.fileno()
        buffer = bytearray()
        while len(buffer) < n:
            readable, _, _ = select.select([fd], [], [], _remaining(deadline))
            if not readable:
                raise _Timeout
            try:
                chunk = os.read(fd, min(n - len(buffer), 1 << 20))
            except BlockingIOError:
                continue
            if not chunk:
                raise _Ended(f"the worker's output ended after {len(buffer)} of {n} bytes")
            buffer += chunk
        return bytes(buffer)

    # --- the child's stderr and exit ----------------------------------------------------

    def _drain_stderr(self, proc) -> None:
        for raw in iter(proc.stderr.readline, b""):
            self._stderr.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def _reap(self) -> str:
        """Wait for a dead (or dying) child; return its exit description."""
        proc, self.proc = self.proc, None
        if proc is None:
            return "no process"
        try:
            proc.wait(REAP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._drain is not None:
            self._drain.join(REAP_S)
        self._close_pipes(proc)
        return describe_exit(proc.returncode)

    def _tail(self) -> str:
        lines = [line for line in self._stderr if line.strip()]
        if not lines:
            return ""
        return "\nlast lines of the worker's stderr:\n  " + "\n  ".join(lines[-15:])

    @staticmethod
    def _close_pipes(proc) -> None:
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _Timeout
    return remaining
