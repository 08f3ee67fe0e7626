"""Create the MXNet 1.9.1 environment of the ``mxnet`` backend: ``python -m backends.mxnet_env``.

MXNet 1.9.1 needs numpy < 1.24 (it uses ``np.bool`` and friends), which the suite's own
environment cannot have, so the ``mxnet`` backend runs its worker child
(``backends.worker``) in a separate virtual environment, ``.venv-mxnet/`` at the repository
root (git-ignored). This command creates it with the packages below, then starts the worker
in it and runs one batch norm through it to prove it works. The worker child itself needs
only numpy and the standard library (and ml_dtypes to receive bfloat16 arrays); this
repository is put on its path at run time, so nothing of the suite is installed there.

    python -m backends.mxnet_env                     # create (or reuse) .venv-mxnet
    python -m backends.mxnet_env --force             # delete and create again
    python -m backends.mxnet_env --python python3.10 # base interpreter (<= 3.11: numpy 1.23)
    python -m backends.mxnet_env --check             # only check the existing environment

Exit status 0 when the environment works, 1 otherwise (with the reason).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from .mxnet_adapter import VENV, venv_python

#: The pinned packages: MXNet 1.9.1 and the newest numpy it works with (cp311 wheels exist),
#: and ml_dtypes for the worker child to receive bfloat16 arrays (pip picks a release that
#: works with numpy 1.23.5).
PACKAGES = ("mxnet==1.9.1", "numpy==1.23.5", "ml_dtypes")
#: numpy 1.23.5 has wheels for CPython 3.8 to 3.11.
MAX_PYTHON = (3, 11)


def base_version(python: str) -> tuple[int, int]:
    """Return (major, minor) of an interpreter."""
    out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"],
                         check=True, capture_output=True, text=True).stdout.split()
    return int(out[0]), int(out[1])


def create(venv: Path, python: str, force: bool) -> None:
    """Create venv with python and install PACKAGES into it (pip, from the package index)."""
    if force and venv.exists():
        print(f"removing {venv}")
        shutil.rmtree(venv)
    version = base_version(python)
    if version > MAX_PYTHON:
        raise SystemExit(f"{python} is Python {version[0]}.{version[1]}; numpy 1.23.5 (needed "
                         f"by MXNet 1.9.1) has wheels up to {MAX_PYTHON[0]}.{MAX_PYTHON[1]}: "
                         "pass --python with an older interpreter")
    if not venv_python(venv).exists():
        print(f"creating {venv} with {python} (Python {version[0]}.{version[1]})")
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check"]
    print("installing " + " ".join(PACKAGES))
    subprocess.run([*pip, *PACKAGES], check=True)


def check(venv: Path) -> str:
    """Return a one-line description of the working backend, or raise with the reason."""
    import numpy as np

    from .worker import OutOfProcessBackend

    backend = OutOfProcessBackend("backends.mxnet_adapter:MXNetBackend",
                                  python=venv_python(venv))
    try:
        x = np.arange(12, dtype=np.float32).reshape(4, 3)
        c = np.ones(3, np.float32)
        out = backend.forward(x, c.copy(), c * 0, c * 0, c.copy(), eps=1e-3, momentum=0.9,
                              fix_gamma=True, use_global_stats=False, output_mean_var=True,
                              axis=1, training=True)
        if not np.allclose(out["mean"], x.mean(axis=0)):
            raise RuntimeError(f"MXNet's batch mean {out['mean']} is not {x.mean(axis=0)}")
        return f"{backend.name} {backend.version} works (worker pid {backend.worker.pid})"
    finally:
        backend.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.mxnet_env",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=VENV, help=f"default: {VENV}")
    parser.add_argument("--python", default=sys.executable,
                        help="base interpreter of the venv (default: this one)")
    parser.add_argument("--force", action="store_true", help="recreate the venv")
    parser.add_argument("--check", action="store_true", help="only check the venv")
    args = parser.parse_args(argv)
    venv = args.venv.resolve()
    if not args.check:
        create(venv, args.python, args.force)
    elif not venv_python(venv).exists():
        print(f"{venv} does not exist: run `python -m backends.mxnet_env`", file=sys.stderr)
        return 1
    try:
        print(check(venv))
    except Exception as exc:  # noqa: BLE001 - any failure of the check is the reason
        print(f"{venv} does not work: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
