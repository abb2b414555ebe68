"""Comparing against the accepted report: which metrics got worse than allowed.

Absolute thresholds catch disasters; this catches slides. Every fold, baseline
(all-sources concatenation) and aggregate metric is compared with the accepted
``loso_eval.json`` from main. Allowed drops are per metric, absolute (``plcc=0.005``)
and/or relative to the accepted value (``rmse=5%``); the larger allowance applies, and
the direction is the metric's own (lower RMSE is better).

Two rules: ``bound`` fails a metric whose drop exceeds the allowance; ``noise`` also
requires the accepted value to lie outside this run's 95% bootstrap interval, so a drop
within the resampling noise of the source's clips does not fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .metrics.names import HIGHER_IS_BETTER, digits, distinct_digits, label
from .settings import Allowance

EPSILON = 1e-12  # a drop exactly at the allowance passes despite float rounding

Status = Literal["better", "same", "worse (allowed)", "worse (noise)", "REGRESSED"]


@dataclass(frozen=True)
class Change:
    """One metric, before and after, and what the rule made of it."""

    metric: str
    before: float
    after: float
    allowed: float
    status: Status
    rule: str | None = None  # why a REGRESSED (or "worse (noise)") status was given

    @property
    def delta(self) -> float:
        return self.after - self.before

    @property
    def regressed(self) -> bool:
        return self.status == "REGRESSED"

    def sentence(self) -> str:
        n = distinct_digits(self.metric, self.before, self.after)
        if self.regressed:  # the change shown must visibly exceed the allowance it broke
            n = max(n, distinct_digits(self.metric, abs(self.delta), self.allowed))
        sign = "-" if HIGHER_IS_BETTER[self.metric] else "+"
        text = (f"{label(self.metric)} {self.before:.{n}f} -> {self.after:.{n}f} "
                f"({self.delta:+.{n}f}, allowed {sign}{self.allowed:g})")
        return text + (f" [{self.rule}]" if self.rule else "")

    def to_json(self) -> dict:
        return {"metric": self.metric, "before": self.before, "after": self.after, "delta": self.delta,
                "allowed": self.allowed, "verdict": self.status, "rule": self.rule}


@dataclass(frozen=True)
class SlideRule:
    """``bound``: a metric may get worse than the accepted value by its allowance, no more."""

    allowances: dict[str, Allowance]

    def judge(self, metric: str, old: float, new: float, *, intervals: dict | None = None,
              paired: dict | None = None) -> Change:
        allowed = self.allowances[metric].of(old)
        worsening = (old - new) if HIGHER_IS_BETTER[metric] else (new - old)
        if worsening <= 0:
            return Change(metric, old, new, allowed, "same" if worsening == 0 else "better")
        if worsening <= allowed + EPSILON:
            return Change(metric, old, new, allowed, "worse (allowed)")
        return self.beyond_allowance(metric, old, new, allowed, intervals, paired)

    def beyond_allowance(self, metric: str, old: float, new: float, allowed: float, intervals: dict | None,
                         paired: dict | None) -> Change:
        return Change(metric, old, new, allowed, "REGRESSED", "drop beyond the allowance")


@dataclass(frozen=True)
class NoiseRule(SlideRule):
    """``noise``: a slide beyond the allowance is a regression only when it is beyond the resampling
    noise too: with ``paired`` (the bootstrap of new − accepted over the same resampled clips) when
    the difference's interval lies wholly on the worse side of zero; else (unpaired,
    ``paired["reason"]`` says why) when the accepted value lies outside this run's interval."""

    def beyond_allowance(self, metric: str, old: float, new: float, allowed: float, intervals: dict | None,
                         paired: dict | None) -> Change:
        if ((paired or {}).get("ci") or {}).get(metric):
            return self._paired(metric, old, new, allowed, paired["ci"][metric])  # type: ignore[index]
        interval = (intervals or {}).get(metric)
        unpaired = f"not paired: {paired['reason']}" if paired and paired.get("reason") else None
        if interval and interval[0] <= old <= interval[1]:
            rule = "unpaired: the accepted value inside this run's 95% bootstrap interval" \
                   + (f"; {unpaired}" if unpaired else "")
            return Change(metric, old, new, allowed, "worse (noise)", rule)
        if interval:
            rule = (f"unpaired: drop beyond the allowance and the accepted value outside this run's "
                    f"95% bootstrap interval [{interval[0]:.4g}, {interval[1]:.4g}]")
            rule += f"; {unpaired}" if unpaired else ""
        elif intervals is None:
            rule = "drop beyond the allowance (no bootstrap intervals: --loso-bootstrap is 0)"
        elif metric not in intervals:
            rule = f"drop beyond the allowance (no bootstrap interval is computed for {label(metric)})"
        else:
            rule = "drop beyond the allowance (no bootstrap interval: fewer than 2 clips)"
        return Change(metric, old, new, allowed, "REGRESSED", rule)

    @staticmethod
    def _paired(metric: str, old: float, new: float, allowed: float, interval: list[float]) -> Change:
        low, high = interval
        beyond_noise = high < 0 if HIGHER_IS_BETTER[metric] else low > 0
        side = "below" if HIGHER_IS_BETTER[metric] else "above"
        n = digits(metric)
        difference = (f"the 95% interval of the difference new − accepted over the same resampled clips, "
                      f"{new - old:+.{n}f} [{low:+.{n}f}, {high:+.{n}f}],")
        if beyond_noise:
            return Change(metric, old, new, allowed, "REGRESSED",
                          f"paired: drop beyond the allowance and {difference} wholly {side} zero")
        return Change(metric, old, new, allowed, "worse (noise)", f"paired: {difference} includes zero")


def slide_rule(allowances: dict[str, Allowance], mode: str) -> SlideRule:
    """The comparison rule of ``--loso-compare-mode``."""
    return NoiseRule(allowances) if mode == "noise" else SlideRule(allowances)


def compare(
    before: dict, after: dict, allowances: dict[str, Allowance], *, mode: str = "bound",
    intervals: dict | None = None, prefix: str = "", paired: dict | None = None,
) -> list[Change]:
    """The metrics present in both dicts (keys ``prefix + metric``), judged by ``mode``'s rule."""
    rule = slide_rule(allowances, mode)
    changes = []
    for metric in allowances:
        old, new = before.get(prefix + metric), after.get(prefix + metric)
        if isinstance(old, (int, float)) and isinstance(new, (int, float)):
            changes.append(rule.judge(metric, float(old), float(new), intervals=intervals, paired=paired))
    return changes


def aggregate_changes(before: dict, after: dict, allowances: dict[str, Allowance], mode: str = "bound") -> list[Change]:
    """An architecture's mean over folds against the accepted one; in ``noise`` mode with the
    mean's two-stage interval, paired when every fold was (``after["paired"]``)."""
    return compare(before, after, allowances, prefix="mean_", mode=mode, intervals=after.get("ci"),
                   paired=after.get("paired"))


def _whole(aggregate: dict) -> bool:
    """An aggregate over every planned fold (reports before ``n_folds_planned`` existed count as whole)."""
    return aggregate.get("n_folds") == aggregate.get("n_folds_planned", aggregate.get("n_folds"))


def session_comparison(accepted: dict, report: dict, allowances: dict[str, Allowance], mode: str,
                       path: Path, not_run: list[str] | None = None) -> dict:
    """Every fold, baseline and aggregate metric against the accepted report, with warnings.

    In a partial run (``not_run``) aggregates are not compared (they cover other folds) and
    tests that were planned but not run are not called removed.
    """
    rows = []
    regressions = []

    def add(test: str, changes: list[Change]) -> None:
        for change in changes:
            rows.append({"test": test, **change.to_json()})
            if change.regressed:
                regressions.append(f"{test}: {change.sentence()}")

    before_tests, after_tests = _tests(accepted), _tests(report)
    failed = _failed_tests(report)  # planned and run, but could not be scored: failed, not removed
    skipped = set(not_run or [])
    not_compared = {}
    for test, aggregate in after_tests.items():
        if not test.startswith(("aggregate[", "seeds[")):
            continue
        if skipped:
            not_compared[test] = "partial run"
        elif not _whole(aggregate):
            not_compared[test] = f"over {aggregate['n_folds']} of {aggregate.get('n_folds_planned')} folds"
        elif (aggregate.get("check") or {}).get("outcome") == "skipped":  # seeds: some seed's run is not whole
            not_compared[test] = aggregate["check"]["message"]
    after_tests = {t: m for t, m in after_tests.items() if t not in not_compared}
    before_tests = {t: m for t, m in before_tests.items()
                    if t not in skipped and t not in failed and not (skipped and t.startswith(("aggregate[", "seeds[")))}
    for test in sorted(before_tests.keys() & after_tests.keys()):
        old, new = before_tests[test], after_tests[test]
        if test.startswith(("aggregate[", "seeds[")):
            add(test, aggregate_changes(old, new, allowances, mode))
        else:
            add(test, compare(old, new, allowances, mode=mode, intervals=new.get("ci"), paired=new.get("paired")))
    warnings = []
    provenance = accepted.get("run_provenance") or {}
    old_fp = (provenance.get("cache_fingerprint") or {}).get("sha256")
    new_fp = report["run_provenance"]["cache_fingerprint"]["sha256"]
    if not provenance:  # the evaluation script's report: nothing to check against
        warnings.append("the accepted report has no provenance (an evaluation script's report?): "
                        "whether it was made on this corpus, with these options, cannot be checked")
    elif old_fp != new_fp and not skipped:  # a partial run reads fewer sources: its fingerprint differs
        warnings.append(f"the accepted report was made on a different corpus (cache fingerprint "
                        f"{str(old_fp)[:12]} here {new_fp[:12]}): deltas compare different data")
    for key in ("archs", "bootstrap", "logistic", "srocc_ranks") if provenance else ():
        # reports from before --loso-srocc-ranks ranked as spearmanr does
        old_opt = (provenance.get("options") or {}).get(key, "average" if key == "srocc_ranks" else None)
        new_opt = report["run_provenance"]["options"].get(key)
        if old_opt != new_opt:
            warnings.append(f"the accepted report was made with {key}={old_opt!r}, this run with {new_opt!r}")
    models_changed = model_changes(provenance.get("models"), report["run_provenance"].get("models"))
    warnings += [change["sentence"] for change in models_changed]
    pairing = None
    if mode == "noise":  # which rule decided each test: paired (new − accepted) or unpaired, and why
        compared = sorted(before_tests.keys() & after_tests.keys())
        unpaired = {test: (after_tests[test].get("paired") or {}).get("reason") or "no bootstrap of the difference (--loso-bootstrap is 0, or under 2 clips or folds)"
                    for test in compared if (after_tests[test].get("paired") or {}).get("rule") != "paired"}
        pairing = {"paired": len(compared) - len(unpaired), "compared": len(compared), "unpaired": unpaired}
    return {
        "accepted": str(path),
        "accepted_generated": accepted.get("generated"),
        "mode": mode,
        "pairing": pairing,
        "max_drop": {m: a.to_json() for m, a in allowances.items()},
        "fingerprint_match": old_fp == new_fp,
        "models_changed": models_changed,
        "warnings": warnings,
        "added": sorted(after_tests.keys() - before_tests.keys()),
        "removed": sorted(before_tests.keys() - after_tests.keys() - not_compared.keys()),
        "failed": sorted(failed),
        "not_compared": dict(sorted(not_compared.items())),
        "rows": rows,
        "regressions": regressions,
    }


def model_changes(before: object, after: object) -> list[dict]:
    """Model paths whose ``.onnx`` or external-data (``.onnx.data``) digest differs from the accepted
    report's: weights changed without the model file changing are named too."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return []
    changes = []
    for path in sorted(before.keys() & after.keys()):
        old, new = before[path], after[path]
        if not isinstance(old, dict) or not isinstance(new, dict):
            continue
        for key, what in (("sha256", Path(path).name), ("data_sha256", "its external data")):
            if old.get(key) and new.get(key) and old[key] != new[key]:
                where = f" ({new.get('data_path')})" if key == "data_sha256" and new.get("data_path") else ""
                changes.append({"model": path, "file": "data" if key == "data_sha256" else "onnx",
                                "before": old[key], "after": new[key],
                                "sentence": f"model {path}: {what}{where} changed since the accepted report "
                                            f"(sha256 {old[key][:12]} -> {new[key][:12]})"})
    return changes


def _failed_tests(report: dict) -> set[str]:
    """Folds and baselines of ``report`` that ran but could not be scored."""
    failed = {f"fold[{arch}-{source}]" for arch, block in report.get("archs", {}).items()
              for source, entry in block.get("per_fold", {}).items() if "plcc" not in entry}
    failed |= {f"{kind}[{tag}]" for kind in ("baseline", "ensemble") for tag, block in (report.get(f"{kind}s") or {}).items()
               if "plcc" not in (block.get("all_clips_concat") or {})}
    return failed


def _tests(report: dict) -> dict[str, dict]:
    """Test name -> metrics, for every fold, baseline and aggregate a report holds."""
    tests = {}
    for arch, block in report.get("archs", {}).items():
        for source, entry in block.get("per_fold", {}).items():
            if "plcc" in entry:
                tests[f"fold[{arch}-{source}]"] = entry
        if block.get("aggregate"):
            tests[f"aggregate[{arch}]"] = block["aggregate"]
    for arch, summary in (report.get("seeds") or {}).items():
        tests[f"seeds[{arch}]"] = summary  # the mean over seeds of the per-seed means
    for kind in ("baseline", "ensemble"):
        for tag, block in (report.get(f"{kind}s") or {}).items():  # null in a hand-edited report: none
            if "plcc" in (block.get("all_clips_concat") or {}):
                tests[f"{kind}[{tag}]"] = block["all_clips_concat"]
    return tests
