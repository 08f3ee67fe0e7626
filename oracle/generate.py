"""Generate the golden case files: ``python -m oracle.generate [options]``.

Default: every case of ``oracle.plan.default_plan()`` and of the quantized path
(``oracle.plan_quantized.quantized_plan()``) into ``cases/``, plus ``cases/INDEX.md``;
case files no longer planned (``<op>_*.yaml`` / ``.bin`` in that folder) are removed.

    python -m oracle.generate                     # write cases/ (and INDEX.md)
    python -m oracle.generate --check             # regenerate in memory, exit 1 on any difference
    python -m oracle.generate --filter 'bwd_*_fp16_*' --jobs 2
    python -m oracle.generate --shape 8,64,28,28 --dtype float16 --axis -1 --out my_cases/
        [--family normal] [--flags all|train,fixgamma,...] [--eps E] [--momentum M]
    python -m oracle.generate --shapes resnet50 --out DIR     # or --shapes my_net.yaml
        [--flags train,...|all] [--dtypes float32,float16] [--ops fwd,bwd] [--layouts ...]

The --shape form writes the selected flag combinations (default all 16) x fwd/bwd of the
user's shape into DIR in the same format (and removes nothing). The --shapes form writes the
cases of a shape set (bnspec.shape_sets: a shipped name or a set file) into DIR, by default
the scale tier's selection (oracle.plan_shapes: a training step with batch statistics, free
gamma and mean/invstd out, forward and backward, in the set's dtypes and layouts); each case
is written as soon as it is made, so memory holds one case per --jobs worker, not the set.
Output is byte-for-byte the same whatever --jobs is: each case depends on its spec only.
"""
from __future__ import annotations

import argparse
import multiprocessing
import re
import sys
import time
from pathlib import Path

import numpy as np

import oracle
from bnspec import validate
from bnspec.flags import DTYPES
from bnspec.shape_sets import load_shape_set, shape_set_names

from .case_spec import CaseSpec
from .casefile import DEFAULT_COMMAND, Case, id_matches, render_case, write_case
from .index import render_index
from .inputs import make_inputs, round_to
from .plan import default_plan, user_plan
from .plan_quantized import quantized_plan
from .plan_shapes import SCALE_FLAGS, SCALE_OPS, case_command, shape_set_plan
from .quantized_inputs import make_quantized_inputs

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "cases"
#: Files the generator owns in an output folder: case files and sidecars of any op.
CASE_FILE = re.compile(r"^(fwd|bwd|err|qnt)_[a-z0-9_.\-]*\.(yaml|bin)$")
INDEX_NAME = "INDEX.md"


# --- building one case --------------------------------------------------------------------


def error_inputs(spec: CaseSpec) -> dict[str, np.ndarray]:
    """Return the invalid inputs of an err case: valid normal data with spec.defect applied.

    Defects: <param>_length:long|short (one more / one fewer element), axis_range, rank
    (x of rank 1 or 0), empty, x_dtype (x converted to spec.dtype), param_dtype:<t>params,
    dy_shape (dy with the last dimension one shorter), dy_dtype (dy in float64), eps,
    momentum (the invalid value is spec.eps / spec.momentum).
    """
    defect, _, tag = spec.defect.partition(":")
    shape = spec.shape
    data_dtype = spec.dtype if spec.dtype in DTYPES else "float32"
    if len(shape) == 0:
        base = make_inputs("normal", data_dtype, (1,), 0, with_dy=False, seed=spec.seed,
                           key=spec.id)
        base["x"] = base["x"].reshape(())
        return base
    axis = spec.axis if -len(shape) <= spec.axis < len(shape) else 1 % len(shape)
    base = make_inputs("normal", data_dtype, shape, axis, with_dy=defect.startswith("dy_"),
                       seed=spec.seed, key=spec.id)
    if defect.endswith("_length"):
        name = defect[: -len("_length")]
        extra = make_inputs("normal", data_dtype, (2, 1), 0, with_dy=False, key=spec.id)[name]
        a = base[name]
        base[name] = np.concatenate([a, extra[:1]]) if tag == "long" else a[:-1]
    elif defect == "x_dtype":
        x = base["x"].astype(np.float64)
        base["x"] = (x > 0) if spec.dtype == "bool" else np.abs(np.rint(4 * x)).astype(spec.dtype)
    elif defect == "param_dtype":
        target = {"f16params": "float16", "bf16params": "bfloat16", "f64params": "float64",
                  "f32params": "float32"}[tag]
        for name in validate.PARAMETER_NAMES:
            base[name] = round_to(base[name].astype(np.float64), target)
    elif defect == "dy_shape":
        base["dy"] = base["dy"][..., :-1]
    elif defect == "dy_dtype":
        base["dy"] = base["dy"].astype(np.float64)
    return base


def check_error(spec: CaseSpec, inputs: dict) -> None:
    """Raise AssertionError unless oracle.evaluate rejects the inputs as the spec says."""
    args = [inputs.get(n) for n in ("x",) + validate.PARAMETER_NAMES]
    _expect_refusal(spec, "oracle.evaluate", lambda: oracle.evaluate(
        *args, inputs.get("dy"), eps=spec.eps, momentum=spec.momentum,
        fix_gamma=spec.flags.fix_gamma, use_global_stats=spec.flags.use_global_stats,
        output_mean_var=spec.flags.output_mean_var, axis=spec.axis,
        training=spec.flags.training))


def _expect_refusal(spec: CaseSpec, what: str, call) -> None:
    """Raise AssertionError unless call() raises the exception class and message fragment
    the plan expects for this invalid-input spec."""
    try:
        call()
    except (ValueError, TypeError) as exc:
        if type(exc).__name__ != spec.error.exception or spec.error.match not in str(exc):
            raise AssertionError(f"{spec.id}: oracle raised {type(exc).__name__}({exc}), the "
                                 f"plan expects {spec.error.exception} matching "
                                 f"{spec.error.match!r}") from exc
        return
    raise AssertionError(f"{spec.id}: {what} accepted an invalid input")


def quantized_error_inputs(spec: CaseSpec) -> dict[str, np.ndarray]:
    """Return the inputs of an invalid quantized call: valid qnormal data with spec.defect
    applied. Defects: x_float / x_dtype (x converted to spec.dtype), param_dtype (the four
    parameters in float64), gamma_length (one more element), rank (x of rank 1); the calib,
    axis and eps defects are values of the spec."""
    shape = spec.shape
    dtype = spec.dtype if spec.dtype in ("int8", "uint8") else "int8"
    axis = spec.axis if -len(shape) <= spec.axis < len(shape) else 1 % len(shape)
    base = make_quantized_inputs("qnormal", dtype, shape, axis, "sym", seed=spec.seed,
                                 key=spec.id)
    if spec.defect in ("x_float", "x_dtype"):
        base["x"] = base["x"].astype(spec.dtype)
    elif spec.defect == "param_dtype":
        for name in validate.PARAMETER_NAMES:
            base[name] = base[name].astype(np.float64)
    elif spec.defect == "gamma_length":
        base["gamma"] = np.concatenate([base["gamma"], base["gamma"][:1]])
    return base


def quantized_kwargs(spec: CaseSpec) -> dict:
    """Return the keyword arguments of the quantized call of a qnt spec."""
    names = ("min_data", "max_data", "min_calib_range", "max_calib_range")
    return {"eps": spec.eps, "axis": spec.axis, **dict(zip(names, spec.quantized))}


def check_quantized_error(spec: CaseSpec, inputs: dict) -> None:
    """Raise AssertionError unless oracle.evaluate_quantized rejects the call as planned."""
    args = [inputs[n] for n in ("x",) + validate.PARAMETER_NAMES]
    _expect_refusal(spec, "oracle.evaluate_quantized",
                    lambda: oracle.evaluate_quantized(*args, **quantized_kwargs(spec)))


def build_case(spec: CaseSpec, streamed: bool = False) -> tuple[Case, float]:
    """Return (the Case of a spec, seconds spent in oracle.evaluate).

    streamed: a fwd/bwd case's y or dx is an ``ExpectedBlocks`` (oracle.evaluate_streamed),
    computed block by block when ``write_case`` writes it; the seconds then cover only the
    per-channel part."""
    seconds = 0.0
    expected = {}
    quantized = None
    if spec.op == "qnt":
        names = ("min_data", "max_data", "min_calib_range", "max_calib_range")
        quantized = dict(zip(names, spec.quantized))
    if spec.op == "qnt" and spec.error is not None:
        inputs = quantized_error_inputs(spec)
        check_quantized_error(spec, inputs)
    elif spec.op == "qnt":
        inputs = make_quantized_inputs(spec.family, spec.dtype, spec.shape, spec.axis,
                                       spec.ranges, seed=spec.seed, key=spec.id)
        start = time.perf_counter()
        expected = oracle.evaluate_quantized(
            *(inputs[n] for n in ("x",) + validate.PARAMETER_NAMES), **quantized_kwargs(spec))
        seconds = time.perf_counter() - start
    elif spec.op == "err":
        inputs = error_inputs(spec)
        check_error(spec, inputs)
    else:
        inputs = make_inputs(spec.family, spec.dtype, spec.shape, spec.axis,
                             with_dy=spec.op == "bwd", eps=spec.eps, seed=spec.seed, key=spec.id)
        start = time.perf_counter()
        evaluate = oracle.evaluate_streamed if streamed else oracle.evaluate
        expected = evaluate(
            inputs["x"], inputs["gamma"], inputs["beta"], inputs["running_mean"],
            inputs["running_var"], inputs.get("dy"), eps=spec.eps, momentum=spec.momentum,
            fix_gamma=spec.flags.fix_gamma, use_global_stats=spec.flags.use_global_stats,
            output_mean_var=spec.flags.output_mean_var, axis=spec.axis,
            training=spec.flags.training)
        seconds = time.perf_counter() - start
    case = Case(id=spec.id, op=spec.op, family=spec.family, summary=spec.summary, path=None,
                dtype=spec.dtype, shape=tuple(spec.shape), axis=spec.axis, flags=spec.flags,
                eps=float(spec.eps), momentum=float(spec.momentum), cudnn_off=spec.cudnn_off,
                inputs=inputs, expected=dict(expected), error=spec.error, quantized=quantized)
    return case, seconds


def write_case_files(spec: CaseSpec, folder: Path, command: str) -> dict[str, int]:
    """Return {file name: bytes written} of one case written into folder (created if need be).

    The one place a single case goes from its spec to files: the scale tier's cache and
    ``--shapes --out DIR`` both call it, one case at a time, so that no more than one case
    is held in memory per process.

    Streams (oracle.evaluate_streamed, oracle.casefile.write_case): memory is the case's
    inputs and a few blocks of about a million elements, not its expected values; the files
    are those of render_case(build_case(spec)[0]) (tests/oracle/test_streaming.py).
    """
    case, _ = build_case(spec, streamed=True)
    path = write_case(case, folder, command)
    sizes = {path.name: path.stat().st_size}
    sidecar = path.with_suffix(".bin")
    if sidecar.exists():
        sizes[sidecar.name] = sidecar.stat().st_size
    return sizes


def _render(task: tuple[CaseSpec, str]) -> tuple[str, dict[str, bytes], int, float]:
    """Worker: return (id, files, elements given to the oracle, oracle seconds)."""
    spec, command = task
    case, seconds = build_case(spec)
    elements = spec.elements if spec.op != "err" and spec.error is None else 0
    return spec.id, render_case(case, command), elements, seconds


def render_all(specs: list[CaseSpec], jobs: int, command: str = DEFAULT_COMMAND,
               progress: bool = False) -> tuple[dict[str, dict[str, bytes]], list]:
    """Return ({id: {file name: bytes}}, [(id, elements, oracle seconds)]) for every spec.

    The biggest cases are started first so that --jobs balances; results are keyed by id, so
    the output does not depend on the order or the number of workers.
    """
    order = sorted(specs, key=lambda s: (-s.elements, s.id))
    tasks = [(s, command) for s in order]
    bar = _progress(len(tasks), progress)
    files, stats = {}, []
    if jobs <= 1:
        results = map(_render, tasks)
        pool = None
    else:
        pool = multiprocessing.get_context("fork").Pool(jobs)
        results = pool.imap_unordered(_render, tasks, chunksize=4)
    try:
        for cid, rendered, n, s in results:
            files[cid] = rendered
            stats.append((cid, n, s))
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    return dict(sorted(files.items())), sorted(stats)


def _write_task(task: tuple[CaseSpec, str, Path]) -> tuple[str, dict, int, float]:
    """Worker: write one case streaming; return (id, {file: bytes}, elements, seconds)."""
    spec, command, out = task
    start = time.perf_counter()
    sizes = write_case_files(spec, out, command)
    return spec.id, sizes, spec.elements, time.perf_counter() - start


def write_all(specs: list[CaseSpec], jobs: int, out: Path, command: str) -> tuple[dict, list]:
    """Write every spec's case into out, streaming (``write_case_files``); return ({id: {file
    name: bytes}}, [(id, elements, seconds)]). Each worker's memory stays that of one case's
    inputs and a few blocks, whatever the tensor's size."""
    out.mkdir(parents=True, exist_ok=True)
    tasks = [(s, command, out) for s in sorted(specs, key=lambda s: (-s.elements, s.id))]
    pool = multiprocessing.get_context("fork").Pool(jobs) if jobs > 1 else None
    results = pool.imap_unordered(_write_task, tasks) if pool else map(_write_task, tasks)
    sizes, stats = {}, []
    try:
        for cid, files, n, seconds in results:
            sizes[cid] = files
            stats.append((cid, n, seconds))
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return dict(sorted(sizes.items())), sorted(stats)


def rate_summary(stats: list) -> str:
    """Return the oracle's throughput: elements per second of oracle time (one core), over
    all cases and over the large ones (where the per-call overhead does not dominate)."""
    def rate(rows):
        n, s = sum(r[1] for r in rows), sum(r[2] for r in rows)
        return f"{n:,} elements in {s:.2f} s = {n / s if s > 0 else float('nan'):,.0f} elements/s"
    large = [r for r in stats if r[1] > 4096]
    text = f"oracle (per core): all cases {rate(stats)}"
    return text + (f"; cases over 4096 elements {rate(large)}" if large else "")


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit="case", file=sys.stderr)


# --- the command line ---------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m oracle.generate", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=None, help="output folder (default: cases/)")
    p.add_argument("--filter", default=None, metavar="PATTERN",
                   help="only ids matching PATTERN (fnmatch on the whole id, or a regex found in it)")
    p.add_argument("--jobs", "-j", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--check", action="store_true",
                   help="regenerate in memory; exit 1 naming every differing, missing or extra file")
    user = p.add_argument_group("cases for your own shape (needs --out)")
    user.add_argument("--shape", default=None, help="comma-separated, e.g. 8,64,28,28")
    user.add_argument("--dtype", default="float32", choices=list(DTYPES))
    user.add_argument("--axis", type=int, default=1)
    user.add_argument("--family", default="normal")
    user.add_argument("--flags", default=None,
                      help="all, or tokens such as train,fixgamma (default: all with --shape, "
                           f"{SCALE_FLAGS} with --shapes)")
    user.add_argument("--eps", type=float, default=oracle.DEFAULT_EPS)
    user.add_argument("--momentum", type=float, default=oracle.DEFAULT_MOMENTUM)
    sets = p.add_argument_group("cases of a shape set (needs --out; also --flags)")
    sets.add_argument("--shapes", default=None, metavar="SET",
                      help="a shipped shape set (bnspec/shape_sets: "
                           f"{', '.join(shape_set_names())}) or the path of your own set file")
    sets.add_argument("--dtypes", default=None,
                      help="comma-separated dtypes among the set's (default: all of them)")
    sets.add_argument("--ops", default=",".join(SCALE_OPS), help="fwd, bwd or fwd,bwd (default)")
    sets.add_argument("--layouts", default=None,
                      help="channel_first and/or channel_last among the set's (default: all)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs={args.jobs} must be >= 1")
    if args.shape is not None and args.out is None:
        p.error("--shape needs --out DIR (user cases never go into the golden cases/ folder)")
    if args.shapes is not None:
        if args.shape is not None or args.check:
            p.error("--shapes cannot be combined with --shape or --check")
        if args.out is None:
            p.error(f"--shapes={args.shapes!r} needs --out DIR (shape-set cases never go into "
                    "the golden cases/ folder)")
    elif (args.dtypes, args.layouts, args.ops) != (None, None, ",".join(SCALE_OPS)):
        p.error("--dtypes, --ops and --layouts select the cases of --shapes SET "
                "(with --shape, use --dtype)")
    return args


def user_command(args) -> str:
    """Return the command line that reproduces a user-shape run (for the file headers)."""
    parts = [DEFAULT_COMMAND, f"--shape {args.shape}", f"--dtype {args.dtype}",
             f"--axis {args.axis}"]
    if args.family != "normal":
        parts.append(f"--family {args.family}")
    if args.flags not in (None, "all"):
        parts.append(f"--flags {args.flags}")
    if args.eps != oracle.DEFAULT_EPS:
        parts.append(f"--eps {args.eps!r}")
    if args.momentum != oracle.DEFAULT_MOMENTUM:
        parts.append(f"--momentum {args.momentum!r}")
    return " ".join(parts)


def main(argv=None) -> int:
    """Run the generator; return the exit status (0, or 1 when --check finds differences)."""
    args = parse_args(None if argv is None else [str(a) for a in argv])
    start = time.perf_counter()
    if args.shapes is not None:
        return write_shape_set(args, start)
    if args.shape is not None:
        try:
            shape = tuple(int(n) for n in args.shape.split(","))
            specs = user_plan(shape, args.dtype, args.axis, family=args.family, flags=args.flags,
                              eps=args.eps, momentum=args.momentum)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        command, out, owns_folder = user_command(args), args.out, False
    else:
        specs = default_plan() + quantized_plan()
        command, out, owns_folder = DEFAULT_COMMAND, args.out or DEFAULT_OUT, True
    specs = [s for s in specs if id_matches(args.filter, s.id)]
    if not owns_folder and not args.check:  # user cases: streamed to disk, any size
        written, stats = write_all(specs, args.jobs, out, command)
        total_bytes = sum(n for files in written.values() for n in files.values())
        print(f"wrote {len(specs)} cases ({sum(map(len, written.values()))} files, "
              f"{total_bytes:,} bytes = {total_bytes / 1e6:.1f} MB) in {out}; "
              f"{time.perf_counter() - start:.1f} s with --jobs {args.jobs}\n"
              f"{rate_summary(stats)}")
        return 0
    rendered, stats = render_all(specs, args.jobs, command, progress=sys.stderr.isatty())
    wanted = {name: data for files in rendered.values() for name, data in files.items()}
    full = owns_folder and args.filter is None
    if full:
        sizes = {cid: sum(len(d) for d in files.values()) for cid, files in rendered.items()}
        wanted[INDEX_NAME] = render_index(specs, sizes, command).encode()
    if args.check:
        status = check(out, wanted, args.filter, owns_folder)
    else:
        status = write(out, wanted, args.filter, owns_folder)
    seconds = time.perf_counter() - start
    total_bytes = sum(len(d) for d in wanted.values())
    print(f"{'checked' if args.check else 'wrote'} {len(specs)} cases ({len(wanted)} files, "
          f"{total_bytes:,} bytes = {total_bytes / 1e6:.1f} MB) in {out}; {seconds:.1f} s "
          f"with --jobs {args.jobs}\n{rate_summary(stats)}")
    return status


def write_shape_set(args, start: float) -> int:
    """Write the selected cases of --shapes SET into --out, each as soon as it is made;
    return the exit status (2 naming a bad set, selection or filter)."""
    try:
        shape_set = load_shape_set(args.shapes)
        specs = shape_set_plan(shape_set, flags=args.flags or SCALE_FLAGS, dtypes=args.dtypes,
                               ops=args.ops, layouts=args.layouts)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    specs = [s for s in specs if id_matches(args.filter, s.id)]
    if not specs:
        print(f"error: --filter={args.filter!r} selects none of the cases of --shapes "
              f"{args.shapes}", file=sys.stderr)
        return 2
    print(f"{shape_set.name}: {len(specs)} cases, "
          f"{sum(s.elements for s in specs):,} elements, into {args.out} (--jobs {args.jobs})",
          flush=True)
    total = 0
    for done, (cid, sizes, seconds) in enumerate(write_each(specs, args.out, args.jobs), 1):
        total += sum(sizes.values())
        print(f"  [{done}/{len(specs)}] {cid}: {sum(sizes.values()):,} bytes in {seconds:.1f} s",
              flush=True)
    print(f"wrote {len(specs)} cases ({total:,} bytes = {total / 1e6:.1f} MB) in {args.out}; "
          f"{time.perf_counter() - start:.1f} s with --jobs {args.jobs}")
    return 0


def _write_one(task: tuple[CaseSpec, Path]) -> tuple[str, dict[str, int], float]:
    """Worker: return (id, {file name: bytes}, seconds) of one case written into a folder."""
    spec, folder = task
    start = time.perf_counter()
    sizes = write_case_files(spec, folder, case_command(spec))
    return spec.id, sizes, time.perf_counter() - start


def write_each(specs: list[CaseSpec], folder: Path, jobs: int):
    """Yield (id, {file name: bytes}, seconds) as each spec's case is written into folder,
    the biggest first, in --jobs worker processes (spawned: the caller may hold threads)."""
    tasks = [(s, Path(folder)) for s in sorted(specs, key=lambda s: (-s.elements, s.id))]
    if jobs <= 1 or len(tasks) <= 1:
        yield from map(_write_one, tasks)
        return
    with multiprocessing.get_context("spawn").Pool(min(jobs, len(tasks))) as pool:
        yield from pool.imap_unordered(_write_one, tasks, chunksize=1)


def _owned(path: Path, pattern: str | None) -> bool:
    return bool(CASE_FILE.match(path.name)) and id_matches(pattern, path.name.rsplit(".", 1)[0])


def write(out: Path, wanted: dict[str, bytes], pattern: str | None, owns_folder: bool) -> int:
    """Write the files whose bytes changed; in the golden folder, remove stale case files."""
    out.mkdir(parents=True, exist_ok=True)
    for name, data in wanted.items():
        path = out / name
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
    if owns_folder:
        for path in sorted(out.iterdir()):
            if _owned(path, pattern) and path.name not in wanted:
                path.unlink()
                print(f"removed stale {path}")
    return 0


def check(out: Path, wanted: dict[str, bytes], pattern: str | None, owns_folder: bool) -> int:
    """Return 1 (after naming each file) when out differs from the regenerated files, else 0."""
    problems = []
    for name, data in wanted.items():
        path = out / name
        if not path.exists():
            problems.append(f"missing: {path}")
        elif path.read_bytes() != data:
            problems.append(f"differs: {path}")
    if owns_folder and out.is_dir():
        for path in sorted(out.iterdir()):
            if _owned(path, pattern) and path.name not in wanted:
                problems.append(f"extra:   {path}")
    for line in problems:
        print(line)
    if problems:
        print(f"--check: {len(problems)} file(s) differ from `python -m oracle.generate`; "
              "regenerate and commit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
