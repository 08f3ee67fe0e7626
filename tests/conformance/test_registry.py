"""Backend resolution: names, module:factory, the environment variable, the default, and
one clear error for each way a backend can fail to load."""
import sys
import textwrap

import pytest

from conformance import registry
from conformance.adapter import Capabilities

GOOD = '''
from conformance.adapter import Capabilities

class Good:
    name = "good"
    version = "1.2"
    capabilities = Capabilities(dtypes=frozenset({"float32"}), backward=False)
    def supports(self, case):
        return None
    def forward(self, *a, **k):
        return {}

def factory():
    return Good()

INSTANCE = Good()

def broken():
    raise RuntimeError("no device found")

class Partial:
    name = "partial"
    capabilities = Capabilities()
    def forward(self, *a, **k):
        return {}
'''


@pytest.fixture
def fake_module(tmp_path, monkeypatch):
    (tmp_path / "fake_bn_backends.py").write_text(textwrap.dedent(GOOD))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    yield "fake_bn_backends"
    sys.modules.pop("fake_bn_backends", None)


@pytest.mark.parametrize("attr", ["factory", "Good", "INSTANCE"])
def test_module_factory_class_or_instance(fake_module, attr):
    backend = registry.load(f"{fake_module}:{attr}")
    assert backend.name == "good" and backend.version == "1.2"


def test_unknown_name_lists_the_registered(fake_module, monkeypatch):
    monkeypatch.setattr(registry, "registered", lambda: {"numpy": "x:y", "cpu": "a:b"})
    with pytest.raises(registry.BackendError,
                       match=r"backend='nope' is not a registered name \(registered: numpy, cpu\)"):
        registry.load("nope")


@pytest.mark.parametrize("spec, message", [
    ("fake_bn_backends:missing", "cannot import fake_bn_backends:missing: AttributeError"),
    ("no_such_module_xyz:factory", "cannot import no_such_module_xyz:factory: "
                                   "ModuleNotFoundError"),
    ("fake_bn_backends:broken", r"fake_bn_backends:broken\(\) raised RuntimeError: no device"),
    ("fake_bn_backends:Partial", r"missing version, supports\(\), backward\(\)"),
])
def test_load_errors_name_spec_and_cause(fake_module, spec, message):
    with pytest.raises(registry.BackendError, match=f"backend={spec!r}.*{message}"):
        registry.load(spec)


def test_registered_name_resolves_through_its_target(fake_module, monkeypatch):
    monkeypatch.setattr(registry, "registered", lambda: {"mine": f"{fake_module}:factory"})
    resolved = registry.resolve("mine")
    assert resolved.backend.name == "good" and resolved.target == f"{fake_module}:factory"
    assert resolved.how == "--backend"


def test_environment_variable(fake_module, monkeypatch):
    monkeypatch.setenv(registry.ENV_VAR, f"{fake_module}:factory")
    resolved = registry.resolve(None)
    assert resolved.backend.name == "good" and resolved.how == f"${registry.ENV_VAR}"
    assert registry.resolve(f"{fake_module}:INSTANCE").how == "--backend"  # option wins


def test_default_prefers_cpu_then_falls_back(fake_module, monkeypatch):
    monkeypatch.setattr(registry, "registered", lambda: {
        "cpu": f"{fake_module}:broken", "numpy": f"{fake_module}:factory"})
    resolved = registry.resolve(None)
    assert resolved.spec == "numpy" and "no device found" in resolved.how
    monkeypatch.setattr(registry, "registered", lambda: {
        "cpu": f"{fake_module}:INSTANCE", "numpy": f"{fake_module}:broken"})
    assert registry.resolve(None).spec == "cpu"


def test_no_default_loads(fake_module, monkeypatch):
    monkeypatch.setattr(registry, "registered", lambda: {"numpy": f"{fake_module}:broken"})
    with pytest.raises(registry.BackendError, match="no default backend loads.*'cpu'.*no device"):
        registry.resolve(None)


def test_source_checkout_declares_numpy():
    assert registry.registered().get("numpy") == "backends.numpy_backend:NumpyBackend"


def test_check_backend_needs_capabilities_object():
    class NoCaps:
        name, version, capabilities = "x", "1", {"dtypes": ["float32"]}

        def supports(self, case):
            return None

        def forward(self, *a, **k):
            return {}

        def backward(self, *a, **k):
            return {}

    with pytest.raises(registry.BackendError, match="missing capabilities"):
        registry.check_backend(NoCaps(), "x")
    assert Capabilities().backward  # the default asks for backward()
