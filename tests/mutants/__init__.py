"""Mutant backends: the numpy backend with exactly one classic mistake each.

The suite must fail every one of them (tests/conformance/test_mutants.py runs it on each).
Every module here defines a backend class with that mistake, a ``factory()`` for
``pytest conformance/ --backend tests.mutants.<module>:factory``, ``SELECT``, a pytest
``-k`` expression for the cases that are able to catch the mistake (so the meta-test can run
a fast subset that still contains them), and ``OUTPUTS``, the outputs the mistake corrupts
(or the exception it raises), so the meta-test can tell that it was this mistake the suite
caught.

Each mistake is written the way a real implementation makes it, not as a perturbed output.
"""
import importlib
import pkgutil


def names() -> list[str]:
    """Return the module names of every mutant in this package, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str):
    """Return the mutant module tests.mutants.<name>."""
    return importlib.import_module(f"{__name__}.{name}")
