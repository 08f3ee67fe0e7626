"""The scale tier's content-addressed cache of generated cases.

A case of a shape set (``oracle.plan_shapes``) is generated once and kept under a key that
names everything its bytes depend on; a later run with the same key reads it back instead of
generating it again. Layout under the root (``default_root``: ``--shapes-cache DIR``, else
``$XDG_CACHE_HOME/bn-conformance``, else ``~/.cache/bn-conformance``):

    entries/<key[:2]>/<key>/   one case: <id>.yaml, <id>.bin (large arrays), entry.json
    sets/<set>-<digest>/       one selection: links <id>.yaml / <id>.bin to its entries' files
    locks/<key>.lock           taken while one process checks or builds that entry
    tmp/                       entries and selections being written

**The key** is the sha256 of ``LAYOUT``, ``oracle_version()`` and the case's parameters (its
spec, and the command written into its header). **The oracle version** is the sha256 of the
source of every module of the ``oracle`` and ``bnspec`` packages (path and bytes: the math,
the input streams, the case writer, the formats and flags) and of the versions of Python and
of the libraries the oracle computes with (numpy, ml_dtypes, mpmath, PyYAML). Any edit that
could change a case's bytes changes the key, so a cache can never serve a stale answer; an
edit that could not (a comment) costs a regeneration, never a wrong verdict. Entries of old
keys are never read again; delete the folder to reclaim their space.

**Atomic writes, safe under concurrency.** An entry is written into ``tmp/`` and renamed into
place in one step, with its ``entry.json`` (key, id, parameters, file sizes) written last: a
visible entry is complete, and a process killed half way leaves only a ``tmp/`` folder. Each
entry is checked and built under a per-key file lock, so two processes that want the same
missing case (two pytest-xdist workers, two runs) build it once; without ``fcntl`` the
rename alone keeps it correct (the loser's copy is dropped).

**Corruption.** ``ensure`` trusts an entry whose ``entry.json`` matches its key and whose
files have the recorded sizes (cheap: no file is read); anything else is discarded and
rebuilt. A byte changed inside a file is caught where the case is read: ``load`` reads it
with ``oracle.casefile.load_case``, which checks every file's sha256, and on failure
discards the entry, rebuilds it and reads it again (``Loaded.rebuilt`` says so).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import bnspec
import oracle
from oracle.case_spec import CaseSpec
from oracle.casefile import CaseFileError, load_case
from oracle.generate import write_case_files
from oracle.plan_shapes import case_command

#: Version of this cache's layout and key; part of every key.
LAYOUT = 1
ENTRY_FILE = "entry.json"
#: Libraries whose versions are part of the oracle version (the oracle computes with them).
ORACLE_LIBRARIES = ("numpy", "ml_dtypes", "mpmath", "PyYAML")


def default_root(environ=os.environ) -> Path:
    """Return the default cache folder: $XDG_CACHE_HOME/bn-conformance, else
    ~/.cache/bn-conformance."""
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "bn-conformance"


def source_digest(packages=(oracle, bnspec)) -> str:
    """Return the sha256 of every .py file of the packages: relative path and bytes, in
    path order."""
    h = hashlib.sha256()
    for package in packages:
        folder = Path(package.__file__).resolve().parent
        for path in sorted(folder.rglob("*.py")):
            name = f"{package.__name__}/{path.relative_to(folder).as_posix()}"
            data = path.read_bytes()
            h.update(f"{name}\0{len(data)}\0".encode())
            h.update(data)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    """Return {name: version} of Python and of ORACLE_LIBRARIES ("none" if absent)."""
    versions = {"python": "{}.{}".format(*sys.version_info[:2])}
    for name in ORACLE_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "none"
    return versions


@functools.lru_cache(maxsize=1)
def oracle_version() -> str:
    """Return the oracle version of the keys (module doc): a sha256 of the oracle's and
    bnspec's sources and of the library versions."""
    text = json.dumps({"sources": source_digest(), "libraries": library_versions()},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def case_parameters(spec: CaseSpec) -> dict:
    """Return the parameters a case's bytes depend on, as JSON-ready values."""
    return {"id": spec.id, "op": spec.op, "family": spec.family, "dtype": spec.dtype,
            "shape": [int(n) for n in spec.shape], "axis": int(spec.axis),
            "flags": list(spec.flags.tokens), "eps": float(spec.eps).hex(),
            "momentum": float(spec.momentum).hex(), "cudnn_off": bool(spec.cudnn_off),
            "seed": int(spec.seed), "command": case_command(spec)}


def entry_key(spec: CaseSpec, version: str | None = None) -> str:
    """Return the cache key of a case: sha256 of LAYOUT, the oracle version and its
    parameters."""
    text = json.dumps({"layout": LAYOUT, "oracle": version or oracle_version(),
                       "case": case_parameters(spec)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Loaded:
    """A case read from the cache, and whether a corrupt entry had to be rebuilt first."""

    case: object
    rebuilt: str | None = None  # what was wrong with the entry, when it was rebuilt


class StaleOracleError(RuntimeError):
    """The oracle's sources changed after the run fixed its oracle version."""


class CaseCache:
    """The cache folder (module doc): ``ensure`` builds missing entries, ``load`` reads one.

    version: the oracle version of the keys (default: this process's ``oracle_version()``).
    One run uses one version in all its processes (the xdist workers get the controller's), so
    all its cases come from the same oracle; a process whose own oracle differs from it (the
    sources were edited during the run) reads entries but refuses to build one.
    """

    def __init__(self, root, version: str | None = None):
        self.root = Path(root).expanduser().resolve()
        self.version = version or oracle_version()

    def entry_dir(self, key: str) -> Path:
        return self.root / "entries" / key[:2] / key

    def case_path(self, spec: CaseSpec) -> Path:
        """Return the path of a case's YAML file in its entry (present or not)."""
        return self.entry_dir(entry_key(spec, self.version)) / f"{spec.id}.yaml"

    def problem(self, spec: CaseSpec) -> str | None:
        """Return what makes a case's entry unusable ("missing", ...), or None if intact
        (entry.json matches, every file has its recorded size; no file is read)."""
        key = entry_key(spec, self.version)
        folder = self.entry_dir(key)
        if not folder.exists():
            return "missing"
        try:
            record = json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8"))
            files = record["files"]
            if record.get("key") != key or record.get("id") != spec.id:
                return f"{ENTRY_FILE} names key={record.get('key')!r}, id={record.get('id')!r}"
            if f"{spec.id}.yaml" not in files:
                return f"{ENTRY_FILE} lists no {spec.id}.yaml"
            for name, size in files.items():
                actual = (folder / name).stat().st_size
                if actual != size:
                    return f"{name} has {actual} bytes, {ENTRY_FILE} says {size}"
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            return f"unreadable: {type(exc).__name__}: {exc}"
        return None

    def ensure(self, spec: CaseSpec) -> tuple[str, float]:
        """Return (what happened: "reused", "generated" or "rebuilt: <why>", seconds spent)
        after making sure the case's entry is present and intact."""
        key = entry_key(spec, self.version)
        if self.problem(spec) is None:  # the common case: no lock needed to read
            return "reused", 0.0
        with self._lock(key):
            problem = self.problem(spec)  # another process may have built it meanwhile
            if problem is None:
                return "reused", 0.0
            start = time.perf_counter()
            if problem != "missing":
                self._discard(key)
            self._build(spec, key)
            seconds = time.perf_counter() - start
            return ("generated" if problem == "missing" else f"rebuilt: {problem}"), seconds

    def load(self, spec: CaseSpec) -> Loaded:
        """Return the case read from its entry (built if missing); an entry whose files fail
        their digests is discarded, rebuilt and read again."""
        self.ensure(spec)
        path = self.case_path(spec)
        try:
            return Loaded(load_case(path))
        except CaseFileError as first:
            key = entry_key(spec, self.version)
            with self._lock(key):
                try:  # another process may have rebuilt it while we waited
                    return Loaded(load_case(path), rebuilt=str(first))
                except CaseFileError:
                    self._discard(key)
                    self._build(spec, key)
            return Loaded(load_case(path), rebuilt=str(first))

    def entry_bytes(self, spec: CaseSpec) -> int:
        """Return the bytes of a present entry's case files (from its entry.json)."""
        folder = self.entry_dir(entry_key(spec, self.version))
        record = json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8"))
        return sum(record["files"].values())

    def _build(self, spec: CaseSpec, key: str) -> None:
        """Write the case into tmp/, then rename the finished folder into place."""
        if self.version != oracle_version():
            raise StaleOracleError(
                f"case {spec.id}: this run's oracle version is {self.version[:12]}..., but the "
                f"oracle's sources now give {oracle_version()[:12]}... (edited during the "
                "run?); rerun to generate with the current oracle")
        tmp = self._tmp(key)
        try:
            start = time.perf_counter()
            files = write_case_files(spec, tmp, case_command(spec))
            record = {"key": key, "id": spec.id, "layout": LAYOUT, "oracle": self.version,
                      "case": case_parameters(spec), "files": files,
                      "seconds": round(time.perf_counter() - start, 3)}
            (tmp / ENTRY_FILE).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n",
                                          encoding="utf-8")
            final = self.entry_dir(key)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if self.problem(spec) is not None:  # not another process's finished entry
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _discard(self, key: str) -> None:
        """Move an entry out of place in one step, then delete it."""
        folder = self.entry_dir(key)
        if folder.exists():
            trash = self._tmp(key + ".discarded")
            os.rename(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def _tmp(self, stem: str) -> Path:
        folder = self.root / "tmp" / f"{stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        folder.parent.mkdir(parents=True, exist_ok=True)
        return folder

    @contextlib.contextmanager
    def _lock(self, key: str):
        """Hold an exclusive lock on one key (fcntl where available; else nothing)."""
        try:
            import fcntl
        except ImportError:  # the atomic rename alone keeps the cache correct
            yield
            return
        folder = self.root / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{key}.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def link_selection(self, name: str, specs: list[CaseSpec]) -> Path:
        """Return a folder holding links to the files of every spec's (present) entry: the
        selection as a case directory (``--cases``), made atomically, reused when present."""
        keys = [(spec.id, entry_key(spec, self.version)) for spec in specs]
        digest = hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        final = self.root / "sets" / f"{safe}-{digest}"
        if final.is_dir():
            return final
        tmp = self._tmp(f"{safe}-{digest}")
        tmp.mkdir()
        try:
            for spec in specs:
                entry = self.entry_dir(entry_key(spec, self.version))
                for file in sorted(entry.iterdir()):
                    if file.name != ENTRY_FILE:
                        target = os.path.relpath(file, final)
                        os.symlink(target, tmp / file.name)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final
