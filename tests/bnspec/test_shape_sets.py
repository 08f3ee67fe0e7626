"""The shipped shape sets describe the networks they name, and malformed set files are refused."""
import math

import pytest

from bnspec.shape_sets import LAYOUTS, load_shape_set, shape_set_names

# Batch-norm layers per network, counted from the papers' architectures (not from the files):
# ResNet-50: stem + 16 bottlenecks x 3 + 4 downsamples; MobileNetV2: stem + block 1 (2) +
# 16 blocks x 3 + last conv; R3D-18: stem + 8 basic blocks x 2 + 3 downsamples;
# BERT-base: embeddings + 12 blocks x 2 sublayers (hidden) and 12 feed-forward activations.
LAYERS = {"resnet50": 1 + 16 * 3 + 4, "mobilenet_v2": 1 + 2 + 16 * 3 + 1,
          "r3d_18": 1 + 8 * 2 + 3, "bert_base": 1 + 12 * 2 + 12}


def test_the_named_sets_ship():
    assert set(shape_set_names()) >= {"resnet50", "mobilenet_v2", "bert_base", "r3d_18",
                                      "large_channel"}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_counts_match_the_architecture(name):
    assert sum(entry.layers for entry in load_shape_set(name).shapes) == LAYERS[name]


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", "bert_base", "r3d_18",
                                  "large_channel"])
def test_every_set_names_its_source_and_has_distinct_shapes(name):
    shape_set = load_shape_set(name)
    assert len(shape_set.source) > 20
    shapes = [entry.shape for entry in shape_set.shapes]
    assert len(shapes) == len(set(shapes))


def test_resnet50_spans_its_stem_and_last_stage():
    shapes = {entry.shape for entry in load_shape_set("resnet50").shapes}
    assert (32, 64, 112, 112) in shapes and (32, 2048, 7, 7) in shapes


def test_layouts_move_the_channel_and_keep_the_per_channel_count():
    problems = load_shape_set("resnet50").problems(dtypes=["float32"])
    first = [p for p in problems if p.layout == "channel_first"]
    last = [p for p in problems if p.layout == "channel_last"]
    assert len(first) == len(last) == 12
    for a, b in zip(first, last):
        assert a.axis == 1 and b.axis == -1
        assert b.shape == (a.shape[0], *a.shape[2:], a.shape[1])
        assert a.per_channel == b.per_channel == a.shape[0] * math.prod(a.shape[2:])


def test_rank_two_layouts_are_one_call():
    problems = load_shape_set("bert_base").problems()
    assert len(problems) == 2 * 2          # two shapes x two dtypes, one layout
    assert all(p.axis == -1 and p.per_channel == 4096 for p in problems)


def test_large_channel_is_past_float32_counting():
    problems = load_shape_set("large_channel").problems()
    assert {p.dtype for p in problems} == {"float32", "float16"}
    assert min(p.per_channel for p in problems) == 2 ** 24 + 1
    assert max(p.elements for p in problems) >= 10 ** 8


def test_narrowing_outside_the_set_is_refused():
    with pytest.raises(ValueError, match="dtypes=.*bfloat16"):
        load_shape_set("bert_base").problems(dtypes=["bfloat16"])
    with pytest.raises(ValueError, match="layouts=.*channel_first"):
        load_shape_set("bert_base").problems(layouts=["channel_first"])


GOOD = """name: mine
summary: one layer
source: my network, layer 3
layouts: [channel_first, channel_last]
dtypes: [float32]
shapes:
  - {shape: [8, 16, 5, 5], layers: 1, where: "layer 3"}
"""


def test_a_users_own_file_loads(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD)
    problems = load_shape_set(str(path)).problems()
    assert [(p.shape, p.axis) for p in problems] == [((8, 16, 5, 5), 1), ((8, 5, 5, 16), -1)]


@pytest.mark.parametrize("edit, field", [
    (("name: mine", "name: other"), "name"),
    (("[float32]", "[float33]"), "dtypes"),
    (("[channel_first, channel_last]", "[nchw]"), "layouts"),
    (("[8, 16, 5, 5]", "[8]"), "shapes[0].shape"),
    (("[8, 16, 5, 5]", "[8, 0, 5]"), "shapes[0].shape"),
    (("layers: 1", "layers: 0"), "shapes[0].layers"),
    (("layers: 1", "layers: 1.5"), "shapes[0].layers"),
    (("source: my network, layer 3", "source: ''"), "source"),
    (("summary: one layer", "summary: one layer\ntolerance: 3"), "<keys>"),
])
def test_malformed_files_are_refused_naming_the_field(tmp_path, edit, field):
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD.replace(*edit))
    with pytest.raises(ValueError) as refused:
        load_shape_set(path)
    assert str(path) in str(refused.value) and f"{field}=" in str(refused.value)


def test_an_unknown_name_lists_the_shipped_sets():
    with pytest.raises(ValueError, match="resnet50"):
        load_shape_set("resnet51")


def test_layout_names_are_the_two_the_sets_use():
    assert LAYOUTS == ("channel_first", "channel_last")
