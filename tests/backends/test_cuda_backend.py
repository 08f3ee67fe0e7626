"""Tests of the CUDA backend (backends/cuda) in three tiers.

1. Host logic, everywhere: the [outer, C, inner] view, vector widths, launch plans, kernel
   names, the launch argument tuples against the kernels' C++ parameter lists, the per-path
   scalars and kernel schedules, the float64 reference of the cuDNN path against the numpy
   backend, and the backend's behaviour without CuPy or a GPU.
2. The kernels on the CPU emulation (backends/cuda/emulation.py; needs a host C++ compiler):
   the real kernel code against the numpy backend on shapes the golden cases do not reach
   (split channels, every pack width, wide channel-last tiles), independence from the block
   order, and the cuDNN flavour against its reference.
3. The kernels on a GPU (needs CuPy and an sm_80+ device; skipped with the reason otherwise):
   the same comparisons, and bitwise reproducibility between runs.

The conformance suite runs the golden cases: ``pytest conformance/ --backend cuda`` on a GPU,
``--backend backends.cuda.emulation:factory`` on the CPU emulation.
"""
from __future__ import annotations

import itertools
import math
import re
import shutil

import ml_dtypes
import numpy as np
import pytest

from backends.cuda import CudaBackend, kernels, plan, runtime, semantics
from backends.numpy_backend import NumpyBackend
from bnspec.flags import DEFAULT_EPS, FLAG_NAMES

DTYPES = ("float64", "float32", "float16", "bfloat16")
PARAM = {"float64": np.float64, "float32": np.float32, "float16": np.float32,
         "bfloat16": np.float32}
ALL_FLAGS = [dict(zip(FLAG_NAMES, combo)) for combo in itertools.product((True, False), repeat=4)]
H100 = plan.Device("H100-like", 132)


def np_dtype(name):
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def make_inputs(shape, axis, dtype, seed=0, offset=3.0):
    """x, gamma, beta, running_mean, running_var, dy for a problem (finite, non-zero data)."""
    rng = np.random.default_rng(seed)
    channels = shape[axis]
    p = PARAM[dtype]
    x = (rng.normal(size=shape) * 2 + offset).astype(np_dtype(dtype))
    dy = rng.normal(size=shape).astype(np_dtype(dtype))
    return (x, rng.normal(size=channels).astype(p), rng.normal(size=channels).astype(p),
            rng.normal(size=channels).astype(p), rng.uniform(0.5, 2, size=channels).astype(p), dy)


# --- 1. host logic ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, axis, expected", [
    ((4, 3, 5, 5), 1, (4, 3, 25)),
    ((4, 3, 5, 5), 3, (60, 5, 1)),
    ((4, 3, 5, 5), 0, (1, 4, 75)),
    ((2, 7), 1, (2, 7, 1)),
    ((2, 7), 0, (1, 2, 7)),
    ((2, 3, 2, 2, 2, 3), 2, (6, 2, 12)),
])
def test_geometry_views_any_rank_and_axis_as_outer_c_inner(shape, axis, expected):
    geom = plan.geometry(shape, axis)
    assert (geom.outer, geom.channels, geom.inner) == expected
    assert geom.count == math.prod(shape) // shape[axis]
    assert geom.layout == ("channel_first" if expected[2] > 1 else "channel_last")


def test_geometry_rejects_an_unnormalized_axis():
    with pytest.raises(ValueError, match="axis"):
        plan.geometry((2, 3), -1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("run", [1, 2, 3, 4, 6, 8, 12, 16, 49, 196, 3136, 12544])
def test_vector_width_is_the_widest_aligned_pack_up_to_16_bytes(dtype, run):
    vec = kernels.vector_width(dtype, run)
    assert run % vec == 0 and vec * kernels.ITEMSIZE[dtype] <= kernels.VECTOR_BYTES
    wider = vec * 2
    assert wider * kernels.ITEMSIZE[dtype] > kernels.VECTOR_BYTES or run % wider != 0


@pytest.mark.parametrize("shape, axis, dtype", [
    ((256, 64, 112, 112), 1, "float32"), ((64, 256, 56, 56), 1, "bfloat16"),
    ((256, 112, 112, 64), 3, "float32"), ((64, 56, 56, 256), 3, "bfloat16"),
    ((4, 3, 5, 5), 1, "float64"), ((2, 7), 1, "float16"), ((10**6, 3), 1, "float32"),
    ((1, 1, 10**7), 1, "float32"), ((8, 4096, 7, 7), 1, "float16"), ((32, 2048), 1, "float32"),
])
def test_launch_plans_cover_every_channel_with_bounded_grids(shape, axis, dtype):
    geom = plan.geometry(shape, axis)
    launch = plan.plan(geom, dtype, H100)
    assert launch.layout == geom.layout
    assert launch.splits >= 1 and launch.partials == (
        geom.channels * launch.splits if launch.splits > 1 else 0)
    assert math.prod(launch.block) == kernels.BLOCK_THREADS
    if launch.layout == "channel_first":
        assert launch.grid == (geom.channels * launch.splits, 1, 1)
        assert launch.arrivals == geom.channels
        assert geom.inner % launch.vec == 0
        packs = geom.count // launch.vec
        # no split gets less than MIN_STEPS steps per thread, unless the channel is unsplit
        assert launch.splits == 1 or packs / launch.splits >= (
            kernels.BLOCK_THREADS * kernels.PACKS * plan.MIN_STEPS) / 2
    else:
        tile, rows = launch.block[:2]
        assert tile & (tile - 1) == 0 and rows & (rows - 1) == 0
        assert launch.grid[0] * tile * launch.vec >= geom.channels
        assert (launch.grid[0] - 1) * tile * launch.vec < geom.channels
        assert launch.grid[1] == launch.splits <= plan.MAX_GRID_Y
        assert launch.arrivals == launch.grid[0]
        assert geom.channels % launch.vec == 0
    assert launch.grid[0] < 2**31


def test_small_channel_counts_split_channels_over_blocks():
    """The grid-wide two-stage reduction engages for small C and large M in both layouts."""
    first = plan.plan(plan.geometry((256, 64, 112, 112), 1), "float32", H100)
    last = plan.plan(plan.geometry((256, 112, 112, 64), 3), "float32", H100)
    wide = plan.plan(plan.geometry((4, 4096, 28, 28), 1), "float32", H100)
    assert first.splits > 1 and last.splits > 1
    assert wide.splits == 1  # C >= the target block count: one block per channel


def test_kernel_names_cover_every_instantiation_once():
    for layout in kernels.LAYOUTS:
        names = kernels.kernel_names(layout)
        assert len(names) == len(set(names))
        expected = sum(len(kernels.vector_widths(d)) for d in DTYPES) * 4
        assert len(names) == expected
        assert all(name.startswith("bn::bn_") for name in names)
    with pytest.raises(ValueError, match="policy"):
        kernels.kernel_name("channel_first", "reduce", "float32", 4, "NormalizeOp")
    with pytest.raises(ValueError, match="vec"):
        kernels.kernel_name("channel_first", "apply", "float64", 4, "NormalizeOp")


def test_constants_are_read_from_the_headers():
    assert kernels.BLOCK_THREADS % kernels.WARP_SIZE == 0
    assert kernels.PACKS >= 2 and kernels.PACKS & (kernels.PACKS - 1) == 0
    bits = list(kernels.FLAGS.values())
    assert all(b & (b - 1) == 0 for b in bits) and len(set(bits)) == len(bits)
    assert sorted(kernels.CHAN_FIELDS.values()) == list(range(kernels.CHAN_FIELD_COUNT))
    assert kernels.STATE_BYTES >= 48


def _cxx_parameters(kernel: str) -> list[str]:
    """The parameter types of a kernel template, read from its source with the channel
    parameter macro expanded: "ptr" for pointers, else the scalar type."""
    ops = (kernels.SOURCE_DIR / "bn_ops.cuh").read_text()
    macro = re.search(r"#define BN_CHANNEL_PARAMS\(Acc\)(.*?)\n#define", ops, re.S).group(1)
    macro = macro.replace("\\\n", " ")
    layout = "channel_first" if kernel.endswith("_cf") else "channel_last"
    source = kernels.source_path(layout).read_text()
    signature = re.search(rf"{kernel}\((.*?)\)\s*\{{", source, re.S).group(1)
    signature = re.sub(r"//[^\n]*", "", signature).replace("BN_CHANNEL_PARAMS(acc_t<T>)", macro)
    kinds = []
    for param in (p.strip() for p in signature.split(",")):
        if "*" in param:
            kinds.append("ptr")
        else:
            kinds.append(" ".join(param.replace("const", "").split()[:-1]))
    return kinds


@pytest.mark.parametrize("layout", list(kernels.LAYOUTS))
@pytest.mark.parametrize("stage, policy", [("reduce", "StatsReducer"), ("reduce", "GradReducer"),
                                           ("apply", "NormalizeOp"), ("apply", "InputGradOp")])
@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_launch_arguments_match_the_kernel_parameter_lists(layout, stage, policy, dtype):
    from backends.cuda.emulation import HostArrays

    shape, axis = ((2, 3, 8), 1) if layout == "channel_first" else ((8, 4), 1)
    geom = plan.geometry(shape, axis)
    launch = plan.plan(geom, dtype, H100)
    x, g, b, rm, rv, dy = make_inputs(shape, axis, dtype)
    buffers = runtime.allocate(HostArrays, launch, geom, dtype, x=x, dy=dy, gamma=g, beta=b,
                               running_mean=rm, running_var=rv)
    step = semantics.Step(stage, policy, 0, "batch")
    args = runtime.kernel_arguments(step, launch, geom, buffers,
                                    semantics.scalars("mxnet", dtype, DEFAULT_EPS, 0.9))
    acc = np.dtype(kernels.ACC_DTYPES[dtype])
    scalar = {"long long": np.int64, "int": np.int32, "unsigned": np.uint32, "Acc": acc.type}
    kinds = _cxx_parameters(f"bn_{stage}_{kernels.LAYOUTS[layout][1]}")
    assert len(args) == len(kinds), f"{len(args)} arguments for {len(kinds)} parameters {kinds}"
    for i, (arg, kind) in enumerate(zip(args, kinds)):
        if kind == "ptr":
            assert isinstance(arg, np.ndarray), f"argument {i} should be an array ({kind})"
        else:
            assert type(arg) is scalar[kind], f"argument {i}: {type(arg)} for C++ {kind}"


def test_storage_dtype_passes_16_bit_data_as_bits():
    assert runtime.storage_dtype("bfloat16") == np.uint16
    assert runtime.storage_dtype("float16") == np.uint16
    assert runtime.storage_dtype("float32") == np.float32


@pytest.mark.parametrize("path", [semantics.MXNET, semantics.CUDNN])
@pytest.mark.parametrize("flags", ALL_FLAGS, ids=lambda f: "-".join(k for k, v in f.items() if v))
def test_schedules_follow_the_path_semantics(path, flags):
    f = kernels.FLAGS
    batch = flags["training"] and not flags["use_global_stats"]
    fwd = semantics.forward_schedule(path, **flags)
    step = semantics.backward_schedule(path, **{k: flags[k] for k in FLAG_NAMES[:3]})
    for s in fwd + step:
        assert bool(s.flags & f["kFixGamma"]) == flags["fix_gamma"]
        assert s.policy in kernels.POLICIES[s.stage]
    # forward: statistics only with batch stats; updates only on the cuDNN path
    expected = ["StatsReducer", "NormalizeOp"] if batch else ["NormalizeOp"]
    assert [s.policy for s in fwd] == expected
    assert semantics.updates_running_stats(fwd) == (batch and path == semantics.CUDNN)
    if not batch:
        assert fwd[0].center == "running"
        assert bool(fwd[0].flags & f["kWriteStats"]) == flags["output_mean_var"]
    # training step: updated iff batch stats; in forward (cuDNN) or backward (own kernels)
    assert semantics.updates_running_stats(step) == batch
    where = f["kUpdateInForward"] if path == semantics.CUDNN else f["kUpdateInBackward"]
    assert all(not (s.flags & (f["kUpdateInForward"] | f["kUpdateInBackward"]) & ~where)
               for s in step)
    recomputed = (path == semantics.CUDNN and not flags["training"]
                  and not flags["use_global_stats"])
    assert [s.policy for s in step][-2:] == ["GradReducer", "InputGradOp"]
    assert (step[0].policy == "StatsReducer") == (batch or recomputed)
    assert all(s.center == ("batch" if batch or recomputed else "running") for s in step)


def test_scalars_of_the_two_paths():
    m = semantics.scalars(semantics.MXNET, "float16", DEFAULT_EPS, 0.9)
    e16 = float(np.float16(DEFAULT_EPS))
    assert m.eps_data == np.float32(e16) and m.eps_shift == np.float32(e16 - DEFAULT_EPS)
    assert m.keep == np.float32(0.9) and m.take == np.float32(1) - np.float32(0.9)
    c = semantics.scalars(semantics.CUDNN, "float16", DEFAULT_EPS, 0.9)
    assert c.eps_data == np.float32(DEFAULT_EPS) and c.eps_shift == 0
    assert c.take == np.float32(1) - np.float32(0.9) and c.keep == np.float32(1) - c.take
    d = semantics.scalars(semantics.MXNET, "float64", 1e-5, 0.25)
    assert d.eps_data == 1e-5 and d.eps_shift == 0 and d.keep == float(np.float32(0.25))
    assert all(type(v) is np.float64 for v in (d.eps_data, d.eps_shift, d.keep, d.take))


def test_path_selection_and_cudnn_eps_check():
    for cudnn_off, use_global_stats in itertools.product((True, False), repeat=2):
        kw = dict(cudnn_off=cudnn_off, use_global_stats=use_global_stats)
        assert semantics.select_path("mxnet", **kw) == "mxnet"
        assert semantics.select_path("cudnn", **kw) == "cudnn"
        assert semantics.select_path("dispatch", **kw) == (
            "cudnn" if not cudnn_off and not use_global_stats else "mxnet")
    with pytest.raises(ValueError, match="mode"):
        semantics.select_path("cuda", cudnn_off=False, use_global_stats=False)
    assert semantics.check_cudnn_eps(1e-5) == 1e-5
    with pytest.raises(ValueError, match="eps=1e-06"):
        semantics.check_cudnn_eps(1e-6)
    with pytest.raises(ValueError, match="eps"):
        semantics.check_cudnn_eps(-1.0)


def _kwargs(axis, **flags):
    base = dict(eps=DEFAULT_EPS, momentum=0.9, fix_gamma=False, use_global_stats=False,
                output_mean_var=True, axis=axis, training=True)
    return {**base, **flags}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cudnn_reference_differs_from_the_cpu_semantics_only_as_documented(dtype):
    """Where DType(eps) == eps in the accumulation type (float32/float64 data), the cuDNN path's
    y, mean, invstd and gradients are the CPU semantics'; its running statistics are updated
    in forward with the unbiased variance, and a step without training recomputes batch
    statistics."""
    shape, axis = (5, 3, 4), 1
    x, g, b, rm, rv, dy = make_inputs(shape, axis, dtype)
    count = x.size // x.shape[axis]
    ref = NumpyBackend()
    rtol = 1e-12 if dtype == "float64" else 2e-6
    fwd = semantics.cudnn_reference(x, g.copy(), b, rm, rv, **_kwargs(axis))
    cpu = ref.forward(x, g.copy(), b, rm.copy(), rv.copy(), **_kwargs(axis))
    for name in ("y", "mean", "invstd"):
        np.testing.assert_allclose(fwd[name], cpu[name], rtol=rtol, atol=rtol)
    xs = np.moveaxis(x.astype(np.float64), axis, -1).reshape(-1, 3)
    unbiased = xs.var(axis=0, ddof=1)
    keep = float(np.float32(0.9))
    np.testing.assert_allclose(fwd["running_var"], rv * keep + unbiased * (1 - keep), rtol=rtol)
    np.testing.assert_allclose(fwd["running_mean"], rm * keep + xs.mean(axis=0) * (1 - keep),
                               rtol=rtol, atol=rtol)
    step = semantics.cudnn_reference(x, g.copy(), b, rm, rv, dy, **_kwargs(axis))
    cpu_step = ref.backward(x, g.copy(), b, rm.copy(), rv.copy(), dy, **_kwargs(axis))
    for name in ("dx", "dgamma", "dbeta"):
        np.testing.assert_allclose(step[name], cpu_step[name], rtol=rtol * 10, atol=rtol * 10)
    np.testing.assert_allclose(step["running_var"], fwd["running_var"], rtol=rtol)
    infer = semantics.cudnn_reference(x, g.copy(), b, rm, rv, dy, **_kwargs(axis, training=False))
    np.testing.assert_array_equal(infer["running_var"], rv)  # recomputed, not updated
    for name in ("dx", "dgamma", "dbeta"):
        np.testing.assert_allclose(infer[name], cpu_step[name], rtol=rtol * 10, atol=rtol * 10)
    assert count > 1


def test_cudnn_reference_uses_eps_unrounded_for_16_bit_data():
    x, g, b, rm, rv, _ = make_inputs((6, 2), 1, "float16", offset=0.0)
    x[...] = np.float16(0)  # var = 0: invstd = 1/sqrt(eps) shows which eps was used
    out = semantics.cudnn_reference(x, g, b, rm, rv, **_kwargs(1, eps=1e-3))
    np.testing.assert_array_equal(out["invstd"], np.float32(1 / math.sqrt(np.float32(1e-3))))
    cpu = NumpyBackend().forward(x, g.copy(), b, rm.copy(), rv.copy(), **_kwargs(1, eps=1e-3))
    assert not np.array_equal(out["invstd"], cpu["invstd"])


def test_cudnn_reference_with_global_stats_and_its_eps_check():
    x, g, b, rm, rv, dy = make_inputs((4, 2), 1, "float64")
    kw = _kwargs(1, use_global_stats=True)
    ref = NumpyBackend()
    for mine, theirs in ((semantics.cudnn_reference(x, g, b, rm, rv, **kw),
                          ref.forward(x, g.copy(), b, rm.copy(), rv.copy(), **kw)),
                         (semantics.cudnn_reference(x, g, b, rm, rv, dy, **kw),
                          ref.backward(x, g.copy(), b, rm.copy(), rv.copy(), dy, **kw))):
        for name, value in theirs.items():  # float64: DType(eps) == eps, nothing else differs
            np.testing.assert_allclose(mine[name], value, rtol=1e-13, err_msg=name)
    with pytest.raises(ValueError, match="eps"):
        semantics.cudnn_reference(x, g, b, rm, rv, **_kwargs(1, eps=0.0))


class _Case:
    def __init__(self, op, **kwargs):
        self.op = op
        self._kwargs = _kwargs(1, **kwargs)

    def kwargs(self):
        return self._kwargs


def test_backend_declares_its_device_profile_and_flavours():
    plain, cudnn = CudaBackend(), CudaBackend(mode="cudnn")
    dispatch = CudaBackend(mode="dispatch")
    assert (dispatch.name, dispatch.capabilities.profile) == ("cuda-dispatch", ())
    with pytest.raises(ValueError, match="mode"):
        CudaBackend(mode="cuDNN")
    assert plain.name == "cuda" and plain.capabilities.device == "cuda"
    assert plain.capabilities.profile == ()
    assert (cudnn.name, cudnn.capabilities.profile) == ("cuda-cudnn", semantics.CUDNN_VARIANTS)
    from oracle.variants import check_variants

    check_variants(cudnn.capabilities.profile)  # names the oracle knows
    assert plain.capabilities.dtypes == frozenset(DTYPES)
    assert plain.supports(_Case("qnt")) == "the CUDA backend has no quantized path"
    assert plain.supports(_Case("err")) is None


def test_without_a_gpu_cases_skip_with_the_reason_and_calls_raise_after_validation(monkeypatch):
    reason = "CuPy is not installed (test)"
    monkeypatch.setattr(runtime, "unavailable_reason", lambda: reason)

    def unavailable():
        raise runtime.RuntimeUnavailable(reason)

    monkeypatch.setattr(runtime, "get_runtime", unavailable)
    backend = CudaBackend()
    assert reason in backend.supports(_Case("fwd"))
    x, g, b, rm, rv, dy = make_inputs((4, 3), 1, "float32")
    with pytest.raises(ValueError, match="gamma"):  # validation first, no runtime needed
        backend.forward(x, g[:2], b, rm, rv, **_kwargs(1))
    with pytest.raises(TypeError, match="dy"):
        backend.backward(x, g, b, rm, rv, dy.astype(np.float64), **_kwargs(1))
    with pytest.raises(ValueError, match="eps"):
        CudaBackend(mode="cudnn").forward(x, g, b, rm, rv, **_kwargs(1, eps=1e-7))
    gamma = g.copy()
    with pytest.raises(runtime.RuntimeUnavailable, match="CuPy"):
        backend.forward(x, gamma, b, rm, rv, **_kwargs(1, fix_gamma=True))
    np.testing.assert_array_equal(gamma, g)  # nothing written before the runtime is there


def test_cudnn_flavours_skip_eps_below_the_cudnn_minimum_where_they_take_that_path(monkeypatch):
    monkeypatch.setattr(runtime, "unavailable_reason", lambda: None)
    cudnn, dispatch = CudaBackend(mode="cudnn"), CudaBackend(mode="dispatch")
    for kw in ({}, {"cudnn_off": True}, {"use_global_stats": True}):
        assert "1e-05" in cudnn.supports(_Case("fwd", eps=1e-6, **kw))
        assert cudnn.supports(_Case("fwd", eps=1e-5, **kw)) is None
    assert "1e-05" in dispatch.supports(_Case("fwd", eps=1e-6))
    assert dispatch.supports(_Case("fwd", eps=1e-6, cudnn_off=True)) is None
    assert dispatch.supports(_Case("fwd", eps=1e-6, use_global_stats=True)) is None


def test_registered_as_cuda():
    from conformance import registry

    assert registry.registered().get("cuda") == "backends.cuda:CudaBackend"


# --- 2. the kernels on the CPU emulation ------------------------------------------------------

needs_cxx = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                               reason="no host C++ compiler to build the kernel emulation")

#: (shape, axis) that reach what the golden cases do not: split channels (the two-stage
#: reduction on the 2-SM emulated device), every pack width, wide channel-last tiles.
EMULATED_SHAPES = [
    ((2, 2, 40000), 1),    # channel-first, M = 80000: split channels, 16-byte packs
    ((3, 2, 2, 1001), 1),  # channel-first, odd inner: scalar packs, split
    ((4, 3, 6, 6), 1),     # channel-first, inner 36: 4-element packs for 16-bit data
    ((30000, 6), 1),       # channel-last, small C, many rows: split rows
    ((40, 100), 1),        # channel-last, C = 100: 4-element packs (16-bit), several tiles
    ((16, 3, 5, 72), -1),  # channel-last through a 4-D shape, 8-element packs
    ((2, 3, 2, 2, 2, 3), 2),  # 6-D, middle axis
]


def _tolerance(dtype):
    """(rtol, atol relative to max|ref|) for backend vs numpy backend on normal data."""
    return {"float64": (1e-11, 1e-12), "float32": (2e-5, 2e-6), "float16": (2**-10, 2**-11),
            "bfloat16": (2**-7, 2**-8)}[dtype]


def _compare(got, ref, dtype, where):
    rtol, atol = _tolerance(dtype)
    for name, expected in ref.items():
        value = np.asarray(got[name]).astype(np.float64)
        expected = np.asarray(expected).astype(np.float64)
        assert not np.isnan(value).any(), f"{name}: NaN (an unwritten element?) [{where}]"
        np.testing.assert_allclose(value, expected, rtol=rtol,
                                   atol=atol * max(1.0, np.abs(expected).max()),
                                   err_msg=f"{name} [{where}]")


def _run_both(backend, shape, axis, dtype, flags):
    x, g, b, rm, rv, dy = make_inputs(shape, axis, dtype)
    kw = _kwargs(axis, **flags)
    ref = NumpyBackend()
    outs = []
    for impl in (backend, ref):
        fwd = impl.forward(x, g.copy(), b, rm.copy(), rv.copy(), **kw)
        step = impl.backward(x, g.copy(), b, rm.copy(), rv.copy(), dy, **kw)
        outs.append(({k: np.array(v) for k, v in fwd.items()},
                     {k: np.array(v) for k, v in step.items()}))
    return outs


@pytest.fixture(scope="module")
def emulated():
    from backends.cuda import emulation

    try:
        return emulation.factory()
    except emulation.EmulationUnavailable as exc:
        pytest.skip(str(exc))


@needs_cxx
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, axis", EMULATED_SHAPES, ids=lambda v: str(v))
def test_emulated_kernels_match_the_numpy_backend(emulated, shape, axis, dtype):
    flags = dict(training=True, fix_gamma=False, use_global_stats=False, output_mean_var=True)
    (fwd, step), (ref_fwd, ref_step) = _run_both(emulated, shape, axis, dtype, flags)
    _compare(fwd, ref_fwd, dtype, f"forward {shape} axis {axis} {dtype}")
    _compare(step, ref_step, dtype, f"step {shape} axis {axis} {dtype}")


@needs_cxx
@pytest.mark.parametrize("flags", ALL_FLAGS, ids=lambda f: "-".join(k for k, v in f.items() if v))
def test_emulated_kernels_every_flag_combination(emulated, flags):
    (fwd, step), (ref_fwd, ref_step) = _run_both(emulated, (3, 4, 40), 1, "float32", flags)
    _compare(fwd, ref_fwd, "float32", f"forward {flags}")
    _compare(step, ref_step, "float32", f"step {flags}")


def test_emulated_shapes_reach_the_two_stage_reduction():
    from backends.cuda.emulation import EMULATED_DEVICE

    splits = [plan.plan(plan.geometry(s, a % len(s)), "float32", EMULATED_DEVICE).splits
              for s, a in EMULATED_SHAPES[:2] + EMULATED_SHAPES[3:4]]
    assert all(n > 1 for n in splits), splits


@needs_cxx
@pytest.mark.parametrize("shape, axis", [EMULATED_SHAPES[0], EMULATED_SHAPES[3]], ids=str)
def test_emulated_results_do_not_depend_on_the_block_order(shape, axis):
    """Every reduction order is fixed by the geometry: running the grid's blocks in another
    order (which changes which block finishes a channel) gives the same bits."""
    from backends.cuda import emulation

    results = []
    for order in ("natural", "reversed", "shuffled"):
        backend = CudaBackend(runtime=emulation.EmulatedRuntime(block_order=order))
        (fwd, step), _ = _run_both(backend, shape, axis, "float32",
                                   dict(training=True, fix_gamma=False, use_global_stats=False,
                                        output_mean_var=True))
        results.append({**{f"fwd.{k}": v for k, v in fwd.items()},
                        **{f"step.{k}": v for k, v in step.items()}})
    for other in results[1:]:
        for name, value in results[0].items():
            assert value.tobytes() == other[name].tobytes(), name


@needs_cxx
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("use_global_stats", [True, False])
def test_emulated_cudnn_flavour_matches_its_reference(dtype, training, use_global_stats):
    from backends.cuda import emulation

    backend = emulation.cudnn_factory()
    shape, axis = (6, 5, 33), 1
    x, g, b, rm, rv, dy = make_inputs(shape, axis, dtype)
    kw = _kwargs(axis, training=training, use_global_stats=use_global_stats)
    got_fwd = backend.forward(x, g.copy(), b, rm.copy(), rv.copy(), **kw)
    got_step = backend.backward(x, g.copy(), b, rm.copy(), rv.copy(), dy, **kw)
    ref_fwd = semantics.cudnn_reference(x, g.copy(), b, rm, rv, **kw)
    ref_step = semantics.cudnn_reference(x, g.copy(), b, rm, rv, dy, **kw)
    _compare(got_fwd, ref_fwd, dtype, f"cudnn forward training={training}")
    _compare(got_step, ref_step, dtype, f"cudnn step training={training}")


@needs_cxx
def test_emulated_constant_and_non_finite_channels(emulated):
    """A constant channel has var = 0 exactly (y = beta); Inf makes the mean IEEE Inf and the
    variance NaN; eps = 0 with var = 0 gives invstd = 0."""
    x = np.full((4, 3, 10), 7.25, dtype=np.float32)
    x[1, 1, 3] = np.inf
    x[2, 2, 4] = np.nan
    g, b = np.ones(3, np.float32), np.array([0.5, -1, 2], np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    out = emulated.forward(x, g, b, rm, rv, **_kwargs(1, eps=0.0))
    assert out["mean"][0] == np.float32(7.25) and out["invstd"][0] == 0
    np.testing.assert_array_equal(out["y"][:, 0], np.float32(0.5))
    assert out["mean"][1] == np.inf and np.isnan(out["invstd"][1])
    assert np.isnan(out["mean"][2]) and np.isnan(out["y"][:, 1:]).all()


# --- 3. the kernels on a GPU ------------------------------------------------------------------

needs_gpu = pytest.mark.skipif(
    runtime.unavailable_reason() is not None,
    reason=f"needs a CUDA GPU (sm_80+) with CuPy: {runtime.unavailable_reason()}")


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, axis", EMULATED_SHAPES + [((32, 64, 56, 56), 1),
                                                           ((32, 56, 56, 64), 3)], ids=str)
def test_gpu_matches_the_numpy_backend(shape, axis, dtype):
    flags = dict(training=True, fix_gamma=False, use_global_stats=False, output_mean_var=True)
    (fwd, step), (ref_fwd, ref_step) = _run_both(CudaBackend(), shape, axis, dtype, flags)
    _compare(fwd, ref_fwd, dtype, f"GPU forward {shape} axis {axis} {dtype}")
    _compare(step, ref_step, dtype, f"GPU step {shape} axis {axis} {dtype}")


@needs_gpu
@pytest.mark.parametrize("shape, axis", [((64, 32, 56, 56), 1), ((64, 56, 56, 32), 3)], ids=str)
def test_gpu_results_are_bitwise_reproducible(shape, axis):
    backend = CudaBackend()
    flags = dict(training=True, fix_gamma=False, use_global_stats=False, output_mean_var=True)
    first, _ = _run_both(backend, shape, axis, "float32", flags)
    second, _ = _run_both(backend, shape, axis, "float32", flags)
    for a, b in zip(first, second):
        for name in a:
            assert a[name].tobytes() == b[name].tobytes(), name


# --- the benchmark's wiring, on the CPU emulation and PyTorch CPU -----------------------------


@needs_cxx
@pytest.mark.parametrize("label, shape, axis, dtype", [
    ("NCHW", (4, 6, 5, 8), 1, "float32"), ("NHWC", (4, 5, 8, 6), 3, "float32"),
    ("NCHW", (4, 6, 5, 8), 1, "bfloat16"), ("2-D", (64, 24), 1, "float32")])
def test_benchmark_rows_agree_with_torch(label, shape, axis, dtype):
    """backends.bench_cuda times what it should: its launches (the statistics-free backward
    included) give PyTorch's y and dx on the same tensors."""
    torch = pytest.importorskip("torch")
    from backends import bench_cuda
    from backends.bench import Shape
    from backends.cuda import emulation

    p = bench_cuda.make_problem(torch, Shape(label, shape, axis, dtype), device="cpu")
    ours = bench_cuda.Ours(emulation.EmulatedRuntime(), torch, p)
    theirs, torch_out = bench_cuda.torch_calls(torch, p)
    limit = 1e-5 if dtype == "float32" else 2**-7
    for op in ("fwd_train", "backward"):
        assert bench_cuda.check(torch, ours, theirs, torch_out, p, op) < limit, op
    ours.calls["inference"]()  # runs
