"""Set up the environment of a framework backend: ``python -m backends.env NAME``.

    python -m backends.env --list          # the frameworks and where each one runs
    python -m backends.env jax             # install the pinned packages, then run one call
    python -m backends.env mxnet --force   # its own venv (python -m backends.mxnet_env)
    python -m backends.env torch --check   # only check that the backend loads and computes

A framework whose pins agree with the suite's runs in process: its packages are the
project's optional dependencies of the same name (``[project.optional-dependencies]`` in
pyproject.toml, the one place they are pinned) and go into the running interpreter's
environment with pip. A framework whose pins clash (MXNet 1.9.1 needs numpy < 1.24) runs in
a worker child in a virtual environment of its own, which its own module creates.

Either way the command ends by loading the backend by its registered name and running one
training-mode batch norm through it, compared with the formula in numpy. Exit status 0 when
the backend works, 1 otherwise (with the reason).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
DISTRIBUTION = "bn-conformance"


@dataclass(frozen=True)
class Framework:
    """How one framework backend is set up: an extra of this project installed here, or a
    module with its own ``main(argv)`` that builds a separate environment."""

    factory: str
    extra: str | None = None
    own_env: str | None = None

    @property
    def where(self) -> str:
        """Return where the backend runs, in words."""
        if self.own_env:
            return f"out of process, own venv ({self.own_env})"
        return f"in process, extra [{self.extra}]"


FRAMEWORKS = {
    "jax": Framework("backends.jax_adapter:factory", extra="jax"),
    "jax-twopass": Framework("backends.jax_adapter:twopass_factory", extra="jax"),
    "mxnet": Framework("backends.mxnet_adapter:factory", own_env="backends.mxnet_env"),
    "onnxruntime": Framework("backends.onnxruntime_adapter:factory", extra="onnxruntime"),
    "openvino": Framework("backends.openvino_adapter:factory", extra="openvino"),
    "openvino-f32": Framework("backends.openvino_adapter:f32_factory", extra="openvino"),
    "paddle": Framework("backends.paddle_adapter:factory", extra="paddle"),
    "tensorflow": Framework("backends.tensorflow_adapter:factory", extra="tensorflow"),
    "torch": Framework("backends.torch_adapter:factory", extra="torch"),
}


def extra_requirements(extra: str) -> list[str]:
    """Return the requirement strings of one optional-dependency group: from pyproject.toml in
    a source checkout (Python >= 3.11), else from the installed distribution's metadata."""
    try:
        import tomllib  # Python >= 3.11
    except ImportError:
        tomllib = None
    if PYPROJECT.is_file() and tomllib is not None:
        groups = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
        if extra not in groups:
            raise ValueError(f"extra={extra!r} is not in {PYPROJECT}")
        return list(groups[extra])
    marker = re.compile(rf"""^(.*?);\s*extra\s*==\s*["']{re.escape(extra)}["']\s*$""")
    found = [m.group(1).strip() for r in importlib.metadata.requires(DISTRIBUTION) or ()
             if (m := marker.match(r))]
    if not found:
        raise ValueError(f"extra={extra!r} is not an extra of the installed {DISTRIBUTION}")
    return found


def install(framework: Framework, argv: list[str]) -> int:
    """Install a framework's packages (or build its own environment); return the exit code."""
    if framework.own_env:
        return importlib.import_module(framework.own_env).main(argv)
    packages = extra_requirements(framework.extra)
    print("installing " + " ".join(packages))
    return subprocess.run([sys.executable, "-m", "pip", "install",
                           "--disable-pip-version-check", *packages]).returncode


def check(name: str, framework: Framework) -> str:
    """Return a one-line description of the working backend, or raise with the reason."""
    from types import SimpleNamespace

    import numpy as np

    from bnspec.flags import Flags
    from conformance.registry import load

    backend = load(framework.factory)
    reason = getattr(backend, "reason", None)
    if reason:
        raise RuntimeError(reason)
    x = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    ones, zeros = np.ones(3, np.float32), np.zeros(3, np.float32)
    moved = np.moveaxis(x, 1, 0).reshape(3, -1).astype(np.float64)
    mean, var = moved.mean(axis=1), moved.var(axis=1)
    if backend.supports(SimpleNamespace(op="fwd", flags=Flags(True, False, False, False))):
        # an inference engine (openvino): the same y from the batch's statistics given
        out = backend.forward(x, ones.copy(), zeros.copy(), mean.astype(np.float32),
                              var.astype(np.float32), eps=1e-3, momentum=0.9,
                              fix_gamma=False, use_global_stats=False, output_mean_var=False,
                              axis=1, training=False)
    else:
        out = backend.forward(x, ones.copy(), zeros.copy(), zeros.copy(), ones.copy(),
                              eps=1e-3, momentum=0.9, fix_gamma=False, use_global_stats=False,
                              output_mean_var=False, axis=1, training=True)
    expected = (x - mean.reshape(1, 3, 1)) / np.sqrt(var.reshape(1, 3, 1) + 1e-3)
    if not np.allclose(out["y"], expected, atol=1e-5):
        raise RuntimeError(f"{name}'s y is not the batch norm of a test tensor: "
                           f"max error {np.max(np.abs(out['y'] - expected)):.3g}")
    close = getattr(backend, "close", None)
    if close:
        close()
    return f"{backend.name} {backend.version} works"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.env",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", choices=sorted(FRAMEWORKS), help="the framework")
    parser.add_argument("--list", action="store_true", help="list the frameworks and exit")
    parser.add_argument("--check", action="store_true", help="only check the backend works")
    args, rest = parser.parse_known_args(argv)
    if args.list:
        for name, framework in sorted(FRAMEWORKS.items()):
            print(f"{name:12} {framework.where}  ({framework.factory})")
        return 0
    if args.name is None:
        parser.error("name a framework (or --list)")
    framework = FRAMEWORKS[args.name]
    if rest and not framework.own_env:
        parser.error(f"unrecognized arguments for {args.name}: {' '.join(rest)}")
    if framework.own_env:  # its own module installs and checks in one go
        return install(framework, rest + (["--check"] if args.check else []))
    if not args.check:
        code = install(framework, rest)
        if code:
            print(f"pip failed with exit status {code}", file=sys.stderr)
            return 1
        importlib.invalidate_caches()
    try:
        print(check(args.name, framework))
    except Exception as exc:  # noqa: BLE001 - any failure of the check is the reason
        print(f"{args.name} does not work: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
