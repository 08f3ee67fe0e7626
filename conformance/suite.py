"""The state of one conformance run and the ``conformance`` fixture's helper object.

``SuiteState`` is built once per process from the command line (backend, cases dir,
tolerance profile, known deviations, report dir). ``CaseCheck`` is what a test uses: it
loads the case (skipping it with the backend's reason when unsupported), runs the backend,
judges the outputs, records the numbers for the reports and fails with the suite's message.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from . import cases, diagnosis, profiles, samples
from .checks import judge_error, judge_outputs
from .deviations import Deviation
from .messages import failure_message, repro_command
from .registry import Resolved
from .runner import run_case


@dataclass
class SuiteState:
    """Everything the tests and the reports need to know about this run."""

    resolved: Resolved
    cases_dir: Path
    cases_dir_given: bool  # --cases was given (the repro command then repeats it)
    profile: str
    deviations: list[Deviation]
    deviation_files: tuple[Path, ...]  # the lists read, in order (shipped, then the user's)
    report_dir: Path
    lenient: bool = False  # --deviations-lenient: a listed test may pass (XPASS)

    #: How the backend is called (conformance/isolation.py): "auto", "always" or "never".
    isolate: str = "never"
    #: The backend the tests call: resolved.backend, or it served from a child process.
    served: object = None
    #: A --shapes run (conformance/shapes.py): its cases are read through the cache.
    shapes: object = None

    @property
    def backend(self):
        return self.resolved.backend if self.served is None else self.served

    @property
    def backend_name(self) -> str:
        return self.resolved.backend.name

    def repro(self, case_id: str) -> str:
        """Return the repro command of a case for this run's backend and options."""
        return repro_command(case_id, self.resolved.spec,
                             str(self.cases_dir) if self.cases_dir_given else None,
                             self.profile if self.profile != "strict" else None)

    def outputs(self, case) -> dict:
        """Return the backend's outputs for a valid case; an exception the backend raises
        gets a note naming the case and the repro command."""
        try:
            return run_case(self.backend, case)
        except Exception as exc:
            if hasattr(exc, "add_note"):  # Python >= 3.11
                exc.add_note(f"[{case.id} on {self.backend_name}] the backend raised on a "
                             f"valid case\nrepro: {self.repro(case.id)}")
            raise


class CaseCheck:
    """The ``conformance`` fixture: one test's view of the run (see module doc)."""

    def __init__(self, state: SuiteState, record: dict):
        self.state = state
        self.record = record  # the test's entry in the reports, filled in as it runs

    def case(self, case_id: str):
        """Return the loaded case; skip the test if the backend cannot run it."""
        if self.state.shapes is not None:  # through the cache, which rebuilds a corrupt entry
            loaded = self.state.shapes.load(case_id)
            case = loaded.case
            if loaded.rebuilt is not None:
                self.record["cache"] = f"rebuilt: {loaded.rebuilt}"
        else:
            case = cases.load(self.state.cases_dir, case_id)
        self.record.update(op=case.op, dtype=case.dtype, family=case.family,
                           flags=case.flags.label)
        reason = cases.skip_reason(self.state.backend, case)
        if reason is not None:
            pytest.skip(reason)
        return case

    def check_outputs(self, case, names) -> None:
        """Judge the listed outputs of a valid case; fail with the suite's message."""
        __tracebackhide__ = True
        outputs = self.state.outputs(case)
        # Judged against the backend's declared semantic profile (conformance/profiles.py).
        declared = profiles.declared(self.state.backend)
        judged = judge_outputs(profiles.profiled_case(case, declared), outputs, names,
                               self.state.profile)
        if not judged:
            pytest.skip(f"case has none of the outputs {', '.join(names)}")
        self.record["outputs"] = {r.name: r.as_record() for r, _, _ in judged}
        self.record["samples"] = samples.case_samples(judged)  # for the HTML report's plots
        self.record["profile_effect"] = profiles.effects(case, declared)
        failing = [item for item in judged if not item[0].ok]
        if failing:
            message = failure_message(case.id, self.state.backend_name, case.summary,
                                      failing, self.state.repro(case.id))
            # What explains the failure, if a known variant or transform does
            # (conformance/diagnosis.py).
            found = diagnosis.diagnose(case, outputs, [r.name for r, _, _ in judged],
                                       self.state.profile, declared)
            self.record["diagnosis"] = found.as_record()
            self.record["repro"] = self.state.repro(case.id)
            message += f"\ndiagnosis: {found.text}"
            self.record["message"] = message.splitlines()[0]
            pytest.fail(message)

    def check_error(self, case) -> None:
        """Judge an invalid-input case; fail with the suite's message."""
        __tracebackhide__ = True
        problem = judge_error(self.state.backend, case)
        if problem is not None:
            where = f"{case.id} on {self.state.backend_name}"
            self.record["message"] = f"{problem} [{where}]"
            pytest.fail(f"{problem} [{where}]\ncase: {case.summary}\n"
                        f"repro: {self.state.repro(case.id)}")
