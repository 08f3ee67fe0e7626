"""Makes the suite runnable from a source checkout that is not pip-installed.

Installed, the plugin comes in through the ``pytest11`` entry point ``bn_conformance``;
otherwise this conftest (loaded because the run collects conformance/) registers it, and
pytest replays the option and configure hooks for it.
"""
from conformance import plugin


def pytest_addoption(parser, pluginmanager):
    if not pluginmanager.is_registered(plugin):
        pluginmanager.register(plugin, "bn_conformance")
