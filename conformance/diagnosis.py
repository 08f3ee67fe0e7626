"""Deviation diagnosis: which known difference explains a failing case.

When a case fails, ``diagnose`` judges the backend's outputs again, with the same
comparison and tolerances, against the expected outputs of every known alternative, and
says which one they match::

    matches the oracle with variant running_var_unbiased to 0.3 ulp (max 0.02 x tol):
    updates running_var with the unbiased batch variance ...

An alternative *explains* the failure when every output the failing test judged passes
against it. Alternatives (``candidates``), in the order preferred when two distinct ones
explain a case equally well:

1. each semantic variant of ``oracle.variants`` the backend did not declare, added to its
   declared profile (computed exactly by the oracle); ``stats_not_updated`` is one;
2. each declared variant taken away (a backend that declares a difference it lacks);
3. the cuDNN pair together: ``running_var_unbiased`` + ``stats_updated_in_forward``;
4. output-level transforms that are not semantics the oracle offers:
   ``dgamma_sign_flipped`` (dgamma negated), ``stats_updated_in_global_mode`` (the running
   statistics updated with the batch statistics under use_global_stats too),
   ``outputs_in_data_dtype`` (16-bit data: the float32
   outputs rounded to the data dtype, judged with its rounding), ``wrong_axis``
   (normalised over another axis with the same extent, one candidate per such axis);
5. simulated arithmetic (``conformance.simulate``): ``half_accumulation`` (16-bit data),
   ``one_pass_float32``; for a training step with batch statistics each in two
   realisations, the gradient's dot product centred on the implementation's mean or on the
   exact mean.

An alternative whose expected outputs equal the declared profile's on the judged outputs
cannot explain anything and is not counted; two with equal expected outputs are reported
as equivalent on this case, represented by the one that changes the fewest of the case's
outputs (judged by this test or not: the smaller departure from the semantics). Among
distinct explaining candidates the best is the one judged at the suite's own scale (not
``loose``) with the smallest worst error. When none
explains the failure, the one that brings the worst error down the most (at least
``CLOSEST_FACTOR`` times) is named as the closest.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from bnspec.formats import FORMATS, round_float64
from oracle.api import Expected
from oracle.variants import VARIANTS, compatible

from . import profiles, simulate
from .compare import compare, structural_problem
from .tolerances import limit_for

CUDNN_PAIR = ("running_var_unbiased", "stats_updated_in_forward")
TRANSFORMS = {
    "dgamma_sign_flipped": "dgamma with the wrong sign: sum((mean - x) * dy) * invstd",
    "stats_updated_in_global_mode": "updates the running statistics with the batch "
                                    "statistics also under use_global_stats (keys the "
                                    "update on training alone)",
    "wrong_axis": "normalises over another axis of the same extent instead of `axis`",
    "outputs_in_data_dtype": "rounds its float32 outputs (mean, invstd, dgamma, dbeta, "
                             "running statistics) to the 16-bit data dtype",
    **simulate.SIMULATIONS,
}
#: A non-explaining alternative is named as the closest when it divides the worst error
#: (as a fraction of the tolerance) by at least this.
CLOSEST_FACTOR = 10.0


@dataclass(frozen=True)
class Candidate:
    """One alternative to the declared semantics."""

    name: str  # a variant name, "cudnn_pair", "without:<variant>" or a TRANSFORMS key
    kind: str  # "variant" | "transform" | "simulation"
    label: str  # how a sentence names it, e.g. "variant running_var_unbiased"
    description: str
    #: judged with a looser scale than the tolerances (outputs_in_data_dtype): preferred
    #: only when no candidate judged at the suite's own scale explains the failure
    loose: bool = False

    @property
    def subject(self) -> str:
        return f"a simulation of {self.label}" if self.kind == "simulation" else \
            f"the oracle with {self.label}"


@dataclass(frozen=True)
class Trial:
    """The backend's outputs judged against one candidate."""

    candidate: Candidate
    ok: bool  # every judged output passes against it
    fraction: float  # the worst error as a fraction of the tolerance
    ulp: float  # the worst error in ulp of the output dtype
    equivalent: list[Candidate] = field(default_factory=list)  # equal expectations here

    def as_record(self) -> dict:
        c = self.candidate
        return {"name": c.name, "kind": c.kind, "label": c.label, "description": c.description,
                "ok": self.ok, "fraction": _num(self.fraction), "ulp": _num(self.ulp),
                "equivalent": [e.label for e in self.equivalent],
                "equivalent_names": [e.name for e in self.equivalent]}


@dataclass(frozen=True)
class Diagnosis:
    """What explains a failing case, if anything."""

    explained: Trial | None
    also: tuple[Trial, ...]  # other distinct candidates that explain it, best first
    closest: Trial | None  # the best non-explaining candidate, when it helps enough
    base_fraction: float
    tried: int
    error: str | None = None  # the diagnosis itself failed (never masks the failure)
    #: {output: problem} for outputs missing or of the wrong dtype/shape that no candidate
    #: explains; the rest of the diagnosis is then about the other outputs only.
    structural: dict = field(default_factory=dict)
    rest_failing: bool = True  # with structural problems: whether the other outputs fail

    @property
    def text(self) -> str:
        if self.error is not None:
            return f"no diagnosis ({self.error})"
        if self.structural:
            head = "; ".join(self.structural.values())
            head += " (no known variant explains a missing or malformed output)"
            if not self.rest_failing:
                return head + "; the other outputs pass"
            return head + "; the other outputs: " + self._found()
        return self._found()

    def _found(self) -> str:
        if self.explained is not None:
            t = self.explained
            text = (f"matches {t.candidate.subject} to {_fmt(t.ulp)} ulp "
                    f"(max {_fmt(t.fraction)} x tol): {t.candidate.description}")
            if t.equivalent:
                text += f"; equivalent here: {', '.join(e.label for e in t.equivalent)}"
            if self.also:
                text += "; also matches: " + ", ".join(
                    f"{a.candidate.label} ({_fmt(a.fraction)} x tol)" for a in self.also)
            return text
        text = f"no known variant or transform explains it ({self.tried} tried)"
        if self.closest is not None:
            c = self.closest
            text += (f"; closest: {c.candidate.label} (worst {_fmt(c.fraction)} x tol "
                     f"instead of {_fmt(self.base_fraction)})")
        return text

    @property
    def name(self) -> str | None:
        """The name of the candidate that explains every judged output, or None."""
        if self.structural or self.explained is None:
            return None
        return self.explained.candidate.name

    @property
    def short(self) -> str:
        """Return a short label that groups failures of the same kind in reports."""
        if self.error is not None:
            return "no diagnosis (the diagnosis failed)"
        if self.structural:
            head = "; ".join(self.structural.values())
            if self.explained is not None:
                return f"{head}; the rest: {self.explained.candidate.label}"
            return head if not self.rest_failing else f"{head}; the rest not explained"
        if self.explained is not None:
            return self.explained.candidate.label
        if self.closest is not None:
            return f"not explained (closest: {self.closest.candidate.label})"
        return "not explained"

    @property
    def explains(self) -> list[str]:
        """Return the names of every candidate that explains the failure, best first (its
        equivalents, then the other explaining ones)."""
        if self.name is None:
            return []
        names = [self.name, *(e.name for e in self.explained.equivalent)]
        for t in self.also:
            names += [t.candidate.name, *(e.name for e in t.equivalent)]
        return list(dict.fromkeys(names))

    def as_record(self) -> dict:
        return {"explained_by": self.name, "explains": self.explains,
                "label": self.explained.candidate.label if self.name else None,
                "short": self.short, "text": self.text, "tried": self.tried,
                "structural": dict(self.structural),
                "base_fraction": _num(self.base_fraction),
                "best": self.explained.as_record() if self.explained else None,
                "also": [a.as_record() for a in self.also],
                "closest": self.closest.as_record() if self.closest else None,
                "error": self.error}


def _num(value: float):
    value = float(value)
    return value if math.isfinite(value) else repr(value)


def _fmt(value: float) -> str:
    return f"{value:.2g}" if math.isfinite(value) else repr(float(value))


# --- the candidates -----------------------------------------------------------------------


def _variant(name: str) -> Candidate:
    return Candidate(name, "variant", f"variant {name}", VARIANTS[name])


def _negated(e: Expected) -> Expected:
    return Expected(e.name, e.dtype, -e.hi, -e.lo, -e.rounded, e.cond.copy())


def _in_data_dtype(e: Expected, dtype: str) -> Expected:
    """Return e rounded to the 16-bit data dtype where it is not exact (cond > 0), judged
    with that dtype's rounding: cond scaled by u(dtype) / u(e.dtype)."""
    inexact = e.cond > 0
    value = np.where(inexact, round_float64(e.hi + e.lo, FORMATS[dtype]), e.rounded)
    scale = FORMATS[dtype].unit_roundoff / FORMATS[e.dtype].unit_roundoff
    cond = np.where(inexact, np.maximum(e.cond, np.abs(e.hi)) * scale, 0.0)
    return Expected(e.name, e.dtype, value, np.zeros_like(value), value.copy(), cond)


def candidates(case, profile=()) -> Iterator[tuple[Candidate, dict]]:
    """Yield (Candidate, expected outputs by name) for every alternative that applies to
    the case, in order of preference (see module doc). Expected outputs are computed
    lazily, one candidate at a time."""
    profile = profiles.check_profile(profile)
    declared = set(profile)
    for name in VARIANTS:
        if name not in declared and compatible((*profile, name)):
            yield _variant(name), profiles.evaluate_case(case, (*profile, name))
    for name in profile:
        rest = tuple(v for v in profile if v != name)
        yield (Candidate(f"without:{name}", "variant", f"declared variant {name} left out",
                         f"does not follow its declared variant {name}: {VARIANTS[name]}"),
               profiles.evaluate_case(case, rest))
    if not set(CUDNN_PAIR) <= declared and compatible(declared | set(CUDNN_PAIR)):
        yield (Candidate("cudnn_pair", "variant", "variants " + "+".join(CUDNN_PAIR),
                         "the cuDNN path: " + "; ".join(VARIANTS[v] for v in CUDNN_PAIR)),
               profiles.evaluate_case(case, tuple(sorted(declared | set(CUDNN_PAIR)))))
    base = profiles.expected_for(case, profile)
    if "dgamma" in base:
        yield (Candidate("dgamma_sign_flipped", "transform", "transform dgamma_sign_flipped",
                         TRANSFORMS["dgamma_sign_flipped"]),
               {**base, "dgamma": _negated(base["dgamma"])})
    if case.flags.training and case.flags.use_global_stats:
        batch = profiles.evaluate_case(case, profile, use_global_stats=False)
        yield (Candidate("stats_updated_in_global_mode", "transform",
                         "transform stats_updated_in_global_mode",
                         TRANSFORMS["stats_updated_in_global_mode"]),
               {**base, "running_mean": batch["running_mean"],
                "running_var": batch["running_var"]})
    if case.dtype in ("float16", "bfloat16"):
        yield (Candidate("outputs_in_data_dtype", "transform",
                         f"transform outputs_in_data_dtype ({case.dtype})",
                         TRANSFORMS["outputs_in_data_dtype"].replace(
                             "16-bit data dtype", case.dtype), loose=True),
               {n: _in_data_dtype(e, case.dtype) if e.dtype != case.dtype else e
                for n, e in base.items()})
    shape = case.inputs["x"].shape
    axis = case.axis % len(shape)
    for other in range(len(shape)):
        if other != axis and shape[other] == shape[axis]:
            yield (Candidate("wrong_axis", "transform",
                             f"transform wrong_axis (axis {other} instead of {case.axis})",
                             f"normalises over axis {other} (same extent, {shape[axis]}) "
                             f"instead of axis {case.axis}"),
                   profiles.evaluate_case(case, profile, axis=other))
    two_centres = case.op == "bwd" and case.flags.batch_stats
    for name in simulate.SIMULATIONS:
        for centre in (simulate.CENTRES if two_centres else ("own",)):
            expected = simulate.simulate(case, name, centre, profile)
            if expected is None:
                continue
            label = name if not two_centres else (
                f"{name} (gradient dot product about the "
                f"{'exact' if centre == 'exact' else 'computed'} mean)")
            yield Candidate(name, "simulation", label, simulate.SIMULATIONS[name]), expected


# --- judging --------------------------------------------------------------------------------


def _judge(outputs: dict, expected: dict, names, tolerance: str, dtype: str):
    """Return (ok, worst fraction, worst ulp) of the outputs against expected (an output
    expected does not have is not judged, but the outputs must not have it either: the
    alternative says it does not exist)."""
    ok, fraction, ulp = True, 0.0, 0.0
    for name in names:
        if name not in expected:  # the alternative says it does not exist: nor may it here
            if outputs.get(name) is not None:
                ok, fraction, ulp = False, math.inf, math.inf
            continue
        result = compare(name, outputs.get(name), expected[name],
                         limit_for(tolerance, name, dtype).units)
        ok &= result.ok
        fraction = max(fraction, result.fraction)
        ulp = max(ulp, result.worst_ulp)
    return ok, fraction, ulp


def _extent(expected: dict, base: dict) -> int:
    """Return how many of the case's outputs a candidate changes (judged or not)."""
    return sum(not profiles.same_expected(expected, base, [n]) for n in base if n in expected)


def diagnose(case, outputs: dict, names, tolerance: str = "strict",
             profile=()) -> Diagnosis:
    """Return the Diagnosis of a failing case: the backend's outputs (by name), the names of
    the outputs the failing test judged, the tolerance profile, and the backend's declared
    semantic profile. Never raises: a diagnosis that fails says so in its text."""
    try:
        return _diagnose(case, outputs, names, tolerance, profile)
    except Exception as exc:  # the diagnosis must never hide the failure it explains
        return Diagnosis(None, (), None, math.inf, 0,
                         error=f"{type(exc).__name__}: {exc}")


def _diagnose(case, outputs, names, tolerance, profile) -> Diagnosis:
    profile = profiles.check_profile(profile)
    base = profiles.expected_for(case, profile)
    names = [n for n in names if n in base]
    found = _search(case, outputs, names, tolerance, profile, base)
    structural = {n: problem for n in names
                  if (problem := structural_problem(outputs.get(n), base[n])) is not None}
    if not structural or found.name is not None:
        return found
    rest = [n for n in names if n not in structural]
    rest_failing = not _judge(outputs, base, rest, tolerance, case.dtype)[0]
    inner = (_search(case, outputs, rest, tolerance, profile, base) if rest_failing
             else Diagnosis(None, (), None, 0.0, found.tried))
    return dataclasses.replace(inner, structural=structural, rest_failing=rest_failing)


def _search(case, outputs, names, tolerance, profile, base) -> Diagnosis:
    """Return the Diagnosis over the named outputs (see module doc)."""
    _, base_fraction, _ = _judge(outputs, base, names, tolerance, case.dtype)
    seen: list[tuple[dict, int, Trial]] = []
    for candidate, expected in candidates(case, profile):
        if profiles.same_expected(expected, base, names):
            continue
        extent = _extent(expected, base)
        twin = next((i for i, (e, _, t) in enumerate(seen)
                     if t.candidate.loose == candidate.loose
                     and profiles.same_expected(expected, e, names, exactness=False)), None)
        if twin is None:
            ok, fraction, ulp = _judge(outputs, expected, names, tolerance, case.dtype)
            seen.append((expected, extent, Trial(candidate, ok, fraction, ulp)))
        elif extent < seen[twin][1]:  # the smaller departure represents the two
            e, _, t = seen[twin]
            seen[twin] = (e, extent, Trial(candidate, t.ok, t.fraction, t.ulp,
                                           [t.candidate, *t.equivalent]))
        else:
            seen[twin][2].equivalent.append(candidate)
    trials = [t for _, _, t in seen]
    order = {id(t): i for i, t in enumerate(trials)}
    explaining = sorted((t for t in trials if t.ok),
                        key=lambda t: (t.candidate.loose, t.fraction, order[id(t)]))
    if explaining:
        return Diagnosis(explaining[0], tuple(explaining[1:]), None, base_fraction, len(trials))
    closest = min(trials, key=lambda t: (t.fraction, order[id(t)]), default=None)
    if closest is not None and not (closest.fraction < base_fraction and math.isfinite(
            closest.fraction) and closest.fraction * CLOSEST_FACTOR <= base_fraction):
        closest = None
    return Diagnosis(None, (), closest, base_fraction, len(trials))
