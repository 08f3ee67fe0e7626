"""`python -m backends.env NAME` sets up a framework backend from the project's own extras."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from backends import env

tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads pyproject.toml here")
ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_framework_is_a_registered_backend_with_its_extra():
    entry_points = PYPROJECT["project"]["entry-points"]["bn_conformance.backends"]
    extras = PYPROJECT["project"]["optional-dependencies"]
    for name, framework in env.FRAMEWORKS.items():
        assert entry_points[name] == framework.factory
        assert (framework.extra in extras) != bool(framework.own_env)


def test_pins_come_from_pyproject():
    assert env.extra_requirements("jax") == PYPROJECT["project"]["optional-dependencies"]["jax"]
    assert any(r.startswith("flax==") for r in env.extra_requirements("jax"))
    with pytest.raises(ValueError, match="extra='nope'"):
        env.extra_requirements("nope")


def test_installed_wheels_read_the_pins_from_metadata(monkeypatch, tmp_path):
    monkeypatch.setattr(env, "PYPROJECT", tmp_path / "absent.toml")
    monkeypatch.setattr(env.importlib.metadata, "requires", lambda dist: [
        "numpy>=1.24", 'jax[cpu]==0.10.2; extra == "jax"', "flax==0.12.8 ; extra=='jax'",
        'torch>=2.1; extra == "torch"'])
    assert env.extra_requirements("jax") == ["jax[cpu]==0.10.2", "flax==0.12.8"]
    with pytest.raises(ValueError, match="extra='mxnet'"):
        env.extra_requirements("mxnet")


def test_list_names_every_framework_and_where_it_runs(capsys):
    assert env.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in env.FRAMEWORKS:
        assert name in out
    assert "own venv" in out and "in process" in out


def test_check_of_an_absent_framework_fails_with_the_install_command(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "flax", None)
    assert env.main(["jax", "--check"]) == 1
    assert ".[jax]" in capsys.readouterr().err


def test_check_runs_one_batch_norm_and_refuses_a_wrong_one(monkeypatch, capsys):
    from backends.numpy_backend import NumpyBackend

    monkeypatch.setitem(env.FRAMEWORKS, "torch",
                        env.Framework("backends.numpy_backend:NumpyBackend", extra="torch"))
    assert env.main(["torch", "--check"]) == 0
    assert "works" in capsys.readouterr().out

    class Shifted(NumpyBackend):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            return {**out, "y": out["y"] + 1e-3}

    monkeypatch.setattr(sys.modules["backends.numpy_backend"], "NumpyBackend", Shifted)
    assert env.main(["torch", "--check"]) == 1
    assert "not the batch norm" in capsys.readouterr().err


def test_unknown_arguments_are_refused_for_in_process_frameworks(capsys):
    with pytest.raises(SystemExit):
        env.main(["jax", "--python", "python3.10"])
    assert "unrecognized arguments for jax" in capsys.readouterr().err
