"""Benchmark of a compiled backend against the memory-bandwidth floor, PyTorch CPU and numpy.

    python -m backends.bench --backend cpu                  # print the table
    python -m backends.bench --backend cpu --write          # and store reports/bench/cpu.md
    python -m backends.bench --shapes resnet50 --dtypes float32 --write
                                  # per layer of a real network (bnspec/shape_sets), like
                                  # benchdnn's performance mode; stores reports/bench/cpu-resnet50.md

Per shape and op (forward training, inference, backward): the median time of --samples runs
(caches flushed before each), GB/s of the minimum DRAM traffic, and ratios measured in the same
run: to the bandwidth floor (a STREAM-style triad inside the extension), to PyTorch CPU
(``torch.nn.functional.batch_norm`` / ``aten.native_batch_norm_backward``) and to the numpy
backend. A ratio below 1 means faster than the comparison.

Minimum traffic for N elements of b bytes (shared/perf/anchors.md): forward training 3Nb (x read
twice, y written), inference 2Nb, backward 5Nb (x and dy read twice, dx written). The floor time
is that traffic at the triad's bandwidth (a = b + s c, counted as 3 arrays, ordinary stores).

PyTorch comes from the ``bench`` extra (``pip install -e ".[bench]"``: torch 2.13, the version
the targets of issue 15 name; its CPU wheel: ``--extra-index-url
https://download.pytorch.org/whl/cpu``). Without torch the PyTorch columns read n/a. The
report's tables are regenerated on a quiet machine:

    python -m backends.bench --backend cpu --threads 2,1 --write

Timed calls: the cpu backend's kernels with preallocated outputs (forward: y, mean, invstd;
backward: dx, dgamma, dbeta from the saved mean and invstd, no running update, like PyTorch's
native_batch_norm_backward); PyTorch as users call it; the numpy backend through its adapter
(its "backward" is a whole training step, forward included).
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnspec.flags import DTYPES, numpy_dtype
from bnspec.shape_sets import load_shape_set

REPORT = Path(__file__).resolve().parent.parent / "reports" / "bench"
TRAFFIC = {"fwd_train": 3, "inference": 2, "backward": 5}  # multiples of N * itemsize
OPS = tuple(TRAFFIC)


@dataclass(frozen=True)
class Shape:
    label: str
    shape: tuple[int, ...]
    axis: int
    dtype: str


SHAPES = (
    Shape("NCHW", (32, 64, 56, 56), 1, "float32"),
    Shape("NHWC", (32, 56, 56, 64), 3, "float32"),
    Shape("2-D", (256, 1024), 1, "float32"),
    Shape("small NCHW", (8, 16, 7, 7), 1, "float32"),
    Shape("NCHW", (32, 64, 56, 56), 1, "float16"),
    Shape("NCHW", (32, 64, 56, 56), 1, "bfloat16"),
    Shape("NHWC", (32, 56, 56, 64), 3, "float16"),
    Shape("NHWC", (32, 56, 56, 64), 3, "bfloat16"),
)
QUICK = (SHAPES[0], SHAPES[3])


def shape_set_shapes(shape_set, dtypes=None) -> tuple[Shape, ...]:
    """Return the benchmark shapes of a shape set: each layer shape in each layout and dtype."""
    return tuple(Shape(f"{shape_set.name} {'NC..' if p.layout == 'channel_first' else 'N..C'}",
                       p.shape, p.axis % len(p.shape), p.dtype)
                 for p in shape_set.problems(dtypes=dtypes))


class Flusher:
    """Evicts the caches by reading a buffer larger than L2 + L3, leaving them full of clean
    lines. (Writing it, as an earlier version did, left up to L3-size dirty lines that the timed
    call then had to write back: foreign traffic inside the measurement, which the floor's
    triad never pays. Same run, 2 threads: inference 1.26x -> 1.07x of the floor for NCHW
    float32, 1.40x -> 1.18x for float16; PyTorch's times fell alike.)"""

    def __init__(self, mib: int = 96) -> None:
        self.buf = np.ones(mib << 18, dtype=np.float32)

    def __call__(self) -> None:
        self.buf.sum()


#: samples taken while the scheduler preempted this process (another program needed the core)
#: are discarded and taken again, at most this many times over
RETRIES = 10
DISCARDED = [0, 0]  # [discarded, kept], for the report


def median_time(fn, samples: int, flush, retries: int = RETRIES) -> float:
    """Return the median wall time of fn over `samples` runs, each after flush(). A run during
    which this process was involuntarily switched out is discarded and repeated (up to RETRIES
    times the samples), so a shared, busy machine does not masquerade as a slow kernel."""
    fn()  # warm up: page in outputs, load code
    times: list[float] = []
    tries = 0
    while len(times) < samples:
        flush()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
        t0 = time.perf_counter()
        fn()
        t = time.perf_counter() - t0
        tries += 1
        preempted = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw != before
        if preempted and tries < retries * samples:
            DISCARDED[0] += 1
            continue
        DISCARDED[1] += 1
        times.append(t)
    return statistics.median(times)


def triad_gbps(ext, samples: int, stream: bool) -> float:
    n = 1 << 26  # 256 MiB per array, as in the anchors
    a, b, c = (np.full(n, v, dtype=np.float32) for v in (0.0, 1.0, 2.0))
    t = median_time(lambda: ext.triad(a, b, c, 3.0, stream), samples, lambda: None)
    return 3 * n * 4 / t / 1e9


def make_inputs(s: Shape, seed: int = 0):
    rng = np.random.default_rng(seed)
    c = s.shape[s.axis]
    pdt = numpy_dtype(DTYPES[s.dtype].param)
    x = (rng.standard_normal(s.shape, dtype=np.float32) + 0.5).astype(numpy_dtype(s.dtype))
    dy = rng.standard_normal(s.shape, dtype=np.float32).astype(numpy_dtype(s.dtype))
    return dict(x=x, dy=dy, gamma=rng.uniform(0.5, 2, c).astype(pdt),
                beta=rng.standard_normal(c).astype(pdt), running_mean=np.zeros(c, pdt),
                running_var=np.ones(c, pdt))


def cpu_calls(s: Shape, inp):
    """Return {op: callable} for the cpu backend's kernels with preallocated outputs."""
    import backends.cpu as cpu

    ext = cpu.extension()
    code = cpu.DTYPE_CODES[s.dtype]
    st = cpu._storage
    x, dy = inp["x"], inp["dy"]
    c = s.shape[s.axis]
    pdt = inp["gamma"].dtype
    y, dx = np.empty_like(x), np.empty_like(x)
    mean, invstd = np.empty(c, pdt), np.empty(c, pdt)
    dgamma, dbeta = np.empty(c, pdt), np.empty(c, pdt)
    gamma, beta, rm, rv = (inp[k] for k in ("gamma", "beta", "running_mean", "running_var"))
    eps = 1e-3

    def fwd(batch):
        return lambda: ext.forward(code, st(x), gamma, beta, rm, rv, st(y), mean, invstd,
                                   s.axis, eps, False, batch)

    fwd(True)()  # the saved statistics for backward

    def bwd():
        ext.train_step(code, st(x), st(dy), gamma, beta, rm, rv, mean, invstd, st(dx), dgamma,
                       dbeta, s.axis, eps, 0.9, False, True, False)

    return {"fwd_train": fwd(True), "inference": fwd(False), "backward": bwd}


def torch_calls(s: Shape, inp, threads: int):
    """Return {op: callable} for PyTorch CPU, or {} when torch is missing."""
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(threads)
    tdt = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
           "float64": torch.float64}[s.dtype]

    def tensor(a):
        t = torch.from_numpy(a.astype(np.float32)).to(tdt)
        if s.axis == len(s.shape) - 1 and len(s.shape) > 2:
            t = t.movedim(-1, 1)  # N..C data as a channels-last N C .. tensor (a view)
        return t

    x, dy = tensor(inp["x"]), tensor(inp["dy"])
    w, b = torch.from_numpy(inp["gamma"]), torch.from_numpy(inp["beta"])
    rm, rv = torch.from_numpy(inp["running_mean"].copy()), torch.from_numpy(inp["running_var"].copy())
    eps = 1e-3
    fn = torch.nn.functional.batch_norm
    try:
        with torch.no_grad():
            _, save_mean, save_invstd = torch.native_batch_norm(x, w, b, rm.clone(), rv.clone(),
                                                                True, 0.1, eps)
            torch.ops.aten.native_batch_norm_backward(dy, x, w, rm, rv, save_mean, save_invstd,
                                                      True, eps, [True, True, True])
    except (RuntimeError, TypeError) as error:  # e.g. a dtype without a CPU kernel
        print(f"  torch: {s.dtype} unavailable ({error})", file=sys.stderr)
        return {}

    def fwd(training):
        def call():
            with torch.no_grad():
                fn(x, rm, rv, w, b, training=training, momentum=0.1, eps=eps)
        return call

    def bwd():
        with torch.no_grad():
            torch.ops.aten.native_batch_norm_backward(dy, x, w, rm, rv, save_mean, save_invstd,
                                                      True, eps, [True, True, True])

    return {"fwd_train": fwd(True), "inference": fwd(False), "backward": bwd}


def numpy_calls(s: Shape, inp):
    try:
        from backends.numpy_backend import NumpyBackend
    except ImportError:
        return {}
    nb = NumpyBackend()
    base = dict(eps=1e-3, momentum=0.9, fix_gamma=False, output_mean_var=False, axis=s.axis)
    args = tuple(inp[k] for k in ("x", "gamma", "beta", "running_mean", "running_var"))

    def fwd(training):
        return lambda: nb.forward(*args, use_global_stats=False, training=training, **base)

    def bwd():
        nb.backward(*(a.copy() for a in args), inp["dy"], use_global_stats=False, training=True,
                    **base)

    return {"fwd_train": fwd(True), "inference": fwd(False), "backward": bwd}


def machine_info(ext, threads: int) -> list[str]:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        keep = ("Model name", "CPU(s):", "L1d", "L2", "L3")
        model = "; ".join(" ".join(line.split()) for line in out.splitlines()
                          if line.startswith(keep))
    except OSError:
        pass
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":")[1].split())
                    flags = " ".join(sorted(have & {"avx2", "fma", "f16c", "avx512f", "avx512bw",
                                                    "avx512vl", "avx512_bf16"}))
                    break
    except OSError:
        pass
    import importlib.metadata as md

    def version(pkg):
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return "absent"

    return [f"CPU: {model}", f"SIMD flags: {flags}", f"kernels: {ext.get_isa()} "
            f"(available: {ext.available_isas()}), threads: {threads}, OpenMP: {ext.has_openmp()}",
            f"Python {platform.python_version()}, numpy {np.__version__}, torch {version('torch')}",
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"]


def row_name(s: Shape) -> str:
    """Return the name of a shape's rows in the report: label, shape and dtype."""
    return f"{s.label} {'x'.join(map(str, s.shape))} {s.dtype}"


def select_rows(shapes, rows: str | None) -> tuple[Shape, ...]:
    """Return the shapes whose row name contains one of the comma-separated texts (all without
    a filter); ValueError when none does."""
    if not rows:
        return tuple(shapes)
    texts = [t.strip() for t in rows.split(",") if t.strip()]
    kept = tuple(s for s in shapes if any(t in row_name(s) for t in texts))
    if not kept:
        raise ValueError(f"--rows={rows!r} matches no shape (rows: "
                         + "; ".join(row_name(s) for s in shapes) + ")")
    return kept


def select_ops(ops: str | None) -> tuple[str, ...]:
    """Return the ops named in the comma list (all without one); ValueError for an unknown op."""
    if not ops:
        return OPS
    chosen = tuple(o.strip() for o in ops.split(",") if o.strip())
    unknown = [o for o in chosen if o not in OPS]
    if unknown or not chosen:
        raise ValueError(f"--ops={ops!r}: each op must be one of {', '.join(OPS)}")
    return chosen


def fmt_ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def run(args) -> str:
    import backends.cpu as cpu

    ext = cpu.extension()
    counts = [int(t) for t in str(args.threads).split(",")] if args.threads else [0]
    tables = [run_threads(args, ext, n) for n in counts]
    return "\n".join(tables)


def run_threads(args, ext, nthreads: int) -> str:
    """Return the report section for one thread count (0: the OpenMP default)."""
    ext.set_num_threads(nthreads)
    threads = ext.get_num_threads()
    DISCARDED[:] = [0, 0]
    flush = Flusher()
    load0 = f"{os.getloadavg()[0]:.2f}"
    print("measuring the triad ...", file=sys.stderr)
    floor_nt = triad_gbps(ext, args.samples, stream=True)
    floors = []
    rows = []
    for s in args.shape_list:
        inp = make_inputs(s)
        n = int(np.prod(s.shape))
        item = inp["x"].dtype.itemsize
        print(f"{s.label} {s.shape} {s.dtype} ...", file=sys.stderr)
        mine = cpu_calls(s, inp)
        theirs = torch_calls(s, inp, threads)
        ref = numpy_calls(s, inp) if not args.no_numpy else {}
        floor = triad_gbps(ext, args.samples, stream=False)  # measured next to this shape's rows
        floors.append(floor)
        for op in args.op_list:
            t = median_time(mine[op], args.samples, flush)
            tt = median_time(theirs[op], args.samples, flush) if op in theirs else None
            # numpy runs for 100+ ms: nearly every run is preempted on a busy machine, retrying
            # would not help it, and its ratio needs no precision
            tn = median_time(ref[op], args.numpy_samples, flush, retries=0) if op in ref else None
            traffic = TRAFFIC[op] * n * item
            floor_t = traffic / (floor * 1e9)
            rows.append((row_name(s), op, t * 1e3,
                         traffic / t / 1e9, t / floor_t, fmt_ratio(t, tt), fmt_ratio(t, tn),
                         f"{tt * 1e3:.3f}" if tt else "n/a", f"{tn * 1e3:.2f}" if tn else "n/a",
                         floor))
            print("  " + " | ".join(str(v) for v in rows[-1]), file=sys.stderr)
    lines = [
        f"## {threads} thread{'s' if threads > 1 else ''} "
        f"({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        *[f"- {line}" for line in machine_info(ext, threads)],
        "- bandwidth floor: triad a = b + s c on 3 x 256 MiB float32 with ordinary stores, "
        f"median of {args.samples}, measured again before each shape (column floor GB/s): "
        f"{min(floors):.1f} to {max(floors):.1f} GB/s; with non-temporal stores "
        f"{floor_nt:.1f} GB/s (not used as the floor)",
        f"- samples: median of {args.samples} (numpy backend: {args.numpy_samples}, not retried), caches "
        "flushed before each by reading 96 MiB (clean lines: no write-back inside the timing); minimum traffic: fwd_train 3N, inference 2N, backward 5N "
        "elements",
        f"- shared machine: load average {load0} at the start, {os.getloadavg()[0]:.2f} at the "
        f"end; {DISCARDED[0]} samples discarded (process preempted), {DISCARDED[1]} kept",
        "- ratios: time / floor time, time / PyTorch time, time / numpy-backend time "
        "(below 1 = faster)",
        "",
        "| shape | op | time ms | GB/s | floor GB/s | vs floor | vs PyTorch | vs numpy | "
        "PyTorch ms | numpy ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]} | {r[2]:.3f} | {r[3]:.1f} | {r[9]:.1f} | {r[4]:.2f}x | "
                     f"{r[5]} | {r[6]} | {r[7]} | {r[8]} |")
    if args.shapes:
        compared = [r for r in rows if r[5] != "n/a"]
        slower = [r for r in compared if float(r[5].rstrip("x")) > 1.0]
        verdict = (f"{len(slower)} of {len(compared)} rows miss" if slower else
                   f"all {len(compared)} rows meet it")
        if len(compared) < len(rows):
            verdict += f"; {len(rows) - len(compared)} rows without a PyTorch time (not compared)"
        lines += ["", f"Target: faster than PyTorch on every layer, {threads} thread(s): "
                  + verdict, ""]
        lines += [f"- {r[0]} {r[1]}: PyTorch {r[5]}" for r in slower]
        return "\n".join(lines) + "\n"
    lines += ["", f"Targets (issue 15), {threads} thread(s):", "",
              "Every row at most PyTorch's time; the big rows (25.7 MB float32 tensors) within "
              "1.10x of the floor for forward training and inference and 1.0x for backward; "
              "the big 16-bit rows within 1.25x.", ""]
    for r in rows:
        misses = target_misses(r[0], r[1], r[4], r[5])
        lines.append(f"- {r[0]} {r[1]}: " + ("meets" if not misses else "misses: " + ", ".join(misses)))
    return "\n".join(lines) + "\n"


def target_misses(row: str, op: str, vs_floor: float, vs_torch: str) -> list[str]:
    """Return the targets of issue 15 a row misses (empty: it meets them): time / PyTorch <= 1.0
    on every row; on the big NCHW/NHWC rows time / floor <= 1.10 (fwd_train, inference) or
    <= 1.0 (backward) for float32, <= 1.25 for 16-bit dtypes."""
    misses = []
    if vs_torch != "n/a" and float(vs_torch.rstrip("x")) > 1.0:
        misses.append(f"PyTorch {vs_torch}")
    if row.split()[0] in ("NCHW", "NHWC"):
        if row.endswith("float32"):
            limit = 1.0 if op == "backward" else 1.10
        else:
            limit = 1.25
        if vs_floor > limit:
            misses.append(f"floor {vs_floor:.2f}x > {limit}x")
    return misses


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m backends.bench", description=__doc__.split("\n")[0])
    p.add_argument("--backend", default="cpu", choices=["cpu"], help="the compiled backend")
    p.add_argument("--samples", type=int, default=15, help="samples per median (>= 15)")
    p.add_argument("--numpy-samples", type=int, default=15)
    p.add_argument("--threads", default="0",
                   help="threads, or a comma list for one table each (0: OMP_NUM_THREADS)")
    p.add_argument("--quick", action="store_true", help="two shapes only")
    p.add_argument("--shapes", default=None, metavar="SET",
                   help="a shape set by name (bnspec/shape_sets: resnet50, mobilenet_v2, ...) "
                        "or a set file of your own: one row per layer shape, layout and dtype")
    p.add_argument("--dtypes", default=None, metavar="LIST",
                   help="with --shapes: comma list of the set's dtypes to run (default: all)")
    p.add_argument("--rows", default=None, metavar="TEXT",
                   help="only the shapes whose row name contains TEXT (e.g. '2-D', 'NHWC 32x56x56x64 "
                        "float32'); a comma list keeps a shape matching any of them")
    p.add_argument("--ops", default=None, metavar="LIST",
                   help=f"comma list of the ops to time (default: all of {','.join(OPS)})")
    p.add_argument("--no-numpy", action="store_true", help="skip the numpy backend")
    p.add_argument("--write", action="store_true", help=f"store {REPORT}/<backend>.md")
    args = p.parse_args(argv)
    if args.dtypes and not args.shapes:
        p.error("--dtypes needs --shapes")
    report_name = args.backend
    try:
        if args.shapes:
            shape_set = load_shape_set(args.shapes)
            report_name += f"-{shape_set.name}"
            args.shape_list = shape_set_shapes(shape_set, args.dtypes and args.dtypes.split(","))
        else:
            args.shape_list = QUICK if args.quick else SHAPES
        args.shape_list = select_rows(args.shape_list, args.rows)
        args.op_list = select_ops(args.ops)
    except ValueError as error:
        p.error(str(error))
    command = "python -m backends.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    table = ("# CPU backend benchmark\n\nGenerated by `" + command + "`. Do not edit; re-run.\n\n"
             + run(args))
    print(table)
    if args.write:
        REPORT.mkdir(parents=True, exist_ok=True)
        (REPORT / f"{report_name}.md").write_text(table)
        print(f"wrote {REPORT / (report_name + '.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
