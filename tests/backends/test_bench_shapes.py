"""`python -m backends.bench --shapes SET` benchmarks every layer of a shape set."""
import pytest

from backends.bench import main, shape_set_shapes
from bnspec.shape_sets import load_shape_set


def test_a_set_gives_one_row_shape_per_layer_layout_and_dtype():
    shapes = shape_set_shapes(load_shape_set("resnet50"), ["float32"])
    assert len(shapes) == 12 * 2
    first = [s for s in shapes if s.axis == 1]
    last = [s for s in shapes if s.axis == len(s.shape) - 1]
    assert len(first) == len(last) == 12
    assert first[0].shape == (32, 64, 112, 112) and last[0].shape == (32, 112, 112, 64)
    assert {s.dtype for s in shapes} == {"float32"}


def test_dtypes_need_a_set_and_must_be_in_it(capsys):
    with pytest.raises(SystemExit):
        main(["--dtypes", "float32"])
    assert "--dtypes needs --shapes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--shapes", "bert_base", "--dtypes", "bfloat16"])
    assert "bfloat16" in capsys.readouterr().err


def test_an_unknown_set_is_a_usage_error_naming_it(capsys):
    with pytest.raises(SystemExit):
        main(["--shapes", "resnet51"])
    assert "resnet51" in capsys.readouterr().err


def test_rows_and_ops_filters_pick_by_row_name_and_refuse_what_matches_nothing():
    from backends.bench import SHAPES, select_ops, select_rows

    picked = select_rows(SHAPES, "2-D,NHWC 32x56x56x64 float16")
    assert [(s.label, s.dtype) for s in picked] == [("2-D", "float32"), ("NHWC", "float16")]
    assert select_rows(SHAPES, None) == tuple(SHAPES)
    with pytest.raises(ValueError, match="'4-D'"):
        select_rows(SHAPES, "4-D")
    assert select_ops("backward,fwd_train") == ("backward", "fwd_train")
    with pytest.raises(ValueError, match="'fwd'"):
        select_ops("fwd")


def test_a_filter_that_matches_nothing_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        main(["--rows", "4-D"])
    assert "matches no shape" in capsys.readouterr().err


def test_issue_15_targets_name_each_miss():
    from backends.bench import target_misses

    assert target_misses("NCHW 32x64x56x56 float32", "fwd_train", 1.10, "1.00x") == []
    assert target_misses("NCHW 32x64x56x56 float32", "fwd_train", 1.11, "0.50x") == [
        "floor 1.11x > 1.1x"]
    assert target_misses("NHWC 32x56x56x64 float32", "backward", 1.01, "1.02x") == [
        "PyTorch 1.02x", "floor 1.01x > 1.0x"]
    assert target_misses("NHWC 32x56x56x64 float16", "backward", 1.20, "n/a") == []
    assert target_misses("NCHW 32x64x56x56 bfloat16", "inference", 1.30, "0.9x") == [
        "floor 1.30x > 1.25x"]
    assert target_misses("2-D 256x1024 float32", "backward", 5.0, "1.01x") == ["PyTorch 1.01x"]
