"""Writing reports: the session's results aggregated into JSON, Markdown and terminal tables.

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
import platform
import subprocess
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import write_atomically
from .compare import aggregate_changes, session_comparison
from .errors import LosoInputError
from .metrics import CI_METHOD, across_seeds, aggregate, digits, finite_or_none, label
from .predictions import sidecar_path, write_sidecar
from .thresholds import check_aggregate, check_seeds, for_seed

if TYPE_CHECKING:
    from .gate import Gate

PRIMARY_ARCH = "mlp_small"  # what the single-arch keys describe when it was scored
SROCC_METHODS = {"average": "average ranks (scipy.stats.spearmanr)",
                 "ordinal": "ordinal ranks argsort(argsort(x)), ties not averaged"}


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


def _sha256(path: Path) -> str | None:
    """The file's sha256; ``None`` when it is not a regular file (a FIFO would never end)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    except OSError:
        return None


def _git(cwd: Path) -> dict | None:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("pytest-loso", "pytest", "numpy", "scipy", "onnx", "onnxruntime"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


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
        from .items import aggregate_tests

        planned = self._planned()
        return sorted(({check.name for check in planned} - set(self.results))
                      | (set(aggregate_tests(planned)) - self.reported))

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

        from .metrics import METRICS, two_stage_intervals

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
        primary = PRIMARY_ARCH if PRIMARY_ARCH in archs else min(archs, default=None)
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
            models.setdefault(r["model_path"], {"sha256": _sha256(Path(r["model_path"]))})
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
            "partial": {"not_run": not_run, "ran": len(results), "tests_ran": [r["name"] for r in results]}
            if not_run else None,
            "run_provenance": {
                "entry_point": "pytest11: loso = pytest_loso.plugin",
                "plugin_version": _versions()["pytest-loso"],
                "argv": argv,
                "cwd": str(cwd),
                "options": self.options.to_json(),
                "data_root": str(self.options.data_root) if self.options.data_root else None,
                "table": _table_provenance(gate),
                "cache_dir": str(self.options.cache_dir),
                "loso_dirs": [str(p) for p in self.options.loso_dirs],
                "archs": sorted(archs),
                "baselines": {str(p): _sha256(p) for p in self.options.baselines},
                "models": dict(sorted(models.items())),
                "outputs": {kind: str(path) for kind, path in report_paths(report_dir, partial=bool(not_run)).items()},
                "cache_fingerprint": {
                    "sha256": fingerprint,
                    "sources": {s: v["fingerprint"] for s, v in sorted(sources.items())},
                    "files": sum(v["cache_files"] for v in sources.values()),
                },
                "extraction": _extraction_provenance(extraction["extractor"], computed, recomputed, sources,
                                                     extraction.get("kept_on_recompute", [])),
                "git": _git(cwd),
                "versions": _versions(),
                "items_run": len(results),
                "started": _iso(self.started),
                "finished": _iso(time.time()),
            },
        })
        if not_run:
            self.notes.append(f"partial run: {len(not_run)} of {len(not_run) + len(results)} gate tests did not run; "
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
        out.mkdir(parents=True, exist_ok=True)
        paths = report_paths(out, partial=bool(self.report["partial"]))
        json_path, md_path = paths["json"], paths["markdown"]
        entries = {name: r["predictions"] for name, r in sorted(self.results.items()) if r.get("predictions")}
        sidecar = sidecar_path(json_path)
        # each test's predictions, for a later paired comparison; the report records the file's sha256
        self.report["predictions"] = {"file": sidecar.name, "sha256": write_sidecar(sidecar, entries),
                                      "tests": len(entries)}
        write_atomically(json_path, json.dumps(self.report, indent=2) + "\n")
        write_atomically(md_path, render_markdown(self.report))
        self.notes.append(f"report: {json_path} (and {md_path.name})")
        if self.report["partial"]:
            whole = report_paths(out, partial=False)["json"]
            self.notes.append(f"partial run: written beside the whole run's report, {whole} is left as it was")
        return [json_path, md_path]

    def publish(self, *, passed: bool) -> None:
        """The optional outputs: OpenMetrics, GitHub step summary, plots, and accepting the report."""
        from .ci import append_step_summary, write_openmetrics

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
            from .verdict import write_verdict

            verdict = write_verdict(options.verdict_path, self.report, passed=passed)
            self.notes.append(f"verdict: {verdict['verdict']} written to {options.verdict_path}"
                              + (f" ({'; '.join(verdict['reasons'])})" if verdict["reasons"] else ""))
        if options.plot_dir is not None:
            from .plots import write_plots

            for path in write_plots(options.plot_dir, self.report, self.results, options.thresholds):
                self.notes.append(f"plot: {path}")
        if self.accepting:
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


def _extraction_provenance(extractor: dict | None, computed: set, recomputed: dict, sources: dict,
                           kept: list[str]) -> dict:
    """Which libvmaf filled the cache, and how many pairs it computed versus read."""
    from .extract import Extractor

    files = sum(v["cache_files"] for v in sources.values())
    done = len(computed | set(recomputed))
    described = None
    if extractor is not None:
        described = dict(extractor, version=Extractor(extractor["kind"], Path(extractor["path"])).version())
    return {
        "extractor": described,
        "pairs_computed": done,
        "pairs_read_from_cache": max(files - done, 0),
        "corrupt_recomputed": sorted(p for p, why in recomputed.items() if why == "corrupt"),
        # made differently from this run (another frame size, clip or extractor), or --loso-recompute
        "stale_recomputed": sorted(p for p, why in recomputed.items() if why == "stale"),
        "forced_recomputed": sorted(p for p, why in recomputed.items() if why == "forced"),
        "kept_on_recompute": sorted(kept),  # --loso-recompute left them: another tool wrote them
    }


_MD_ESCAPES = {"|": "\\|", "\\": "\\\\", "`": "\\`", "<": "&lt;", ">": "&gt;", "&": "&amp;", "\n": " ", "\r": " "}


def _md(text: object) -> str:
    """``text`` as literal Markdown: folder names and messages may hold ``|``, newlines or HTML."""
    return "".join(_MD_ESCAPES.get(char, char) for char in str(text))


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))


def _num(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _with_ci(m: dict, name: str, digits: int) -> str:
    text = _num(m[name], digits)
    interval = (m.get("ci") or {}).get(name)
    if not interval:
        return text
    method = (m.get("ci_method") or {}).get(name, "")
    shown = "" if method == CI_METHOD else f" ({method})"  # the table's note names BCa; fallbacks are named here
    return f"{text} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]{shown}"


def _with_logistic(m: dict, name: str, digits: int) -> str:
    """The metric with its interval, and after the logistic mapping when ``--loso-logistic`` computed it."""
    text = _with_ci(m, name, digits)
    key = f"{name}_logistic"
    return f"{text}; logistic {_num(m[key], digits)}" if key in m else text


def _row(label: str, m: dict, *, checked: bool = True) -> list[str]:
    """One scored set of frames; ``checked=False`` for rows no bound applies to (status "—")."""
    if "plcc" not in m:
        return [label, "—", "—", "—", "—", "—", "FAILED"]
    status = ("FAILED" if "error" in m else "ok") if checked else "—"
    return [label, str(m["n"]), _with_logistic(m, "plcc", 4), _with_ci(m, "srocc", 4), _num(m.get("krcc"), 4),
            _with_logistic(m, "rmse", 3), status]


def _mean_row(agg: dict | None) -> list[str]:
    if agg is None:
        return ["mean ± std", "—", "—", "—", "—", "—", ""]

    def pm(name: str, digits: int) -> str:
        text = f"{_num(agg['mean_' + name], digits)} ± {_num(agg['std_' + name], digits)}"
        interval = (agg.get("ci") or {}).get(name)  # the mean's two-stage bootstrap interval
        return text + (f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]" if interval else "")

    krcc = pm("krcc", 4) if "mean_krcc" in agg else "—"
    return [f"mean ± std ({_fold_count(agg)})", "—", pm("plcc", 4), pm("srocc", 4), krcc, pm("rmse", 3), ""]


def _fold_count(agg: dict) -> str:
    """``9 folds``, or ``7 of 9 folds`` when some planned folds are missing from the mean."""
    n, planned = agg["n_folds"], agg.get("n_folds_planned", agg["n_folds"])
    return f"{n} folds" if n == planned else f"{n} of {planned} folds"


AGGREGATE_STATUS = {"passed": "ok", "failed": "FAILED", "skipped": "not checked", "not run": "not run"}


def _aggregate_status(report: dict, arch: str) -> str:
    check = (report.get("aggregate_checks") or {}).get(arch)
    return AGGREGATE_STATUS[check["outcome"]] if check else "—"


def tables(report: dict, *, concat_only: bool = False) -> list[tuple[str, list[list[str]]]]:
    """(title, rows) for every table of the report; shared by Markdown and the terminal."""
    out = []
    for arch, block in report["archs"].items():
        rows = [_row(source, m) for source, m in block["per_fold"].items()]
        rows.append(_mean_row(block["aggregate"])[:-1] + [_aggregate_status(report, arch)])
        out.append((f"{arch}: each fold on its held-out source", rows))
    for arch, summary in (report.get("seeds") or {}).items():
        out += _seed_tables(arch, summary, concat_only)
    for tag, block in report["baselines"].items():
        # per-source rows are context: only the concatenation is held to the bounds
        rows = [] if concat_only else [_row(source, m, checked=False) for source, m in block["per_clip"].items()]
        rows.append(_row("all sources concatenated", block["all_clips_concat"]))
        out.append((f"baseline {tag} ({block['model_path']})", rows))
    for name, block in (report.get("ensembles") or {}).items():
        rows = [] if concat_only else [_row(source, m, checked=False) + [_coverage(m)]
                                       for source, m in block["per_clip"].items()]
        rows.append(_row("all sources concatenated (mean μ)", block["all_clips_concat"]) +
                    [_coverage(block["all_clips_concat"])])
        rows += [_row(f"member {Path(path).name}", m["all_clips_concat"], checked=False) + [""]
                 for path, m in block["members"].items() if "all_clips_concat" in m]
        out.append((f"ensemble {name} ({len(block['members'])} members)", rows))
    return out


def _coverage(m: dict) -> str:
    """The ensemble's spread: mean σ, and the share of frames inside μ ± 1.96σ."""
    if "coverage_95" not in m:
        return "—"
    return f"σ {m['mean_sigma']:.3f}, {100 * m['coverage_95']:.1f}% in μ±1.96σ"


def _seed_tables(arch: str, summary: dict, short: bool) -> list[tuple[str, list[list[str]]]]:
    """Each seed's mean over folds, the mean over seeds with its spread, and each fold across seeds."""
    def pm(block: dict, name: str, digits: int) -> str:
        return f"{_num(block['mean_' + name], digits)} ± {_num(block['std_' + name], digits)}"

    def spread(name: str, digits: int) -> str:
        return _num(summary[f"spread_{name}"], digits)

    rows = [[f"seed {seed}", f"{agg['n_folds']} folds", pm(agg, "plcc", 4), pm(agg, "srocc", 4), "—",
             pm(agg, "rmse", 3), ""] for seed, agg in summary["per_seed"].items()]
    rows.append([f"mean ± std over {summary['n_seeds']} seeds", "—", pm(summary, "plcc", 4), pm(summary, "srocc", 4),
                 "—", pm(summary, "rmse", 3), AGGREGATE_STATUS[summary["check"]["outcome"]]])
    rows.append(["spread (max − min)", "—", spread("plcc", 4), spread("srocc", 4), "—", spread("rmse", 3), ""])
    rows.append([f"lowest seed: {summary['lowest_seed']}", "—", _num(summary["lowest_seed_mean_plcc"], 4),
                 "—", "—", "—", ""])
    out = [(f"{arch} over seeds: each seed's mean over folds", rows)]
    if not short:
        folds = [[source, f"{agg['n_seeds']} seeds", pm(agg, "plcc", 4), pm(agg, "srocc", 4), "—",
                  pm(agg, "rmse", 3), ""] for source, agg in summary["per_fold"].items()]
        out.append((f"{arch} over seeds: each fold's mean ± std across seeds", folds))
    return out


HEADER = ["split", "n", "PLCC", "SROCC", "KRCC", "RMSE", "status"]


def _header(rows: list[list[str]]) -> list[str]:
    """The columns of a table: an ensemble's rows add its spread."""
    return HEADER + ["spread"] if rows and len(rows[0]) > len(HEADER) else HEADER


def render_markdown(report: dict, *, summary: bool = False) -> str:
    """The report as Markdown; ``summary`` leaves out baselines' per-source rows and provenance."""
    lines = ["# LOSO evaluation", "", f"Generated: {report['generated']}  ", f"Corpus: `{report['corpus']}`", ""]
    partial = report.get("partial")
    if partial:
        ran = partial.get("tests_ran") or []
        lines += [f"**Partial run:** {partial['ran']} of {partial['ran'] + len(partial['not_run'])} gate tests ran "
                  f"({_md(', '.join(ran)) or 'none'}); not run: {_md(', '.join(partial['not_run']))}. "
                  "Means below cover only the folds that ran: they are not the aggregate, and no aggregate "
                  "bound or comparison was applied.", ""]
    if report["archs"]:
        title = "Mean over the folds that ran (partial run: not the aggregate)" if partial else \
            "Aggregate (mean ± std across folds)"
        lines += [f"## {title}", "", "| arch | folds | PLCC | SROCC | RMSE | status |",
                  "|---|---:|---:|---:|---:|---|"]
        for arch, block in report["archs"].items():
            row = _mean_row(block["aggregate"])
            folds = _fold_count(block["aggregate"]) if block["aggregate"] else "0 folds"
            lines.append(f"| {_md(arch)} | {folds} | {row[2]} | {row[3]} | {row[5]} | {_aggregate_status(report, arch)} |")
        lines.append("")
        notes = [f"- **aggregate[{_md(arch)}]** not checked: {_md(check['message'])}"
                 for arch, check in (report.get("aggregate_checks") or {}).items()
                 if check["outcome"] in ("skipped", "not run")]
        lines += notes + ([""] if notes else [])
    for title, rows in tables(report, concat_only=summary):
        header = _header(rows)
        lines += [f"## {_md(title)}", "", "| " + " | ".join(header) + " |",
                  "|---|" + "---:|" * 5 + "---|" * (len(header) - 6)]
        lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
        lines.append("")
    resamples = report.get("run_provenance", {}).get("options", {}).get("bootstrap", {}).get("resamples")
    if resamples:
        lines += [f"Intervals: 95% {CI_METHOD} bootstrap over clips ({resamples} resamples); "
                  "an interval made otherwise names its method.", ""]
    lines += [f"SROCC: {report.get('srocc_method', SROCC_METHODS['average'])}.", ""]
    lines += thresholds_markdown(report["thresholds"])
    lines += comparison_markdown(report.get("comparison"))
    if report["failures"]:
        lines += ["## Failures", ""]
        for failure in report["failures"]:
            lines.append(f"- **{_md(failure['test'])}**: {_md(failure['message'])}")
        lines.append("")
    if report["warnings"]:
        lines += ["## Warnings", ""] + [f"- {_md(w)}" for w in report["warnings"]] + [""]
    if report["dropped_frames"]:
        lines += ["## Frames dropped to align features and scores", ""]
        for source, pairs in report["dropped_frames"].items():
            for stem, c in pairs.items():
                lines.append(
                    f"- {_md(source)}/{_md(stem)}: {c['feature_frames']} feature vs {c['score_frames']} score frames, "
                    f"{c['dropped']} dropped"
                )
        lines.append("")
    if summary:
        return "\n".join(lines)
    provenance = report["run_provenance"]
    lines += [
        "## Provenance",
        "",
        f"- plugin {provenance['plugin_version']}, {provenance['entry_point']}",
        f"- command: {_md(' '.join(provenance['argv']))}",
        f"- cache fingerprint: `{provenance['cache_fingerprint']['sha256']}` "
        f"({provenance['cache_fingerprint']['files']} files)",
        f"- git: {provenance['git']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in provenance['versions'].items())}",
        "",
    ]
    return "\n".join(lines)


def thresholds_markdown(thresholds: dict) -> list[str]:
    """The bounds this run held its tests to ("off" where a bound is disabled)."""
    def bounds(values: dict) -> str:
        return ", ".join(f"{label(key.split('_', 1)[1])} {'≥' if key.startswith('min') else '≤'} "
                         + ("off" if value is None else f"{value:g}") for key, value in values.items())

    lines = ["## Thresholds", "", f"- each fold, and each baseline on all sources: {bounds(thresholds['fold'])}"]
    lines += [f"- fold {_md(source)}: {bounds(b)}" for source, b in thresholds["per_source"].items()]
    lines += [f"- each architecture's mean over folds: {bounds(thresholds['aggregate'])}",
              "- baselines' per-source rows: not held to a bound (status —)", ""]
    return lines


def comparison_rows(comparison: dict, *, changed_only: bool) -> list[list[str]]:
    rows = []
    for row in comparison["rows"]:
        if changed_only and row["verdict"] == "same":
            continue
        n = digits(row["metric"])
        rows.append([row["test"], row["metric"], f"{row['before']:.{n}f}", f"{row['after']:.{n}f}",
                     f"{row['delta']:+.{n}f}", row["verdict"] + (f" ({row['rule']})" if row["rule"] else "")])
    return rows


def comparison_markdown(comparison: dict | None) -> list[str]:
    if not comparison:
        return []
    lines = ["## Comparison with the accepted report", "",
             f"Accepted: `{comparison['accepted']}` ({comparison['accepted_generated']}), rule: {comparison['mode']}", ""]
    lines += [f"> **Warning:** {_md(w)}" for w in comparison["warnings"]]
    if comparison["warnings"]:
        lines.append("")
    lines += ["| test | metric | before | after | delta | verdict |", "|---|---|---:|---:|---:|---|"]
    lines += ["| " + " | ".join(_md(cell) for cell in r) + " |" for r in comparison_rows(comparison, changed_only=False)]
    lines += [f"\n{_md(text)}" for text in comparison_notes(comparison)]
    lines.append("")
    return lines


def comparison_notes(comparison: dict) -> list[str]:
    """Tests that were not compared, and why: added, removed, failed, or an incomplete aggregate."""
    notes = [f"{key} since the accepted report: {', '.join(comparison[key])}"
             for key in ("added", "removed") if comparison[key]]
    if comparison.get("failed"):
        notes.append(f"failed in this run, not compared: {', '.join(comparison['failed'])}")
    notes += [f"{test} not compared: {reason}" for test, reason in (comparison.get("not_compared") or {}).items()]
    pairing = comparison.get("pairing")
    if pairing:
        notes.append(f"noise rule: paired (bootstrap of new − accepted over the same clips) for {pairing['paired']} of "
                     f"{pairing['compared']} tests")
        notes += [f"{test}: unpaired rule (this run's interval vs the accepted value): {reason}"
                  for test, reason in pairing["unpaired"].items()]
    return notes


def render_terminal(report: dict) -> list[str]:
    """Aligned plain-text tables for the terminal summary."""
    lines = []
    for title, rows in tables(report):
        lines.append(title)
        table = [_header(rows)] + rows
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        for row in table:
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1])] + [row[-1]]
            lines.append("  " + "  ".join(cells).rstrip())
        lines.append("")
    comparison = report.get("comparison")
    if comparison:
        changed = comparison_rows(comparison, changed_only=True)
        lines.append(f"compared with {comparison['accepted']} (rule: {comparison['mode']}): "
                     + (f"{len(changed)} metrics changed" if changed else "no metric changed"))
        if changed:
            table = [["test", "metric", "before", "after", "delta", "verdict"]] + changed
            widths = [max(len(row[i]) for row in table) for i in range(6)]
            lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
        lines += comparison_notes(comparison)
        lines.append("")
    return lines


def _table_provenance(gate: Gate) -> dict | None:
    """The per-frame table's path, sha256 and row counts, when the corpus is one (and was readable)."""
    from .table import TableCorpus

    if gate.options.table is None:
        return None
    try:
        corpus = gate.corpus
    except LosoInputError:
        return {"path": str(gate.options.table), "sha256": _sha256(gate.options.table)}
    return corpus.provenance() if isinstance(corpus, TableCorpus) else None
