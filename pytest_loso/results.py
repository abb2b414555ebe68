"""The session's results: every gate test's result, gathered from its report wherever it ran.

Kept in the one process that sees every test report (the xdist controller, or the only
process), so what is judged over folds is the same with and without ``-n``.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import LosoInputError
from .plan import Plan
from .records import TestResult


class ResultStore:
    """What ran: each test's result, the gate tests pytest reported, and why the gate could not plan."""

    def __init__(self, plan: Callable[[], Plan]) -> None:
        self._plan = plan
        self.results: dict[str, TestResult] = {}
        self.reported: set[str] = set()  # gate tests pytest reported an outcome for (aggregates included)
        self.collection_errors: list[str] = []  # the gate could not make its tests

    def add(self, result: TestResult) -> None:
        self.results[result["name"]] = result

    def add_collection_error(self, message: str) -> None:
        if message not in self.collection_errors:  # under xdist every worker reports it
            self.collection_errors.append(message)

    @property
    def nothing_ran(self) -> bool:
        """No gate test ran (e.g. ``-m "not loso"``): there is nothing to report."""
        return not self.results and not self.collection_errors

    @property
    def plan(self) -> Plan:
        try:
            return self._plan()
        except LosoInputError:
            return Plan(())  # the collection error is the report's story

    def not_run(self) -> list[str]:
        """Planned tests that did not run (``-k``, ``--deselect``, ``--lf``, ``-x``...), aggregate
        tests included: a bound no test held must not show as held, nor as failed."""
        plan = self.plan
        return sorted((plan.names - set(self.results)) | (set(plan.aggregate_tests()) - self.reported))

    def ran(self) -> list[str]:
        """Planned tests that ran: those with a result, and the aggregate tests pytest reported."""
        return sorted(set(self.results) | (set(self.plan.aggregate_tests()) & self.reported))

    def folds_of(self, run: str) -> tuple[list[str], dict[str, TestResult]]:
        """The planned fold tests of ``run`` (arch or arch-seedN), and ``{source: result}`` of those that ran."""
        planned = self.plan.folds_of(run)
        ran = {spec.source: self.results[spec.name] for spec in planned if spec.name in self.results}
        return [spec.name for spec in planned], ran  # type: ignore[return-value]

    def scored_folds_of(self, run: str) -> dict[str, TestResult]:
        """``{source: result}`` of ``run``'s folds that ran and were scored."""
        return {source: r for source, r in self.folds_of(run)[1].items() if r["metrics"]}

    def of_kind(self, kind: str) -> list[TestResult]:
        return [r for r in self.sorted() if r["kind"] == kind]

    def sorted(self) -> list[TestResult]:
        return sorted(self.results.values(), key=lambda r: r["name"])
