"""The promotion verdict: PROMOTE or HOLD, in the shape the team's ``validate_ensemble_seeds.py`` writes.

Its keys (``schema_version``, ``verdict``, ``gate`` with the ADR-0303 figures, ``corpus``,
``recommendation``) are kept so whatever reads that file reads this one. Filled from this
run: the thresholds used, every figure they were held against, and the corpus snapshot
(sha256 over the bytes of every cache file or table read), so a promotion can be audited.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from .files import write_atomically
from .ids import primary_arch, run_name
from .settings import Thresholds

SCHEMA_VERSION = 1


def _gate(arch: str, report: dict, thresholds: Thresholds) -> dict:
    """The ``evaluate_gate`` block of ``ensemble_prod_gate.py`` for one architecture (its seeds as ints).

    ``failing_seeds`` are those whose mean PLCC is below ``per_seed_min``, as that script says;
    ``passed`` also needs every seed's own aggregate test to have passed (its other bounds)."""
    summary = (report.get("seeds") or {}).get(arch)
    if summary is not None:
        seed_of = {str(seed): seed for seed in summary["seeds"]}
        per_seed = {str(seed): agg["mean_plcc"] for seed, agg in summary["per_seed"].items()}
        mean, spread, check = summary["mean_plcc"], summary["spread_plcc"], summary["check"]
        # each seed's aggregate test holds more than its PLCC (e.g. --loso-max-mean-rmse)
        seed_checks = [report["aggregate_checks"].get(run_name(arch, seed), {}) for seed in summary["seeds"]]
    else:  # one LOSO run: its mean over folds is the only "seed"
        aggregate = report["archs"][arch]["aggregate"] or {}
        seed_of, per_seed = {"-": "-"}, {"-": aggregate.get("mean_plcc")}
        mean, spread, check = aggregate.get("mean_plcc"), 0.0, report["aggregate_checks"].get(arch, {})
        seed_checks = []
    mean_min, spread_max = thresholds.min_mean_plcc, thresholds.max_seed_spread
    seed_min = thresholds.seed_mean_plcc_bound  # what each seed's aggregate test held its mean PLCC to
    failing = sorted(seed_of[s] for s, v in per_seed.items() if v is None or (seed_min is not None and v < seed_min))
    mean_pass = mean is not None and (mean_min is None or mean >= mean_min)
    # an undefined spread (a seed's mean PLCC was NaN, null in the report) cannot hold a bound
    spread_pass = spread_max is None or (spread is not None and spread <= spread_max)
    return {
        "passed": check.get("outcome") == "passed" and mean_pass and spread_pass and not failing
        and all(c.get("outcome") == "passed" for c in seed_checks),
        "mean_plcc": mean,
        "mean_plcc_threshold": mean_min,
        "mean_plcc_pass": mean_pass,
        "plcc_spread": spread,
        "plcc_spread_max": spread_max,
        "plcc_spread_pass": spread_pass,
        "per_seed_plccs": per_seed,
        "per_seed_min": seed_min,
        "per_seed_pass": not failing,
        "failing_seeds": failing,
        "check": check,
    }


def _reason(test: str, message: str) -> str:
    """A failure in one line: every line of its message (a first line may only announce the rest)."""
    return f"{test}: " + " ".join(line.strip() for line in message.splitlines() if line.strip())


def _corpus(report: dict) -> dict:
    """What was read, file by file: sha256 of each cache file, or of the table."""
    provenance = report["run_provenance"]
    fingerprint = provenance["cache_fingerprint"]
    return {
        "present": True,
        "corpus_root": report["corpus"],
        "sha256": fingerprint["sha256"],  # over every source's files: see the report's cache_fingerprint
        "files": fingerprint["files"],
        "file_sha256": fingerprint["file_sha256"],
        "sources": fingerprint["sources"],
        "table": provenance["table"],
    }


def _versus(block: dict) -> dict:
    """A paired A/B test's winner, with the mean PLCC difference new − old and its 95% interval."""
    d, ci = (block.get("difference") or {}).get("plcc"), (block.get("ci") or {}).get("plcc")
    new, old, winner = block["new"], block["old"], block.get("winner")
    shown = "not computed" if d is None else f"mean PLCC {new} - {old} = {d:+.5f}" + (
        f" (95% CI [{ci[0]:+.5f}, {ci[1]:+.5f}])" if ci else " (no interval)")
    loser = old if winner == new else new
    return {"new": new, "old": old, "winner": winner, "difference_plcc": d, "ci_plcc": ci,
            "rule": block.get("rule"), "outcome": block["check"]["outcome"],
            "sentence": (f"{winner} beats {loser}: {shown}" if winner else
                         f"no difference shown between {new} and {old}: {shown}")}


def build_verdict(report: dict, thresholds: Thresholds, *, passed: bool, write_error: str | None = None) -> dict:
    """PROMOTE only when every gate test passed, every bound held, the run was whole and its report written."""
    seeds = report.get("seeds") or {}
    # a seed sweep is gated through its architecture; a run beside it without seeds, as itself
    seeded_runs = {run_name(arch, int(seed)) for arch, summary in seeds.items() for seed in summary["seeds"]}
    runs = sorted(seeds) + sorted(set(report["archs"]) - seeded_runs - set(seeds))
    gates = {arch: _gate(arch, report, thresholds) for arch in runs}
    reasons = [_reason(f["test"], f["message"]) for f in report["failures"]]
    if report.get("partial"):
        reasons.append(f"partial run: {len(report['partial']['not_run'])} gate tests did not run")
    if write_error is not None:
        reasons.append(write_error)
    if not passed and not reasons:
        reasons.append("the pytest session failed")
    if not reasons:  # e.g. an aggregate check that could not be made
        reasons += [f"{arch}: {gate['check'].get('message') or 'not checked'}"
                    for arch, gate in gates.items() if not gate["passed"]]
    verdict = "HOLD" if reasons or not gates else "PROMOTE"
    provenance = report["run_provenance"]
    primary = primary_arch(seeds) or primary_arch(gates)  # the headline is the sweep's, as the team's script writes
    return {
        "schema_version": SCHEMA_VERSION,
        "verdict": verdict,
        "generated_at_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "loso_dir": provenance["loso_dirs"][0] if provenance["loso_dirs"] else None,
        "loso_dirs": provenance["loso_dirs"],
        "seeds": seeds.get(primary, {}).get("seeds", []) if primary else [],
        "gate": gates.get(primary) if primary else None,
        "gates": gates,
        "thresholds": report["thresholds"],
        "corpus": _corpus(report),
        "models": provenance["models"],
        "reasons": reasons,
        "versus": {test: _versus(block) for test, block in (report.get("versus") or {}).items()},
        "recommendation": "promote: every gate test passed and every bound held" if verdict == "PROMOTE"
        else "hold: " + "; ".join(reasons or ["no architecture was gated"]),
        "report": provenance["outputs"]["json"] if write_error is None else None,  # not this run's, if any
        "parent_adr": "ADR-0303",
    }


def write_verdict(path: Path, report: dict, thresholds: Thresholds, *, passed: bool,
                  write_error: str | None = None) -> dict:
    verdict = build_verdict(report, thresholds, passed=passed, write_error=write_error)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(verdict, indent=2, sort_keys=True) + "\n")
    return verdict
