"""The session's results: every gate test's outcome, aggregated into the report and written out.

Runs in the one process that sees every item's result (the xdist controller, or the only
process), so mean ± std over folds is the same with and without ``-n``. The JSON keeps
the keys of the team's evaluation scripts (``loso_per_fold``, ``loso_aggregate``,
``archs``, ``baselines``) and adds ``thresholds``, ``failures``, ``dropped_frames`` and
``run_provenance``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import write_atomically
from ..compare import aggregate_changes, session_comparison
from ..errors import LosoInputError
from ..metrics import across_seeds, aggregate, finite_or_none
from ..predictions import sidecar_path, write_sidecar
from ..thresholds import check_aggregate, check_seeds, for_seed
from .provenance import extraction_provenance, git_state, iso_time, sha256, table_provenance, versions
from .render import SROCC_METHODS, render_markdown

if TYPE_CHECKING:
    from ..gate import Gate

PRIMARY_ARCH = "mlp_small"  # what the single-arch keys (and the verdict's headline gate) describe when scored


def primary_arch(names: Iterable[str]) -> str | None:
    """The architecture a one-figure summary describes: ``mlp_small`` when scored, else the first by name."""
    names = sorted(names)
    return PRIMARY_ARCH if PRIMARY_ARCH in names else (names[0] if names else None)


def _clean(value: object) -> object:
    """NaN/inf become null, recursively: the report must be strict JSON."""
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _entry(result: dict) -> dict:
    """A fold's or baseline's metrics as the script wrote them, plus its error when it failed."""
    entry = dict(result["metrics"] or {})
    if result["error"]:
        entry["error"] = result["error"]
    return entry


@dataclass(frozen=True)
class AggregateVerdict:
    """The outcome of one architecture's aggregate test, ``aggregate[<arch>]``."""

    test: str
    outcome: str  # "passed", "failed", "skipped", or "not run" (in the report only)
    message: str = ""

    def to_json(self) -> dict:
        return {"test": self.test, "outcome": self.outcome, "message": self.message or None}


class SessionResults:
    """Results of the items that ran, gathered from their reports, and the session's report."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.options = gate.options
        self.results: dict[str, dict] = {}
        self.started = time.time()
        self.report: dict | None = None
        self.collection_errors: list[str] = []  # the gate could not make its items
        self.notes: list[str] = []  # what was written where, for the terminal summary
        self.accept_refusal: str | None = None  # why --loso-accept was refused: the run must fail
        self.write_error: str | None = None  # the report could not be written: the run must fail
        self.reported: set[str] = set()  # gate tests pytest reported an outcome for (aggregates included)
        self._accept_decided = False

    def add(self, result: dict) -> None:
        self.results[result["name"]] = result

    def add_collection_error(self, message: str) -> None:
        if message not in self.collection_errors:  # under xdist every worker reports it
            self.collection_errors.append(message)

    @property
    def nothing_ran(self) -> bool:
        """No gate test ran (e.g. ``-m "not loso"``): there is nothing to report."""
        return not self.results and not self.collection_errors

    def _planned(self) -> list:
        try:
            return self.gate.plan()
        except LosoInputError:
            return []  # the collection error is the report's story

    def _not_run(self) -> list[str]:
        """Planned tests that did not run (``-k``, ``--deselect``, ``--lf``, ``-x``...), aggregate
        tests included: a bound no test held must not show as held, nor as failed."""
        from ..items import aggregate_tests

        planned = self._planned()
        return sorted(({check.name for check in planned} - set(self.results))
                      | (set(aggregate_tests(planned)) - self.reported))

    def _ran(self) -> list[str]:
        """Planned tests that ran: those with a result, and the aggregate tests pytest reported."""
        from ..items import aggregate_tests

        return sorted(set(self.results) | (set(aggregate_tests(self._planned())) & self.reported))

    def _as_run(self, verdict: AggregateVerdict) -> AggregateVerdict:
        """The verdict as the session ran it: an aggregate test that was not run judged nothing."""
        if verdict.test in self.reported:
            return verdict
        why = verdict.message if verdict.outcome == "skipped" else (  # its folds' story, when they are partial
            f"loso::{verdict.test} did not run (deselected, or the session stopped first), so its bounds and "
            "comparison were not applied")
        return AggregateVerdict(verdict.test, "not run", why)

    def _fold_results(self, run: str) -> tuple[list[str], dict[str, dict]]:
        """The planned fold tests of ``run`` (arch or arch-seedN), and the results of those that ran."""
        planned = [c for c in self._planned() if c.kind == "fold" and c.run == run]
        ran = {c.source: self.results[c.name] for c in planned if c.name in self.results}
        return [c.name for c in planned], ran

    def _aggregate(self, run: str, per_fold: dict[str, dict]) -> dict | None:
        """Mean ± std over the folds that were scored, with how many were planned."""
        block = aggregate(m for m in per_fold.values() if "plcc" in m)
        if block is not None:
            block["n_folds_planned"] = len(self._fold_results(run)[0]) or block["n_folds"]
            scored = {s: r for s, r in self._fold_results(run)[1].items() if "plcc" in (per_fold.get(s) or {})}
            block.update(self._aggregate_intervals({run: scored}))
        return block

    def _aggregate_intervals(self, runs: dict[str, dict[str, dict]]) -> dict:
        """The mean over folds' two-stage intervals (sources, then clips) and, in ``noise`` mode,
        those of the mean difference from the accepted run when every fold was paired.

        ``runs`` is ``{run: {source: fold result}}``: one run (an aggregate), or one per seed (the
        mean across seeds): per source the mean over seeds, whose folds drew the same clips for each
        resample (same bootstrap seed, same clips), so their distributions average draw by draw.
        """
        import numpy as np

        from ..metrics import METRICS, two_stage_intervals

        options = self.options
        sources = sorted(set.intersection(*(set(scored) for scored in runs.values())))
        results = [scored[source] for scored in runs.values() for source in sources]
        if len(sources) < 2 or any("distribution" not in r for r in results):
            return {}  # no --loso-bootstrap, or a fold with fewer than 2 clips

        def distributions(key: str) -> np.ndarray:
            return np.stack([np.mean([np.frombuffer(scored[source][key], dtype=np.float64).reshape(len(METRICS), -1)
                                      for scored in runs.values()], axis=0) for source in sources])

        estimates = np.array([[np.mean([scored[source]["metrics"][name] for scored in runs.values()])
                               for name in METRICS] for source in sources])
        found: dict = {}
        found["ci"], found["ci_method"] = two_stage_intervals(estimates, distributions("distribution"),
                                                              seed=options.bootstrap_seed)
        if options.srocc_ranks != "average":
            found["ci"]["srocc"] = None
        if options.compare_mode == "noise" and self.gate.accepted is not None:
            unpaired = sorted(r["name"] for r in results if "paired_distribution" not in r)
            if unpaired:
                reasons = {((r["metrics"].get("paired") or {}).get("reason")) for r in results} - {None}
                found["paired"] = {"rule": "unpaired", "reason": f"{len(unpaired)} of {len(results)} folds were not "
                                   f"paired ({'; '.join(sorted(reasons))[:300]})"}
            else:
                archs = self.gate.accepted.get("archs", {})

                def delta(run: str, source: str, name: str) -> float:
                    # a metric the accepted report left null (undefined) has no difference: NaN, never a crash
                    before = ((archs.get(run) or {}).get("per_fold", {}).get(source) or {}).get(name)
                    now = runs[run][source]["metrics"][name]
                    return now - before if isinstance(before, (int, float)) else np.nan

                deltas = np.array([[np.mean([delta(run, source, name) for run in runs]) for name in METRICS]
                                   for source in sources])
                ci, methods = two_stage_intervals(deltas, distributions("paired_distribution"),
                                                  seed=options.bootstrap_seed)
                for i, name in enumerate(METRICS):
                    if options.srocc_ranks != "average" and name == "srocc" or np.isnan(deltas[:, i]).any():
                        ci[name] = None
                found["paired"] = {"rule": "paired", "ci": ci, "ci_method": methods}
        return found

    def _not_whole(self, test: str, run: str) -> AggregateVerdict | None:
        """A skip when some fold of ``run`` did not run or could not be scored: a mean over the
        others must not pass for the whole (the failed folds' own tests say what went wrong)."""
        planned, ran = self._fold_results(run)
        if not planned:
            return AggregateVerdict(test, "skipped", f"no fold of {run} is planned")
        if len(ran) < len(planned):
            return AggregateVerdict(test, "skipped", f"partial run: {len(ran)} of {len(planned)} folds of {run} "
                                    "ran, so the aggregate bounds and comparison were not applied")
        failed = sorted(r["name"] for r in ran.values() if not r["metrics"])
        if failed:
            return AggregateVerdict(test, "skipped", f"the aggregate of {run} covers {len(ran) - len(failed)} of "
                                    f"{len(planned)} folds ({', '.join(failed)} could not be scored), so its "
                                    "bounds and comparison were not applied")
        return None

    def _regressions(self, who: str, before: object, after: dict) -> list[str]:
        """``after``'s mean metrics that slid beyond the allowance from the accepted ``before``."""
        if not isinstance(before, dict):
            return []
        changes = aggregate_changes(before, after, self.options.max_drop, self.options.compare_mode)
        return [f"{who}: mean {c.sentence()}" for c in changes if c.verdict == "REGRESSED"]

    def aggregate_verdict(self, run: str) -> AggregateVerdict:
        """Whether ``run``'s mean over folds holds: its bounds and its comparison with the accepted report."""
        test = f"aggregate[{run}]"
        skip = self._not_whole(test, run)
        if skip is not None:
            return skip
        block = self._aggregate(run, {s: r["metrics"] for s, r in self._fold_results(run)[1].items()})
        assert block is not None
        seeded = any(c.seed is not None for c in self._planned() if c.kind == "fold" and c.run == run)
        thresholds = for_seed(self.options.thresholds) if seeded else self.options.thresholds
        lines = [f"{run}: {v.sentence()} over {block['n_folds']} folds" for v in check_aggregate(block, thresholds)]
        accepted = self.gate.accepted or {}
        lines += self._regressions(run, (accepted.get("archs", {}).get(run) or {}).get("aggregate"), block)
        return AggregateVerdict(test, "failed" if lines else "passed", "\n".join(lines))

    def seed_runs(self, arch: str) -> dict[int, str]:
        """``{seed: run}`` of an architecture trained over seeds."""
        return {c.seed: c.run for c in self._planned() if c.kind == "fold" and c.arch == arch and c.seed is not None}

    def seed_summary(self, arch: str) -> dict | None:
        """The across-seed figures of ``arch`` over the folds that were scored (``None`` without any)."""
        per_seed = {seed: {source: r["metrics"] for source, r in self._fold_results(run)[1].items() if r["metrics"]}
                    for seed, run in self.seed_runs(arch).items()}
        per_seed = {seed: folds for seed, folds in per_seed.items() if folds}
        if not per_seed:
            return None
        summary = across_seeds(per_seed)
        # the mean across seeds gets its interval too (and, in noise mode, its paired difference)
        scored = {run: {s: r for s, r in self._fold_results(run)[1].items() if r["metrics"]}
                  for seed, run in self.seed_runs(arch).items() if seed in per_seed}
        summary.update(self._aggregate_intervals(scored))
        return summary

    def seed_verdict(self, arch: str) -> AggregateVerdict:
        """The promotion rule over seeds (ADR-0303), and the across-seed comparison; whole runs only."""
        test = f"seeds[{arch}]"
        for run in self.seed_runs(arch).values():
            skip = self._not_whole(test, run)
            if skip is not None:
                return skip
        summary = self.seed_summary(arch)
        assert summary is not None
        who = f"{arch} over {summary['n_seeds']} seeds"
        lines = [f"{who}: {v.sentence()}" for v in check_seeds(summary, self.options.thresholds)]
        lines += self._regressions(who, ((self.gate.accepted or {}).get("seeds") or {}).get(arch), summary)
        return AggregateVerdict(test, "failed" if lines else "passed", "\n".join(lines))

    def verdict(self, test: str) -> AggregateVerdict:
        """The verdict of an aggregate test by name: ``aggregate[<run>]`` or ``seeds[<arch>]``."""
        kind, _, rest = test.partition("[")
        return self.seed_verdict(rest[:-1]) if kind == "seeds" else self.aggregate_verdict(rest[:-1])

    def build(self, argv: list[str], cwd: Path) -> dict:
        """Aggregate per architecture and assemble the whole report.

        A partial run (some planned tests not run) is reported as such: its aggregate is
        shown but not held to the aggregate bounds, and it is never compared as a whole.
        """
        gate, extraction = self.gate, self.gate.extraction()
        not_run = self._not_run()
        results = sorted(self.results.values(), key=lambda r: r["name"])
        ran = self._ran()  # the aggregate tests that ran too: "N of M" counts every planned gate test
        archs: dict[str, dict] = {}
        for r in (r for r in results if r["kind"] == "fold"):
            archs.setdefault(r["arch"], {"per_fold": {}, "aggregate": None})["per_fold"][r["source"]] = _entry(r)
        failures = [{"test": "loso", "message": m} for m in self.collection_errors]
        failures += [{"test": r["name"], "message": r["error"]} for r in results if r["error"]]
        aggregate_checks = {}
        for arch, block in sorted(archs.items()):
            block["aggregate"] = self._aggregate(arch, block["per_fold"])
            verdict = self._as_run(self.aggregate_verdict(arch))
            aggregate_checks[arch] = verdict.to_json()
            if verdict.outcome == "failed":
                failures.append({"test": verdict.test, "message": verdict.message})
        seeds = {}
        for arch in sorted({c.arch for c in self._planned() if c.kind == "fold" and c.seed is not None}):
            summary = self.seed_summary(arch)
            if summary is None:
                continue
            verdict = self._as_run(self.seed_verdict(arch))
            seeds[arch] = dict(summary, check=verdict.to_json())
            if verdict.outcome == "failed":
                failures.append({"test": verdict.test, "message": verdict.message})
        primary = primary_arch(archs)
        baselines = {
            r["label"]: {
                "model_path": r["model_path"],
                "per_clip": r.get("per_clip", {}),
                "all_clips_concat": _entry(r),
            }
            for r in results
            if r["kind"] == "baseline"
        }
        ensembles = {
            r["label"]: {
                "members": r.get("members", {}),
                "per_clip": r.get("per_clip", {}),
                "all_clips_concat": _entry(r),
            }
            for r in results
            if r["kind"] == "ensemble"
        }
        sources: dict[str, dict] = {}
        models: dict[str, dict] = {}
        for r in results:
            sources.update(r.get("sources", {}))
            models.update(r.get("models", {}))
        computed, recomputed = set(extraction["computed"]), dict(extraction["recomputed"])
        for r in results:
            computed.update(r.get("extraction", {}).get("computed", []))
            recomputed.update(r.get("extraction", {}).get("recomputed", {}))
        for r in results:  # models that failed to load still get their file's hash
            models.setdefault(r["model_path"], {"sha256": sha256(Path(r["model_path"]))})
        file_sha256 = {name: digest for v in sources.values() for name, digest in v.get("file_sha256", {}).items()}
        fingerprint = hashlib.sha256(
            "".join(f"{s}:{sources[s]['fingerprint']}\n" for s in sorted(sources)).encode()
        ).hexdigest()
        report_dir = self.options.report_dir
        self.report = _clean({
            "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "corpus": str(self.options.table or self.options.data_root),
            "loso_per_fold": archs[primary]["per_fold"] if primary else {},
            "loso_aggregate": archs[primary]["aggregate"] if primary else None,
            "loso_primary_arch": primary,
            "archs": archs,
            "baselines": baselines,
            "ensembles": ensembles,
            "aggregate_checks": aggregate_checks,
            "seeds": seeds,
            "thresholds": self.options.thresholds.to_json(),
            "srocc_method": SROCC_METHODS[self.options.srocc_ranks],
            "failures": failures + ([{"test": "accept", "message": self.accept_refusal}]
                                    if "accept" in self.reported else []),
            "acceptance": {"path": str(self.options.compare), "accepted": self.accept_refusal is None,
                           "refused": self.accept_refusal} if self.accepting else None,
            "dropped_frames": {s: v["dropped"] for s, v in sorted(sources.items()) if v["dropped"]},
            "warnings": gate.corpus_warnings(),
            "partial": {"not_run": not_run, "ran": len(ran), "tests_ran": ran}
            if not_run else None,
            "run_provenance": {
                "entry_point": "pytest11: loso = pytest_loso.plugin",
                "plugin_version": versions()["pytest-loso"],
                "argv": argv,
                "cwd": str(cwd),
                "options": self.options.to_json(),
                "data_root": str(self.options.data_root) if self.options.data_root else None,
                "table": table_provenance(gate),
                "cache_dir": str(self.options.cache_dir),
                "loso_dirs": [str(p) for p in self.options.loso_dirs],
                "archs": sorted(archs),
                "baselines": {str(p): sha256(p) for p in self.options.baselines},
                "models": dict(sorted(models.items())),
                "outputs": {kind: str(path) for kind, path in report_paths(report_dir, partial=bool(not_run)).items()},
                "cache_fingerprint": {
                    "sha256": fingerprint,
                    "sources": {s: v["fingerprint"] for s, v in sorted(sources.items())},
                    # a table is one file, read for every source
                    "files": len(file_sha256),
                    "file_sha256": dict(sorted(file_sha256.items())),
                },
                # a table is read as it is: no cache, nothing computed
                "extraction": None if self.options.table else extraction_provenance(
                    extraction["extractor"], computed, recomputed,
                    {str(self.options.cache_dir / name) for name in file_sha256},
                    extraction.get("kept_on_recompute", [])),
                "git": git_state(cwd),
                "versions": versions(),
                "items_run": len(results),
                "started": iso_time(self.started),
                "finished": iso_time(time.time()),
            },
        })
        if not_run:
            self.notes.append(f"partial run: {len(not_run)} of {len(not_run) + len(ran)} gate tests did not run; "
                              "the aggregate bounds and the aggregate comparison were not applied")
        if gate.accepted is not None and self.options.compare is not None:
            comparison = session_comparison(gate.accepted, self.report, self.options.max_drop,
                                            self.options.compare_mode, self.options.compare, not_run)
            self.report["comparison"] = _clean(comparison)
        return self.report

    def write(self) -> list[Path]:
        """Write ``loso_eval.json`` and ``loso_eval.md`` atomically; return their paths.

        A partial run writes ``loso_eval.partial.*`` beside them: it must not replace a whole run's report.
        """
        assert self.report is not None
        out = self.options.report_dir
        paths = report_paths(out, partial=bool(self.report["partial"]))
        json_path, md_path = paths["json"], paths["markdown"]
        entries = {name: r["predictions"] for name, r in sorted(self.results.items()) if r.get("predictions")}
        sidecar = sidecar_path(json_path)
        writing = out  # the file being written, for the message (an atomic write fails on its temporary)
        try:  # checked at start; a disk that fills (or a folder changed) since is said, not a traceback
            out.mkdir(parents=True, exist_ok=True)
            # each test's predictions, for a later paired comparison; the report records the file's sha256
            # (a reader checks it, so an older report never pairs with these predictions)
            writing = sidecar
            self.report["predictions"] = {"file": sidecar.name, "sha256": write_sidecar(sidecar, entries),
                                          "tests": len(entries)}
            writing = json_path
            write_atomically(json_path, json.dumps(self.report, indent=2) + "\n")
            writing = md_path
            write_atomically(md_path, render_markdown(self.report))
        except OSError as exc:
            self.write_error = (f"report NOT written: {writing}: {exc.strerror or exc}; "
                                "the run fails, as its report is lost")
            self.notes.append(self.write_error)
            return []
        self.notes.append(f"report: {json_path} (and {md_path.name})")
        if self.report["partial"]:
            whole = report_paths(out, partial=False)["json"]
            self.notes.append(f"partial run: written beside the whole run's report, {whole} is left as it was")
        return [json_path, md_path]

    def publish(self, *, passed: bool) -> None:
        """The optional outputs: OpenMetrics, GitHub step summary, plots, and accepting the report."""
        from ..ci import append_step_summary, write_openmetrics

        assert self.report is not None
        options = self.options
        if options.metrics_path is not None:
            try:
                write_openmetrics(options.metrics_path, self.report)
                self.notes.append(f"metrics: {options.metrics_path}")
            except OSError as exc:  # the report is written; say what could not be, and go on
                self.notes.append(f"metrics NOT written: {options.metrics_path}: {exc.strerror or exc}")
        target = os.environ.get("GITHUB_STEP_SUMMARY")
        if target:
            try:
                append_step_summary(Path(target), render_markdown(self.report, summary=True))
                self.notes.append(f"step summary: appended to {target}")
            except OSError as exc:
                self.notes.append(f"step summary NOT written: $GITHUB_STEP_SUMMARY={target}: {exc.strerror or exc}")
        if options.verdict_path is not None:
            from ..verdict import write_verdict

            verdict = write_verdict(options.verdict_path, self.report, options.thresholds, passed=passed,
                                    write_error=self.write_error)
            reasons = [r if len(r) <= 160 else r[:159] + "…" for r in verdict["reasons"]]  # whole in the file
            self.notes.append(f"verdict: {verdict['verdict']} written to {options.verdict_path}"
                              + (f" ({'; '.join(reasons)})" if reasons else ""))
        if options.plot_dir is not None:
            from ..plots import write_plots

            for path in write_plots(options.plot_dir, self.report, self.results, options.thresholds):
                self.notes.append(f"plot: {path}")
        if self.accepting and self.write_error is not None:
            self.notes.append(f"NOT accepted: this run's report was not written, {options.compare} is unchanged")
        elif self.accepting:
            if self.accept_refusal is None:
                # the predictions first: a report never names a sidecar that is not there yet
                written = sidecar_path(report_paths(options.report_dir, partial=False)["json"])
                write_atomically(sidecar_path(options.compare), written.read_bytes())
                write_atomically(options.compare, json.dumps(self.report, indent=2) + "\n")
                self.notes.append(f"accepted: this run's report is now {options.compare}")
            else:
                self.notes.append(self.accept_refusal + ("; the run fails" if self.report["partial"] else ""))

    @property
    def accepting(self) -> bool:
        return self.options.accept and self.options.compare is not None

    def decide_accept(self, *, passed: bool) -> str | None:
        """Why ``--loso-accept`` may not write the accepted report (``None``: it may). Decided once, at
        the end of the run loop where a refusal can still be a test pytest counts (``accept``)."""
        if self.accepting and not self._accept_decided:
            self._accept_decided = True
            not_run, compare = self._not_run(), self.options.compare
            if not_run:
                self.accept_refusal = (f"NOT accepted: a partial run ({len(not_run)} gate tests did not run), "
                                       f"{compare} is unchanged")
            elif not passed and not self.options.accept_force:
                self.accept_refusal = (f"NOT accepted: tests failed, {compare} is unchanged "
                                       "(--loso-accept-force accepts anyway)")
        return self.accept_refusal


def report_paths(report_dir: Path, *, partial: bool) -> dict[str, Path]:
    """``loso_eval.json`` / ``.md``, or ``loso_eval.partial.json`` / ``.md`` for a partial run."""
    stem = "loso_eval.partial" if partial else "loso_eval"
    return {"json": report_dir / f"{stem}.json", "markdown": report_dir / f"{stem}.md"}


def report_files(report_dir: Path) -> list[Path]:
    """Every file a run may write in ``report_dir``: a whole or partial run's report, Markdown and predictions."""
    files = []
    for partial in (False, True):
        paths = report_paths(report_dir, partial=partial)
        files += [paths["json"], paths["markdown"], sidecar_path(paths["json"])]
    return files
