"""The scale tier's plan (oracle.plan_shapes) and ``python -m oracle.generate --shapes SET``."""
from __future__ import annotations

from pathlib import Path

import pytest

from bnspec.flags import ALL_FLAGS
from bnspec.shape_sets import load_shape_set
from oracle import generate
from oracle.casefile import load_case
from oracle.plan_shapes import SCALE_FLAGS, case_command, parse_ops, shape_set_plan

TINY_NET = Path(__file__).resolve().parents[1] / "conformance" / "data" / "tiny_net.yaml"


def test_the_default_selection_is_one_training_combination_fwd_and_bwd():
    specs = shape_set_plan(load_shape_set(TINY_NET))
    # 2 shapes x 2 layouts x 2 dtypes x 2 ops, one flag combination
    assert len(specs) == 16 == len({s.id for s in specs})
    assert {s.flags.tokens for s in specs} == {tuple(SCALE_FLAGS.split(","))}
    assert {s.op for s in specs} == {"fwd", "bwd"}
    assert {(s.shape, s.axis) for s in specs} == {
        ((2, 3, 4, 5), 1), ((2, 4, 5, 3), -1), ((8, 2, 19, 27), 1), ((8, 19, 27, 2), -1)}
    assert {s.dtype for s in specs} == {"float32", "float16"}


def test_selection_narrows_flags_dtypes_ops_and_layouts():
    shape_set = load_shape_set(TINY_NET)
    every = shape_set_plan(shape_set, flags="all")
    assert len(every) == 16 * len(ALL_FLAGS)
    some = shape_set_plan(shape_set, flags="train", dtypes="float16", ops="bwd",
                          layouts="channel_last")
    assert len(some) == 2 * 8  # 2 shapes x the 8 training combinations
    assert all(s.op == "bwd" and s.dtype == "float16" and s.axis == -1 and s.flags.training
               for s in some)


def test_rank_2_layouts_are_one_problem():
    specs = shape_set_plan(load_shape_set("bert_base"))
    assert len(specs) == 2 * 2 * 2  # shapes x dtypes x ops: channel_last only, no repeats


@pytest.mark.parametrize("kwargs, match", [
    ({"flags": "train,nosuch"}, "nosuch"), ({"flags": "train,infer"}, "selects no"),
    ({"dtypes": "bfloat16"}, "bfloat16"), ({"layouts": "sideways"}, "sideways"),
    ({"ops": "fwd,err"}, "ops='fwd,err'")])
def test_a_bad_selection_names_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        shape_set_plan(load_shape_set(TINY_NET), **kwargs)


def test_parse_ops_keeps_the_canonical_order():
    assert parse_ops("bwd,fwd") == ("fwd", "bwd")
    with pytest.raises(ValueError, match="ops=''"):
        parse_ops("")


def test_case_command_rebuilds_exactly_that_case(tmp_path):
    spec = next(s for s in shape_set_plan(load_shape_set(TINY_NET)) if s.elements == 120)
    words = case_command(spec).split()[3:]  # after "python -m oracle.generate"
    out = tmp_path / "one"
    assert generate.main([w if w != "DIR" else str(out) for w in words]) == 0
    assert [p.name for p in out.iterdir()] == [f"{spec.id}.yaml"]
    assert load_case(out / f"{spec.id}.yaml").summary == spec.summary


def test_generate_shapes_writes_the_selected_cases(tmp_path, capsys):
    out = tmp_path / "out"
    assert generate.main(["--shapes", str(TINY_NET), "--out", out, "--dtypes", "float32",
                          "--ops", "fwd", "--jobs", "2"]) == 0
    written = sorted(p.stem for p in out.glob("*.yaml"))
    planned = sorted(s.id for s in shape_set_plan(load_shape_set(TINY_NET), dtypes="float32",
                                                 ops="fwd"))
    assert written == planned and len(written) == 4
    case = load_case(out / f"{planned[0]}.yaml")
    assert case.op == "fwd" and case.dtype == "float32"
    assert "wrote 4 cases" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--shapes", "resnet5", "--out", "X"], "shapes='resnet5'"),
    (["--shapes", "bert_base", "--out", "X", "--dtypes", "float64"], "float64"),
    (["--shapes", "bert_base", "--out", "X", "--filter", "nothing_*"], "--filter='nothing_*'"),
])
def test_generate_shapes_refuses_with_status_2_naming_the_value(tmp_path, capsys, argv,
                                                                message):
    argv = [a if a != "X" else str(tmp_path / "out") for a in argv]
    assert generate.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["--shapes", "bert_base"], "needs --out"),
    (["--shapes", "bert_base", "--out", "X", "--shape", "2,3"], "cannot be combined"),
    (["--shape", "2,3", "--out", "X", "--dtypes", "float32"], "select the cases of --shapes"),
])
def test_generate_shapes_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        generate.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
