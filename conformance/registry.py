"""Finding and loading the backend under test.

A backend spec is either a registered name (an entry point in the group
``bn_conformance.backends``, so an installed package can register its own),
``package.module:factory`` (found on sys.path, else in the directory the run started in) or
``path/to/file.py:factory`` (conformance/target_import.py). The target of either is a
factory (a class or a function returning a backend) or a backend object itself. In a source
checkout that is not installed, the names declared in the repository's pyproject.toml count
as registered too.

Errors are ``BackendError`` with one message that names the spec and what went wrong, so
the pytest plugin can turn them into a single usage error.
"""
from __future__ import annotations

import importlib.metadata
import os
import traceback
from dataclasses import dataclass
from pathlib import Path

from .adapter import Capabilities
from .target_import import TargetImportError, import_target

GROUP = "bn_conformance.backends"
ENV_VAR = "BN_BACKEND"
#: Tried in order when no backend is named: the optimized build if present, else numpy.
DEFAULTS = ("cpu", "numpy")
_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


class BackendError(Exception):
    """A backend spec that cannot be resolved, imported, built or used."""


@dataclass(frozen=True)
class Resolved:
    """A loaded backend and how it was found."""

    backend: object
    spec: str  # what the user asked for (or the default chosen)
    target: str  # the module:attribute it came from
    how: str  # "--backend", "$BN_BACKEND" or "default (...)"


def registered() -> dict[str, str]:
    """Return {name: "module:attr"} of every registered backend, installed ones first."""
    names = _source_checkout_entry_points()
    for ep in importlib.metadata.entry_points(group=GROUP):
        names[ep.name] = ep.value
    return dict(sorted(names.items()))


def _source_checkout_entry_points() -> dict[str, str]:
    if not _PYPROJECT.is_file():
        return {}
    import tomllib

    with open(_PYPROJECT, "rb") as f:
        project = tomllib.load(f).get("project", {})
    return dict(project.get("entry-points", {}).get(GROUP, {}))


def target_of(spec: str) -> str:
    """Return the module:attr a spec names, or raise BackendError for an unknown name."""
    if ":" in spec:
        return spec
    names = registered()
    if spec not in names:
        known = ", ".join(names) or "none"
        raise BackendError(
            f"backend={spec!r} is not a registered name (registered: {known}) and not "
            "of the form package.module:factory or path/to/file.py:factory"
        )
    return names[spec]


def load(spec: str, search_dir: Path | None = None) -> object:
    """Return the backend object a spec names, checked against the adapter contract; a module
    that is not on sys.path (or a file path) is looked for in search_dir (default: the
    current directory)."""
    target = target_of(spec)
    try:
        obj = import_target(target, search_dir if search_dir is not None else Path.cwd())
    except TargetImportError as exc:
        raise BackendError(f"backend={spec!r}: cannot import {target}: {exc}") from exc
    except Exception as exc:
        raise BackendError(f"backend={spec!r}: cannot import {target}: {_one_line(exc)}") from exc
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "forward")):
        try:
            obj = obj()
        except Exception as exc:
            raise BackendError(
                f"backend={spec!r}: {target}() raised {_one_line(exc)}"
            ) from exc
    check_backend(obj, spec)
    return obj


def check_backend(backend: object, spec: str) -> None:
    """Return None if backend has what conformance.adapter.Backend requires, else raise
    BackendError naming every missing piece."""
    missing = [attr for attr in ("name", "version") if not isinstance(
        getattr(backend, attr, None), str)]
    if not isinstance(getattr(backend, "capabilities", None), Capabilities):
        missing.append("capabilities (a conformance.adapter.Capabilities)")
    caps = getattr(backend, "capabilities", None)
    methods = ["supports", "forward"] + (["backward"] if getattr(caps, "backward", True) else [])
    methods += ["quantized"] if getattr(caps, "quantized", False) else []
    missing += [f"{m}()" for m in methods if not callable(getattr(backend, m, None))]
    if missing:
        raise BackendError(
            f"backend={spec!r} ({type(backend).__name__}) does not implement the adapter "
            f"contract (conformance/adapter.py): missing {', '.join(missing)}"
        )


def resolve(option: str | None, search_dir: Path | None = None) -> Resolved:
    """Return the backend for the --backend option value (None: $BN_BACKEND, else the
    first of DEFAULTS that loads); search_dir is where a module:factory that is not on
    sys.path, or a file path, is looked for (default: the current directory)."""
    if option:
        return Resolved(load(option, search_dir), option, target_of(option), "--backend")
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Resolved(load(env, search_dir), env, target_of(env), f"${ENV_VAR}")
    failures = []
    for name in DEFAULTS:
        try:
            backend = load(name)
        except BackendError as exc:
            failures.append(str(exc))
            continue
        note = "; ".join(failures)
        return Resolved(backend, name, target_of(name),
                        "default" + (f" ({note})" if note else ""))
    raise BackendError("no default backend loads: " + "; ".join(failures))


def _one_line(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return " ".join(text.split())


def describe_all() -> list[str]:
    """Return one line per registered backend: name, target, and version/device or the
    reason it does not load."""
    lines = []
    for name, target in registered().items():
        try:
            backend = load(name)
        except BackendError as exc:
            lines.append(f"{name:12} {target}  [does not load: {exc}]")
            continue
        caps = backend.capabilities
        lines.append(f"{name:12} {target}  [{backend.name} {backend.version}, device "
                     f"{caps.device}, dtypes {','.join(sorted(caps.dtypes))}]")
    return lines
