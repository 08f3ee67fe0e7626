"""The scale tier (``--shapes SET``): the content-addressed case cache (conformance.shape_cache)
and the suite run that generates into it and reuses it (conformance.shapes), as a user runs
it in a subprocess, also under pytest-xdist."""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

import conformance
from conformance import shape_cache, shapes
from conformance.shape_cache import CaseCache, entry_key
from oracle.casefile import load_case
from oracle.plan_shapes import shape_set_plan

pytest_plugins = ["pytester"]

SUITE_DIR = Path(conformance.__file__).resolve().parent
ROOT = SUITE_DIR.parent
TINY_NET = Path(__file__).resolve().parent / "data" / "tiny_net.yaml"
#: One layer, one layout, one dtype: 2 cases (fwd, bwd), 4 tests (forward, backward and
#: running stats of each).
ONE_LAYER = """name: one_layer
summary: one small layer
source: made up for tests/conformance/test_shapes.py
layouts: [channel_first]
dtypes: [float32]
shapes:
  - {shape: [2, 3, 4, 5], layers: 1, where: "the layer"}
"""


def small_spec(**changes):
    """Return the fwd spec of tiny_net's 2x3x4x5 float32 channel-first layer, changed."""
    shape_set = shapes.load_shape_set(TINY_NET)
    spec = next(s for s in shape_set_plan(shape_set, dtypes="float32", ops="fwd",
                                          layouts="channel_first")
                if s.shape == (2, 3, 4, 5))
    return dataclasses.replace(spec, **changes)


# --- the key --------------------------------------------------------------------------------


def test_the_key_is_stable_for_the_same_case():
    assert entry_key(small_spec()) == entry_key(small_spec())
    assert re.fullmatch(r"[0-9a-f]{64}", entry_key(small_spec()))


@pytest.mark.parametrize("change", [
    {"shape": (2, 3, 4, 6)}, {"dtype": "float16"}, {"axis": -1}, {"op": "bwd"},
    {"eps": 1e-5}, {"momentum": 0.5}, {"seed": 2}, {"family": "constant"},
    {"cudnn_off": True}])
def test_the_key_changes_with_every_case_parameter(change):
    assert entry_key(small_spec(**change)) != entry_key(small_spec())


def test_the_key_changes_with_the_flags():
    from bnspec.flags import ALL_FLAGS

    spec = small_spec()
    keys = {entry_key(dataclasses.replace(spec, flags=f)) for f in ALL_FLAGS}
    assert len(keys) == len(ALL_FLAGS)


def test_the_key_changes_with_the_oracle_version():
    spec = small_spec()
    assert entry_key(spec, "a" * 64) != entry_key(spec, "b" * 64)
    assert entry_key(spec) == entry_key(spec, shape_cache.oracle_version())


def test_the_oracle_version_follows_every_source_byte(tmp_path):
    package = tmp_path / "fakeoracle"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("X = 1\n")
    (package / "sub" / "math.py").write_text("def f(x):\n    return x + 1\n")
    fake = SimpleNamespace(__file__=str(package / "__init__.py"), __name__="fakeoracle")
    before = shape_cache.source_digest([fake])
    (package / "sub" / "math.py").write_text("def f(x):\n    return x + 2\n")
    changed = shape_cache.source_digest([fake])
    (package / "new.py").write_text("")
    added = shape_cache.source_digest([fake])
    assert len({before, changed, added}) == 3


def test_the_oracle_version_covers_the_oracle_and_bnspec_sources(monkeypatch):
    import inspect

    import bnspec
    import oracle

    default = inspect.signature(shape_cache.source_digest).parameters["packages"].default
    assert {p.__name__ for p in default} == {oracle.__name__, bnspec.__name__}
    version = shape_cache.oracle_version()
    monkeypatch.setattr(shape_cache, "source_digest", lambda: "0" * 64)
    shape_cache.oracle_version.cache_clear()
    try:
        assert shape_cache.oracle_version() != version
    finally:
        shape_cache.oracle_version.cache_clear()


# --- entries ----------------------------------------------------------------------------------


def test_an_entry_is_generated_once_then_reused(tmp_path):
    cache, spec = CaseCache(tmp_path), small_spec()
    assert cache.problem(spec) == "missing"
    outcome, _ = cache.ensure(spec)
    assert outcome == "generated"
    first = cache.case_path(spec).read_bytes()
    assert cache.ensure(spec) == ("reused", 0.0)
    assert cache.case_path(spec).read_bytes() == first
    assert load_case(cache.case_path(spec)).id == spec.id
    assert not list((tmp_path / "tmp").iterdir())  # nothing left half written


def test_cache_entries_are_the_bytes_generate_writes(tmp_path):
    from oracle import generate

    out = tmp_path / "out"
    assert generate.main(["--shapes", str(TINY_NET), "--out", out, "--dtypes", "float16",
                          "--layouts", "channel_last", "--ops", "bwd"]) == 0
    cache = CaseCache(tmp_path / "cache")
    specs = shape_set_plan(shapes.load_shape_set(TINY_NET), dtypes="float16",
                           layouts="channel_last", ops="bwd")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        name for s in specs for name in (f"{s.id}.yaml",) + ((f"{s.id}.bin",) if s.elements
                                                                > 4096 else ()))
    for spec in specs:
        cache.ensure(spec)
        for file in cache.entry_dir(entry_key(spec)).iterdir():
            if file.name != shape_cache.ENTRY_FILE:
                assert file.read_bytes() == (out / file.name).read_bytes(), file.name


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    i = data.index(b"dtype: float32")  # a byte inside the digested body
    data[i + len("dtype: float")] = ord("6")
    path.write_bytes(bytes(data))


def test_a_corrupt_file_is_rebuilt_when_read(tmp_path):
    cache, spec = CaseCache(tmp_path), small_spec()
    cache.ensure(spec)
    good = cache.case_path(spec).read_bytes()
    _flip_a_byte(cache.case_path(spec))  # same size: only the digest can tell
    assert cache.problem(spec) is None
    loaded = cache.load(spec)
    assert loaded.case.id == spec.id and "sha256" in loaded.rebuilt
    assert cache.case_path(spec).read_bytes() == good


@pytest.mark.parametrize("damage", ["truncate", "entry_json", "wrong_key", "no_yaml"])
def test_a_broken_entry_is_found_without_reading_and_rebuilt(tmp_path, damage):
    cache, spec = CaseCache(tmp_path), small_spec()
    cache.ensure(spec)
    good = cache.case_path(spec).read_bytes()
    folder = cache.entry_dir(entry_key(spec))
    record = folder / shape_cache.ENTRY_FILE
    if damage == "truncate":
        cache.case_path(spec).write_bytes(good[:100])
    elif damage == "entry_json":
        record.write_text("{not json")
    elif damage == "wrong_key":
        record.write_text(json.dumps({**json.loads(record.read_text()), "key": "0" * 64}))
    else:
        cache.case_path(spec).unlink()
    assert cache.problem(spec) not in (None, "missing")
    outcome, _ = cache.ensure(spec)
    assert outcome.startswith("rebuilt: ")
    assert cache.case_path(spec).read_bytes() == good
    assert cache.problem(spec) is None


def _ensure_in_child(args):
    root, spec = args
    return CaseCache(root).ensure(spec)[0]


def test_two_processes_wanting_one_entry_build_it_once(tmp_path, monkeypatch):
    import time

    def slow_write(*args):  # both processes ask while the first one builds
        time.sleep(1.0)
        return write_case_files(*args)

    write_case_files = shape_cache.write_case_files
    monkeypatch.setattr(shape_cache, "write_case_files", slow_write)
    spec = small_spec()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        outcomes = pool.map(_ensure_in_child, [(tmp_path, spec)] * 2, chunksize=1)
    assert sorted(outcomes) == ["generated", "reused"]  # without the lock: generated twice
    cache = CaseCache(tmp_path)
    assert cache.problem(spec) is None
    assert load_case(cache.case_path(spec)).id == spec.id
    assert not list((tmp_path / "tmp").iterdir())


def test_a_cache_of_another_oracle_version_reads_but_never_builds(tmp_path):
    spec = small_spec()
    CaseCache(tmp_path).ensure(spec)
    other = CaseCache(tmp_path, "0" * 64)  # the run began before the oracle was edited
    assert other.problem(spec) == "missing"  # its key differs
    with pytest.raises(shape_cache.StaleOracleError, match="rerun"):
        other.ensure(spec)
    assert other.problem(spec) == "missing"


def test_xdist_workers_get_the_controllers_oracle_version():
    from conformance import plugin

    run = SimpleNamespace(cache=SimpleNamespace(version="f" * 64))
    config = SimpleNamespace(stash={plugin.STATE: SimpleNamespace(shapes=run)})
    node = SimpleNamespace(config=config, workerinput={})
    plugin.pytest_configure_node(node)
    assert node.workerinput == {plugin.SHAPES_VERSION: "f" * 64}


def test_a_selection_is_linked_as_a_case_folder(tmp_path):
    run = shapes.prepare(shapes.plan(shapes.Selection(str(TINY_NET)), tmp_path))
    assert run.counts == {"generated": 16, "reused": 0, "rebuilt": 0}
    from conformance import cases

    assert sorted(cases.case_paths(run.cases_dir)) == sorted(run.specs)
    again = shapes.prepare(shapes.plan(shapes.Selection(str(TINY_NET)), tmp_path))
    assert again.counts == {"generated": 0, "reused": 16, "rebuilt": 0}
    assert again.cases_dir == run.cases_dir
    assert again.cache_bytes() == sum(p.stat().st_size for p in run.cases_dir.iterdir())


def test_a_bad_set_name_is_refused_naming_it_and_the_known_sets():
    with pytest.raises(ValueError, match=r"'resnet5'.*bert_base.*large_channel.*resnet50"):
        shapes.plan(shapes.Selection("resnet5"))


def test_a_bad_selection_is_refused_naming_it():
    with pytest.raises(ValueError, match="float64"):
        shapes.plan(shapes.Selection("bert_base", dtypes="float64"))
    with pytest.raises(ValueError, match="nosuchflag"):
        shapes.plan(shapes.Selection("bert_base", flags="train,nosuchflag"))
    with pytest.raises(ValueError, match="ops='fwdd'"):
        shapes.plan(shapes.Selection("bert_base", ops="fwdd"))


def test_the_default_cache_follows_xdg_cache_home(tmp_path):
    assert shape_cache.default_root({"XDG_CACHE_HOME": str(tmp_path)}) == \
        tmp_path / "bn-conformance"
    assert shape_cache.default_root({}) == Path.home() / ".cache" / "bn-conformance"


# --- the suite run --------------------------------------------------------------------------


@pytest.fixture
def user_dir(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("BN_BACKEND", raising=False)
    (pytester.path / "one_layer.yaml").write_text(ONE_LAYER)
    return pytester


def _shapes_line(result) -> str:
    lines = [line for line in result.outlines if line.startswith("bn-conformance shapes:")]
    assert lines, result.outlines
    return lines[-1]


def test_a_run_generates_then_a_second_run_reuses_under_xdist(user_dir):
    words = [str(SUITE_DIR), "--backend", "numpy", "--shapes", "one_layer.yaml",
             "--shapes-cache", "cache", "-p", "xdist", "-n", "2", "-q"]
    first = user_dir.runpytest_subprocess(*words)
    first.assert_outcomes(passed=4)
    assert "2 generated, 0 reused" in _shapes_line(first)
    second = user_dir.runpytest_subprocess(*words[:-5], "-q")  # in one process
    second.assert_outcomes(passed=4)
    assert "0 generated, 2 reused" in _shapes_line(second)
    report = json.loads((user_dir.path / "bn-reports" / "shapes-one_layer" / "numpy"
                         / "summary.json").read_text())
    assert report["environment"]["shapes"]["reused"] == 2
    assert report["environment"]["shapes"]["set"] == "one_layer"


def test_a_bad_shapes_value_is_a_usage_error_naming_it(user_dir):
    result = user_dir.runpytest_subprocess(str(SUITE_DIR), "--backend", "numpy",
                                           "--shapes", "resnet5", "--shapes-cache", "cache")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--shapes: shapes='resnet5'*resnet50*"])
    assert not (user_dir.path / "cache").exists()
