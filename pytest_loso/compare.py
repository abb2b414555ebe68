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

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import LosoInputError
from .metrics import HIGHER_IS_BETTER, LABELS, digits, label

# KRCC has no bootstrap interval (its weighted form is quadratic), so it is compared only when asked.
DEFAULT_MAX_DROP = "plcc=0.005,srocc=0.005,rmse=0.5"
EPSILON = 1e-12  # a drop exactly at the allowance passes despite float rounding


@dataclass(frozen=True)
class Allowance:
    absolute: float | None = None
    relative: float | None = None  # fraction of the accepted value

    def of(self, accepted: float) -> float:
        return max(self.absolute or 0.0, (self.relative or 0.0) * abs(accepted))


_DROP_RE = re.compile(r"^(?P<metric>[a-z_]+)=(?P<value>[0-9.eE+-]+)(?P<pct>%?)$")


def parse_max_drop(text: str) -> dict[str, Allowance]:
    """``plcc=0.005,srocc=0.005,rmse=0.5,rmse=5%`` -> allowances per metric."""
    allowances: dict[str, Allowance] = {}
    for token in re.split(r"[,\s]+", text.strip()):
        if not token:
            continue
        match = _DROP_RE.match(token)
        try:
            value = float(match["value"]) if match else math.nan
        except ValueError:
            value = math.nan
        if not match or match["metric"] not in HIGHER_IS_BETTER or not math.isfinite(value) or value < 0:
            raise ValueError(
                f"--loso-max-drop: {token!r} is not metric=number or metric=number% "
                f"with a finite number >= 0 (metrics: {', '.join(HIGHER_IS_BETTER)})"
            )
        current = allowances.get(match["metric"], Allowance())
        if match["pct"]:
            current = Allowance(current.absolute, value / 100)
        else:
            current = Allowance(value, current.relative)
        allowances[match["metric"]] = current
    return allowances


@dataclass(frozen=True)
class Change:
    """One metric, before and after."""

    metric: str
    before: float
    after: float
    allowed: float
    verdict: str  # "better", "same", "worse (allowed)", "worse (noise)", "REGRESSED"
    rule: str | None = None  # why a REGRESSED verdict fired

    @property
    def delta(self) -> float:
        return self.after - self.before

    def sentence(self) -> str:
        n = digits(self.metric)
        sign = "-" if HIGHER_IS_BETTER[self.metric] else "+"
        text = (f"{label(self.metric)} {self.before:.{n}f} -> {self.after:.{n}f} "
                f"({self.delta:+.{n}f}, allowed {sign}{self.allowed:g})")
        return text + (f" [{self.rule}]" if self.rule else "")

    def to_json(self) -> dict:
        return {"metric": self.metric, "before": self.before, "after": self.after, "delta": self.delta,
                "allowed": self.allowed, "verdict": self.verdict, "rule": self.rule}


def compare(
    before: dict, after: dict, allowances: dict[str, Allowance], *, mode: str = "bound",
    intervals: dict | None = None, prefix: str = "", paired: dict | None = None,
) -> list[Change]:
    """Compare the metrics present in both dicts (keys ``prefix + metric``).

    In ``noise`` mode a drop beyond the allowance is a regression only when it is beyond the
    resampling noise: with ``paired`` (the bootstrap of new − accepted over the same resampled
    clips, see ``Gate._metrics_of``) when the difference's interval lies wholly on the worse
    side of zero; else (unpaired, ``paired["reason"]`` says why) when the accepted value
    lies outside this run's interval.
    """
    changes = []
    for metric, allowance in allowances.items():
        old, new = before.get(prefix + metric), after.get(prefix + metric)
        if not isinstance(old, (int, float)) or not isinstance(new, (int, float)):
            continue
        allowed = allowance.of(old)
        worsening = (old - new) if HIGHER_IS_BETTER[metric] else (new - old)
        rule = None
        if worsening <= 0:
            verdict = "same" if worsening == 0 else "better"
        elif worsening <= allowed + EPSILON:
            verdict = "worse (allowed)"
        elif mode == "noise" and ((paired or {}).get("ci") or {}).get(metric):
            low, high = paired["ci"][metric]
            beyond_noise = high < 0 if HIGHER_IS_BETTER[metric] else low > 0
            side = "below" if HIGHER_IS_BETTER[metric] else "above"
            n = digits(metric)
            difference = (f"the 95% interval of the difference new − accepted over the same resampled clips, "
                          f"{new - old:+.{n}f} [{low:+.{n}f}, {high:+.{n}f}],")
            if beyond_noise:
                verdict, rule = "REGRESSED", f"paired: drop beyond the allowance and {difference} wholly {side} zero"
            else:
                verdict, rule = "worse (noise)", f"paired: {difference} includes zero"
        else:
            interval = (intervals or {}).get(metric)
            # why the paired rule could not be used (no accepted predictions, other frames...)
            unpaired = f"not paired: {paired['reason']}" if paired and paired.get("reason") else None
            if mode == "noise" and interval and interval[0] <= old <= interval[1]:
                verdict = "worse (noise)"
                rule = "unpaired: the accepted value inside this run's 95% bootstrap interval" \
                       + (f"; {unpaired}" if unpaired else "")
            else:
                verdict = "REGRESSED"
                rule = "drop beyond the allowance"
                if mode == "noise":
                    if interval:
                        rule = (f"unpaired: drop beyond the allowance and the accepted value outside this run's "
                                f"95% bootstrap interval [{interval[0]:.4g}, {interval[1]:.4g}]")
                    elif intervals is None:
                        rule += " (no bootstrap intervals: --loso-bootstrap is 0)"
                    elif metric not in intervals:
                        rule += f" (no bootstrap interval is computed for {label(metric)})"
                    else:
                        rule += " (no bootstrap interval: fewer than 2 clips)"
                    if unpaired and interval:
                        rule += f"; {unpaired}"
        changes.append(Change(metric, float(old), float(new), allowed, verdict, rule))
    return changes


def aggregate_changes(before: dict, after: dict, allowances: dict[str, Allowance], mode: str = "bound") -> list[Change]:
    """An architecture's mean over folds against the accepted one; in ``noise`` mode with the
    mean's two-stage interval, paired when every fold was (``after["paired"]``)."""
    return compare(before, after, allowances, prefix="mean_", mode=mode, intervals=after.get("ci"),
                   paired=after.get("paired"))


def _whole(aggregate: dict) -> bool:
    """An aggregate over every planned fold (reports before ``n_folds_planned`` existed count as whole)."""
    return aggregate.get("n_folds") == aggregate.get("n_folds_planned", aggregate.get("n_folds"))


def load_accepted(path: Path) -> dict:
    """The accepted report, in the gate's shape; a clear error when it is missing or malformed.

    Besides the gate's own ``loso_eval.json`` this reads the evaluation scripts' reports
    (``loso_mlp_small_eval.json``, ``loso_3arch_eval.json``), so a team can start comparing
    from the report it already has. Every part the comparison reads is checked here, at
    start, so a malformed file is a usage error naming the key, never a crash at the end.
    """
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LosoInputError(path, "no accepted report here", "create it with --loso-accept on main") from None
    except RecursionError:
        raise LosoInputError(path, "not a readable JSON report (nested too deeply)",
                             "re-download the accepted report") from None
    except (OSError, ValueError) as exc:
        raise LosoInputError(path, f"not a readable JSON report ({exc})", "re-download the accepted report") from None
    if isinstance(report, dict) and "archs" not in report and "loso_per_fold" in report:
        report = _from_mlp_small_script(report, path)
    if not isinstance(report, dict) or "archs" not in report:
        raise LosoInputError(path, "not a pytest-loso report (no 'archs' / 'baselines')")
    report.setdefault("baselines", {})  # the 3-arch script's report has none
    _check_shape(report, path)
    return report


# The evaluation script (ai/scripts/eval_loso_mlp_small.py) scores the mlp_small folds only.
SCRIPT_ARCH = "mlp_small"


def _from_mlp_small_script(report: dict, path: Path) -> dict:
    """``loso_per_fold`` / ``loso_aggregate`` / ``baselines`` of the script -> the gate's ``archs`` layout."""
    per_fold, aggregate = report["loso_per_fold"], report.get("loso_aggregate")
    if not isinstance(per_fold, dict):
        raise _shape_error(path, "loso_per_fold", "an object of source -> metrics", per_fold)
    if isinstance(aggregate, dict) and aggregate and "n_folds" not in aggregate:
        aggregate = dict(aggregate, n_folds=len(per_fold))
    return dict(report, archs={SCRIPT_ARCH: {"per_fold": per_fold, "aggregate": aggregate or None}},
                baselines=_baselines_by_stem(report.get("baselines") or {}))


def _baselines_by_stem(baselines: object) -> object:
    """The script's baselines under their model file's stem (``mlp_small_v1`` -> ``vmaf_tiny_v1``), the
    name a bare ``--loso-baseline PATH`` gets, so they are compared with the same file's scores; its
    tag where the entry names no file or two share a stem. A malformed entry is left to the shape check."""
    if not isinstance(baselines, dict):
        return baselines
    key = {tag: Path(entry["model_path"]).stem
           if isinstance(entry, dict) and isinstance(entry.get("model_path"), str) and entry["model_path"] else tag
           for tag, entry in baselines.items()}
    while True:  # a stem taken twice (by another stem or a kept tag): those renamed keep their tag instead
        taken = list(key.values())
        clashes = [tag for tag, k in key.items() if k != tag and taken.count(k) > 1]
        if not clashes:
            return {key[tag]: entry for tag, entry in baselines.items()}
        key.update((tag, tag) for tag in clashes)


def _shape_error(path: Path, where: str, expected: str, found: object) -> LosoInputError:
    shown = repr(found) if isinstance(found, (int, float, str, bool)) or found is None else type(found).__name__
    return LosoInputError(path, f"{where} should be {expected}, not {shown[:60]}",
                          "re-create it with --loso-accept on main, or restore the file")


def _check_metrics(entry: object, path: Path, where: str, *, prefixes: tuple[str, ...] = ("",)) -> None:
    """An object whose metric values (``plcc``, ``mean_rmse``, ``n``...) are finite numbers (or null)."""
    if not isinstance(entry, dict):
        raise _shape_error(path, where, "an object of metrics", entry)
    for key, value in entry.items():
        name = next((key[len(p):] for p in prefixes if key.startswith(p) and key[len(p):] in LABELS), None)
        if name is None and key not in ("n", "n_folds", "n_folds_planned"):
            continue
        if value is None:  # the gate writes a metric that could not be computed (NaN) as null
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _shape_error(path, f"{where}.{key}", "a finite number or null", value)


def _check_object(value: object, path: Path, where: str, *, optional: bool = False) -> dict:
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise _shape_error(path, where, "an object", value)
    return value


def _check_shape(report: dict, path: Path) -> None:
    """Every part of ``report`` the comparison reads has the type it reads it as."""
    for arch, block in _check_object(report["archs"], path, "archs").items():
        block = _check_object(block, path, f"archs.{arch}")
        for source, entry in _check_object(block.get("per_fold"), path, f"archs.{arch}.per_fold").items():
            _check_metrics(entry, path, f"archs.{arch}.per_fold.{source}")
        if block.get("aggregate") is not None:
            _check_metrics(block["aggregate"], path, f"archs.{arch}.aggregate", prefixes=("mean_",))
    for key in ("baselines", "ensembles"):
        for tag, block in _check_object(report.get(key), path, key, optional=key == "ensembles").items():
            block = _check_object(block, path, f"{key}.{tag}")
            _check_metrics(block.get("all_clips_concat"), path, f"{key}.{tag}.all_clips_concat")
    for arch, summary in _check_object(report.get("seeds"), path, "seeds", optional=True).items():
        _check_metrics(summary, path, f"seeds.{arch}", prefixes=("mean_",))
    provenance = _check_object(report.get("run_provenance"), path, "run_provenance", optional=True)
    _check_object(provenance.get("cache_fingerprint"), path, "run_provenance.cache_fingerprint", optional=True)
    _check_object(provenance.get("options"), path, "run_provenance.options", optional=True)


def accepted_metrics(report: dict, kind: str, arch: str | None, label: str, source: str | None) -> dict | None:
    """The accepted metrics of one fold or baseline, or ``None`` when it had none."""
    if kind == "fold":
        entry = report.get("archs", {}).get(arch, {}).get("per_fold", {}).get(source)
    else:
        entry = report.get(f"{kind}s", {}).get(label, {}).get("all_clips_concat")
    return entry if entry and "plcc" in entry else None


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
            if change.verdict == "REGRESSED":
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
        "max_drop": {m: {"absolute": a.absolute, "relative": a.relative} for m, a in allowances.items()},
        "fingerprint_match": old_fp == new_fp,
        "warnings": warnings,
        "added": sorted(after_tests.keys() - before_tests.keys()),
        "removed": sorted(before_tests.keys() - after_tests.keys() - not_compared.keys()),
        "failed": sorted(failed),
        "not_compared": dict(sorted(not_compared.items())),
        "rows": rows,
        "regressions": regressions,
    }


def _failed_tests(report: dict) -> set[str]:
    """Folds and baselines of ``report`` that ran but could not be scored."""
    failed = {f"fold[{arch}-{source}]" for arch, block in report.get("archs", {}).items()
              for source, entry in block.get("per_fold", {}).items() if "plcc" not in entry}
    failed |= {f"{kind}[{tag}]" for kind in ("baseline", "ensemble") for tag, block in report.get(f"{kind}s", {}).items()
               if "plcc" not in block.get("all_clips_concat", {})}
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
        for tag, block in report.get(f"{kind}s", {}).items():
            if "plcc" in block.get("all_clips_concat", {}):
                tests[f"{kind}[{tag}]"] = block["all_clips_concat"]
    return tests
