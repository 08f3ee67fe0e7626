"""The Hypothesis profiles of the property tier (conformance/test_properties.py).

- ``ci``: derandomized (the same examples every run, so CI is reproducible), no example
  database, ``CI_EXAMPLES`` examples per test: the whole tier in well under a minute per
  backend on 2 cores. The default when no profile is chosen.
- ``nightly``: random, ``NIGHTLY_EXAMPLES`` examples per test, failures kept in the example
  database (``.hypothesis/``) and replayed first on the next run.

Choose one with ``pytest conformance/ --hypothesis-profile nightly`` or
``HYPOTHESIS_PROFILE=nightly``. Registered on import; the conformance plugin imports this
module before Hypothesis reads ``--hypothesis-profile``.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

CI_EXAMPLES = 100
NIGHTLY_EXAMPLES = 2000
ENV_VAR = "HYPOTHESIS_PROFILE"
NAMES = ("ci", "nightly")

_COMMON = {
    "deadline": None,  # the oracle's exact fallback path can take a while on odd data
    "print_blob": True,
    "phases": (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                              HealthCheck.filter_too_much],
}

settings.register_profile("ci", max_examples=CI_EXAMPLES, derandomize=True, database=None,
                          **_COMMON)
settings.register_profile("nightly", max_examples=NIGHTLY_EXAMPLES, **_COMMON)

if os.environ.get(ENV_VAR) in NAMES:
    settings.load_profile(os.environ[ENV_VAR])


def active() -> settings:
    """Return the settings the property tests run under: the loaded profile if it is one of
    ours (or any profile a user chose), ``ci`` when Hypothesis is on its default."""
    name = settings.get_current_profile_name()
    return settings.get_profile("ci") if name == "default" else settings.default
