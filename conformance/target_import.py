"""Importing the object a backend target names, the way uvicorn and gunicorn read app specs.

A target is ``MODULE:ATTR`` where MODULE is either

- a dotted module name (``mybn_adapter``, ``my_kernels.bn``), imported from sys.path, and
  when it is not there, from the directory the run started in (plain ``pytest`` does not put
  that directory on sys.path; ``python -m pytest`` does), or
- a path to a Python file (``path/to/mybn.py``, ``../adapters/mybn.py``: it ends in ``.py``
  or contains a path separator), read relative to that directory.

ATTR is a dotted attribute path inside the module (``factory``, ``Backends.fast``). The colon
that splits them is the last one, so a Windows path (``C:\\x\\mybn.py:factory``) works too.

Every failure is a ``TargetImportError`` whose message says what was searched.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType


class TargetImportError(ImportError):
    """A target whose module cannot be found or loaded; the message says where it looked."""


def split_target(target: str) -> tuple[str, str]:
    """Return (module part, attribute path) of ``MODULE:ATTR``; ValueError names a bad one."""
    module, sep, attr = target.rpartition(":")
    if not sep or not module or not attr:
        raise ValueError(f"target={target!r} is not of the form module:attribute "
                         "or path/to/file.py:attribute")
    return module, attr


def is_file_path(module: str) -> bool:
    """Return True if the module part of a target is a file path rather than a module name."""
    return module.endswith(".py") or "/" in module or os.sep in module


def import_target(target: str, search_dir: Path) -> object:
    """Return the object ``MODULE:ATTR`` names (module doc), importing its module first.

    Raises TargetImportError when the module cannot be found, AttributeError when an
    attribute is missing, and lets any other exception the module raises on import through.
    """
    module_part, attr_path = split_target(target)
    module = (_import_file(Path(search_dir, module_part), search_dir) if is_file_path(module_part)
              else _import_name(module_part, Path(search_dir)))
    obj: object = module
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    return obj


def _import_name(name: str, search_dir: Path) -> ModuleType:
    """Return the module called name: from sys.path, else from search_dir (added to the end
    of sys.path, so it shadows nothing installed)."""
    top = name.partition(".")[0]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != top:
            raise  # a submodule or a dependency of the user's module is missing: its own error
    directory = str(search_dir.resolve())
    if not _holds_module(search_dir, top) or directory in sys.path:
        raise TargetImportError(
            f"no module named {top!r}: searched the current directory {directory} (no "
            f"{top}.py, no {top}/ package) and sys.path {_path_list()}")
    sys.path.append(directory)
    importlib.invalidate_caches()
    return importlib.import_module(name)


def _holds_module(directory: Path, name: str) -> bool:
    """Return True if directory has a module file or package directory called name."""
    return (directory / f"{name}.py").is_file() or (directory / name).is_dir()


def _path_list() -> str:
    return "[" + ", ".join(repr(p or ".") for p in sys.path) + "]"


def _import_file(path: Path, search_dir: Path) -> ModuleType:
    """Return the module loaded from the Python file at path, registered in sys.modules under
    its file name (so a second call, and pickling, find the same module); its directory is
    added to the end of sys.path so that it can import its neighbours."""
    path = path.resolve()
    if not path.is_file():
        raise TargetImportError(
            f"file {path} does not exist (a path in a target is read relative to the current "
            f"directory {Path(search_dir).resolve()})")
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        loaded_file = getattr(loaded, "__file__", None)
        if loaded_file is not None and Path(loaded_file).resolve() == path:
            return loaded
        raise TargetImportError(
            f"file {path} would be module {name!r}, but a module of that name is already "
            f"imported from {loaded_file or 'a built-in'}: rename the file")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetImportError(f"file {path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
