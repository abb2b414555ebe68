"""Writing the report and the optional outputs: each returns the terminal's notes on what it
wrote where, and says what it could not write instead of raising (the report is what CI keeps)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import hashlib

from ..files import write_together
from ..ids import predictions_path, report_paths
from ..predictions import predictions_bytes
from ..records import TestResult
from ..settings import GateOptions
from .render import render_markdown


def write_report(report: dict, results: dict[str, TestResult], report_dir: Path) -> tuple[list[str], str | None]:
    """Write ``loso_eval.json``, ``loso_eval.md`` and the predictions file atomically: ``(notes, error)``,
    the error when the report could not be written (the run then fails).

    A partial run, or one whose gate could not plan its tests (a collection error), writes
    ``loso_eval.partial.*`` beside them: it must not replace a whole run's report. The three files
    are renamed into place only once all are written: a failed write leaves the old set as it was.
    """
    unplanned = not report["partial"] and kept_apart(report)
    paths = report_paths(report_dir, partial=kept_apart(report))
    json_path, md_path = paths["json"], paths["markdown"]
    entries = {name: r["predictions"] for name, r in sorted(results.items()) if r.get("predictions")}
    predictions = predictions_path(json_path)
    try:  # checked at start; a disk that fills (or a folder changed) since is said, not a traceback
        # each test's predictions, for a later paired comparison; the report records the file's sha256
        # (a reader checks it, so an older report never pairs with these predictions)
        data = predictions_bytes(entries)
        report["predictions"] = {"file": predictions.name, "sha256": hashlib.sha256(data).hexdigest(),
                                 "tests": len(entries)}
        write_together([(predictions, data), (json_path, json.dumps(report, indent=2) + "\n"),
                        (md_path, render_markdown(report))])
    except OSError as exc:
        where = exc.filename or json_path
        error = (f"report NOT written: {where}: {exc.strerror or exc}; the run fails, as its report is lost "
                 f"({json_path.name} and {predictions.name} are left as they were)")
        return [error], error
    notes = [f"report: {json_path} (and {md_path.name})"]
    if unplanned:
        whole = report_paths(report_dir, partial=False)["json"]
        notes.append(f"the gate could not make its tests: written beside the whole run's report, {whole} is left "
                     "as it was")
    elif report["partial"]:
        whole = report_paths(report_dir, partial=False)["json"]
        notes.append(f"partial run: written beside the whole run's report, {whole} is left as it was")
    return notes, None


def kept_apart(report: dict) -> bool:
    """Written as ``loso_eval.partial.*``: a partial run, or a run whose gate could not plan (its
    collection error), neither of which may replace the last whole run's report."""
    return bool(report["partial"]) or any(f["test"] == "loso" for f in report["failures"])


def partial_metrics_path(path: Path) -> Path:
    """Where a partial run writes ``--loso-metrics``: ``metrics.txt`` -> ``metrics.partial.txt``."""
    return path.with_name(f"{path.stem}.partial{path.suffix}") if path.suffix else path.with_name(f"{path.name}.partial")


def publish(report: dict, results: dict[str, TestResult], options: GateOptions, *, passed: bool,
            write_error: str | None) -> list[str]:
    """The optional outputs: OpenMetrics, the GitHub step summary, the verdict and the plots."""
    from ..ci import append_step_summary, write_openmetrics

    notes = []
    if options.metrics_path is not None:
        # like the report, a partial run's metrics must not replace a whole run's
        metrics_path = partial_metrics_path(options.metrics_path) if kept_apart(report) else options.metrics_path
        try:
            write_openmetrics(metrics_path, report)
            notes.append(f"metrics: {metrics_path}" + (
                f" (partial run: written beside {options.metrics_path}, which is left as it was)"
                if metrics_path != options.metrics_path else ""))
        except OSError as exc:  # the report is written; say what could not be, and go on
            notes.append(f"metrics NOT written: {metrics_path}: {exc.strerror or exc}")
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target:
        try:
            append_step_summary(Path(target), render_markdown(report, summary=True))
            notes.append(f"step summary: appended to {target}")
        except OSError as exc:
            notes.append(f"step summary NOT written: $GITHUB_STEP_SUMMARY={target}: {exc.strerror or exc}")
    if options.verdict_path is not None:
        from ..verdict import write_verdict

        try:
            verdict = write_verdict(options.verdict_path, report, options.thresholds, passed=passed,
                                    write_error=write_error)
        except OSError as exc:  # e.g. a full disk: said, never a traceback that loses JUnit
            notes.append(f"verdict NOT written: {options.verdict_path}: {exc.strerror or exc}")
        else:
            reasons = [r if len(r) <= 160 else r[:159] + "…" for r in verdict["reasons"]]  # whole in the file
            notes.append(f"verdict: {verdict['verdict']} written to {options.verdict_path}"
                         + (f" ({'; '.join(reasons)})" if reasons else ""))
    if options.plot_dir is not None:
        from ..plots import write_plots

        try:
            notes += [f"plot: {path}" for path in write_plots(options.plot_dir, report, results, options.thresholds)]
        except OSError as exc:
            notes.append(f"plots NOT written: {options.plot_dir}: {exc.strerror or exc}")
    return notes
