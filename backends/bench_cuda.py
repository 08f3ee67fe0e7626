"""Benchmark of the CUDA backend's kernels against device copy bandwidth and PyTorch (cuDNN).

    python -m backends.bench_cuda                  # print the table
    python -m backends.bench_cuda --write          # and store reports/bench/cuda.md
    python -m backends.bench_cuda --quick          # two small rows: a smoke test

Needs a CUDA GPU with CuPy and PyTorch (CUDA build). Rows: the CPU benchmark's shapes
(backends.bench.SHAPES) plus large ones, both layouts, float32 and bfloat16. Ops: forward
training (statistics + normalize), inference (normalize with running statistics) and backward
(dx, dgamma, dbeta from the saved mean and invstd: the gradient reduction and the dx pass).

Timing: CUDA events around each sample on the default stream, median of --samples (>= 50)
after --warmup calls; rows of under 4 Mi elements time --repeat back-to-back calls per
sample (and are then L2-resident: their bandwidth is not DRAM bandwidth). Ratios measured in
the same run, on the same inputs:
- "% of copy": the floor time over ours, the floor being the minimum DRAM traffic (forward
  training 3N, inference 2N, backward 5N elements; shared/perf/anchors.md) at the
  device-to-device copy bandwidth measured first (read + write bytes over time);
- "vs torch": ours over ``torch.nn.functional.batch_norm`` (cuDNN where PyTorch picks it;
  NHWC rows as channels_last tensors), and its backward through autograd.grad. Below 1 is faster.
- "check": the largest |ours - torch| / max|torch| of y (forward) or dx (backward), a guard
  against timing a wrong kernel.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backends.bench import SHAPES as CPU_SHAPES
from backends.bench import TRAFFIC, Shape
from backends.cuda import kernels, plan, runtime, semantics

REPORT = Path(__file__).resolve().parent.parent / "reports" / "bench" / "cuda.md"
LARGE = (
    Shape("NCHW", (256, 64, 112, 112), 1, "float32"),
    Shape("NHWC", (256, 112, 112, 64), 3, "float32"),
    Shape("NCHW", (256, 64, 112, 112), 1, "bfloat16"),
    Shape("NHWC", (256, 112, 112, 64), 3, "bfloat16"),
    Shape("NCHW", (64, 256, 56, 56), 1, "float32"),
    Shape("NHWC", (64, 56, 56, 256), 3, "float32"),
    Shape("NCHW", (64, 256, 56, 56), 1, "bfloat16"),
    Shape("NHWC", (64, 56, 56, 256), 3, "bfloat16"),
)
SHAPES = tuple(CPU_SHAPES) + LARGE
QUICK = (CPU_SHAPES[0], CPU_SHAPES[1])
#: Rows with fewer elements time this many back-to-back calls per sample.
SMALL_ELEMENTS = 1 << 22
EPS, MOMENTUM = 1e-5, 0.9


def event_median(torch, fn, samples: int, warmup: int, repeat: int) -> float:
    """Median seconds of one fn() call over samples, each timed with CUDA events."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(samples):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeat):
            fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) / 1e3 / repeat)
    return statistics.median(times)


def copy_bandwidth(torch, samples: int, nbytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write) of an nbytes buffer."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_(0, 255)
    dst = torch.empty_like(src)
    seconds = event_median(torch, lambda: dst.copy_(src), samples, warmup=5, repeat=1)
    return 2 * nbytes / seconds


@dataclass
class Problem:
    """One row's data, shared by our kernels (CuPy views) and PyTorch."""

    shape: Shape
    x: object  # torch tensor in the row's memory layout
    dy: object
    weight: object
    bias: object
    running_mean: object
    running_var: object

    def torch_view(self, t):
        """The tensor as PyTorch's batch_norm wants it: channels at dim 1."""
        return t.movedim(self.shape.axis, 1) if self.shape.axis != 1 else t


def make_problem(torch, s: Shape, seed: int = 0, device: str = "cuda") -> Problem:
    gen = torch.Generator(device=device).manual_seed(seed)
    dtype = getattr(torch, s.dtype)
    channels = s.shape[s.axis]

    def normal(shape, dt, scale=1.0, offset=0.0):
        return (torch.randn(shape, generator=gen, device=device) * scale + offset).to(dt)

    return Problem(s, normal(s.shape, dtype, 2.0, 3.0), normal(s.shape, dtype),
                   normal(channels, torch.float32), normal(channels, torch.float32),
                   normal(channels, torch.float32),
                   torch.rand(channels, generator=gen, device=device) + 0.5)


class Ours:
    """The CUDA backend's kernels on a Problem's tensors, launches resolved once."""

    def __init__(self, rt, torch, p: Problem):
        cp = rt.cupy
        s = p.shape
        self.geom = plan.geometry(s.shape, s.axis % len(s.shape))
        self.launch = plan.plan(self.geom, s.dtype, rt.device)

        def data(t):  # 16-bit tensors travel as raw bits (CuPy has no bfloat16)
            return cp.asarray(t.view(torch.int16)).view(cp.uint16) if t.element_size() == 2 \
                else cp.asarray(t)

        self.buffers = runtime.allocate(cp, self.launch, self.geom, s.dtype, x=data(p.x),
                                        dy=data(p.dy), gamma=p.weight, beta=p.bias,
                                        running_mean=p.running_mean, running_var=p.running_var)
        self.out = self.buffers.out
        scalars = semantics.scalars(semantics.MXNET, s.dtype, EPS, MOMENTUM)
        flags = dict(use_global_stats=False, fix_gamma=False)
        train = semantics.forward_schedule(semantics.MXNET, training=True, output_mean_var=False,
                                           **flags)
        infer = semantics.forward_schedule(semantics.MXNET, training=False,
                                           output_mean_var=False, **flags)
        # backward from the saved statistics: the step's gradient launches, without its first
        # (statistics) launch and without the running-stat update, as PyTorch's backward
        update = kernels.FLAGS["kUpdateInBackward"]
        grads = tuple(semantics.Step(st.stage, st.policy, st.flags & ~update, st.center)
                      for st in semantics.backward_schedule(semantics.MXNET, training=True, **flags)
                      if st.policy != "StatsReducer")
        self.calls = {op: self._resolve(rt, steps, s.dtype, scalars)
                      for op, steps in (("fwd_train", train), ("inference", infer),
                                        ("backward", grads))}
        self.calls["fwd_train"]()  # the saved statistics the backward reads

    def _resolve(self, rt, steps, dtype, scalars):
        launches = [(rt.function(self.launch.layout, st.stage, dtype, self.launch.vec, st.policy),
                     runtime.kernel_arguments(st, self.launch, self.geom, self.buffers, scalars))
                    for st in steps]

        def call():
            for function, args in launches:
                function(self.launch.grid, self.launch.block, args)
        return call

    def result(self, torch, like):
        """The last output (y or dx) as a torch tensor of like's dtype, shape and device."""
        t = torch.as_tensor(self.out, device=like.device)
        return (t.view(like.dtype) if like.element_size() == 2 else t).view(like.shape)


def check(torch, ours: Ours, theirs, torch_out, p: Problem, op: str) -> float:
    """Run op once on both sides; return max |ours - torch| / max |torch| of y or dx."""
    ours.calls[op]()
    theirs[op]()
    ref = torch_out["y" if op == "fwd_train" else "dx"].float()
    mine = p.torch_view(ours.result(torch, p.x)).float()
    return ((mine - ref).abs().max() / ref.abs().max()).item()


def torch_calls(torch, p: Problem):
    """PyTorch's forward training, inference and backward on the same data."""
    F = torch.nn.functional
    x, dy = p.torch_view(p.x), p.torch_view(p.dy)
    rm, rv = p.running_mean.clone(), p.running_var.clone()
    xg = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
    w, b = p.weight.clone().requires_grad_(True), p.bias.clone().requires_grad_(True)
    y = F.batch_norm(xg, rm.clone(), rv.clone(), w, b, training=True, momentum=1 - MOMENTUM,
                     eps=EPS)
    out = {}

    def fwd_train():
        out["y"] = F.batch_norm(x, rm, rv, p.weight, p.bias, training=True,
                                momentum=1 - MOMENTUM, eps=EPS)

    def inference():
        F.batch_norm(x, rm, rv, p.weight, p.bias, training=False, eps=EPS)

    def backward():
        out["dx"] = torch.autograd.grad(y, (xg, w, b), dy, retain_graph=True)[0]

    return {"fwd_train": fwd_train, "inference": inference, "backward": backward}, out


def run(args) -> str:
    try:
        import torch
    except ImportError:
        sys.exit("backends.bench_cuda needs PyTorch with CUDA")
    rt = runtime.get_runtime()
    if not torch.cuda.is_available():
        sys.exit("backends.bench_cuda: PyTorch sees no CUDA device")
    samples = max(50, args.samples)
    bandwidth = copy_bandwidth(torch, samples)
    rows = []
    for s in (QUICK if args.quick else SHAPES):
        p = make_problem(torch, s)
        ours, (theirs, torch_out) = Ours(rt, torch, p), torch_calls(torch, p)
        n = int(np.prod(s.shape))
        repeat = args.repeat if n < SMALL_ELEMENTS else 1
        itemsize = kernels.ITEMSIZE[s.dtype]
        for op in TRAFFIC:
            t_ours = event_median(torch, ours.calls[op], samples, args.warmup, repeat)
            t_torch = event_median(torch, theirs[op], samples, args.warmup, repeat)
            agree = ""
            if op in ("fwd_train", "backward"):
                agree = f"{check(torch, ours, theirs, torch_out, p, op):.1e}"
            floor = TRAFFIC[op] * n * itemsize / bandwidth
            rows.append((s, op, t_ours, floor / t_ours, t_torch, t_ours / t_torch, agree,
                         ours.launch))
            print(f"{s.label:10} {str(s.shape):20} {s.dtype:8} {op:9} {t_ours * 1e6:10.1f} us "
                  f"{100 * floor / t_ours:5.1f}% of copy  torch {t_torch * 1e6:10.1f} us  "
                  f"x{t_ours / t_torch:5.2f}  check {agree}", file=sys.stderr)
        del ours, theirs, p
        torch.cuda.empty_cache()
    return render(rt, torch, bandwidth, samples, args, rows)


def render(rt, torch, bandwidth, samples, args, rows) -> str:
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else "none"
    lines = [
        "# CUDA backend benchmark",
        "",
        f"Generated by `python -m backends.bench_cuda{' --quick' if args.quick else ''} --write` "
        f"on {datetime.date.today().isoformat()}. Device: **{rt.device.name}** "
        f"({rt.device.multiprocessors} SMs, compute capability "
        f"{rt.capability[0]}.{rt.capability[1]}); "
        f"PyTorch {torch.__version__}, cuDNN {cudnn}, CuPy {rt.cupy.__version__}, "
        f"Python {platform.python_version()}.",
        "",
        f"Device-to-device copy bandwidth measured in this run: **{bandwidth / 1e9:.0f} GB/s** "
        "(read + write). Medians of "
        f"{samples} CUDA-event samples after {args.warmup} warm-up calls; rows under "
        f"{SMALL_ELEMENTS} elements time {args.repeat} calls per sample and are L2-resident.",
        "",
        "% of copy = floor time / our time, floor = minimum traffic (fwd train 3N, inference 2N, "
        "backward 5N elements) at the copy bandwidth. vs torch = our time / "
        "torch.nn.functional.batch_norm time (backward: autograd.grad), below 1 is faster. "
        "check = max |ours - torch| / max |torch| of y or dx.",
        "",
        "| layout | shape | dtype | op | ours (us) | % of copy | torch (us) | vs torch | check "
        "| grid x block (vec) |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for s, op, t_ours, frac, t_torch, ratio, agree, launch in rows:
        lines.append(
            f"| {s.label} | {'x'.join(map(str, s.shape))} | {s.dtype} | {op} "
            f"| {t_ours * 1e6:.1f} | "
            f"{100 * frac:.1f}% | {t_torch * 1e6:.1f} | {ratio:.2f} | {agree} | "
            f"{launch.grid[0]}x{launch.grid[1]} x {launch.block[0]}x{launch.block[1]} "
            f"({launch.vec}) |")
    targets = {"fwd_train": 0.80, "inference": 0.85, "backward": 0.70}
    met = [(op, all(r[3] >= goal for r in rows if r[1] == op and r[0] in LARGE))
           for op, goal in targets.items()]
    faster = all(r[5] < 1 for r in rows)
    lines += ["", "Targets (issue 6), large rows: " + ", ".join(
        f"{op} >= {int(100 * targets[op])}% of copy: {'met' if ok else 'NOT met'}"
        for op, ok in met)
        + f"; faster than PyTorch on every row: {'yes' if faster else 'NO'}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m backends.bench_cuda",
                                description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=100, help="samples per median (>= 50)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls before sampling")
    p.add_argument("--repeat", type=int, default=20,
                   help="calls per sample for rows under 4 Mi elements")
    p.add_argument("--quick", action="store_true", help="two small rows only")
    p.add_argument("--write", action="store_true", help=f"store {REPORT}")
    args = p.parse_args(argv)
    try:
        table = run(args)
    except runtime.RuntimeUnavailable as exc:
        print(f"backends.bench_cuda: {exc}", file=sys.stderr)
        return 2
    print(table)
    if args.write:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(table + "\n", encoding="utf-8")
        print(f"wrote {REPORT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
