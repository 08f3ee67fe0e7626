"""The pytest plugin of the conformance suite (entry point ``pytest11: bn_conformance``).

Options: ``--backend NAME`` (or $BN_BACKEND), ``--list-backends``, ``--cases DIR``,
``--verify-cases`` (conformance runs only on cases the oracle recomputes identically),
``--isolate auto|always|never`` (conformance/isolation.py),
``--tolerance strict|framework``, ``--report-dir DIR`` or ``--publish``
(conformance/report_location.py), ``--known-deviations FILE``, ``--deviations FILE``
(repeatable) and ``--deviations-lenient``; the scale tier: ``--shapes SET`` with
``--shapes-flags``, ``--shapes-dtypes``, ``--shapes-ops``, ``--shapes-layouts`` and
``--shapes-cache DIR`` (conformance/shapes.py: the cases of a real-network shape set,
generated on demand into a content-addressed cache and checked like ``--cases``).

The plugin switches itself on only for runs that collect the suite (a path argument inside
or above the conformance package, ``--pyargs conformance``) or name a backend, so other
test runs in the same environment never load a backend. Once on, it resolves the backend
in ``pytest_configure`` (one usage error if it does not load), prints it in the header,
parametrizes every test marked ``bn_cases(*ops)`` with the case ids of those ops, turns
known deviations into xfails (strict: a listed test that passes fails the run, naming the
entry, unless --deviations-lenient), and writes the reports at the end of the session.

Crashes and hangs: with pytest-timeout installed, each test of the suite gets a per-case
timeout (``DEFAULT_CASE_TIMEOUT_S`` unless ``--timeout``, its ini option or $PYTEST_TIMEOUT
says otherwise). ``--isolate auto|always|never`` (conformance/isolation.py) serves the
backend from a child process that restarts after each crash: in one process from the start
(auto), under pytest-xdist after the first crashed worker (auto; xdist replaces that worker
and the report lists the test as failed, "crashed:" with the signal, or "timed out:"). A
crash or hang in the child fails its test only, naming the signal and the repro command.
Unless --max-worker-restart is given, xdist may replace as many workers as there are tests;
a test the session never reached is listed as "not run:".
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import pytest

from . import cases, deviations, isolation, profiles, registry, report_location, reports
from .suite import CaseCheck, SuiteState
from .tolerances import DEFAULT_PROFILE, PROFILES

STATE = pytest.StashKey[SuiteState]()
RECORD = pytest.StashKey[dict]()
PACKAGE_DIR = Path(__file__).resolve().parent
GENERATED_OFF = ("bn-conformance: --cases given: the generated tests (bn_generated: bad "
                 "inputs, properties) are not run")
#: xdist workerinput key: the oracle version a --shapes run keys its cache with.
SHAPES_VERSION = "bn_shapes_oracle_version"
#: Seconds a test of the suite may run before pytest-timeout stops it (see module doc).
DEFAULT_CASE_TIMEOUT_S = 300.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bn_conformance", "batch-norm conformance suite")
    group.addoption("--backend", default=None, metavar="NAME",
                    help="backend under test: a registered name or package.module:factory "
                         f"(default: ${registry.ENV_VAR}, else the first of "
                         f"{', '.join(registry.DEFAULTS)} that loads)")
    group.addoption("--list-backends", action="store_true", default=False,
                    help="list the registered backends and exit")
    group.addoption("--cases", default=None, metavar="DIR",
                    help=f"golden case directory (default: {cases.DEFAULT_CASES_DIR})")
    group.addoption("--verify-cases", action="store_true", default=False,
                    help="first recompute every case of the case directory with the oracle "
                         "from its own inputs (python -m oracle.verify); refuse the run if "
                         "any stored expectation differs. Use it for cases from elsewhere")
    group.addoption("--tolerance", default=DEFAULT_PROFILE, choices=PROFILES,
                    help="tolerance profile (conformance/tolerances.py; default: strict)")
    group.addoption("--isolate", default=isolation.DEFAULT_MODE, choices=isolation.ISOLATE_MODES,
                    help="serve the backend from a child process that restarts after a "
                         "crash: always, never, or auto (default: from the start in one "
                         "process, after the first crashed worker under xdist)")
    group.addoption("--report-dir", default=None, metavar="DIR",
                    help="write <DIR>/<backend>/summary.{json,md} (default: "
                         f"{report_location.RUN_DIR}/ in the current directory, git-ignored)")
    group.addoption("--publish", action="store_true", default=False,
                    help="write the report into the repository's tracked reports/ folder "
                         "(a full run from a source checkout only)")
    group.addoption("--known-deviations", default=None, metavar="FILE",
                    help="the backend's known-deviations file, instead of the shipped "
                         "conformance/known_deviations/<backend>.txt")
    group.addoption("--deviations", action="append", default=[], metavar="FILE",
                    help="your own list of accepted deviations (PATTERN  # reason, the "
                         "format of the shipped lists), added to the backend's; repeatable")
    group.addoption("--deviations-lenient", action="store_true", default=False,
                    help="let a listed deviation pass (XPASS) instead of failing the run")
    _add_shapes_options(group)


def _add_shapes_options(group) -> None:
    """The scale tier's options (conformance/shapes.py)."""
    from bnspec.shape_sets import shape_set_names

    group.addoption("--shapes", default=None, metavar="SET",
                    help="run the cases of a real-network shape set instead of the golden "
                         f"cases: {', '.join(shape_set_names())}, or the path of your own set "
                         "file; generated on demand into a content-addressed cache")
    group.addoption("--shapes-flags", default=None, metavar="TOKENS",
                    help="flag combinations of --shapes: all, or tokens such as train,fixgamma "
                         "(default: train,freegamma,batchstats,meanvar)")
    group.addoption("--shapes-dtypes", default=None, metavar="LIST",
                    help="dtypes of --shapes, among the set's (default: all of the set's)")
    group.addoption("--shapes-ops", default=None, metavar="LIST",
                    help="ops of --shapes: fwd, bwd or fwd,bwd (default)")
    group.addoption("--shapes-layouts", default=None, metavar="LIST",
                    help="layouts of --shapes, among the set's (default: all of the set's)")
    group.addoption("--shapes-cache", default=None, metavar="DIR",
                    help="the cache of generated cases (default: $XDG_CACHE_HOME/"
                         "bn-conformance, else ~/.cache/bn-conformance)")


def pytest_cmdline_main(config: pytest.Config):
    if config.getoption("hypothesis_profile", None) or os.environ.get("HYPOTHESIS_PROFILE"):
        from . import hypothesis_profiles  # noqa: F401 - registers ci / nightly before use
    if config.getoption("list_backends"):
        lines = registry.describe_all()
        print("\n".join(lines) if lines else f"no backends registered in {registry.GROUP}")
        return 0
    return None


def _collects_suite(config: pytest.Config) -> bool:
    """Return True if the run names a backend or collects the conformance package."""
    if config.getoption("backend"):
        return True
    for arg in config.args:
        if config.getoption("pyargs") and arg.split(".")[0].split("::")[0] == "conformance":
            return True
        path = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
        if path == PACKAGE_DIR or PACKAGE_DIR in path.parents or path in PACKAGE_DIR.parents:
            return True
    return False


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "bn_cases(*ops): parametrize case_id with the golden cases of these ops")
    config.addinivalue_line(
        "markers", "bn_generated: a test that makes its own inputs (bad inputs, properties); "
        "deselected when --cases names a case directory: that run checks those cases only")
    if not _collects_suite(config):
        return
    _verify_cases(config)
    state = config.stash[STATE] = _build_state(config)
    _serve(config, state)
    _keep_hypothesis_files_in_reports(config, state)
    if _is_controller(config):
        if (config.getoption("report_dir") is None and not config.getoption("publish")
                and not config.getoption("collectonly")):
            report_location.ensure_ignored(state.report_dir)  # before any worker writes there
        config.pluginmanager.register(RunReporter(config, state), "bn_conformance_reporter")


def _keep_hypothesis_files_in_reports(config: pytest.Config, state: SuiteState) -> None:
    """Point Hypothesis's own folder (``.hypothesis/``: its example database, cached source
    constants) into the run's report folder, so a run from a user's project leaves nothing
    beside their files; not where the user chose one ($HYPOTHESIS_STORAGE_DIRECTORY) or where
    the run publishes into the tracked reports/."""
    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY") or config.getoption("publish"):
        return
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(state.report_dir / ".hypothesis")


def _build_state(config: pytest.Config) -> SuiteState:
    try:
        resolved = registry.resolve(config.getoption("backend"), config.invocation_params.dir)
    except registry.BackendError as exc:
        raise pytest.UsageError(f"bn-conformance: {exc}") from None
    try:  # the declared semantic profile must name variants the oracle computes
        profiles.declared(resolved.backend)
    except ValueError as exc:
        raise pytest.UsageError(f"bn-conformance: backend {resolved.backend.name!r}: "
                                f"Capabilities.profile: {exc}") from None
    option = config.getoption("cases")
    shape_run = _shape_run(config)
    try:
        cases_dir = (shape_run.cases_dir if shape_run is not None
                     else cases.check_cases_dir(option or cases.DEFAULT_CASES_DIR))
    except ValueError as exc:
        raise pytest.UsageError(f"bn-conformance: --cases: {exc}") from None
    files, entries = _deviation_lists(config, resolved.backend.name)
    report_option = config.getoption("report_dir")
    if shape_run is not None and report_option is None:  # not over the golden run's report
        report_option = str(Path(report_location.RUN_DIR, f"shapes-{shape_run.name}"))
    try:
        report_dir = report_location.choose(config.invocation_params.dir, report_option,
                                            config.getoption("publish"), _partial_options(config))
    except ValueError as exc:
        raise pytest.UsageError(f"bn-conformance: {exc}") from None
    return SuiteState(resolved=resolved, cases_dir=cases_dir,
                      cases_dir_given=bool(option) or shape_run is not None,
                      profile=config.getoption("tolerance"), deviations=entries,
                      deviation_files=files, lenient=config.getoption("deviations_lenient"),
                      report_dir=report_dir, shapes=shape_run)


def _shape_run(config: pytest.Config):
    """Return the prepared --shapes run (conformance/shapes.py), or None without --shapes.

    The process that owns the run generates the missing cases (one process per xdist
    worker) and prints what it did; an xdist worker then finds them all in the cache.
    """
    value = config.getoption("shapes")
    given = {name: config.getoption(f"shapes_{name}")
             for name in ("flags", "dtypes", "ops", "layouts", "cache")}
    if value is None:
        unused = [f"--shapes-{name}" for name, v in given.items() if v is not None]
        if unused:
            raise pytest.UsageError(f"bn-conformance: {', '.join(unused)} select the cases of "
                                    "--shapes SET, which is not given")
        return None
    if config.getoption("cases"):
        raise pytest.UsageError(f"bn-conformance: --shapes={value!r} and --cases="
                                f"{config.getoption('cases')!r} each name the cases to run; "
                                "give one")
    from . import shapes

    where = config.invocation_params.dir
    path = Path(where, value)
    chosen = shapes.Selection(str(path) if path.is_file() else value,
                              **{k: v for k, v in given.items() if k != "cache" and v})
    try:  # an xdist worker keys the cache with its controller's oracle version
        run = shapes.plan(chosen, None if given["cache"] is None else Path(where, given["cache"]),
                          getattr(config, "workerinput", {}).get(SHAPES_VERSION))
    except ValueError as exc:
        raise pytest.UsageError(f"bn-conformance: --shapes: {exc}") from None
    if not _is_controller(config):
        return shapes.prepare(run)
    writer = config.pluginmanager.get_plugin("terminalreporter")
    say = writer.write_line if writer is not None else print
    jobs = getattr(config.option, "numprocesses", None)
    return shapes.prepare(run, jobs if isinstance(jobs, int) and jobs > 0 else 1, say)


def _deviation_lists(config: pytest.Config, backend_name: str):
    """Return (files read, their entries in order): the backend's list (the shipped one, or
    --known-deviations), then every --deviations file; a usage error names a bad file."""
    where = config.invocation_params.dir
    own = config.getoption("known_deviations")
    given = [("--known-deviations", own)] if own else []
    given += [("--deviations", name) for name in config.getoption("deviations")]
    for option, name in given:
        if not Path(where, name).is_file():
            raise pytest.UsageError(f"bn-conformance: {option}={name!r} is not a file "
                                    f"(read relative to {where})")
    shipped = [] if own else [deviations.default_path(backend_name)]
    files = [p for p in shipped if p.is_file()] + [Path(where, name) for _, name in given]
    try:
        return tuple(files), [entry for path in files for entry in deviations.load(path)]
    except deviations.DeviationFileError as exc:
        raise pytest.UsageError(f"bn-conformance: {exc}") from None


def _partial_options(config: pytest.Config) -> list[str]:
    """Return the options and arguments that make this a partial run of the suite."""
    found = [f"-{flag} {value!r}" for flag, value in (
        ("k", config.getoption("keyword", "")), ("m", config.getoption("markexpr", "")))
        if value]
    found += ["--cases"] * bool(config.getoption("cases"))
    found += ["--shapes"] * bool(config.getoption("shapes"))
    found += ["--deselect"] * bool(config.getoption("deselect", None))
    found += ["--last-failed"] * bool(config.getoption("lf", False))
    found += [arg for arg in config.args if "::" in arg]
    return found


def _verify_cases(config: pytest.Config) -> None:
    """With --verify-cases, in the process that owns the run: recompute the case directory
    with the oracle (oracle/verify.py) before anything else loads; a usage error names
    each case and output that differs."""
    if not config.getoption("verify_cases") or not _is_controller(config):
        return
    from oracle import verify

    folder = Path(config.getoption("cases") or cases.DEFAULT_CASES_DIR)
    if not folder.is_dir():
        return  # _build_state names the bad --cases
    jobs = int(getattr(config.option, "numprocesses", None) or verify.default_jobs())
    checked, problems = verify.verify_folder(folder, jobs)
    if problems:
        shown = "\n".join(f"  {cid}: {problem}" for cid, problem in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise pytest.UsageError(
            f"bn-conformance: --verify-cases: {len(problems)} of {checked} cases in {folder} "
            f"differ from what the oracle computes from their inputs:\n{shown}{more}")


def _serve(config: pytest.Config, state: SuiteState) -> None:
    """Set how the tests call the backend (--isolate, conformance/isolation.py); in an xdist
    controller, also the worker restart budget and, for auto, the crash watch."""
    state.isolate = config.getoption("isolate")
    if state.isolate == "auto" and isolation.uses_xdist(config):
        flag_dir = tempfile.mkdtemp(prefix="bn-crash-")
        config.add_cleanup(lambda: shutil.rmtree(flag_dir, ignore_errors=True))
        config.pluginmanager.register(
            isolation.CrashWatch(os.path.join(flag_dir, "crashed"), state.repro),
            isolation.CrashWatch.NAME)
    budget = isolation.restart_budget(config, 2 * len(cases.case_paths(state.cases_dir)))
    if budget is not None:  # read by xdist's own pytest_configure, which runs last
        config.option.maxworkerrestart = budget
    state.served = isolation.wrap(state.resolved.backend, state.resolved.target,
                                  state.isolate, config, case_timeout(config))
    if state.served is not state.resolved.backend:
        config.add_cleanup(state.served.close)
        isolation.start_early(state.served, config)


def _state(config: pytest.Config) -> SuiteState:
    state = config.stash.get(STATE, None)
    if state is None:
        raise pytest.UsageError(
            "bn-conformance: the suite was collected without being switched on; "
            "name the backend with --backend NAME")
    return state


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash.get(STATE, None)
    if state is None:
        return []
    b, r = state.backend, state.resolved
    n_cases = len(cases.case_paths(state.cases_dir))
    dev = (f"{', '.join(map(str, state.deviation_files))} ({len(state.deviations)} entries"
           f"{', lenient' if state.lenient else ''})" if state.deviation_files else "none")
    return [
        f"bn-conformance backend: {b.name} {b.version}, device {b.capabilities.device} "
        f"[{r.target}; {r.how}]",
        f"bn-conformance tolerance: {state.profile}; cases: {state.cases_dir} ({n_cases}); "
        f"known deviations: {dev}; reports: {reports.backend_dir(state.report_dir, b.name)}",
    ] + ([state.shapes.summary_line()] if state.shapes is not None else []) + (
        [GENERATED_OFF] if state.cases_dir_given else [])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("bn_cases")
    if marker is None:
        return
    state = _state(metafunc.config)
    ids = cases.ids_for(state.cases_dir, marker.args)
    metafunc.parametrize("case_id", ids, ids=ids)


def _case_id(item) -> str | None:
    callspec = getattr(item, "callspec", None)
    case_id = callspec.params.get("case_id") if callspec is not None else None
    return case_id if isinstance(case_id, str) else None  # NOTSET: an empty parameter set


def _listed_id(item) -> str | None:
    """Return the id a deviation entry matches for a test: its golden case id, else the id
    of its parameters (a generated test: test_invalid_input::overlap_gamma_in_x_forward)."""
    callspec = getattr(item, "callspec", None)
    return _case_id(item) or (callspec.id if callspec is not None else None)


def _listed_entry(entries: list, item) -> deviations.Deviation | None:
    """Return the first deviation entry that lists a test: by its golden case id or parameter
    id (_listed_id), or, for a test without parameters (a property test such as
    test_dx_sums_to_zero), by its name exactly."""
    if getattr(item, "callspec", None) is None:
        return deviations.first_naming(entries, item.name)
    return deviations.first_match(entries, item.originalname, _listed_id(item))


def _drop_caseless(items: list) -> None:
    """Remove the bn_cases tests of an op that has no case in the folder (pytest's empty
    parameter set, e.g. a --cases folder without quantized cases): nothing to run."""
    items[:] = [item for item in items if item.get_closest_marker("bn_cases") is None
                or _case_id(item) is not None]


def _drop_generated(items: list) -> None:
    """Remove the tests marked bn_generated from items: a --cases run checks those cases
    only (the header says so), the same way in one process and under xdist."""
    items[:] = [item for item in items if item.get_closest_marker("bn_generated") is None]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    state = config.stash.get(STATE, None)
    if state is not None and state.cases_dir_given:
        _drop_generated(items)
    if state is not None:
        _drop_caseless(items)
    if state is None or not state.deviations:
        return
    used = set()
    for item in items:
        entry = _listed_entry(state.deviations, item)
        if entry is not None:
            used.add(entry)
            item.add_marker(pytest.mark.xfail(reason=deviations.xfail_reason(entry),
                                              strict=not state.lenient))
    if getattr(config, "workerinput", {}).get("workerid", "gw0") != "gw0":
        return  # under xdist one worker speaks for all
    shipped = report_location.portable(deviations.default_path(state.backend_name), Path.cwd())
    for entry in state.deviations:
        if state.shapes is not None and entry.source.rsplit(":", 1)[0] == shipped:
            continue  # the shipped list names golden cases, which a --shapes run does not run
        if entry not in used:
            warnings.warn(deviations.UnmatchedDeviationWarning(
                deviations.unmatched_message(entry)))


def case_timeout(config: pytest.Config) -> float | None:
    """Return the per-test timeout in effect for the suite (None without pytest-timeout or
    with the timeout switched off)."""
    if not config.pluginmanager.hasplugin("timeout"):
        return None
    given = (config.getoption("timeout", None) or os.environ.get("PYTEST_TIMEOUT")
             or config.getini("timeout"))
    value = float(given) if given else DEFAULT_CASE_TIMEOUT_S
    return value if value > 0 else None


def pytest_itemcollected(item) -> None:
    """Give each test of the suite the default per-case timeout, unless the run or the test
    sets its own: the "thread" method in an xdist worker (it stops the worker, even inside
    native code), the "signal" method in a single process (it fails only the test)."""
    config = item.config
    if (config.stash.get(STATE, None) is None or not config.pluginmanager.hasplugin("timeout")
            or item.get_closest_marker("timeout") is not None
            or PACKAGE_DIR not in Path(item.path).parents):
        return
    if config.getoption("timeout", None) or os.environ.get("PYTEST_TIMEOUT") \
            or config.getini("timeout"):
        return  # pytest-timeout applies the run's own setting
    method = "thread" if hasattr(config, "workerinput") else "signal"
    item.add_marker(pytest.mark.timeout(DEFAULT_CASE_TIMEOUT_S, method=method))


@pytest.fixture
def conformance(request: pytest.FixtureRequest) -> CaseCheck:
    """The running suite, seen from one test: load the case, run the backend, judge."""
    state = _state(request.config)
    record = {"id": _case_id(request.node), "test": request.node.originalname}
    request.node.stash[RECORD] = record
    return CaseCheck(state, record)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    record = item.stash.get(RECORD, None)
    if record is not None and call.when == "call":
        import json

        report.user_properties = [*report.user_properties,
                                  (reports.PROPERTY, json.dumps(record, allow_nan=False))]
    return report


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist controller: hand each worker the oracle version of this --shapes run."""
    state = node.config.stash.get(STATE, None)
    if state is not None and state.shapes is not None:
        node.workerinput[SHAPES_VERSION] = state.shapes.cache.version


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


class RunReporter:
    """Registered in the controlling process only: folds every test report (the xdist
    workers' included) into the run's results and writes the reports at the end."""

    def __init__(self, config: pytest.Config, state: SuiteState):
        self.config = config
        self.state = state
        self.collector = reports.Collector()
        self.started = time.time()
        self.written: Path | None = None
        self.started_at: dict[str, float] = {}  # node id -> monotonic start

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.collector.expect(item.nodeid for item in session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids) -> None:
        self.collector.expect(ids)

    def pytest_runtest_logstart(self, nodeid: str, location) -> None:
        self.started_at[nodeid] = time.monotonic()

    def pytest_runtest_logreport(self, report) -> None:
        note = self.crash_note(report.nodeid) if report.when == reports.CRASH_PHASE else None
        self.collector.add(report, note)

    def crash_note(self, nodeid: str) -> str:
        """Return how a test whose worker died ended: timed out, or crashed after N s."""
        start = self.started_at.get(nodeid)
        elapsed = time.monotonic() - start if start is not None else None
        timeout = case_timeout(self.config)
        if elapsed is not None and timeout is not None and elapsed >= timeout:
            return (f"timed out: ran {elapsed:.1f} s, past the per-case timeout of {timeout:g} "
                    "s; pytest-timeout stopped its worker process and pytest-xdist replaced it")
        ran = f"after {elapsed:.1f} s" if elapsed is not None else ""
        return (f"({ran}: the process running the backend died, e.g. a segfault, an abort or "
                "an exit; pytest-xdist replaced it)")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.config.getoption("collectonly"):
            return
        where = self.config.invocation_params.dir
        command = shlex.join(["pytest", *report_location.portable_args(
            self.config.invocation_params.args, where)])
        document = reports.summary(self.collector, self.environment(command),
                                   generated_by=command)
        self.written = reports.write(self.state.report_dir, self.state.backend_name, document)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.written is not None:
            terminalreporter.write_sep("-", "bn-conformance report")
            if self.state.shapes is not None:
                terminalreporter.write_line(self.state.shapes.summary_line())
            terminalreporter.write_line(f"wrote {self.written}/summary.json and summary.md")

    def environment(self, command: str) -> dict:
        """Return the environment block of the report."""
        state, b = self.state, self.state.backend
        where = self.config.invocation_params.dir
        versions = {"python": platform.python_version(), "platform": platform.platform()}
        for dist in ("bn-conformance", "numpy", "ml_dtypes", "pytest", "pytest-xdist"):
            try:
                versions[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                versions[dist] = "not installed"
        stamp = "%Y-%m-%dT%H:%M:%S%z"
        return {
            "backend": {"name": b.name, "version": b.version, "device": b.capabilities.device,
                        "spec": state.resolved.spec, "target": state.resolved.target,
                        "how": state.resolved.how, "profile": list(b.capabilities.profile)},
            "tolerance": state.profile,
            "cases_dir": report_location.portable(state.cases_dir, where),
            "known_deviations": ", ".join(report_location.portable(p, where)
                                          for p in state.deviation_files) or None,
            "deviations_lenient": state.lenient,
            "versions": versions,
            "command": command,
            "cwd": report_location.portable(where),
            "xdist_workers": getattr(self.config.option, "numprocesses", None),
            "isolate": state.isolate,
            "shapes": (state.shapes.as_record(lambda p: report_location.portable(p, where))
                       if state.shapes is not None else None),
            "started": time.strftime(stamp, time.localtime(self.started)),
            "finished": time.strftime(stamp),
        }
