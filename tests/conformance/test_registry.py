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
    ("no_such_module_xyz:factory", "cannot import no_such_module_xyz:factory: no module "
                                   "named 'no_such_module_xyz': searched the current directory"),
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


@pytest.fixture
def project_dir(tmp_path, monkeypatch):
    """A user's project: an adapter module that is not on sys.path, and the run's directory;
    sys.path and sys.modules are restored afterwards."""
    project = tmp_path / "project"
    (project / "adapters").mkdir(parents=True)
    (project / "bn_user_adapter.py").write_text(textwrap.dedent(GOOD))
    (project / "adapters" / "bn_user_file_adapter.py").write_text(
        "from bn_user_helper import HELPED\n" + textwrap.dedent(GOOD))
    (project / "adapters" / "bn_user_helper.py").write_text("HELPED = True\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    return project


def test_module_is_found_in_the_run_directory(project_dir):
    with pytest.raises(ImportError):  # not on sys.path: plain `pytest` would not find it
        __import__("bn_user_adapter")
    resolved = registry.resolve("bn_user_adapter:factory", project_dir)
    assert resolved.backend.name == "good" and resolved.target == "bn_user_adapter:factory"
    assert sys.path[-1] == str(project_dir.resolve())  # appended: shadows nothing installed


@pytest.mark.parametrize("relative", ["adapters/bn_user_file_adapter.py",
                                      "./adapters/bn_user_file_adapter.py"])
def test_file_path_target_loads_that_file(project_dir, relative):
    backend = registry.load(f"{relative}:Good", project_dir)
    module = sys.modules["bn_user_file_adapter"]
    assert backend.name == "good" and module.HELPED  # its neighbour module imported too
    assert module.__file__ == str(project_dir / "adapters" / "bn_user_file_adapter.py")
    again = registry.load(f"{project_dir}/adapters/bn_user_file_adapter.py:INSTANCE")
    assert again is module.INSTANCE  # the same module, not a second copy


def test_missing_module_error_names_what_was_searched(project_dir):
    with pytest.raises(registry.BackendError) as info:
        registry.load("bn_user_absent:factory", project_dir)
    message = str(info.value)
    assert message.startswith("backend='bn_user_absent:factory': cannot import "
                              "bn_user_absent:factory: no module named 'bn_user_absent': ")
    assert (f"searched the current directory {project_dir.resolve()} (no bn_user_absent.py, "
            "no bn_user_absent/ package) and sys.path [") in message
    assert repr(sys.path[-1]) in message


def test_missing_file_error_names_the_resolved_path(project_dir):
    with pytest.raises(registry.BackendError,
                       match=r"file .*project/adapters/nope\.py does not exist \(a path in a "
                             r"target is read relative to the current directory .*project\)"):
        registry.load("adapters/nope.py:factory", project_dir)


def test_file_named_like_an_imported_module_is_refused(project_dir):
    (project_dir / "json.py").write_text(textwrap.dedent(GOOD))
    with pytest.raises(registry.BackendError,
                       match=r"would be module 'json', but a module of that name is already "
                             r"imported from .*json.*: rename the file"):
        registry.load("json.py:factory", project_dir)


def test_dependency_missing_inside_the_users_module_is_its_own_error(project_dir):
    (project_dir / "bn_user_broken.py").write_text("import bn_user_native_ext\n")
    with pytest.raises(registry.BackendError,
                       match=r"ModuleNotFoundError: No module named 'bn_user_native_ext'"):
        registry.load("bn_user_broken:factory", project_dir)
