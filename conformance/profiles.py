"""Semantic profiles: a backend is judged against the differences it declares.

A backend lists in ``Capabilities.profile`` the documented ways it knowingly differs from
MXNet's semantics, as names of ``oracle.variants.VARIANTS`` (for example the cuDNN path:
``("running_var_unbiased", "stats_updated_in_forward")``). The suite then judges it
against ``oracle.evaluate(..., variants=profile)``, computed when a case is first judged
and kept for the case's other tests; with an empty profile the expected values are the
golden files' own. Undeclared differences fail as before, and the reports list the
declared ones with their descriptions.

A declared variant that changes no expected value of any case a run judges is reported
(and warned about): either the run did not reach the cases it matters for, or the
declaration is stale. Each test records which declared variants changed its case
(``profile_effect``); the report takes the union.
"""
from __future__ import annotations

import dataclasses
import warnings
from collections import OrderedDict

import numpy as np

from oracle.api import evaluate
from oracle.variants import VARIANTS, check_variants

#: Profile-evaluated cases kept per process (a case's tests run back to back).
CACHE_SIZE = 16
_cache: OrderedDict[tuple, dict] = OrderedDict()
#: Declared variants already seen to change some case in this process: not probed again.
_seen_effective: set[tuple[str, str]] = set()


class UnusedVariantWarning(UserWarning):
    """A declared profile variant changed no expected value of any case the run judged."""


def check_profile(names) -> tuple[str, ...]:
    """Return the profile as a sorted tuple of variant names, or raise ValueError naming
    an unknown one (oracle.variants.VARIANTS lists the known names)."""
    if isinstance(names, str):
        raise ValueError(f"profile={names!r} must be a tuple of variant names, not a string")
    return tuple(sorted(check_variants(names)))


def declared(backend) -> tuple[str, ...]:
    """Return the backend's declared profile (sorted, validated; () when it declares none)."""
    return check_profile(getattr(backend.capabilities, "profile", ()) or ())


def describe(names) -> list[tuple[str, str]]:
    """Return (name, description) of each variant name, in the order given."""
    return [(name, VARIANTS.get(name, "(unknown variant)")) for name in names]


def call_arguments(case) -> dict:
    """Return the keyword arguments of oracle.evaluate for a case (cudnn_off dropped: it
    only chooses a GPU code path, whose differences are variants)."""
    kwargs = case.kwargs()
    kwargs.pop("cudnn_off", None)
    return kwargs


def evaluate_case(case, variants=(), **overrides) -> dict:
    """Return oracle.evaluate's expected outputs of a case's call under variants, with any
    keyword argument overridden (e.g. axis=2)."""
    inputs = case.inputs
    kwargs = {**call_arguments(case), **overrides}
    return evaluate(inputs["x"], inputs["gamma"], inputs["beta"], inputs["running_mean"],
                    inputs["running_var"], inputs.get("dy"), variants=tuple(variants),
                    **kwargs)


def _cache_key(case, profile) -> tuple:
    return (str(case.path) if case.path is not None else None, case.id, profile)


def expected_for(case, profile=()) -> dict:
    """Return the expected outputs of a case under a profile: the golden values for (),
    oracle.evaluate(..., variants=profile) otherwise (cached per case and profile)."""
    profile = check_profile(profile)
    if not profile:
        return case.expected
    key = _cache_key(case, profile)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    expected = evaluate_case(case, profile)
    _cache[key] = expected
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return expected


def profiled_case(case, profile=()):
    """Return the case with its expected outputs replaced by those of the profile (the case
    itself for an empty profile)."""
    profile = check_profile(profile)
    if not profile or case.op not in ("fwd", "bwd"):
        return case
    return dataclasses.replace(case, expected=expected_for(case, profile))


def same_expected(a: dict, b: dict, names=None, exactness: bool = True) -> bool:
    """Return True if two expected dicts hold the same outputs with the same correctly
    rounded values (NaN equal to NaN) and, if exactness, the same pattern of elements
    that must be exact (cond == 0)."""
    names = set(a) | set(b) if names is None else set(names)
    for name in names:
        ea, eb = a.get(name), b.get(name)
        if ea is None or eb is None:
            if (ea is None) != (eb is None):
                return False
            continue
        if ea.shape != eb.shape or ea.dtype != eb.dtype:
            return False
        if not np.array_equal(ea.rounded, eb.rounded, equal_nan=True):
            return False
        if exactness and not np.array_equal(ea.cond == 0, eb.cond == 0):
            return False
    return True


def effects(case, profile) -> list[str]:
    """Return the declared variants (of profile) seen to change this case's expected values.

    A variant counts when the profile without it gives different correctly rounded
    outputs. Variants already seen to matter in this process are not probed again (they
    are reported once, which is all the union over a run needs)."""
    profile = check_profile(profile)
    if not profile or case.op not in ("fwd", "bwd"):
        return []
    full = expected_for(case, profile)
    found = []
    for name in profile:
        key = (profile, name)
        if key in _seen_effective:
            continue
        rest = tuple(v for v in profile if v != name)
        if not same_expected(full, expected_for(case, rest)):
            _seen_effective.add(key)
            found.append(name)
    return found


# --- in the reports -------------------------------------------------------------------------


def report_block(document: dict) -> dict:
    """Return the ``profile`` block of summary.json: the declared variants with their
    descriptions, and the declared ones that changed no case the run judged."""
    names = list(document["environment"]["backend"].get("profile") or ())
    judged = [r for r in document["results"] if r.get("outputs")]
    used = {name for r in document["results"] for name in (r.get("profile_effect") or ())}
    unused = [name for name in names if name not in used] if judged else []
    return {"declared": [{"name": n, "description": d} for n, d in describe(names)],
            "unused": unused}


def unused_message(name: str, backend: str, n_cases: int) -> str:
    return (f"declared profile variant {name!r} of backend {backend!r} changed no expected "
            f"value of the {n_cases} cases this run judged: the run did not reach the cases "
            f"it matters for, or the declaration is stale (Capabilities.profile)")


def warn_unused(document: dict) -> None:
    """Warn (UnusedVariantWarning) once per declared variant that made no difference."""
    block = document.get("profile") or report_block(document)
    n_cases = len({r.get("id") for r in document["results"] if r.get("outputs")})
    backend = document["environment"]["backend"]["name"]
    for name in block["unused"]:
        warnings.warn(UnusedVariantWarning(unused_message(name, backend, n_cases)), stacklevel=2)


def markdown_lines(document: dict) -> list[str]:
    """Return the summary.md section listing the declared differences (none: one line)."""
    block = document.get("profile") or report_block(document)
    lines = ["", "## Declared semantic profile", ""]
    if not block["declared"]:
        return lines + ["None: judged against MXNet 1.9.1 CPU semantics (the golden cases)."]
    lines.append("Expected values computed by the oracle with these variants "
                 "(`oracle.variants`); any other difference fails.")
    lines.append("")
    for entry in block["declared"]:
        note = (" *(changed no case of this run)*" if entry["name"] in block["unused"]
                else "")
        lines.append(f"- `{entry['name']}`: {entry['description']}{note}")
    return lines
