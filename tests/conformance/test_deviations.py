"""Known-deviation files: parsing, matching, and errors that name file and line."""
import pytest

from conformance import deviations as dev

TEXT = """\
# a comment line

fwd_*_fp16_*_constant   # float16 constant channels
test_running_stats::bwd_*   # only running stats of training steps
err_gamma_length_fp32_2x3#tight reason
"""


def test_parse_and_match():
    entries = dev.parse(TEXT, "numpy.txt")
    assert [(e.pattern, e.test, e.source) for e in entries] == [
        ("fwd_*_fp16_*_constant", None, "numpy.txt:3"),
        ("bwd_*", "test_running_stats", "numpy.txt:4"),
        ("err_gamma_length_fp32_2x3", None, "numpy.txt:5"),
    ]
    assert entries[0].reason == "float16 constant channels"
    f16 = "fwd_train_fixgamma_batchstats_nomeanvar_axis1_fp16_2x3_constant"
    assert entries[0].matches("test_forward", f16)
    assert not entries[0].matches("test_forward", f16.replace("fp16", "fp32"))
    assert not entries[0].matches("test_forward", f16 + "_eps0")  # whole-id match
    assert entries[1].matches("test_running_stats", "bwd_x")
    assert not entries[1].matches("test_backward", "bwd_x")
    assert dev.first_match(entries, "test_errors", "err_gamma_length_fp32_2x3") is entries[2]
    assert dev.first_match(entries, "test_errors", "err_gamma_length_fp32_2x4") is None


@pytest.mark.parametrize("line, message", [
    ("fwd_*", "numpy.txt:2: entry 'fwd_*' has no reason"),
    ("fwd_*   #   ", "has no reason"),
    ("fwd_* bwd_* # two words", "must be one word"),
    ("test_forward::  # no case part", "has no case-id part"),
])
def test_malformed_entry_names_file_and_line(line, message):
    with pytest.raises(dev.DeviationFileError, match=message.replace("*", r"\*")):
        dev.parse("# header\n" + line + "\n", "numpy.txt")


def test_missing_file_is_empty(tmp_path):
    assert dev.load(tmp_path / "nope.txt") == [] and dev.load(None) == []
    (tmp_path / "b.txt").write_text("x_*  # why\n")
    assert [e.pattern for e in dev.load(tmp_path / "b.txt")] == ["x_*"]


def test_shipped_files_parse():
    for path in dev.DEVIATIONS_DIR.glob("*.txt"):
        dev.load(path)  # raises on a malformed entry


def test_shipped_entries_name_their_file_relative_to_the_repository():
    entry = dev.load(dev.default_path("torch"))[0]
    assert entry.source.startswith("conformance/known_deviations/torch.txt:")
    line = int(entry.source.rpartition(":")[2])
    text = dev.default_path("torch").read_text().splitlines()[line - 1]
    scope = f"{entry.test}::" if entry.test else ""
    assert text.startswith(f"{scope}{entry.pattern} ") and f"# {entry.reason}" in text


def test_xfail_reason_names_entry_scope_and_reason():
    plain, scoped = dev.parse("fwd_*_fp16_*  # half\ntest_forward::bwd_*  # only y\n", "mine.txt")
    assert dev.xfail_reason(plain) == "known deviation mine.txt:1 fwd_*_fp16_*: half"
    assert dev.xfail_reason(scoped) == "known deviation mine.txt:2 test_forward::bwd_*: only y"


def test_a_generated_test_is_listed_by_its_parameter_id():
    from types import SimpleNamespace

    from conformance.plugin import _listed_id

    def item(params, id_):
        return SimpleNamespace(callspec=SimpleNamespace(params=params, id=id_))

    golden = item({"case_id": "fwd_train_x"}, "fwd_train_x")
    generated = item({"scenario": object()}, "overlap_gamma_in_x_forward")
    assert _listed_id(golden) == "fwd_train_x"
    assert _listed_id(generated) == "overlap_gamma_in_x_forward"
    assert _listed_id(SimpleNamespace()) is None  # not parametrized: nothing to list
    entry, = dev.parse("test_invalid_input::overlap_*_forward  # no overlap check\n", "m.txt")
    assert entry.matches("test_invalid_input", _listed_id(generated))


def test_a_test_without_parameters_is_listed_by_its_exact_name():
    from types import SimpleNamespace

    from conformance.plugin import _listed_entry

    entries = dev.parse("*  # every case\ntest_dx_*  # a wildcard names no test\n"
                        "test_properties::test_dx_sums_to_zero  # scoped: a case pattern\n"
                        "test_dx_sums_to_zero  # the property test itself\n", "m.txt")
    plain = SimpleNamespace(name="test_dx_sums_to_zero", originalname="test_dx_sums_to_zero")
    assert _listed_entry(entries, plain) is entries[3]
    assert [e.names_test("test_dx_sums_to_zero") for e in entries] == [False, False, False, True]
    assert _listed_entry(entries, SimpleNamespace(name="test_layouts", originalname="x")) is None
    golden = SimpleNamespace(originalname="test_forward", name="test_forward[fwd_x]",
                             callspec=SimpleNamespace(params={"case_id": "fwd_x"}, id="fwd_x"))
    assert _listed_entry(entries, golden) is entries[0]  # a parametrized test: by its id
