"""Streaming gives the same bits: windowed inputs, chunked sums, block-by-block outputs and
the streamed case writer, each against the whole-array path, with blocks made small so that
small shapes cross many block boundaries."""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from bnspec.flags import Flags
from oracle import channels, inputs, pairwise
from oracle.casefile import render_case, write_case
from oracle.generate import build_case, write_case_files
from oracle.plan import user_plan
from oracle.reference import evaluate_reference_streamed

SHAPES = [((3, 2, 300), 1), ((3, 2, 300), -1), ((2, 5, 3, 40), 1), ((1, 3000), 0)]


@pytest.mark.parametrize("n", [1, 7, 8, 9, 128, 129, 1000, 4097, 65600])
@pytest.mark.parametrize("chunk", [8, 100, 1024])
def test_pairwise_sums_match_numpy(n, chunk):
    rng = np.random.default_rng(n)
    a = rng.standard_normal((3, n)) * np.exp(8 * rng.standard_normal((3, n)))
    sums = [a[:, j0:j1].sum(axis=1) for j0, j1 in pairwise.leaves(n, chunk)]
    assert pairwise.combine(n, chunk, sums).tobytes() == a.sum(axis=1).tobytes()


@pytest.mark.parametrize("family", inputs.WINDOWED)
@pytest.mark.parametrize("shape,axis", [((3, 4, 50), 1), ((3, 4, 50), -1), ((2, 70000), 0),
                                        ((2, 3, 4, 5), 2)])
def test_windowed_inputs_are_the_same_bits(monkeypatch, family, shape, axis):
    if family == "long" and shape != (2, 70000):
        pytest.skip("long needs M > 65536")
    if family != "long" and shape == (2, 70000):
        pytest.skip("one long shape is enough")
    whole = inputs.make_inputs(family, "float16", shape, axis, with_dy=True, seed=3, key="k")
    for chunk in ((5000, 70001) if family == "long" else (1, 7, 333)):
        monkeypatch.setattr(inputs, "GENERATE_CHUNK", chunk)
        part = inputs.make_inputs(family, "float16", shape, axis, with_dy=True, seed=3, key="k")
        for name, a in whole.items():
            assert part[name].dtype == a.dtype and part[name].tobytes() == a.tobytes(), name


def _call(family, dtype, shape, axis, op, flags, eps=1e-3):
    x = inputs.make_inputs(family, dtype, shape, axis, with_dy=op == "bwd", eps=eps, seed=1,
                           key=f"{family}{shape}")
    args = [x[n] for n in ("x", "gamma", "beta", "running_mean", "running_var")]
    return args, x.get("dy"), dict(flags=flags, eps=eps, momentum=0.9, axis=axis)


def _same(a, b, what):
    for key in ("hi", "lo", "rounded", "cond"):
        assert getattr(a, key).tobytes() == getattr(b, key).tobytes(), f"{what}.{key}"


@pytest.mark.parametrize("shape,axis", SHAPES)
@pytest.mark.parametrize("op", ["fwd", "bwd"])
@pytest.mark.parametrize("flags", [Flags(True, False, False, True), Flags(True, True, True, True)])
def test_blocks_give_the_whole_outputs(shape, axis, op, flags):
    args, dy, kw = _call("normal", "float32", shape, axis, op, flags)
    whole = evaluate_reference_streamed(*args, dy, **kw, chunk=1 << 30)
    for chunk in (64, 700):
        part = evaluate_reference_streamed(*args, dy, **kw, chunk=chunk)
        for name, e in whole.items():
            a = e.collect() if isinstance(e, oracle.ExpectedBlocks) else e
            b = part[name]
            b = b.collect() if isinstance(b, oracle.ExpectedBlocks) else b
            _same(a, b, f"{name} chunk={chunk}")


@pytest.mark.parametrize("family", ["special", "constant", "f16_overflow", "tiny_var"])
def test_blocks_keep_special_values(family):
    shape = (2, 6, 300)
    for op in ("fwd", "bwd"):
        args, dy, kw = _call(family, "float16", shape, 1, op, Flags(True, False, False, True), 0.0)
        whole = oracle.evaluate(*args, dy, eps=0.0, momentum=0.9, axis=1, training=True,
                                fix_gamma=False, output_mean_var=True)
        part = evaluate_reference_streamed(*args, dy, **kw | {"eps": 0.0}, chunk=50)
        for name, e in whole.items():
            b = part[name]
            _same(e, b.collect() if isinstance(b, oracle.ExpectedBlocks) else b, name)


def test_layout_tiles_cover_the_output_in_order():
    for shape, axis in SHAPES + [((5, 3, 2), 1), ((6, 7), 1)]:
        for chunk in (1, 5, 64, 10**6):
            a = np.arange(np.prod(shape)).reshape(shape)
            src = channels.ChannelSource(a, None, axis, chunk)
            pieces = [channels.tile_to_layout(src.block("x", *t), src.Q)
                      for t in channels.layout_tiles(shape, axis, chunk)]
            assert np.array_equal(np.concatenate(pieces), a.ravel().astype(np.float64))


@pytest.mark.parametrize("op_flags", ["fwd", "bwd"])
def test_streamed_writer_gives_the_same_bytes(tmp_path, monkeypatch, op_flags):
    monkeypatch.setattr(channels, "CHUNK", 1000)
    specs = [next(s for s in user_plan(shape, dtype, axis, flags=flags) if s.op == op_flags)
             for shape, dtype, axis, flags in (
                 ((3, 2, 1100), "float16", -1, "train,freegamma,batchstats,nomeanvar"),
                 ((1, 5000), "float32", 0, "train,freegamma,globalstats,meanvar"))]
    for spec in specs:
        case, _ = build_case(spec)
        want = render_case(case, "cmd")
        got = write_case_files(spec, tmp_path, "cmd")
        assert set(got) == set(want)
        for name, data in want.items():
            assert (tmp_path / name).read_bytes() == data, f"{spec.id}: {name}"
        # write_case of the in-memory case streams too, to the same bytes
        write_case(case, tmp_path / "again", "cmd")
        for name, data in want.items():
            assert (tmp_path / "again" / name).read_bytes() == data


def test_streamed_writer_gives_the_same_bytes_in_the_large_layout(tmp_path, monkeypatch):
    from oracle.casefile import load_case, read, write

    for module in (write, read):
        monkeypatch.setattr(module, "COMPACT_FROM", 4200)
    monkeypatch.setattr(channels, "CHUNK", 1000)
    spec = next(s for s in user_plan((2, 2300), "float32", 1,
                                     flags="train,freegamma,batchstats,meanvar") if s.op == "bwd")
    case, _ = build_case(spec)
    want = render_case(case, "cmd")
    assert b"layout: hi_lo_cond" in want[f"{spec.id}.yaml"]
    write_case_files(spec, tmp_path, "cmd")
    for name, data in want.items():
        assert (tmp_path / name).read_bytes() == data, name
    loaded = load_case(tmp_path / f"{spec.id}.yaml")
    for name, e in case.expected.items():
        got = loaded.expected[name]
        assert np.array_equal(np.asarray(got.rounded, dtype=np.float64), e.rounded,
                              equal_nan=True), name
