"""Checks of the compiled CPU backend (backends/cpu) that the conformance suite does not make:
agreement with a long-double evaluation of the spec formulas on every kernel set, bit-identical
results for 1, 2 and 3 threads and for any buffer alignment, validation before any write,
thread safety of concurrent calls, and the GIL released during compute.

The whole module is skipped (with the build instructions as the reason) when the extension is
not built.
"""
from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import backends.cpu as cpu
from bnspec.flags import DTYPES, numpy_dtype

try:
    cpu.extension()
except ImportError as error:  # pragma: no cover - depends on the build
    pytest.skip(str(error), allow_module_level=True)

DTYPE_NAMES = ("float64", "float32", "float16", "bfloat16")
UNIT = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}
#: half the smallest subnormal of each dtype: the absolute floor of a rounding error
FLOOR = {"float64": 2.0**-1075, "float32": 2.0**-150, "float16": 2.0**-25, "bfloat16": 2.0**-134}
FLAGS = tuple(itertools.product((True, False), repeat=4))  # training, fix_gamma, ugs, omv

# (shape, axis): channel-first with short and long rows, channel-last, middle axes, rank 2..5,
# one channel, many channels, chunks split inside a row, a row shorter than a vector
SHAPES = (
    ((4, 3, 5, 5), 1), ((4, 3, 5, 5), -1), ((6, 5), 1), ((6, 5), 0), ((2, 3, 4, 5, 6), 2),
    ((2, 9, 2500), 1), ((40, 2, 3), 0), ((1, 1), 0), ((300, 37), 1), ((2, 1100), 1),
    ((3, 7, 2), 1),
)


@pytest.fixture(autouse=True)
def _restore_settings():
    isa, threads = cpu.get_isa(), cpu.get_num_threads()
    yield
    cpu.set_isa(isa)
    cpu.set_num_threads(threads)


def make_inputs(shape, axis, dtype, family="normal", seed=0):
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape)
    if family == "offset":
        data = data + (1e4 if dtype in ("float64", "float32") else 100.0)
    elif family == "constant":
        data = np.full(shape, 3.0)
    channels = shape[axis]
    pdt = numpy_dtype(DTYPES[dtype].param)
    return dict(
        x=data.astype(numpy_dtype(dtype)),
        gamma=rng.uniform(0.5, 2, channels).astype(pdt),
        beta=rng.standard_normal(channels).astype(pdt),
        running_mean=rng.standard_normal(channels).astype(pdt),
        running_var=rng.uniform(0.5, 2, channels).astype(pdt),
        dy=rng.standard_normal(shape).astype(numpy_dtype(dtype)),
    )


def kwargs_of(flags, axis, eps=1e-3, momentum=0.9):
    training, fix_gamma, ugs, omv = flags
    return dict(eps=eps, momentum=momentum, fix_gamma=fix_gamma, use_global_stats=ugs,
                output_mean_var=omv, axis=axis, training=training)


def copies(inputs):
    return {k: v.copy() for k, v in inputs.items()}


def run_forward(inputs, **kw):
    a = copies(inputs)
    a.pop("dy")
    return cpu.CpuBackend().forward(**a, **kw)


def run_backward(inputs, **kw):
    return cpu.CpuBackend().backward(**copies(inputs), **kw)


def reference(inputs, dtype, eps, momentum, fix_gamma, use_global_stats, output_mean_var, axis,
              training):
    """Return {output: (value, cond)} from the spec formulas in long double (oracle.condition's
    condition scales)."""
    ld = np.longdouble
    x = inputs["x"].astype(np.float64).astype(ld)
    dy = inputs["dy"].astype(np.float64).astype(ld)
    rm = inputs["running_mean"].astype(ld)
    rv = inputs["running_var"].astype(ld)
    ax = axis % x.ndim
    red = tuple(i for i in range(x.ndim) if i != ax)
    shp = [1] * x.ndim
    shp[ax] = -1

    def b(v):
        return np.asarray(v, ld).reshape(shp)

    eps_d = ld(float(np.asarray(eps, np.float64).astype(numpy_dtype(dtype))))
    batch = training and not use_global_stats
    m_count = x.size // x.shape[ax]
    if batch:
        mean = x.mean(red)
        var = ((x - b(mean)) ** 2).mean(red)
        with np.errstate(divide="ignore"):
            invstd = np.where(var + eps_d == 0, ld(0), 1 / np.sqrt(var + eps_d))
    else:
        mean, var = rm, None
        invstd = 1 / np.sqrt(rv + eps_d)
    g = np.ones_like(mean) if fix_gamma else inputs["gamma"].astype(ld)
    beta = inputs["beta"].astype(ld)
    mabs = np.abs(x).mean(red)
    y = (x - b(mean)) * b(invstd) * b(g) + b(beta)
    cond_y = ((np.abs(x) + np.abs(b(mean)) + (b(mabs) if batch else 0)) * np.abs(b(invstd * g))
              + np.abs(b(beta)))
    out = {"y": (y, cond_y), "mean": (mean, mabs), "invstd": (invstd, invstd)}
    d = x - b(mean)
    sdy, dotp = dy.sum(red), (d * dy).sum(red)
    w = invstd * g
    if batch:
        k = dotp * invstd**2 / m_count
        dx = (dy - b(sdy / m_count) - d * b(k)) * b(w)
        cond_dx = np.abs(b(w)) * (np.abs(dy) + b(np.abs(dy).mean(red))
                                  + (np.abs(d) + b(mabs)) * np.abs(b(k))
                                  + np.abs(d) * b(invstd**2 * (np.abs(d) * np.abs(dy)).mean(red)))
    else:
        dx = dy * b(w)
        cond_dx = np.abs(dx)
    out["dx"] = (dx, cond_dx)
    out["dgamma"] = (np.zeros_like(dotp) if fix_gamma else dotp * invstd,
                     invstd * ((np.abs(d) * np.abs(dy)).sum(red) + mabs * np.abs(dy).sum(red)))
    out["dbeta"] = (sdy, np.abs(dy).sum(red))
    m = ld(float(np.float32(momentum)))
    if batch:
        with np.errstate(divide="ignore"):
            var_back = np.where(invstd == 0, ld(np.inf), 1 / invstd**2 - ld(eps))
        out["running_mean_after"] = (rm * m + mean * (1 - m), np.abs(rm) * m + (1 - m) * mabs)
        out["running_var_after"] = (rv * m + var_back * (1 - m),
                                    np.abs(rv) * m + (1 - m) * (var + eps_d + ld(eps)))
    else:
        out["running_mean_after"] = (rm, np.zeros_like(rm))
        out["running_var_after"] = (rv, np.zeros_like(rv))
    return out


def error_units(got, value, cond, dtype):
    """Return the largest |got - value| / (u * max(cond, |value|)); inf on a special-value
    mismatch."""
    got = np.asarray(got).astype(np.float64).astype(np.longdouble)
    nan = np.isnan(value)
    if (np.isnan(got) != nan).any():
        return np.inf
    inf = np.isinf(value)
    if (got[inf] != value[inf]).any():
        return np.inf
    fin = ~nan & ~inf
    if not fin.any():
        return 0.0
    err = np.abs(got[fin] - value[fin])
    tol = UNIT[dtype] * np.maximum(cond[fin], np.abs(value[fin])) + FLOOR[dtype]
    return float((err / tol).max())


#: limits in units of u * cond, well inside the strict table (8 for float64/float32 outputs,
#: 1.5 for 16-bit y/dx): 16-bit data are computed in float32 and round once; float64 and
#: float32 data pay a few roundings of the elementwise formula in their own precision (float32
#: lanes: the mean, scale, shift, a, k and w rounded to float32, then x - mean, the product and
#: the sum each rounded: at most about 3 u cond_y and 4 u cond_dx to first order).
LIMIT_DATA = {"float64": 4.0, "float32": 4.0, "float16": 1.0, "bfloat16": 1.0}
LIMIT_STATS = 4.0


def check_case(inputs, dtype, flags, axis):
    kw = kwargs_of(flags, axis)
    expected = reference(inputs, dtype, **kw)
    pdt = DTYPES[dtype].param
    fwd = run_forward(inputs, **kw)
    bwd = run_backward(inputs, **kw)
    results = {"y": error_units(fwd["y"], *expected["y"], dtype),
               "dx": error_units(bwd["dx"], *expected["dx"], dtype)}
    if flags[3]:
        results["mean"] = error_units(fwd["mean"], *expected["mean"], pdt)
        results["invstd"] = error_units(fwd["invstd"], *expected["invstd"], pdt)
    for name in ("dgamma", "dbeta"):
        results[name] = error_units(bwd[name], *expected[name], pdt)
    for name in ("running_mean", "running_var"):
        results[name] = error_units(bwd[name], *expected[name + "_after"], pdt)
        assert np.array_equal(fwd[name], inputs[name]), f"forward changed {name}"
    limits = {k: (LIMIT_DATA[dtype] if k in ("y", "dx") else LIMIT_STATS) for k in results}
    bad = {k: v for k, v in results.items() if not v <= limits[k]}
    assert not bad, f"errors in units of u*cond {bad} > {limits} [{dtype} {flags} axis={axis}]"


# --- agreement with the spec formulas -------------------------------------------------------


@pytest.mark.parametrize("isa", cpu.available_isas())
@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("shape,axis", SHAPES, ids=[f"{s}-ax{a}" for s, a in SHAPES])
def test_matches_spec_formulas(isa, dtype, shape, axis):
    cpu.set_isa(isa)
    for family in ("normal", "offset", "constant"):
        inputs = make_inputs(shape, axis, dtype, family)
        for flags in FLAGS:
            check_case(inputs, dtype, flags, axis)


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("layout", ["first", "last"])
def test_long_reduction_with_large_offset(dtype, layout):
    """More than 65536 elements per channel on a large offset: the chunked two-pass statistics
    keep mean, invstd and the running statistics within a few units."""
    shape, axis = ((70000, 2), 1) if layout == "last" else ((3, 2, 30000), 1)
    inputs = make_inputs(shape, axis, dtype, "offset", seed=3)
    check_case(inputs, dtype, (True, False, False, True), axis)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("shape", [(2, 3, 3000), (90, 3, 49)], ids=["long-rows", "short-rows"])
def test_16_bit_statistics_when_a_chunk_starts_on_an_outlier(dtype, shape):
    """16-bit statistics run in float32 lanes. Shifted by a chunk's first value K (the float32
    one-pass kernel's choice), a chunk whose rows start on an outlier far from a tight cluster
    would make q = sum (x - K)^2 about n times M2, and float32 rounding of q would cost M2 a
    relative n u_32: the two-pass narrow kernel must stay within LIMIT_STATS."""
    inputs = make_inputs(shape, 1, dtype, "normal", seed=5)
    x = inputs["x"].astype(np.float64) * 0.25 + 60.0
    x[:, :, 0] = -900.0            # every row (so every chunk) starts on the outlier
    inputs["x"] = x.astype(numpy_dtype(dtype))
    check_case(inputs, dtype, (True, False, False, True), 1)


def test_special_values():
    x = np.random.default_rng(1).standard_normal((4, 5, 6)).astype(np.float32)
    x[0, 0, 0] = np.nan
    x[1, 1, 2] = np.inf
    x[:, 2, :] = 7.0
    c = 5
    gamma, beta = np.full(c, 2.0, np.float32), np.arange(c, dtype=np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    out = cpu.CpuBackend().forward(x, gamma, beta, rm, rv, eps=0.0, momentum=0.9,
                                   fix_gamma=False, use_global_stats=False,
                                   output_mean_var=True, axis=1, training=True)
    assert np.isnan(out["y"][:, 0]).all() and np.isnan(out["mean"][0])
    assert out["mean"][1] == np.inf and np.isnan(out["invstd"][1]) and np.isnan(out["y"][:, 1]).all()
    assert out["invstd"][2] == 0 and (out["y"][:, 2] == beta[2]).all()  # eps = 0, var = 0
    assert np.isfinite(out["y"][:, 3:]).all()
    dy = np.ones_like(x)
    back = cpu.CpuBackend().backward(x, gamma, beta, rm, rv, dy, eps=0.0, momentum=0.9,
                                     fix_gamma=False, use_global_stats=False,
                                     output_mean_var=False, axis=1, training=True)
    assert back["running_var"][2] == np.inf  # 1/invstd^2 - eps with invstd = 0
    assert np.isnan(back["running_var"][0]) and np.isfinite(back["running_var"][3:]).all()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("shape,axis", [((3, 96, 50), 1), ((300, 96), 1)],
                         ids=["channel-first", "channel-last-wide"])
def test_special_values_where_the_shifted_one_pass_statistics_break(dtype, shape, axis):
    """The one-pass statistics shift by a chunk's or block's first value K: an inf there makes
    x - K = inf - inf. Such channels must still give the IEEE mean (inf, -inf, NaN) and a NaN
    variance, like the two-pass path; the other channels stay finite."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    at = lambda c, i: (i, c) if axis == len(shape) - 1 else (0, c, i)  # noqa: E731
    x[at(0, 0)] = np.inf            # the very first value of channel 0: K = inf
    x[at(1, 0)] = -np.inf           # K = -inf
    x[at(2, 7)] = np.inf            # inf later in the channel
    x[at(3, 0)] = np.inf            # inf and -inf: NaN mean
    x[at(3, 9)] = -np.inf
    x[at(4, 0)] = np.nan            # NaN as K
    x = x.astype(numpy_dtype(dtype))
    c = shape[axis]
    out = cpu.CpuBackend().forward(
        x, np.ones(c, np.float32), np.zeros(c, np.float32), np.zeros(c, np.float32),
        np.ones(c, np.float32), eps=1e-3, momentum=0.9, fix_gamma=False,
        use_global_stats=False, output_mean_var=True, axis=axis, training=True)
    mean, invstd = out["mean"], out["invstd"]
    assert mean[0] == np.inf and mean[1] == -np.inf and mean[2] == np.inf, mean[:3]
    assert np.isnan(mean[3]) and np.isnan(mean[4])
    assert np.isnan(invstd[:5]).all()
    with np.errstate(invalid="ignore"):  # inf - inf in channel 3 of the reference: NaN there
        ref = np.asarray(x, np.float64).mean(axis=tuple(i for i in range(len(shape))
                                                        if i != axis))
    assert np.allclose(mean[5:], ref[5:], rtol=1e-6, atol=1e-6) and np.isfinite(invstd[5:]).all()


def test_fix_gamma_overwrites_gamma_in_place():
    inputs = make_inputs((3, 4, 5), 1, "float32")
    gamma = inputs["gamma"].copy()
    cpu.CpuBackend().forward(inputs["x"], gamma, inputs["beta"], inputs["running_mean"],
                             inputs["running_var"], **kwargs_of((False, True, False, False), 1))
    assert (gamma == 1).all()


def test_float16_output_rounds_to_nearest_even():
    """y for float16 data is the float32 value rounded once to nearest even: with x exactly
    representable results, y must equal the correctly rounded value."""
    x = (np.arange(2048, dtype=np.float64) / 64).reshape(2, 1024).astype(np.float16)
    c = 1024
    rm = np.zeros(c, np.float32)
    rv = np.full(c, 1.0 - 2.0**-10, np.float32)  # rv + DType(eps) == 1 exactly in float16 eps
    eps = 2.0**-10
    beta = np.full(c, 2.0**-12, np.float32)  # a tie for float16 values in [1, 2)
    out = cpu.CpuBackend().forward(x, np.ones(c, np.float32), beta, rm, rv, eps=eps,
                                   momentum=0.9, fix_gamma=True, use_global_stats=True,
                                   output_mean_var=False, axis=1, training=False)
    exact = x.astype(np.float64) + 2.0**-12
    assert np.array_equal(out["y"], exact.astype(np.float16))  # numpy rounds float64 -> f16 RNE


# --- determinism ------------------------------------------------------------------------------

DETERMINISM_SHAPES = (((8, 16, 7, 7), 1), ((2, 3, 5000), 1), ((5000, 24), 1),
                      ((33, 2100), 1), ((1, 70000), 0),
                      # wide channel-last rows: row-major block kernels with a partial last
                      # vector and a short last run of rows, channels finished by several threads
                      ((300, 1003), 1))


def all_outputs(inputs, flags, axis):
    kw = kwargs_of(flags, axis)
    fwd = run_forward(inputs, **kw)
    bwd = run_backward(inputs, **kw)
    return {**{f"fwd_{k}": v for k, v in fwd.items()}, **{f"bwd_{k}": v for k, v in bwd.items()}}


def assert_identical(a, b, what):
    for k in a:
        assert np.asarray(a[k]).tobytes() == np.asarray(b[k]).tobytes(), f"{k} differs: {what}"


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("shape,axis", DETERMINISM_SHAPES,
                         ids=[f"{s}-ax{a}" for s, a in DETERMINISM_SHAPES])
def test_bit_identical_for_1_2_3_threads(dtype, shape, axis):
    inputs = make_inputs(shape, axis, dtype, "offset", seed=7)
    for flags in ((True, False, False, True), (False, False, False, True), (True, True, True, True)):
        results = []
        for n in (1, 2, 3):
            cpu.set_num_threads(n)
            results.append(all_outputs(inputs, flags, axis))
        assert_identical(results[0], results[1], f"1 vs 2 threads {dtype} {shape}")
        assert_identical(results[0], results[2], f"1 vs 3 threads {dtype} {shape}")


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("shape,axis", DETERMINISM_SHAPES[:4],
                         ids=[f"{s}-ax{a}" for s, a in DETERMINISM_SHAPES[:4]])
def test_independent_of_buffer_alignment(dtype, shape, axis):
    """x and dy as views at every element offset into larger buffers give identical bits."""
    inputs = make_inputs(shape, axis, dtype, "normal", seed=11)
    n = inputs["x"].size
    base = None
    for offset in range(0, 17):
        moved = dict(inputs)
        for name in ("x", "dy"):
            buf = np.zeros(n + 32, dtype=inputs[name].dtype)
            buf[offset:offset + n] = inputs[name].ravel()
            moved[name] = buf[offset:offset + n].reshape(shape)
        out = all_outputs(moved, (True, False, False, True), axis)
        if base is None:
            base = out
        else:
            assert_identical(base, out, f"offset {offset} {dtype} {shape}")


@pytest.mark.parametrize("isa", cpu.available_isas())
@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("inner", [1, 3, 5, 7, 9, 15, 17, 49])
def test_row_tails_write_nothing_past_the_output(isa, dtype, inner):
    """Rows shorter than a vector or with a partial last vector (odd 16-bit tails included):
    the masked loads and stores touch exactly the tensor (sentinels around the output stay),
    and every element, tails included, is the spec formula's value within LIMIT_DATA."""
    cpu.set_isa(isa)
    ext = cpu.extension()
    shape = (3, 2, inner)
    inputs = make_inputs(shape, 1, dtype, "normal", seed=inner)
    x = inputs["x"]
    n, item = x.size, x.itemsize
    whole = np.frombuffer(b"\xa5" * (item * (n + 64)), dtype=x.dtype).copy()
    y = whole[16:16 + n].reshape(shape)
    pdt = inputs["gamma"].dtype
    mean, invstd = np.zeros(2, pdt), np.zeros(2, pdt)
    ext.forward(cpu.DTYPE_CODES[dtype], cpu._storage(x), inputs["gamma"], inputs["beta"],
                inputs["running_mean"], inputs["running_var"], cpu._storage(y), mean, invstd,
                1, 1e-3, False, False)
    raw = whole.view(np.uint8)
    assert (raw[:16 * item] == 0xA5).all() and (raw[(16 + n) * item:] == 0xA5).all()
    expected = reference(inputs, dtype, **kwargs_of((False, False, False, False), 1))
    assert error_units(y, *expected["y"], dtype) <= LIMIT_DATA[dtype]


# --- validation before any write --------------------------------------------------------------


def training_step_kwargs():
    return kwargs_of((True, False, False, False), 1)


def test_bad_parameter_shape_raises_before_writing():
    inputs = make_inputs((2, 3, 4), 1, "float32")
    rm, rv = inputs["running_mean"].copy(), inputs["running_var"].copy()
    with pytest.raises(ValueError, match="gamma"):
        cpu.CpuBackend().backward(inputs["x"], np.ones(4, np.float32), inputs["beta"], rm, rv,
                                  inputs["dy"], **training_step_kwargs())
    assert np.array_equal(rm, inputs["running_mean"]) and np.array_equal(rv, inputs["running_var"])


def test_bad_dtype_raises_type_error():
    inputs = make_inputs((2, 3, 4), 1, "float16")
    with pytest.raises(TypeError, match="gamma"):
        cpu.CpuBackend().forward(inputs["x"], inputs["gamma"].astype(np.float16), inputs["beta"],
                                 inputs["running_mean"], inputs["running_var"],
                                 **kwargs_of((True, False, False, False), 1))
    with pytest.raises(TypeError, match="x"):
        cpu.CpuBackend().forward(inputs["x"].astype(np.int32), inputs["gamma"], inputs["beta"],
                                 inputs["running_mean"], inputs["running_var"],
                                 **kwargs_of((True, False, False, False), 1))


def test_non_contiguous_input_is_rejected_untouched():
    inputs = make_inputs((3, 4, 6), 1, "float32")
    rm, rv, gamma = (inputs[k].copy() for k in ("running_mean", "running_var", "gamma"))
    x = np.asfortranarray(inputs["x"])
    with pytest.raises(ValueError, match="contiguous"):
        cpu.CpuBackend().backward(x, gamma, inputs["beta"], rm, rv, inputs["dy"],
                                  **kwargs_of((True, True, False, False), 1))
    assert np.array_equal(rm, inputs["running_mean"]) and np.array_equal(gamma, inputs["gamma"])


def test_overlapping_running_stats_are_rejected_untouched():
    inputs = make_inputs((3, 4, 6), 1, "float32")
    buf = np.concatenate([inputs["running_mean"], inputs["running_var"]])
    snapshot = buf.copy()
    rm, rv = buf[0:4], buf[1:5]  # overlapping views
    with pytest.raises(ValueError, match="overlaps"):
        cpu.CpuBackend().backward(inputs["x"], inputs["gamma"], inputs["beta"], rm, rv,
                                  inputs["dy"], **training_step_kwargs())
    assert np.array_equal(buf, snapshot)


def test_read_only_running_stats_are_rejected():
    inputs = make_inputs((3, 4, 6), 1, "float32")
    rm = inputs["running_mean"].copy()
    rm.flags.writeable = False
    with pytest.raises(ValueError, match="running_mean"):
        cpu.CpuBackend().backward(inputs["x"], inputs["gamma"], inputs["beta"], rm,
                                  inputs["running_var"].copy(), inputs["dy"],
                                  **training_step_kwargs())


def test_non_native_byte_order_is_rejected():
    inputs = make_inputs((3, 4, 6), 1, "float32")
    inputs["x"] = inputs["x"].astype(">f4")
    with pytest.raises(ValueError, match="byte order"):
        run_forward(inputs, **kwargs_of((True, False, False, False), 1))


@pytest.mark.parametrize("bad", [dict(axis=3), dict(eps=-1.0), dict(momentum=float("nan"))])
def test_bad_scalars_raise_value_error(bad):
    inputs = make_inputs((2, 3, 4), 1, "float32")
    kw = {**kwargs_of((True, False, False, False), 1), **bad}
    with pytest.raises(ValueError):
        run_forward(inputs, **kw)


def test_set_isa_and_threads_validate():
    with pytest.raises(ValueError):
        cpu.set_isa("sse9")
    with pytest.raises(ValueError):
        cpu.set_num_threads(-1)


# --- threads and the GIL ------------------------------------------------------------------------


def test_concurrent_calls_equal_serial_results():
    cases = [make_inputs(shape, axis, dtype, seed=i)
             for i, ((shape, axis), dtype) in enumerate(
                 itertools.product(DETERMINISM_SHAPES[:3], DTYPE_NAMES))]
    axes = [axis for (shape, axis), _ in itertools.product(DETERMINISM_SHAPES[:3], DTYPE_NAMES)]
    flags = (True, False, False, True)
    serial = [all_outputs(c, flags, a) for c, a in zip(cases, axes)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            concurrent = list(pool.map(lambda ca: all_outputs(ca[0], flags, ca[1]),
                                       zip(cases, axes)))
            for s, c in zip(serial, concurrent):
                assert_identical(s, c, "concurrent vs serial")


def test_gil_is_released_during_compute():
    x = np.random.default_rng(0).standard_normal((16, 64, 128, 128)).astype(np.float32)
    c = x.shape[1]
    args = (x, np.ones(c, np.float32), np.zeros(c, np.float32), np.zeros(c, np.float32),
            np.ones(c, np.float32))
    cpu.set_num_threads(1)
    backend = cpu.CpuBackend()
    start = time.perf_counter()
    backend.forward(*args, **kwargs_of((True, False, False, False), 1))
    one_call = time.perf_counter() - start
    done = threading.Event()

    def work():
        backend.forward(*args, **kwargs_of((True, False, False, False), 1))
        done.set()

    worker = threading.Thread(target=work)
    ticks = 0
    worker.start()
    time.sleep(0.001)
    start = time.perf_counter()
    while not done.is_set():
        ticks += 1
    busy = time.perf_counter() - start
    worker.join()
    # With the GIL held for the whole call this loop could not run until the call returned.
    assert busy > 0.3 * one_call and ticks > 1000, (ticks, busy, one_call)


def test_ordinary_stores_give_the_same_bits_as_non_temporal_ones(tmp_path):
    """BN_CPU_STREAM=1 (read when the extension loads) writes outputs of 8 MiB and more with
    non-temporal stores; y and dx must not change by a bit."""
    import os
    import subprocess
    import sys

    shape = (4, 64, 96, 96)  # 9 MiB of float32 (streamed with the flag), planes of 36 KiB
    script = (
        "import sys, numpy as np, backends.cpu as cpu\n"
        "rng = np.random.default_rng(5)\n"
        f"x = rng.standard_normal({shape}).astype(np.float32)\n"
        "dy = rng.standard_normal(x.shape).astype(np.float32)\n"
        "c = x.shape[1]\n"
        "p = lambda v: np.full(c, v, np.float32)\n"
        "kw = dict(eps=1e-3, momentum=0.9, fix_gamma=False, use_global_stats=False,\n"
        "          output_mean_var=False, axis=1, training=True)\n"
        "b = cpu.CpuBackend()\n"
        "y = b.forward(x, p(1.5), p(0.25), p(0), p(1), **kw)['y']\n"
        "dx = b.backward(x, p(1.5), p(0.25), p(0), p(1), dy, **kw)['dx']\n"
        "np.save(sys.argv[1], np.stack([y, dx]))\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    outs = []
    for flag in ("1", "0"):
        out = tmp_path / f"stream{flag}.npy"
        env = {**os.environ, "BN_CPU_STREAM": flag}
        subprocess.run([sys.executable, "-c", script, str(out)], cwd=root, env=env, check=True)
        outs.append(np.load(out))
    assert outs[0].tobytes() == outs[1].tobytes()
