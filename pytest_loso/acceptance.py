"""``--loso-accept``: whether this run's report may become the accepted one, and making it so.

Decided once, at the end of the run loop, where a refusal can still be a test pytest counts
(``loso::accept``); written last, after this run's own report.
"""

from __future__ import annotations

import json

from .files import write_together
from .ids import predictions_path, report_paths
from .results import ResultStore
from .settings import GateOptions


class Acceptance:
    """The acceptance policy of one session: a whole run that passed (or ``--loso-accept-force``)."""

    def __init__(self, options: GateOptions, store: ResultStore) -> None:
        self.options = options
        self.store = store
        self.refusal: str | None = None  # why --loso-accept was refused: the run must fail
        self.not_written: str | None = None  # the accepted report could not be written (e.g. a full disk)
        self._decided = False

    @property
    def asked(self) -> bool:
        return self.options.accepting

    def decide(self, *, passed: bool) -> str | None:
        """Why ``--loso-accept`` may not write the accepted report (``None``: it may)."""
        if self.asked and not self._decided:
            self._decided = True
            not_run, compare = self.store.not_run(), self.options.compare
            if not_run:
                self.refusal = (f"NOT accepted: a partial run ({len(not_run)} gate tests did not run), "
                                f"{compare} is unchanged")
            elif not passed and not self.options.accept_force:
                self.refusal = (f"NOT accepted: tests failed, {compare} is unchanged "
                                "(--loso-accept-force accepts anyway)")
        return self.refusal

    def block(self) -> dict | None:
        """The report's ``acceptance`` block."""
        if not self.asked:
            return None
        refused = self.refusal or self.not_written  # refused by the policy, or not written (a full disk)
        return {"path": str(self.options.compare), "accepted": refused is None, "refused": refused}

    def accept(self, report: dict, *, write_error: str | None) -> str:
        """Replace the accepted report (and its predictions) with this run's; the terminal's note."""
        compare = self.options.compare
        assert compare is not None
        if write_error is not None:
            return f"NOT accepted: this run's report was not written, {compare} is unchanged"
        if self.refusal is not None:
            return self.refusal + ("; the run fails" if report["partial"] else "")
        written = report_paths(self.options.report_dir, partial=False)["json"]
        try:  # both or neither: the accepted report and its predictions file must match
            write_together([(predictions_path(compare), predictions_path(written).read_bytes()),
                            (compare, json.dumps(report, indent=2) + "\n")])
        except OSError as exc:  # e.g. a full disk: said, and the run fails; the old accepted report is kept
            self.not_written = (f"NOT accepted: {compare} could not be written ({exc.strerror or exc}), it is "
                                "unchanged; the run fails")
            return self.not_written
        return f"accepted: this run's report is now {compare}"
