"""Judging: whether a scored test, a run's mean over folds, or a sweep over seeds holds its bounds
and its comparison with the accepted report.

A fold, baseline or ensemble is judged as soon as it is scored (:func:`judge_test`). The
aggregate tests (``aggregate[<run>]``, ``seeds[<arch>]``) are judged over the results of the
folds that ran (:class:`AggregateJudge`), by the aggregate items themselves, or under xdist
by the controller at the end of the session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .accepted import AcceptedReport
from .compare import aggregate_changes, compare
from .ids import Outcome, test_name
from .metrics.calibration import calibration, worst_sources
from .metrics.slices import slice_mean
from .metrics import (HIGHER_IS_BETTER, METRICS, across_seeds, aggregate, digits, fold_mean_intervals, hold_estimates,
                      label)
from .plan import TestSpec
from .quantized import FIGURES, judge_pair
from .records import TestResult
from .results import ResultStore
from .settings import GateOptions
from .thresholds import check, check_aggregate, check_seeds, check_slice


def judge_test(spec: TestSpec, metrics: dict, options: GateOptions, accepted: AcceptedReport,
               per_source: dict[str, dict] | None = None) -> tuple[list[str], list[str]]:
    """A scored test against its bounds and the accepted report: ``(violations, failure lines)``,
    the lines naming the subject; no lines, the test passes."""
    if spec.kind == "quant":
        return judge_quant(spec, metrics, per_source or {})
    if spec.kind == "fold":
        assert spec.source is not None
        bounds, subject = options.thresholds.for_source(spec.source), f"{spec.run} fold {spec.source}"
    elif spec.kind == "baseline":
        bounds, subject = options.thresholds.fold, f"baseline {spec.label} on all sources"
    else:
        bounds = options.thresholds.fold
        subject = f"ensemble {spec.label} (mean of {len(spec.members)} members) on all sources"
    violations = [v.sentence() for v in check(metrics, bounds)]
    lines = [f"{subject}: {v} (n={metrics['n']} frames)" for v in violations]
    if spec.kind == "ensemble":
        coverage = coverage_violations(metrics, options.min_coverage)
        violations += coverage
        lines += [f"ensemble {spec.label} on all sources: {v} (n={metrics['n']} frames)" for v in coverage]
    if accepted.report is not None:
        before = accepted.metrics(spec.kind, spec.run, spec.label, spec.source)
        changes = compare(before or {}, metrics, options.max_drop, mode=options.compare_mode,
                          intervals=metrics.get("ci"), paired=metrics.get("paired"))
        who = f"{spec.source} ({spec.run})" if spec.kind == "fold" else f"{spec.kind} {spec.label}"
        lines += [f"{who}: {c.sentence()}" for c in changes if c.regressed]
    return violations, lines


def judge_quant(spec: TestSpec, metrics: dict, per_source: dict[str, dict]) -> tuple[list[str], list[str]]:
    """A quantised model against its parent: ``--loso-max-quant-drop`` on the concatenation (and, with
    ``--loso-quant-per-source``, on every source). It is not held to the fold bounds nor compared
    with the accepted report: what it answers is how far int8 moved from fp32."""
    bounds = metrics["bounds"]
    violations = judge_pair(metrics, per_source, {k: bounds.get(k) for k in FIGURES},
                            per_source_bounds=bool(bounds.get("per_source")))
    parent, int8 = spec.members[0].name, spec.model_path.name
    subject = f"quant {spec.label} ({int8} against {parent}, batch {metrics['batch']})"
    return violations, [f"{subject}: {v} (n={metrics['n']} frames)" for v in violations]


def coverage_violations(metrics: dict, min_coverage: dict[str, float]) -> list[str]:
    """``--loso-min-coverage``: each nominal level whose overall coverage is below its bound, with the
    worst source."""
    found = []
    for level, bound in sorted(min_coverage.items(), key=lambda item: float(item[0])):
        figures = (metrics.get("calibration") or {}).get(level)
        if figures is None or figures["coverage"] >= bound:
            continue
        worst = (f"; worst source {figures['worst_source']}: {figures['worst_source_coverage']:.4f}"
                 if figures.get("worst_source") else "")
        found.append(f"coverage of μ ± {figures['z']:.3f}σ at nominal {level}% is {figures['coverage']:.4f}, "
                     f"below the minimum {bound:g}{worst}")
    return found


def scored_metrics(result: TestResult) -> dict:
    """The metrics of a test that was scored: the judge reads them only from folds that
    :meth:`ResultStore.scored_folds_of` gives or :meth:`AggregateJudge._not_whole` found all scored."""
    metrics = result["metrics"]
    assert metrics is not None, f"{result['name']} was not scored"  # those callers pass scored results only
    return metrics


@dataclass(frozen=True)
class Judgement:
    """The outcome of one aggregate test, ``aggregate[<run>]`` or ``seeds[<arch>]``."""

    test: str
    outcome: Outcome
    message: str = ""

    def to_json(self) -> dict:
        return {"test": self.test, "outcome": self.outcome, "message": self.message or None}


class AggregateJudge:
    """Judges a run's mean over folds and an architecture's sweep over seeds from the folds that ran."""

    def __init__(self, store: ResultStore, options: GateOptions, accepted: AcceptedReport) -> None:
        self.store = store
        self.options = options
        self.accepted = accepted
        # seed_summary by arch, with the fold results it was made from: the seeds test, its JUnit
        # figures and the report each ask, and the bootstrap behind it is the costly part
        self._seed_summaries: dict[str, tuple[list[tuple[int, str, TestResult]], dict]] = {}

    def judge(self, test: str) -> Judgement:
        """The judgement of an aggregate test by name: ``aggregate[<run>]``, ``seeds[<arch>]`` or ``versus[...]``."""
        kind, _, rest = test.partition("[")
        if kind == "versus":
            return self.judge_versus(test)
        if kind == "slice":
            return self.judge_slice(test)
        return self.judge_seeds(rest[:-1]) if kind == "seeds" else self.judge_aggregate(rest[:-1])

    def figures(self, test: str) -> dict:
        """What an aggregate test records as JUnit properties: a seed sweep's calibration as an
        ensemble of its seeds' folds (the other aggregates' figures are in the report)."""
        kind, _, rest = test.partition("[")
        if kind != "seeds":
            return {}
        summary = self.seed_summary(rest[:-1]) or {}
        return {"calibration": summary["calibration"]} if summary.get("calibration") else {}

    def as_run(self, judgement: Judgement) -> Judgement:
        """The judgement as the session ran it: an aggregate test that was not run judged nothing."""
        if judgement.test in self.store.reported:
            return judgement
        why = judgement.message if judgement.outcome == "skipped" else (  # its folds' story, when they are partial
            f"loso::{judgement.test} did not run (deselected, or the session stopped first), so its bounds and "
            "comparison were not applied")
        return Judgement(judgement.test, "not run", why)

    def aggregate(self, run: str, per_fold: dict[str, dict]) -> dict | None:
        """Mean ± std over the folds that were scored, with how many were planned, and its intervals."""
        means = aggregate(m for m in per_fold.values() if "plcc" in m)
        if means is None:
            return None
        block: dict = dict(means)  # the means, then what is added to them: counts and intervals
        planned, ran = self.store.folds_of(run)
        block["n_folds_planned"] = len(planned) or block["n_folds"]
        scored = {s: r for s, r in ran.items() if "plcc" in (per_fold.get(s) or {})}
        block.update(self.intervals({run: scored}))
        if block.get("ci"):  # the interval holds the mean printed beside it
            block["ci"] = hold_estimates(block["ci"], {name: block.get(f"mean_{name}") for name in block["ci"]})
        return block

    def intervals(self, runs: dict[str, dict[str, TestResult]]) -> dict:
        """The mean over folds' two-stage intervals (sources, then clips) and, in ``noise`` mode,
        those of the mean difference from the accepted run when every fold was paired.

        ``runs`` is ``{run: {source: fold result}}``: one run (an aggregate), or one per seed (the
        mean across seeds): per source the mean over seeds, whose folds drew the same clips for each
        resample (same bootstrap seed, same clips), so their distributions average draw by draw.
        """
        import math

        options = self.options
        sources = sorted(set.intersection(*(set(scored) for scored in runs.values())))
        results = [scored[source] for scored in runs.values() for source in sources]
        if len(sources) < 2 or any("distribution" not in r for r in results):
            return {}  # no --loso-bootstrap, or a fold with fewer than 2 clips

        def draws(key: Literal["distribution", "paired_distribution"]) -> list[list[bytes]]:
            return [[scored[source][key] for scored in runs.values()] for source in sources]

        estimates = [[[scored_metrics(scored[source])[name] for name in METRICS] for scored in runs.values()]
                     for source in sources]
        found: dict = {}
        found["ci"], found["ci_method"] = fold_mean_intervals(estimates, draws("distribution"),
                                                              seed=options.bootstrap_seed)
        if options.srocc_ranks != "average":
            found["ci"]["srocc"] = None
        if options.compare_mode == "noise" and self.accepted.report is not None:
            unpaired = sorted(r["name"] for r in results if "paired_distribution" not in r)
            if unpaired:
                reasons = {reason for r in results
                           if (reason := (scored_metrics(r).get("paired") or {}).get("reason")) is not None}
                found["paired"] = {"rule": "unpaired", "reason": f"{len(unpaired)} of {len(results)} folds were not "
                                   f"paired ({'; '.join(sorted(reasons))[:300]})"}
            else:
                def delta(run: str, source: str, name: str) -> float:
                    # a metric the accepted report left null (undefined) has no difference: NaN, never a crash
                    accepted = self.accepted.block("archs", run, "per_fold", source)
                    before = accepted.get(name) if isinstance(accepted, dict) else None
                    now = scored_metrics(runs[run][source])[name]
                    return now - before if isinstance(before, (int, float)) else math.nan

                deltas = [[[delta(run, source, name) for name in METRICS] for run in runs] for source in sources]
                ci, methods = fold_mean_intervals(deltas, draws("paired_distribution"), seed=options.bootstrap_seed)
                for i, name in enumerate(METRICS):
                    undefined = any(math.isnan(d[i]) for fold in deltas for d in fold)
                    if options.srocc_ranks != "average" and name == "srocc" or undefined:
                        ci[name] = None
                found["paired"] = {"rule": "paired", "ci": ci, "ci_method": methods}
        return found

    def _not_whole(self, test: str, run: str) -> Judgement | None:
        """A skip when some fold of ``run`` did not run or could not be scored: a mean over the
        others must not pass for the whole (the failed folds' own tests say what went wrong)."""
        planned, ran = self.store.folds_of(run)
        if not planned:
            return Judgement(test, "skipped", f"no fold of {run} is planned")
        if len(ran) < len(planned):
            return Judgement(test, "skipped", f"partial run: {len(ran)} of {len(planned)} folds of {run} "
                             "ran, so the aggregate bounds and comparison were not applied")
        failed = sorted(r["name"] for r in ran.values() if not r["metrics"])
        if failed:
            return Judgement(test, "skipped", f"the aggregate of {run} covers {len(ran) - len(failed)} of "
                             f"{len(planned)} folds ({', '.join(failed)} could not be scored), so its "
                             "bounds and comparison were not applied")
        return None

    def _regressions(self, who: str, before: object, after: dict) -> list[str]:
        """``after``'s mean metrics that slid beyond the allowance from the accepted ``before``."""
        if not isinstance(before, dict):
            return []
        changes = aggregate_changes(before, after, self.options.max_drop, self.options.compare_mode)
        return [f"{who}: mean {c.sentence()}" for c in changes if c.regressed]

    def judge_aggregate(self, run: str) -> Judgement:
        """Whether ``run``'s mean over folds holds: its bounds and its comparison with the accepted report."""
        test = test_name("aggregate", run)
        skip = self._not_whole(test, run)
        if skip is not None:
            return skip
        # every fold ran and was scored (_not_whole), so each has metrics and the mean is of them all
        block = self.aggregate(run, {s: scored_metrics(r) for s, r in self.store.folds_of(run)[1].items()})
        assert block is not None
        thresholds = self.options.thresholds
        if self.store.plan.is_seeded(run):
            thresholds = thresholds.for_seed()
        lines = [f"{run}: {v.sentence()} over {block['n_folds']} folds" for v in check_aggregate(block, thresholds)]
        lines += self._regressions(run, self.accepted.block("archs", run, "aggregate"), block)
        return Judgement(test, "failed" if lines else "passed", "\n".join(lines))

    def seed_summary(self, arch: str) -> dict | None:
        """The across-seed figures of ``arch`` over the folds that were scored (``None`` without any)."""
        scored = {seed: self.store.scored_folds_of(run) for seed, run in self.store.plan.seed_runs(arch).items()}
        scored = {seed: folds for seed, folds in scored.items() if folds}
        if not scored:
            return None
        made_from = [(seed, source, result) for seed, folds in scored.items() for source, result in folds.items()]
        known = self._seed_summaries.get(arch)
        if known is not None and len(known[0]) == len(made_from) and all(
                a[:2] == b[:2] and a[2] is b[2] for a, b in zip(known[0], made_from)):
            return dict(known[1])
        summary = across_seeds({seed: {s: scored_metrics(r) for s, r in folds.items()}
                                for seed, folds in scored.items()})
        # the mean across seeds gets its interval too (and, in noise mode, its paired difference)
        runs = self.store.plan.seed_runs(arch)
        summary.update(self.intervals({runs[seed]: folds for seed, folds in scored.items()}))
        self._seed_calibration(scored, summary)
        self._seed_summaries[arch] = (made_from, summary)
        return dict(summary)

    def _seed_calibration(self, scored: dict[int, dict[str, TestResult]], summary: dict) -> None:
        """The seeds' folds on a source as an ensemble: per frame μ the seeds' mean prediction and σ
        their sample std; its calibration per source (in ``per_fold``) and over the sources every
        seed scored, concatenated (``calibration``, each level naming its worst source). Seeds whose
        targets differ on a source (another corpus, other frames) are never paired: the summary
        says why in ``calibration_problem`` instead."""
        import numpy as np

        if len(scored) < 2:
            return  # one seed has no spread
        levels = self.options.coverage_levels
        sources = sorted(set.intersection(*(set(folds) for folds in scored.values())))
        mus, sigmas, targets, problems = [], [], [], []
        for source in sources:
            results = [folds[source] for folds in scored.values()]
            if any("targets" not in r or "predictions" not in r for r in results):
                problems.append(f"{source}: a fold kept no predictions")
                continue
            if len({r["predictions"]["targets_sha256"] for r in results}) > 1:
                problems.append(f"{source}: the seeds' folds were scored on different frames (targets sha256 differ)")
                continue
            preds = np.stack([np.frombuffer(r["predictions"]["pred"], dtype=np.float32) for r in results])
            target = np.frombuffer(results[0]["targets"], dtype=np.float32)
            mu, sigma = preds.astype(np.float64).mean(axis=0), preds.astype(np.float64).std(axis=0, ddof=1)
            summary["per_fold"][source].update(mean_sigma=float(sigma.mean()),
                                               calibration=calibration(mu, sigma, target, levels))
            mus.append(mu)
            sigmas.append(sigma)
            targets.append(target)
        if problems:
            summary["calibration_problem"] = "; ".join(problems)
            return
        if not mus:
            return
        mu, sigma, target = (np.concatenate(a) for a in (mus, sigmas, targets))
        summary["mean_sigma"], summary["calibration_n"] = float(sigma.mean()), len(target)
        summary["calibration"] = calibration(mu, sigma, target, levels)
        for level, worst in worst_sources(summary["per_fold"]).items():
            summary["calibration"][level].update(worst_source=worst["source"], worst_source_coverage=worst["coverage"])

    def judge_seeds(self, arch: str) -> Judgement:
        """The promotion rule over seeds (ADR-0303), and the across-seed comparison; whole runs only."""
        test = test_name("seeds", arch)
        for run in self.store.plan.seed_runs(arch).values():
            skip = self._not_whole(test, run)
            if skip is not None:
                return skip
        summary = self.seed_summary(arch)
        assert summary is not None
        who = f"{arch} over {summary['n_seeds']} seeds"
        lines = [f"{who}: {v.sentence()}" for v in check_seeds(summary, self.options.thresholds)]
        lines += self._regressions(who, self.accepted.block("seeds", arch), summary)
        if self.options.min_coverage and summary.get("calibration_problem"):
            lines.append(f"{who}: --loso-min-coverage cannot be applied: {summary['calibration_problem']}")
        lines += [f"{who} as an ensemble of its seeds' folds: {v} (n={summary.get('calibration_n')} frames)"
                  for v in coverage_violations(summary, self.options.min_coverage)]
        return Judgement(test, "failed" if lines else "passed", "\n".join(lines))

    def versus(self, new: str, old: str) -> dict | None:
        """Run ``new`` against run ``old`` over their common scored folds (``None``: none in common).

        Per metric: the mean over folds of new − old, its 95% interval, and the folds where new is
        worse. The interval is the paired bootstrap: in each fold both runs' clip bootstraps drew the
        same clips (same source, same seed), so their difference is taken draw by draw, then the
        two-stage resample over folds (:func:`two_stage_intervals`), as the noise-mode comparison does.
        """
        import numpy as np

        from .metrics import two_stage_intervals

        a, b = self.store.scored_folds_of(new), self.store.scored_folds_of(old)
        sources = sorted(set(a) & set(b))
        if not sources:
            return None
        deltas = np.array([[scored_metrics(a[s])[m] - scored_metrics(b[s])[m] for m in METRICS] for s in sources])
        block: dict = {
            "new": new, "old": old, "rule": self.options.versus_rule, "n_folds": len(sources), "sources": sources,
            "mean_new": {m: float(np.mean([scored_metrics(a[s])[m] for s in sources])) for m in METRICS},
            "mean_old": {m: float(np.mean([scored_metrics(b[s])[m] for s in sources])) for m in METRICS},
            "difference": {m: float(deltas[:, i].mean()) for i, m in enumerate(METRICS)},
            "worse_folds": {m: [s for s, d in zip(sources, deltas[:, i]) if (d < 0) == HIGHER_IS_BETTER[m] and d != 0]
                            for i, m in enumerate(METRICS)},
        }
        results = [r[s] for r in (a, b) for s in sources]
        if len(sources) >= 2 and all("distribution" in r for r in results):
            def draws(r: TestResult) -> np.ndarray:
                return np.frombuffer(r["distribution"], dtype=np.float64).reshape(len(METRICS), -1)

            paired = np.stack([draws(a[s]) - draws(b[s]) for s in sources])
            block["ci"], block["ci_method"] = two_stage_intervals(deltas, paired, seed=self.options.bootstrap_seed)
            block["ci_method"] = {m: f"paired {method}" for m, method in block["ci_method"].items()}
            if self.options.srocc_ranks != "average":
                block["ci"]["srocc"] = None
        else:
            block["ci"], block["ci_method"] = dict.fromkeys(METRICS), {}
            block["ci_reason"] = ("fewer than 2 common folds" if len(sources) < 2
                                  else "a fold has fewer than 2 clips, so no clip bootstrap")
        plcc = block["ci"]["plcc"]
        block["winner"] = (new if plcc and plcc[0] > 0 else old if plcc and plcc[1] < 0 else None)
        return block

    def versus_failures(self, block: dict) -> list[str]:
        """What the rule says against ``block``'s new run: ``not-worse`` fails a mean difference whose
        interval lies wholly beyond the ``--loso-max-drop`` allowance; ``better`` fails unless the PLCC
        difference's interval lies wholly above zero."""
        new, old, n = block["new"], block["old"], block["n_folds"]
        lines = []
        for metric in METRICS if block["rule"] == "not-worse" else ("plcc",):
            d, ci = block["difference"][metric], block["ci"].get(metric)
            shown = f"{d:+.{digits(metric) + 1}f}" + (
                f" (95% CI [{ci[0]:+.{digits(metric) + 1}f}, {ci[1]:+.{digits(metric) + 1}f}])" if ci else
                " (no interval: " + block.get("ci_reason", "undefined") + ")")
            worse = block["worse_folds"][metric]
            where = f"; {new} is worse on {', '.join(worse)}" if worse else ""
            sign = 1 if HIGHER_IS_BETTER[metric] else -1
            if block["rule"] == "better":
                if not ci or sign * ci[0] <= 0:
                    lines.append(f"versus {new} vs {old}: mean {label(metric)} difference {shown} over {n} folds "
                                 f"is not surely above zero (rule: better){where}")
                continue
            allowance = self.options.max_drop.get(metric)
            if allowance is None:
                continue
            limit = allowance.of(block["mean_old"][metric])
            # ci's side nearer to zero (the estimate without an interval) is beyond the allowance
            nearest = (ci[1] if sign > 0 else ci[0]) if ci else d
            if sign * nearest < -limit:
                lines.append(f"versus {new} vs {old}: mean {label(metric)} difference {shown} over {n} folds is "
                             f"worse than the allowance {limit:.{digits(metric) + 1}g} beyond the noise "
                             f"(rule: not-worse){where}")
        return lines

    def judge_versus(self, test: str) -> Judgement:
        """``versus[<new>-<old>]``: whole runs only, judged by ``--loso-versus-rule``."""
        new, old = self.store.plan.versus_of(test)
        for run in (new, old):
            skip = self._not_whole(test, run)
            if skip is not None:
                return skip
        block = self.versus(new, old)
        if block is None:
            return Judgement(test, "skipped", f"{new} and {old} have no scored fold in common")
        lines = self.versus_failures(block)
        return Judgement(test, "failed" if lines else "passed", "\n".join(lines))

    def slice_summary(self, run: str, column: str, value: str) -> dict | None:
        """``run``'s folds on the frames whose ``column`` is ``value`` (as text): each scored fold that
        has such frames, and the mean over those with at least 2 (``None``: no fold has any)."""
        per_fold = {source: r["slices"][column][value] for source, r in sorted(self.store.scored_folds_of(run).items())
                    if value in ((r.get("slices") or {}).get(column) or {})}
        return dict(slice_mean(per_fold), per_fold=per_fold) if per_fold else None

    def slice_values(self, run: str, column: str) -> list[str]:
        """Every value of ``column`` among ``run``'s scored folds, sorted as text."""
        return sorted({value for r in self.store.scored_folds_of(run).values()
                       for value in ((r.get("slices") or {}).get(column) or {})})

    def judge_slice(self, test: str) -> Judgement:
        """``slice[<run>-<column>=<value>]``: the slice's mean over folds against its bounds; whole runs only.

        A fold whose slice has fewer than 2 frames (or an undefined metric) is left out of the mean,
        and the message says so, passed or not."""
        run, bounds = self.store.plan.slice_of(test)
        skip = self._not_whole(test, run)
        if skip is not None:
            return skip
        who = f"{run} on {bounds.label}"
        summary = self.slice_summary(run, bounds.column, bounds.value)
        if summary is None:
            seen = self.slice_values(run, bounds.column)
            return Judgement(test, "failed", f"{who}: no fold has frames with {bounds.label}, so its bounds cannot "
                             f"hold (values of {bounds.column}: {', '.join(seen[:20]) or 'none'}"
                             f"{f' and {len(seen) - 20} more' if len(seen) > 20 else ''}; matched as text)")
        left = summary["left_out"]
        note = ("left out of the mean: " + ", ".join(f"{source} ({why})" for source, why in left.items())) if left else ""
        if summary["n_folds"] == 0:
            return Judgement(test, "failed", f"{who}: no fold has a slice to average, so its bounds cannot hold; {note}")
        counted = f"over {summary['n_folds']} fold{'s' if summary['n_folds'] > 1 else ''} ({summary['n']} frames)"
        lines = [f"{who}: {v.sentence()} {counted}" for v in check_slice(summary, bounds)]
        if lines and note:
            lines.append(f"{who}: {note}")
        return Judgement(test, "failed" if lines else "passed", "\n".join(lines) if lines else
                         (f"{who}: {note}" if note else ""))
