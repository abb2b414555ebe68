"""The end of a session, in the one process that reports: every result in, the report built,
written and published, and the accepted report replaced when asked. No pytest here: the plugin
calls these at the hooks where pytest lets each happen."""

from __future__ import annotations

import time
from pathlib import Path

from .acceptance import Acceptance
from .gate import Gate
from .judging import AggregateJudge
from .report.build import build_report
from .report.outputs import publish, write_report
from .results import ResultStore


class GateSession:
    """The reporting process's gate: its results, their judge, the acceptance policy and the report."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.store = ResultStore(gate.plan)
        self.judge = AggregateJudge(self.store, gate.options, gate.accepted)
        self.acceptance = Acceptance(gate.options, self.store)
        self.started = time.time()
        self.report: dict | None = None
        self.notes: list[str] = []  # what was written where, for the terminal summary
        self.write_error: str | None = None  # the report could not be written: the run must fail
        self._accept_said = False

    def write(self, argv: list[str], cwd: Path) -> None:
        """Build the report from every result and write it (``write_error`` says when it could not be)."""
        accept_failure = ({"test": "accept", "message": self.acceptance.refusal}
                          if "accept" in self.store.reported else None)
        self.report = build_report(self.gate, self.store, self.judge, acceptance=self.acceptance.block(),
                                   accept_failure=accept_failure, argv=argv, cwd=cwd, started=self.started)
        partial = self.report["partial"]
        if partial:
            self.notes.append(f"partial run: {len(partial['not_run'])} of {len(partial['not_run']) + partial['ran']} "
                              "gate tests did not run; the aggregate bounds and the aggregate comparison were "
                              "not applied")
        notes, self.write_error = write_report(self.report, self.store.results, self.gate.options.report_dir)
        self.notes += notes

    def publish(self, *, passed: bool) -> None:
        """The optional outputs, and accepting the report where the run loop did not (it was interrupted)."""
        assert self.report is not None
        self.notes += publish(self.report, self.store.results, self.gate.options, passed=passed,
                              write_error=self.write_error)
        self.accept()

    def accept(self) -> None:
        """Replace the accepted report with this run's, once, when asked (the note says how it went)."""
        if self.acceptance.asked and not self._accept_said:
            assert self.report is not None
            self._accept_said = True
            self.notes.append(self.acceptance.accept(self.report, write_error=self.write_error))
            if self.acceptance.not_written is not None and self.write_error is None:
                # the report was written saying it would be accepted: it must say what happened instead
                self.report["acceptance"] = self.acceptance.block()
                self.report["failures"].append({"test": "accept", "message": self.acceptance.not_written})
                _, self.write_error = write_report(self.report, self.store.results, self.gate.options.report_dir)
