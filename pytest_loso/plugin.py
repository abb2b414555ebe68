"""pytest hooks, wired to the pipeline. Without ``--loso-dir`` every hook returns at once.

Heavy modules (numpy, scipy, onnxruntime) are imported only once the gate is on.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from .options import add_options, read_options

GATE = pytest.StashKey["object"]()
RESULTS = pytest.StashKey["object"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "loso: a test made by pytest-loso (select the gate alone with -m loso)")
    options = read_options(config)
    if options is None:
        return
    from .gate import Gate
    from .report import SessionResults

    config.stash[GATE] = Gate(options)
    if not hasattr(config, "workerinput"):  # xdist workers send results; the controller reports
        config.stash[RESULTS] = SessionResults(config.stash[GATE])
        config.pluginmanager.register(_ResultListener(config.stash[RESULTS]), "loso-results")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Fill a cold cache before any test runs (and, under xdist, before workers start)."""
    config = session.config
    if GATE not in config.stash or hasattr(config, "workerinput") or config.option.collectonly:
        return
    terminal = config.pluginmanager.get_plugin("terminalreporter")  # absent under -p no:terminal
    quiet = terminal is None or config.get_verbosity() < 0
    config.stash[GATE].prefill(None if quiet else terminal.write_line)


def pytest_report_header(config: pytest.Config) -> str | None:
    if GATE not in config.stash:
        return None
    options = config.stash[GATE].options
    if options.table is not None:
        return f"loso: table {options.table}, report {options.report_dir}"
    return f"loso: data root {options.data_root}, cache {options.cache_dir}, report {options.report_dir}"


@pytest.hookimpl(tryfirst=True)  # before -k, -m and --deselect filter the items
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    if GATE not in config.stash:
        return
    from .items import LosoCollector

    collector = LosoCollector.from_parent(session, name="loso", nodeid="loso", gate=config.stash[GATE])
    session.ihook.pytest_collectstart(collector=collector)
    report = collector.ihook.pytest_make_collect_report(collector=collector)
    report.__dict__.pop("call", None)  # as pytest does: the call info must not travel with the report
    session.ihook.pytest_collectreport(report=report)  # counted and shown like any collection
    items.extend(item for item in report.result if isinstance(item, pytest.Item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Generator[None, object, object]:
    report = yield
    if call.when == "call" and hasattr(item, "loso_result"):
        report.loso = item.loso_result  # type: ignore[attr-defined]  # serialised to the controller by xdist
    return report


class _ResultListener:
    """Hands each item's result to the session's results, wherever the item ran."""

    def __init__(self, results: object) -> None:
        self.results = results

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        result = getattr(report, "loso", None)
        if result is not None:
            self.results.add(result)  # type: ignore[attr-defined]

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed and report.nodeid == "loso":  # the gate could not plan: the report must say so
            self.results.add_collection_error(str(report.longrepr))  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if RESULTS not in config.stash or config.option.collectonly or config.stash[RESULTS].nothing_ran:
        return
    results = config.stash[RESULTS]
    results.build([str(a) for a in config.invocation_params.args], config.invocation_params.dir)
    results.write()
    if results.aggregate_failures and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    results.publish(passed=session.exitstatus == pytest.ExitCode.OK)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if RESULTS not in config.stash or config.stash[RESULTS].report is None:
        return
    from .report import render_terminal

    results = config.stash[RESULTS]
    terminalreporter.section("LOSO gate")
    for line in render_terminal(results.report):
        terminalreporter.write_line(line)
    for line in results.notes:
        terminalreporter.write_line(line)
    comparison_warnings = (results.report.get("comparison") or {}).get("warnings", [])
    if comparison_warnings:
        terminalreporter.section("LOSO comparison WARNING", sep="!", yellow=True, bold=True)
        for message in comparison_warnings:
            terminalreporter.write_line(message, yellow=True)
    if results.aggregate_failures:
        terminalreporter.section("LOSO aggregate thresholds FAILED", sep="!", red=True, bold=True)
        for message in results.aggregate_failures:
            terminalreporter.write_line(message, red=True)
