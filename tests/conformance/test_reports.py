"""Report folding and writing, without pytest in between."""
import json
from types import SimpleNamespace

import pytest

from conformance import report_files, reports
from conformance.report_md import render


def rep(nodeid, when, outcome, longrepr=None, wasxfail=None, props=()):
    r = SimpleNamespace(nodeid=nodeid, when=when, outcome=outcome, longrepr=longrepr,
                        duration=0.5, user_properties=list(props),
                        passed=outcome == "passed", failed=outcome == "failed",
                        skipped=outcome == "skipped", longreprtext=str(longrepr or ""))
    if wasxfail is not None:
        r.wasxfail = wasxfail
    return r


def fold(*phases):
    c = reports.Collector()
    for p in phases:
        c.add(p)
    return next(iter(c.results.values()))


def record(**kw):
    return (reports.PROPERTY, json.dumps({"id": "c1", "test": "test_forward", **kw}))


def test_phases_fold_into_one_outcome():
    assert fold(rep("a", "setup", "passed"), rep("a", "call", "passed"),
                rep("a", "teardown", "passed"))["outcome"] == "pass"
    skipped = fold(rep("a", "setup", "skipped", ("f.py", 3, "Skipped: no f16")))
    assert (skipped["outcome"], skipped["reason"]) == ("skip", "no f16")
    err = fold(rep("a", "setup", "passed"), rep("a", "call", "passed"),
               rep("a", "teardown", "failed", "boom"))
    assert err["outcome"] == "error" and err["reason"] == "teardown: boom"
    xfail = fold(rep("a", "call", "skipped", wasxfail="known"))
    assert (xfail["outcome"], xfail["reason"]) == ("xfail", "known")
    assert fold(rep("a", "call", "passed", wasxfail="known"))["outcome"] == "xpass"
    failed = fold(rep("a", "call", "failed", "AssertionError: x"),
                  rep("a", "teardown", "passed"))
    assert failed["outcome"] == "fail" and failed["message"] == "AssertionError: x"
    assert failed["duration"] == 1.0


def test_record_travels_in_user_properties():
    entry = fold(rep("a", "call", "failed", "E", props=[record(message="y[0]=1 but ...")]))
    assert entry["id"] == "c1" and entry["message"] == "y[0]=1 but ..."


def test_write_replaces_atomically(tmp_path, monkeypatch):
    path = tmp_path / "r" / "summary.json"
    report_files.write_atomic(path, "old")
    monkeypatch.setattr(report_files.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("full")))
    with pytest.raises(OSError):
        report_files.write_atomic(path, "new")
    assert path.read_text() == "old" and [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.mark.parametrize("name, safe", [("numpy", "numpy"), ("my/bn 2", "my_bn_2"),
                                        ("..", "_"), ("", "_"), ("v1.2", "v1.2")])
def test_backend_dir_is_one_path_component(tmp_path, name, safe):
    out = reports.backend_dir(tmp_path, name)
    assert out.parent == tmp_path and out.name == safe


def test_markdown_grid_takes_worst_per_cell():
    outputs = lambda f: {"y": {"fraction": f, "n_bad": int(f == "inf")},
                         "mean": {"fraction": 0.5, "n_bad": 0}}
    results = [
        {"nodeid": "1", "id": "a", "test": "test_forward", "outcome": "pass", "dtype": "float32",
         "flags": "train/fixgamma/batchstats/nomeanvar", "outputs": outputs(0.25)},
        {"nodeid": "2", "id": "b", "test": "test_forward", "outcome": "fail", "dtype": "float32",
         "flags": "train/fixgamma/batchstats/nomeanvar", "outputs": outputs("inf"),
         "message": "y[0]=nan ..."},
        {"nodeid": "3", "id": "c", "test": "test_forward", "outcome": "skip", "dtype": "float16",
         "flags": "train/fixgamma/batchstats/nomeanvar", "reason": "no f16"},
    ]
    env = {"backend": {"name": "b", "version": "1", "target": "m:f", "how": "--backend",
                       "device": "cpu"}, "tolerance": "strict", "cases_dir": "cases",
           "versions": {}, "command": "pytest conformance/", "finished": "now"}
    doc = {"generated_by": "pytest conformance/", "environment": env,
           "counts": reports.counts(results), "results": results}
    md = render(doc)
    assert "| train/fixgamma/batchstats/nomeanvar | **inf** (1 fail) |" in md
    assert "| y | **inf** (1 fail) |" in md
    assert "| mean | 0.5 |" in md  # a passing output of a failed test is no failure
    assert "| 1 | no f16 |" in md and "- `b` (test_forward): y[0]=nan ..." in md
