"""The tests the gate makes: one pytest item per :class:`~pytest_loso.plan.TestSpec`, and one
per aggregate test.

Modelled on pytest's "non-python tests" example: a collector builds items from data, each
item gets what it needs through ``from_parent`` (its spec and the gate, or the judge of the
aggregates), ``reportinfo`` points at the model file, and ``repr_failure`` prints the domain
sentence instead of a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from _pytest.outcomes import Skipped

from .errors import LosoInputError, ThresholdFailure, data_warning, readable
from .gate import Gate
from .ids import GATE_NODE, node_id
from .judging import AggregateJudge
from .plan import Plan, TestSpec
from .records import TestResult


class LosoCollector(pytest.Collector):
    """The gate's node: ``loso::fold[<arch>-<Source>]``, ``loso::baseline[<tag>]``, ``loso::aggregate[<run>]``..."""

    def __init__(self, *, gate: Gate, judge: AggregateJudge | None, named: tuple[str, ...] | None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate
        self.judge = judge  # None in an xdist worker: the controller judges the aggregates
        self.named = named  # the gate's node ids named on the command line (None: all of its tests)

    def collect(self) -> Iterator[pytest.Item]:
        plan = self.gate.plan()
        for warning in self.gate.corpus_warnings():  # once, at collection (the report lists them too)
            data_warning(warning)
        items = list(self.items(plan))
        unknown = [n for n in self.named or () if not any(i.nodeid == n or i.nodeid.startswith(n + "::")
                                                          for i in items)]
        if unknown:  # as pytest's "not found" for a test id that names nothing
            options = self.gate.options
            raise LosoInputError((options.loso_dirs or options.held_out)[0], f"no gate test {', '.join(unknown)}",
                                 "list the gate's tests with: pytest loso --collect-only -q")
        yield from items

    def wanted(self, nodeid: str) -> bool:
        return self.named is None or any(nodeid == n or nodeid.startswith(n + "::") for n in self.named)

    def items(self, plan: Plan) -> Iterator[pytest.Item]:
        """The tests of ``plan``, then their aggregates; only those the command line names."""
        for spec in plan:
            # The node id given as a string, like pytest's own parametrized ids: pytest 9 parses
            # "loso::fold[a-S]" into path/names/params, and --lf/--ff compare ids in that form.
            if self.wanted(node_id(spec.name)):
                yield LosoItem.from_parent(self, name=spec.name, nodeid=node_id(spec.name), spec=spec, gate=self.gate)
        for name in plan.aggregate_tests():
            if self.wanted(node_id(name)):
                yield AggregateItem.from_parent(self, name=name, nodeid=node_id(name), judge=self.judge)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, LosoInputError):  # bad input, not a bug: the message, no traceback
            return f"the gate cannot make its tests:\n{excinfo.value}"
        return super().repr_failure(excinfo)  # type: ignore[return-value]


class LosoItem(pytest.Item):
    """A fold, baseline or ensemble test: scores its spec and judges the metrics."""

    def __init__(self, *, spec: TestSpec, gate: Gate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.gate = gate
        self.add_marker("loso")
        self.loso_result: TestResult = spec.new_result()

    def runtest(self) -> None:
        scored = self.gate.evaluate(self.spec)  # a re-run (e.g. pytest-rerunfailures) starts clean
        self.loso_result = scored.result
        self._record_properties()
        if scored.failure is not None:
            raise scored.failure

    def _record_properties(self) -> None:
        """Metrics as test properties, so ``--junitxml`` carries them (flat: one number or word each)."""
        self.user_properties += list(_flat_properties(self.loso_result["metrics"] or {}, "loso_"))
        # JUnit and pytest-xdist's channel carry valid UTF-8 only: a non-UTF-8 byte of the path as \xff
        self.user_properties.append(("loso_model", readable(self.loso_result["model_path"])))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, ThresholdFailure):
            return failure_repr(self.spec.model_path, str(excinfo.value))
        if isinstance(excinfo.value, LosoInputError):  # pytest heads it with the test's name already
            return failure_repr(self.spec.model_path, f"could not be scored: {excinfo.value}")
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return Path(readable(str(self.spec.model_path))), None, self.spec.name  # shown, and sent by xdist


class AggregateItem(pytest.Item):
    """A test over other tests' results: ``aggregate[<run>]`` (a run's mean over folds against its
    bounds and the accepted report) or ``seeds[<arch>]`` (the across-seed rule).

    It judges the folds' results, so it runs after every fold (``order_aggregates_last``).
    Under pytest-xdist no worker sees every fold: workers leave it out and the controller
    reports its outcome at the end of the run loop (``report_deferred``).
    """

    def __init__(self, *, judge: AggregateJudge | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.judge = judge
        self.add_marker("loso")

    def runtest(self) -> None:
        assert self.judge is not None  # only an xdist worker has none, and it never runs an aggregate
        judgement = self.judge.judge(self.name)
        self.user_properties += aggregate_properties(self.judge, self.name)
        if judgement.outcome == "skipped":  # reported at the item ("loso"), not at this line of the plugin
            raise Skipped(judgement.message, _use_item_location=True)
        if judgement.outcome == "failed":
            raise ThresholdFailure(judgement.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, ThresholdFailure):
            return failure_repr(GATE_NODE, str(excinfo.value))
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[str, int | None, str]:
        return GATE_NODE, 0, self.name


def failure_repr(where: Path | str, message: str) -> Any:
    """The domain sentence as pytest's own failure record: printed as it is, whole first line in
    ``--tb=line`` and the short summary (a plain string is cut to 50 characters there), and
    carried by pytest-xdist from worker to controller like any failure."""
    from _pytest._code.code import ReprEntry, ReprExceptionInfo, ReprFileLocation, ReprTraceback

    lines = readable(message).splitlines() or [""]
    entry = ReprEntry(lines=lines, reprfuncargs=None, reprlocals=None, reprfileloc=None, style="native")
    return ReprExceptionInfo(reprtraceback=ReprTraceback([entry], None, "native"),
                             reprcrash=ReprFileLocation(readable(str(where)), 1, lines[0]))


def order_aggregates_last(items: list[pytest.Item], *, keep: bool) -> list[str]:
    """Move aggregate items after every other item (or drop them, ``keep=False``); return their names."""
    aggregates = [item for item in items if isinstance(item, AggregateItem)]
    others = [item for item in items if not isinstance(item, AggregateItem)]
    items[:] = [*others, *aggregates] if keep else others
    return [item.name for item in aggregates]


def aggregate_properties(judge: AggregateJudge, name: str) -> list[tuple[str, object]]:
    """An aggregate test's figures as JUnit properties (flat, as a fold's metrics are)."""
    return list(_flat_properties(judge.figures(name), "loso_"))


def report_deferred(config: pytest.Config, name: str, outcome: Literal["passed", "failed", "skipped"], message: str,
                    properties: list[tuple[str, object]] | None = None) -> None:
    """Report an aggregate test the controller judged, as pytest reports a test a worker ran.

    Logged like any test, so pytest's counts, the terminal, ``--junitxml`` and ``--lf``
    all see it (under xdist the controller collects no items of its own).
    """
    from _pytest.reports import TestReport

    nodeid = node_id(name)
    location = (GATE_NODE, 0, name)
    config.hook.pytest_runtest_logstart(nodeid=nodeid, location=location)
    longrepr: Any = ((GATE_NODE, 0, f"Skipped: {message}") if outcome == "skipped"
                     else failure_repr(GATE_NODE, message))
    phases: tuple[tuple[Literal["setup", "call", "teardown"], Literal["passed", "failed", "skipped"]], ...] = (
        ("setup", "passed"), ("call", outcome), ("teardown", "passed"))
    for when, result in phases:
        report = TestReport(nodeid, location, {"loso": 1}, result, longrepr if when == "call" else None, when,
                            user_properties=(properties or []) if when != "setup" else [])  # as an item's
        config.hook.pytest_runtest_logreport(report=report)
    config.hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)


@dataclass(frozen=True)
class GateSelection:
    """Whether the command line selects the gate, and which of its nodes (``None``: all)."""

    runs: bool
    nodes: tuple[str, ...] | None = None


def select_gate(config: pytest.Config) -> GateSelection:
    """The gate runs when the user's selection includes it: no path arguments (pytest's
    ``testpaths`` or the current folder), the ``loso`` node named (``pytest loso``,
    ``loso::fold[...]``), ``-m`` naming the ``loso`` marker, or ``--loso-example``.

    The gate's node ids are taken out of ``config.args`` (pytest would look for a file
    ``loso``); xdist workers re-parse the same command line and decide the same.
    """
    named = [arg for arg in config.args if arg.split("::")[0] == GATE_NODE
             and not (config.invocation_params.dir / GATE_NODE).exists()]
    if named:
        config.args[:] = [arg for arg in config.args if arg not in named]
        return GateSelection(True, None if GATE_NODE in named else tuple(named))
    if config.args_source != pytest.Config.ArgsSource.ARGS:  # no path arguments
        return GateSelection(True)
    if config.getoption("loso_example"):  # asked for on the command line: the gate is what is wanted
        return GateSelection(True)
    return GateSelection(bool(re.search(rf"\b{GATE_NODE}\b", config.option.markexpr or "")))


def sources_to_prefill(session: pytest.Session, gate: Gate, named: tuple[str, ...] | None) -> set[str] | None:
    """The sources whose features the gate tests that will run need, after -k, -m and
    --deselect (decided as pytest decides them, before collection, so a cold cache is filled
    only for them); ``None`` when the gate cannot plan (its collection error says why)."""
    from _pytest.mark import KeywordMatcher, MarkMatcher
    from _pytest.mark.expression import Expression

    try:
        plan = gate.plan()
        corpus_sources = gate.corpus.sources
    except LosoInputError:
        return None
    collector = LosoCollector.from_parent(session, name=GATE_NODE, nodeid=GATE_NODE, gate=gate, judge=None,
                                          named=named)
    items = [item for item in collector.items(plan) if isinstance(item, LosoItem)]
    config = session.config
    try:
        if config.option.keyword.strip():
            expr = Expression.compile(config.option.keyword.strip())
            items = [item for item in items if expr.evaluate(KeywordMatcher.from_item(item))]
        if config.option.markexpr:
            expr = Expression.compile(config.option.markexpr)
            items = [item for item in items if expr.evaluate(MarkMatcher.from_markers(item.iter_markers()))]
    except SyntaxError:
        return set()  # pytest refuses the expression at collection: nothing will run
    deselected = tuple(config.getoption("deselect") or ())
    items = [item for item in items if not (deselected and item.nodeid.startswith(deselected))]
    needed: set[str] = set()
    for item in items:
        spec = item.spec
        # a fold needs its held-out source; a baseline or an ensemble, every source
        if spec.kind != "fold":
            needed |= set(corpus_sources)
        elif spec.source in corpus_sources:
            needed.add(spec.source)
    return needed


def _flat_properties(metrics: dict, prefix: str) -> Iterator[tuple[str, object]]:
    """``{"plcc": .., "ci": {"plcc": [lo, hi]}, "paired": {"rule": .., "ci": ..}}`` as JUnit properties:
    ``loso_plcc``, ``loso_plcc_ci_low`` / ``_high`` / ``_method``, ``loso_paired_rule``,
    ``loso_paired_plcc_ci_low``, ...: a dashboard reads numbers, not a printed dict."""
    for key, value in metrics.items():
        if key == "ci":
            for metric, interval in value.items():
                if interval:
                    yield f"{prefix}{metric}_ci_low", interval[0]
                    yield f"{prefix}{metric}_ci_high", interval[1]
        elif key == "ci_method":
            yield from ((f"{prefix}{metric}_ci_method", method) for metric, method in value.items())
        elif isinstance(value, dict):
            yield from _flat_properties(value, f"{prefix}{key}_")
        else:
            yield f"{prefix}{key}", value
