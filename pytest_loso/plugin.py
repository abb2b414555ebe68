"""pytest hooks, wired to the gate. Without ``--loso-dir`` every hook returns at once.

The plugin only wires: :mod:`.options` reads the settings, :mod:`.items` makes the tests,
:class:`~.gate.Gate` scores them in every process, and :class:`~.session.GateSession`
gathers, judges and reports in the one process that sees every result (the xdist
controller, or the only process). Heavy modules (numpy, scipy, onnxruntime) are imported
only once the gate is on.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import pytest

from .options import add_ini, add_options, add_unprefixed_data_root, read_options, why_the_gate_is_off

if TYPE_CHECKING:
    from .gate import Gate
    from .items import GateSelection
    from .session import GateSession

GATE: pytest.StashKey[Gate] = pytest.StashKey()
SESSION: pytest.StashKey[GateSession] = pytest.StashKey()
SELECTION: pytest.StashKey[GateSelection] = pytest.StashKey()  # which of the gate's tests the command line names
NOT_RUN: pytest.StashKey[str] = pytest.StashKey()  # why the gate asked for did not run, for the terminal


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)
    add_ini(parser)  # also when loaded alone (-p pytest_loso.plugin without autoload); registering twice is harmless


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser) -> Generator[None, object, object]:
    """``--data-root`` / ``data_root`` once the project's initial conftests have added their options:
    the gate's only where they left them free (a project's own --data-root must keep working)."""
    result = yield
    add_unprefixed_data_root(early_config, parser, option=True)
    return result


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "loso: a test made by pytest-loso (select the gate alone with -m loso)")
    options = read_options(config)
    if options is None:
        why = why_the_gate_is_off(config)
        if why is not None:
            config.stash[NOT_RUN] = why
        return
    from .gate import Gate
    from .items import select_gate

    selection = select_gate(config)
    if not selection.runs:  # e.g. `pytest tests/test_x.py`: the gate is not part of the selection
        if config.invocation_params.args and any(str(a).startswith("--loso") for a in config.invocation_params.args):
            config.stash[NOT_RUN] = ("loso: the gate did not run: the path arguments select none of its tests; "
                                     "add `loso` to them (or `-m loso` without paths) to run it too")
        return
    config.stash[SELECTION] = selection
    config.stash[GATE] = Gate(options)
    config.pluginmanager.register(_AggregateScheduling(), "loso-aggregates")
    if not hasattr(config, "workerinput"):  # xdist workers send results; the controller reports
        from .session import GateSession

        config.stash[SESSION] = GateSession(config.stash[GATE])
        config.pluginmanager.register(_ResultListener(config.stash[SESSION]), "loso-results")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Fill a cold cache before any test runs (and, under xdist, before workers start)."""
    config = session.config
    if GATE not in config.stash or hasattr(config, "workerinput") or config.option.collectonly:
        return
    from .items import sources_to_prefill

    # only what the selected gate tests need
    sources = sources_to_prefill(session, config.stash[GATE], config.stash[SELECTION].nodes)
    if sources is None:
        return  # the gate cannot plan: its collection error says why
    terminal = config.pluginmanager.get_plugin("terminalreporter")  # absent under -p no:terminal
    progress = None if terminal is None or config.get_verbosity() < 0 else terminal.write_line  # None: quiet
    from .errors import FillInterrupted

    try:
        config.stash[GATE].prefill(progress, sources)
    except FillInterrupted as exc:
        # pytest's own "!!! Interrupted: <why> !!!" line (exit 2), not a KeyboardInterrupt at a line of threading.py
        raise session.Interrupted(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str | None:
    if GATE not in config.stash:
        return None
    from .corpus import describe_options
    from .errors import readable

    options = config.stash[GATE].options
    return readable(f"loso: {describe_options(options)}, report {options.report_dir}")


@pytest.hookimpl(tryfirst=True)  # before -k, -m and --deselect filter the items
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    if GATE not in config.stash:
        return
    from .ids import GATE_NODE
    from .items import LosoCollector

    gate_session = config.stash.get(SESSION, None)
    collector = LosoCollector.from_parent(session, name=GATE_NODE, nodeid=GATE_NODE, gate=config.stash[GATE],
                                          judge=gate_session.judge if gate_session else None,
                                          named=config.stash[SELECTION].nodes)  # named tests only
    session.ihook.pytest_collectstart(collector=collector)
    report = collector.ihook.pytest_make_collect_report(collector=collector)
    report.__dict__.pop("call", None)  # as pytest does: the call info must not travel with the report
    session.ihook.pytest_collectreport(report=report)  # counted and shown like any collection
    items.extend(item for item in report.result if isinstance(item, pytest.Item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Generator[None, object, object]:
    report = yield
    if call.when == "call" and hasattr(item, "loso_result"):
        from .records import to_wire

        # serialised to the controller by xdist (execnet: UTF-8 strings only)
        report.loso = to_wire(item.loso_result) if hasattr(item.config, "workerinput") else item.loso_result  # type: ignore[attr-defined]
    return report


class _AggregateScheduling:
    """Aggregate tests run after every fold; xdist workers leave them to the controller."""

    @pytest.hookimpl(trylast=True)  # after -k/-m and whatever reordered the items (--ff, randomly)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list) -> None:
        from .items import order_aggregates_last

        worker = hasattr(config, "workerinput")
        deferred = order_aggregates_last(items, keep=not worker)
        if worker:
            config.workeroutput["loso_aggregates"] = deferred  # type: ignore[attr-defined]  # xdist sets it


class _ResultListener:
    """Hands each test's result to the session, wherever the test ran."""

    def __init__(self, session: GateSession) -> None:
        self.session = session
        self.deferred: set[str] = set()  # aggregate tests the xdist workers left to this process

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        result = getattr(report, "loso", None)
        if result is not None:
            from .records import from_wire

            self.session.store.add(from_wire(result))  # type: ignore[arg-type]
        if report.when == "call" and report.nodeid.startswith("loso::"):
            self.session.store.reported.add(report.nodeid[len("loso::"):])

    @pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent without it
    def pytest_testnodedown(self, node: object, error: object) -> None:
        self.deferred.update(getattr(node, "workeroutput", {}).get("loso_aggregates", []))

    @pytest.hookimpl(wrapper=True, trylast=True)  # inside the terminal's wrapper: before its closing "[100%]"
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        """Under xdist, judge the aggregate tests the workers left here, once every fold's result
        arrived; reported like any test, so pytest counts them (and fails the run) as its own."""
        result = yield
        from .items import aggregate_properties, report_deferred

        session.testscollected += len(self.deferred)  # the workers did not count them
        for name in sorted(self.deferred):
            judgement = self.session.judge.judge(name)
            assert judgement.outcome != "not run"  # judge() judges what ran; only as_run() says "not run"
            report_deferred(session.config, name, judgement.outcome, judgement.message,
                            aggregate_properties(self.session.judge, name))
        if self.session.store.nothing_ran or session.config.option.collectonly:
            return result
        passed = not session.testsfailed
        refusal = self.session.acceptance.decide(passed=passed)
        if refusal and passed:
            # Asked to accept, and could not, though every test passed (a partial run): a failed test,
            # counted and in JUnit like any. When tests failed, they already say why the run is red.
            session.testscollected += 1
            report_deferred(session.config, "accept", "failed", refusal)
        config = session.config
        self.session.write([str(a) for a in config.invocation_params.args], config.invocation_params.dir)
        if self.session.write_error is not None:
            # the report is what CI keeps: lost, it is a failed test (loso::report), counted and in JUnit
            session.testscollected += 1
            report_deferred(config, "report", "failed", self.session.write_error)
        self.session.accept()  # here, where an accepted report that cannot be written is still a counted test
        if self.session.acceptance.not_written is not None:
            session.testscollected += 1
            report_deferred(config, "accept", "failed", self.session.acceptance.not_written)
        return result

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed and report.nodeid == "loso":  # the gate could not plan: the report must say so
            self.session.store.add_collection_error(str(report.longrepr))


@pytest.hookimpl(tryfirst=True)  # before --junitxml writes its file and the terminal its summary
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if SESSION not in config.stash or config.option.collectonly:
        return
    gate_session = config.stash[SESSION]
    if gate_session.store.nothing_ran:
        return
    if gate_session.report is None:  # the run loop did not end (interrupted, or a collection error)
        gate_session.acceptance.decide(passed=session.exitstatus == pytest.ExitCode.OK)
        gate_session.write([str(a) for a in config.invocation_params.args], config.invocation_params.dir)
    if gate_session.write_error is not None and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # the gate's report is what CI keeps: lost, the run fails
    gate_session.publish(passed=session.exitstatus == pytest.ExitCode.OK)
    if gate_session.acceptance.not_written is not None and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # asked to accept, and the accepted report was not written


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if NOT_RUN in config.stash:
        terminalreporter.write_line(config.stash[NOT_RUN], yellow=True)
    if SESSION not in config.stash:
        return
    gate_session = config.stash[SESSION]
    report = gate_session.report
    if report is None:
        return
    from .errors import readable
    from .report.render import render_terminal

    terminalreporter.section("LOSO gate")
    for line in [*render_terminal(report), *gate_session.notes]:  # a file name's non-UTF-8 byte as \xff
        terminalreporter.write_line(readable(line))
    comparison_warnings = (report.get("comparison") or {}).get("warnings", [])
    if comparison_warnings:
        terminalreporter.section("LOSO comparison WARNING", sep="!", yellow=True, bold=True)
        for message in comparison_warnings:
            terminalreporter.write_line(readable(message), yellow=True)
