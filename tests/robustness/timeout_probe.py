"""A pytest plugin for tests/robustness/test_crashing_backends.py: writes the timeout marker
each collected test ends up with, one JSON line per test, to the file $BN_TIMEOUT_PROBE
(from every process, xdist workers included)."""
from __future__ import annotations

import json
import os

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items) -> None:
    path = os.environ.get("BN_TIMEOUT_PROBE")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        for item in items:
            marker = item.get_closest_marker("timeout")
            f.write(json.dumps({"nodeid": item.nodeid,
                                "args": list(marker.args) if marker else None,
                                "kwargs": dict(marker.kwargs) if marker else None}) + "\n")
