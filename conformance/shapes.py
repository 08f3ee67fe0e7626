"""The scale tier in a suite run: ``pytest conformance/ --backend NAME --shapes SET``.

    pytest conformance/ --backend cpu --shapes resnet50 -n 2
        [--shapes-flags train,...|all] [--shapes-dtypes float32,float16]
        [--shapes-ops fwd,bwd] [--shapes-layouts channel_first,...] [--shapes-cache DIR]

SET is a shipped shape set (``bnspec.shape_sets``) or the path of the user's own set file.
Before the tests are collected, the process that owns the run plans the set's cases
(``oracle.plan_shapes``: by default a training step with batch statistics, free gamma and
mean/invstd out, forward and backward, in every dtype and layout of the set), generates those
missing from the content-addressed cache (``conformance.shape_cache``), in as many processes
as the run has xdist workers, biggest first, and links the selection into one case folder of
the cache. The run then checks that folder exactly as ``--cases DIR`` would (the generated
tests of the default run are left out, the repro command names the folder), and says how
many cases it generated and how many it reused. Each test reads its case from the cache,
which rebuilds an entry that fails its digests (``CaseCache.load``).
"""
from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass, field
from pathlib import Path

from bnspec.shape_sets import load_shape_set
from oracle.plan_shapes import SCALE_FLAGS, SCALE_OPS, shape_set_plan

from .shape_cache import CaseCache, default_root


@dataclass(frozen=True)
class Selection:
    """What the command line selects: the set, its flag tokens, dtypes, ops and layouts."""

    shapes: str
    flags: str = SCALE_FLAGS
    dtypes: str | None = None
    ops: str = ",".join(SCALE_OPS)
    layouts: str | None = None


@dataclass
class ShapeRun:
    """A prepared --shapes run: the planned specs, the cache, the linked case folder and
    what preparing it cost."""

    name: str
    source: Path
    selection: Selection
    cache: CaseCache
    specs: dict = field(default_factory=dict)  # id -> CaseSpec
    cases_dir: Path | None = None
    outcomes: dict = field(default_factory=dict)  # id -> "reused" / "generated" / "rebuilt: ..."
    seconds: float = 0.0  # wall time of preparing (generation included)
    jobs: int = 1

    @property
    def counts(self) -> dict[str, int]:
        """Return how many cases were generated, reused and rebuilt (a broken entry)."""
        kinds = [o.split(":")[0] for o in self.outcomes.values()]
        return {k: kinds.count(k) for k in ("generated", "reused", "rebuilt")}

    def cache_bytes(self) -> int:
        """Return the bytes of this selection's case files in the cache."""
        return sum(self.cache.entry_bytes(spec) for spec in self.specs.values())

    def load(self, case_id: str):
        """Return the Loaded case of an id (conformance.shape_cache.Loaded)."""
        return self.cache.load(self.specs[case_id])

    def summary_line(self) -> str:
        """Return the line the run prints: the set, the selection and what the cache did."""
        c = self.counts
        gb = self.cache_bytes() / 1e9
        rebuilt = f", {c['rebuilt']} rebuilt" if c["rebuilt"] else ""
        jobs = f" ({self.jobs} processes)" if c["generated"] + c["rebuilt"] else ""
        return (f"bn-conformance shapes: {self.name} ({self.source}): {len(self.specs)} cases "
                f"(flags {self.selection.flags}; dtypes {self.selection.dtypes or 'all'}; ops "
                f"{self.selection.ops}; layouts {self.selection.layouts or 'all'}): "
                f"{c['generated']} generated, {c['reused']} reused{rebuilt} in "
                f"{self.seconds:.1f} s{jobs}; cache {self.cache.root} "
                f"({gb:.2f} GB for this set, oracle version {self.cache.version[:12]})")

    def as_record(self, portable=str) -> dict:
        """Return the report's record of the scale tier part of the run (paths written by
        portable)."""
        return {"set": self.name, "source": portable(self.source), "cases": len(self.specs),
                "flags": self.selection.flags, "dtypes": self.selection.dtypes or "all",
                "ops": self.selection.ops, "layouts": self.selection.layouts or "all",
                **self.counts, "prepare_seconds": round(self.seconds, 1),
                "cache": portable(self.cache.root), "cache_bytes": self.cache_bytes(),
                "oracle_version": self.cache.version}


def plan(selection: Selection, cache_root=None, version: str | None = None) -> ShapeRun:
    """Return the ShapeRun of a selection, planned but not prepared; ValueError names a bad
    --shapes value (and the shipped sets) or a bad selection. version: the oracle version of
    the run (an xdist worker gets its controller's), by default this process's."""
    shape_set = load_shape_set(selection.shapes)
    specs = shape_set_plan(shape_set, flags=selection.flags, dtypes=selection.dtypes,
                           ops=selection.ops, layouts=selection.layouts)
    cache = CaseCache(cache_root if cache_root is not None else default_root(), version)
    return ShapeRun(shape_set.name, shape_set.path, selection, cache,
                    {spec.id: spec for spec in specs})


def _ensure(task: tuple[Path, str, object]) -> tuple[str, str, float]:
    """Worker: return (id, outcome, seconds) after ensuring one case's cache entry."""
    root, version, spec = task
    outcome, seconds = CaseCache(root, version).ensure(spec)
    return spec.id, outcome, seconds


def prepare(run: ShapeRun, jobs: int = 1, say=None) -> ShapeRun:
    """Generate the run's missing cases (``jobs`` processes, biggest first), link the
    selection into a case folder; return the run with its outcomes and case folder.

    say(line) is called for each case generated or rebuilt.
    """
    start = time.perf_counter()
    specs = sorted(run.specs.values(), key=lambda s: (-s.elements, s.id))
    outcomes = {s.id: "reused" for s in specs if run.cache.problem(s) is None}
    todo = [s for s in specs if s.id not in outcomes]
    run.jobs = max(1, min(jobs, len(todo)))
    tasks = [(run.cache.root, run.cache.version, spec) for spec in todo]
    if run.jobs == 1:
        results = map(_ensure, tasks)
        pool = None
    else:  # spawned: the pytest process may already hold a backend's threads
        pool = multiprocessing.get_context("spawn").Pool(run.jobs)
        results = pool.imap_unordered(_ensure, tasks, chunksize=1)
    try:
        for done, (cid, outcome, seconds) in enumerate(results, 1):
            outcomes[cid] = outcome
            if say is not None and outcome != "reused":
                spec = run.specs[cid]
                say(f"  [{done}/{len(todo)}] {outcome} {cid} ({spec.elements:,} elements, "
                    f"{seconds:.1f} s)")
    except BaseException:
        if pool is not None:
            pool.terminate()  # stop the other workers now (Ctrl-C, a failing case)
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    run.outcomes = {cid: outcomes[cid] for cid in sorted(outcomes)}
    run.cases_dir = run.cache.link_selection(run.name, [run.specs[c] for c in sorted(run.specs)])
    run.seconds = time.perf_counter() - start
    return run
