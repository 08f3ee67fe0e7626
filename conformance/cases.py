"""The golden cases as the runner sees them: ids from file names, cases loaded on demand.

Collection lists ids from the file names only (``cases/<id>.yaml``: the stem is the id and
its first token the op), so it costs one directory listing however large the arrays are.
A test loads its case with ``load`` (``oracle.casefile.load_case``), which keeps the last
few cases: a run selecting one case (``-k ID``) runs its tests back to back and parses it once.
"""
from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

from .adapter import ALL_DTYPES, Capabilities

#: Where the golden cases live inside the conformance package once installed from a wheel or
#: an sdist (pyproject.toml maps the repository's top-level cases/ there).
PACKAGED_CASES = "cases"


def default_cases_dir() -> Path:
    """Return the golden case directory the suite uses when --cases is not given.

    Installed (wheel or sdist): ``conformance/cases`` found with importlib.resources. In a
    source checkout (or an editable install, which maps no data): the repository's top-level
    ``cases/``, next to the conformance package. The returned path may not exist (a wheel
    built without its cases); check_cases_dir says so.
    """
    packaged = importlib.resources.files(__package__).joinpath(PACKAGED_CASES)
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged.resolve()
    return Path(__file__).resolve().parent.parent / "cases"


#: The golden cases of this installation (see default_cases_dir).
DEFAULT_CASES_DIR = default_cases_dir()


def check_cases_dir(path) -> Path:
    """Return path as a resolved Path if it is a directory, else raise ValueError naming it."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_dir():
        raise ValueError(f"cases dir={str(path)!r} is not a directory")
    return resolved


@functools.lru_cache(maxsize=4)
def case_paths(cases_dir: Path) -> dict[str, Path]:
    """Return {case id: path} for every case file in cases_dir, in id order."""
    from oracle.casefile import iter_case_paths

    return {path.stem: path for path in sorted(iter_case_paths(cases_dir))}


def ids_for(cases_dir: Path, ops) -> list[str]:
    """Return the ids of the cases whose op (first id token) is one of ops, in id order."""
    wanted = set(ops)
    return [cid for cid in case_paths(cases_dir) if cid.split("_", 1)[0] in wanted]


@functools.lru_cache(maxsize=8)
def load(cases_dir: Path, case_id: str):
    """Return the Case with this id from cases_dir (cached); KeyError names a missing id."""
    paths = case_paths(cases_dir)
    if case_id not in paths:
        raise KeyError(f"case id={case_id!r} has no file in {cases_dir}")
    from oracle.casefile import load_case

    return load_case(paths[case_id])


def capability_reason(caps: Capabilities, case) -> str | None:
    """Return why a backend with these capabilities cannot run the case, or None.

    An invalid-input case (op "err") is skipped only for a float dtype the backend lacks
    or an op it lacks: its rank, axis or integer dtype is the point of the case.
    """
    if case.op == "err":
        if case.dtype in ALL_DTYPES and case.dtype not in caps.dtypes:
            return f"dtype {case.dtype} is not among its dtypes {sorted(caps.dtypes)}"
        if "dy" in case.inputs and not caps.backward:
            return "it has no backward"
        return None if caps.forward else "it has no forward"
    if case.op == "qnt":  # int8/uint8 data (or an invalid dtype): only rank and the path
        if not caps.quantized:
            return "it has no quantized path"
        rank = len(case.shape)
        if case.error is None and (rank < caps.min_rank or (caps.max_rank is not None
                                                            and rank > caps.max_rank)):
            return f"rank {rank} is outside its ranks {caps.min_rank}..{caps.max_rank or 'any'}"
        return None
    if case.op == "bwd" and not caps.backward:
        return "it has no backward"
    if case.op == "fwd" and not caps.forward:
        return "it has no forward"
    if case.dtype not in caps.dtypes:
        return f"dtype {case.dtype} is not among its dtypes {sorted(caps.dtypes)}"
    rank = len(case.shape)
    if rank < caps.min_rank or (caps.max_rank is not None and rank > caps.max_rank):
        return f"rank {rank} is outside its ranks {caps.min_rank}..{caps.max_rank or 'any'}"
    return None


def skip_reason(backend, case) -> str | None:
    """Return the skip message for a case the backend cannot run, or None: first the
    capabilities, then the backend's own supports(case)."""
    reason = capability_reason(backend.capabilities, case) or backend.supports(case)
    return None if reason is None else f"{backend.name}: {reason}"
