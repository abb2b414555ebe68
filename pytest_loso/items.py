"""The tests the gate makes: one pytest item per :class:`~pytest_loso.gate.Check`.

Modelled on pytest's "non-python tests" example: a collector builds items from data,
``reportinfo`` points at the model file, and ``repr_failure`` prints the domain sentence
instead of a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _pytest.outcomes import Skipped

from .errors import LosoInputError
from .errors import data_warning
from .gate import Check, Gate, ThresholdFailure


class LosoCollector(pytest.Collector):
    """The gate's node: ``loso::fold[<arch>-<Source>]`` and ``loso::baseline[<tag>]``."""

    def __init__(self, *, gate: Gate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    def collect(self) -> Iterator[pytest.Item]:
        checks = self.gate.plan()
        for warning in self.gate.corpus_warnings():  # once, at collection (the report lists them too)
            data_warning(warning)
        items = list(self.items(checks))
        unknown = [n for n in self.gate_nodes or () if not any(i.nodeid == n or i.nodeid.startswith(n + "::")
                                                                for i in items)]
        if unknown:  # as pytest's "not found" for a test id that names nothing
            raise LosoInputError(self.gate.options.loso_dirs[0], f"no gate test {', '.join(unknown)}",
                                 "list the gate's tests with: pytest loso --collect-only -q")
        yield from items

    def items(self, checks: list[Check]) -> Iterator[pytest.Item]:
        """The tests of ``checks``, then their aggregates; only those the command line names."""
        named = self.gate_nodes

        def wanted(nodeid: str) -> bool:
            return named is None or any(nodeid == n or nodeid.startswith(n + "::") for n in named)

        for check in checks:
            # The node id given as a string, like pytest's own parametrized ids: pytest 9 parses
            # "loso::fold[a-S]" into path/names/params, and --lf/--ff compare ids in that form.
            if wanted(f"{self.nodeid}::{check.name}"):
                yield LosoItem.from_parent(self, name=check.name, nodeid=f"{self.nodeid}::{check.name}", check=check)
        for name in aggregate_tests(checks):
            if wanted(f"{self.nodeid}::{name}"):
                yield AggregateItem.from_parent(self, name=name, nodeid=f"{self.nodeid}::{name}")

    @property
    def gate_nodes(self) -> tuple[str, ...] | None:
        """The gate's node ids named on the command line (``None``: all of its tests)."""
        from .plugin import SELECTION

        selection = self.config.stash.get(SELECTION, None)
        return selection.nodes if selection is not None else None

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, LosoInputError):  # bad input, not a bug: the message, no traceback
            return f"the gate cannot make its tests:\n{excinfo.value}"
        return super().repr_failure(excinfo)  # type: ignore[return-value]


class LosoItem(pytest.Item):
    def __init__(self, *, check: Check, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.add_marker("loso")
        self.loso_result: dict = self._fresh_result()

    def _fresh_result(self) -> dict:
        check = self.check
        return {
            "kind": check.kind,
            "name": check.name,
            "label": check.label,
            "arch": check.run,  # the run its fold belongs to: the report's key (arch, or arch-seedN)
            "seed": check.seed,
            "source": check.source,
            "model_path": str(check.model_path),
            "metrics": None,
            "error": None,
            "violations": [],
        }

    def runtest(self) -> None:
        gate: Gate = self.parent.gate  # type: ignore[union-attr]
        self.loso_result = self._fresh_result()  # a re-run (e.g. pytest-rerunfailures) starts clean
        try:
            gate.run(self.check, self.loso_result)
        except (LosoInputError, ThresholdFailure) as exc:
            self.loso_result["error"] = str(exc)
            raise
        except Exception as exc:  # a bug of ours: keep the report honest, let pytest show the traceback
            self.loso_result["error"] = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._record_properties()

    def _record_properties(self) -> None:
        """Metrics as test properties, so ``--junitxml`` carries them (flat: one number or word each)."""
        self.user_properties += list(_flat_properties(self.loso_result["metrics"] or {}, "loso_"))
        self.user_properties.append(("loso_model", self.loso_result["model_path"]))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, ThresholdFailure):
            return failure_repr(self.check.model_path, str(excinfo.value))
        if isinstance(excinfo.value, LosoInputError):  # pytest heads it with the test's name already
            return failure_repr(self.check.model_path, f"could not be scored: {excinfo.value}")
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.check.model_path, None, self.check.name


def aggregate_tests(checks: list[Check]) -> list[str]:
    """``aggregate[<run>]`` for each LOSO run (an arch, or an arch's seed), ``seeds[<arch>]`` across seeds."""
    folds = [check for check in checks if check.kind == "fold"]
    runs = sorted({check.run for check in folds if check.run})
    seeded = sorted({check.arch for check in folds if check.arch and check.seed is not None})
    return [f"aggregate[{run}]" for run in runs] + [f"seeds[{arch}]" for arch in seeded]


class AggregateItem(pytest.Item):
    """A test over other tests' results: ``aggregate[<run>]`` (a run's mean over folds against its
    bounds and the accepted report) or ``seeds[<arch>]`` (the across-seed rule).

    It judges the folds' results, so it runs after every fold (``order_aggregates_last``).
    Under pytest-xdist no worker sees every fold: workers leave it out and the controller
    reports its outcome at the end of the session (``plugin.pytest_sessionfinish``).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_marker("loso")

    def runtest(self) -> None:
        from .plugin import RESULTS

        verdict = self.config.stash[RESULTS].verdict(self.name)
        if verdict.outcome == "skipped":  # reported at the item ("loso"), not at this line of the plugin
            raise Skipped(verdict.message, _use_item_location=True)
        if verdict.outcome == "failed":
            raise ThresholdFailure(verdict.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, ThresholdFailure):
            return failure_repr("loso", str(excinfo.value))
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[str, int | None, str]:
        return "loso", 0, self.name


def failure_repr(where: Path | str, message: str) -> Any:
    """The domain sentence as pytest's own failure record: printed as it is, whole first line in
    ``--tb=line`` and the short summary (a plain string is cut to 50 characters there), and
    carried by pytest-xdist from worker to controller like any failure."""
    from _pytest._code.code import ReprEntry, ReprExceptionInfo, ReprFileLocation, ReprTraceback

    lines = message.splitlines() or [""]
    entry = ReprEntry(lines=lines, reprfuncargs=None, reprlocals=None, reprfileloc=None, style="native")
    return ReprExceptionInfo(reprtraceback=ReprTraceback([entry], None, "native"),
                             reprcrash=ReprFileLocation(str(where), 1, lines[0]))


def order_aggregates_last(items: list[pytest.Item], *, keep: bool) -> list[str]:
    """Move aggregate items after every other item (or drop them, ``keep=False``); return their names."""
    aggregates = [item for item in items if isinstance(item, AggregateItem)]
    items[:] = [item for item in items if not isinstance(item, AggregateItem)] + (aggregates if keep else [])
    return [item.name for item in aggregates]


def report_deferred(config: pytest.Config, name: str, outcome: str, message: str) -> None:
    """Report an aggregate test the controller judged, as pytest reports a test a worker ran.

    Logged like any test, so pytest's counts, the terminal, ``--junitxml`` and ``--lf``
    all see it (under xdist the controller collects no items of its own).
    """
    from _pytest.reports import TestReport

    nodeid = f"loso::{name}"
    location = ("loso", 0, name)
    config.hook.pytest_runtest_logstart(nodeid=nodeid, location=location)
    longrepr: Any = ("loso", 0, f"Skipped: {message}") if outcome == "skipped" else failure_repr("loso", message)
    for when, result in (("setup", "passed"), ("call", outcome), ("teardown", "passed")):
        report = TestReport(nodeid, location, {"loso": 1}, result, longrepr if when == "call" else None, when)
        config.hook.pytest_runtest_logreport(report=report)
    config.hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)


@dataclass(frozen=True)
class GateSelection:
    """Whether the command line selects the gate, and which of its nodes (``None``: all)."""

    runs: bool
    nodes: tuple[str, ...] | None = None


GATE_NODE = "loso"


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


def sources_to_prefill(session: pytest.Session, gate: Gate) -> set[str] | None:
    """The sources whose features the gate tests that will run need, after -k, -m and
    --deselect (decided as pytest decides them, before collection, so a cold cache is filled
    only for them); ``None`` when the gate cannot plan (its collection error says why)."""
    from _pytest.mark import KeywordMatcher, MarkMatcher
    from _pytest.mark.expression import Expression

    try:
        checks = gate.plan()
        corpus_sources = gate.corpus.sources
    except LosoInputError:
        return None
    collector = LosoCollector.from_parent(session, name=GATE_NODE, nodeid=GATE_NODE, gate=gate)
    items = [item for item in collector.items(checks) if isinstance(item, LosoItem)]
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
        check = item.check
        # a fold needs its held-out source; a baseline or an ensemble, every source
        needed |= {check.source} & set(corpus_sources) if check.kind == "fold" else set(corpus_sources)
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
