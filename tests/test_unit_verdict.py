"""Unit tests of the promotion verdict (``verdict.build_verdict``) on small hand-made reports."""

from __future__ import annotations

import pytest

from pytest_loso.settings import Bounds, Thresholds
from pytest_loso.verdict import SCHEMA_VERSION, build_verdict

THRESHOLDS = Thresholds(fold=Bounds(0.75, 0.7, 20.0), min_mean_plcc=0.85, max_mean_rmse=12.0)
PASSED = {"outcome": "passed", "message": None}


def check(test, outcome="passed", message=None):
    return {"test": test, "outcome": outcome, "message": message}


def make_report(archs, *, seeds=None, aggregate_checks=None, failures=(), partial=None):
    """A report with what ``build_verdict`` reads; ``archs`` is arch -> its mean PLCC over folds (or None)."""
    return {
        "corpus": "/data/corpus",
        "archs": {arch: {"per_fold": {}, "aggregate": None if plcc is None else {"mean_plcc": plcc, "n_folds": 2}}
                  for arch, plcc in archs.items()},
        "aggregate_checks": aggregate_checks if aggregate_checks is not None else
        {arch: check(f"aggregate[{arch}]") for arch in archs},
        "seeds": seeds or {},
        "failures": list(failures),
        "partial": partial,
        "thresholds": THRESHOLDS.to_json(),
        "run_provenance": {
            "loso_dirs": ["/runs/loso_mlp_small", "/runs/loso_linear"],
            "models": {"/runs/m.onnx": {"sha256": "c" * 64}},
            "table": None,
            "outputs": {"json": "/out/loso_eval.json", "markdown": "/out/loso_eval.md"},
            "cache_fingerprint": {"sha256": "f" * 64, "files": 2, "file_sha256": {"A.json": "1" * 64, "B.json": "2" * 64},
                                  "sources": {"A": "3" * 64, "B": "4" * 64}},
        },
    }


def test_promote_single_run():
    report = make_report({"linear": 0.9, "mlp_small": 0.95})
    verdict = build_verdict(report, THRESHOLDS, passed=True)
    assert verdict["verdict"] == "PROMOTE"
    assert verdict["schema_version"] == SCHEMA_VERSION == 1
    assert verdict["reasons"] == []
    assert verdict["recommendation"] == "promote: every gate test passed and every bound held"
    assert sorted(verdict["gates"]) == ["linear", "mlp_small"]
    assert verdict["gate"] == verdict["gates"]["mlp_small"] == {
        "passed": True,
        "mean_plcc": 0.95,
        "mean_plcc_threshold": 0.85,
        "mean_plcc_pass": True,
        "plcc_spread": 0.0,
        "plcc_spread_max": None,
        "plcc_spread_pass": True,
        "per_seed_plccs": {"-": 0.95},
        "per_seed_min": 0.85,
        "per_seed_pass": True,
        "failing_seeds": [],
        "check": check("aggregate[mlp_small]"),
    }
    assert verdict["seeds"] == []
    assert verdict["loso_dir"] == "/runs/loso_mlp_small"
    assert verdict["loso_dirs"] == ["/runs/loso_mlp_small", "/runs/loso_linear"]
    assert verdict["report"] == "/out/loso_eval.json"
    assert verdict["thresholds"] is report["thresholds"]
    assert verdict["models"] == {"/runs/m.onnx": {"sha256": "c" * 64}}
    assert verdict["corpus"] == {"present": True, "corpus_root": "/data/corpus", "sha256": "f" * 64, "files": 2,
                                 "file_sha256": {"A.json": "1" * 64, "B.json": "2" * 64},
                                 "sources": {"A": "3" * 64, "B": "4" * 64}, "table": None}
    assert verdict["parent_adr"] == "ADR-0303"
    assert verdict["generated_at_utc"].endswith("+00:00")


def test_headline_gate_without_mlp_small_is_the_first_by_name():
    verdict = build_verdict(make_report({"zeta": 0.9, "alpha": 0.95}), THRESHOLDS, passed=True)
    assert verdict["gate"] is verdict["gates"]["alpha"]


def test_hold_on_failures_one_line_each():
    failures = [{"test": "fold[mlp_small-A]", "message": "PLCC 0.7000 is below the minimum 0.7500"},
                {"test": "aggregate[mlp_small]", "message": "2 bounds broken:\n  mean PLCC 0.8000 is below the minimum "
                                                            "0.8500\n\n  mean RMSE 13.000 is above the maximum 12.000\n"}]
    report = make_report({"mlp_small": 0.8}, aggregate_checks={"mlp_small": check("aggregate[mlp_small]", "failed", "x")},
                         failures=failures)
    verdict = build_verdict(report, THRESHOLDS, passed=False)
    assert verdict["verdict"] == "HOLD"
    assert verdict["reasons"] == [
        "fold[mlp_small-A]: PLCC 0.7000 is below the minimum 0.7500",
        "aggregate[mlp_small]: 2 bounds broken: mean PLCC 0.8000 is below the minimum 0.8500 "
        "mean RMSE 13.000 is above the maximum 12.000",
    ]
    assert verdict["recommendation"] == "hold: " + "; ".join(verdict["reasons"])
    gate = verdict["gate"]
    assert (gate["passed"], gate["mean_plcc_pass"], gate["per_seed_pass"], gate["failing_seeds"]) == \
        (False, False, False, ["-"])


@pytest.mark.parametrize(
    ("kwargs", "report_kwargs", "reasons", "report_path"),
    [
        ({"passed": True}, {"partial": {"not_run": ["fold[mlp_small-B]", "aggregate[mlp_small]"], "ran": 1}},
         ["partial run: 2 gate tests did not run"], "/out/loso_eval.json"),
        ({"passed": True, "write_error": "could not write /out/loso_eval.json: disk full"}, {},
         ["could not write /out/loso_eval.json: disk full"], None),
        ({"passed": False}, {}, ["the pytest session failed"], "/out/loso_eval.json"),
        # a write error is reason enough: the failed session is not added
        ({"passed": False, "write_error": "no space"}, {}, ["no space"], None),
    ],
)
def test_hold_reasons(kwargs, report_kwargs, reasons, report_path):
    verdict = build_verdict(make_report({"mlp_small": 0.95}, **report_kwargs), THRESHOLDS, **kwargs)
    assert verdict["verdict"] == "HOLD"
    assert verdict["reasons"] == reasons
    assert verdict["recommendation"] == "hold: " + "; ".join(reasons)
    assert verdict["report"] == report_path
    assert verdict["gate"]["passed"] is True  # the figures held: the reasons are elsewhere


def test_hold_when_an_aggregate_could_not_be_checked():
    checks = {"mlp_small": check("aggregate[mlp_small]", "skipped", "over 1 of 2 folds"),
              "linear": check("aggregate[linear]", "not run")}
    verdict = build_verdict(make_report({"mlp_small": 0.95, "linear": 0.9}, aggregate_checks=checks), THRESHOLDS,
                            passed=True)
    assert verdict["verdict"] == "HOLD"
    assert verdict["reasons"] == ["linear: not checked", "mlp_small: over 1 of 2 folds"]


def test_hold_when_nothing_was_gated():
    verdict = build_verdict(make_report({}), THRESHOLDS, passed=True)
    assert verdict["verdict"] == "HOLD"
    assert verdict["gates"] == {}
    assert verdict["gate"] is None
    assert verdict["seeds"] == []
    assert verdict["reasons"] == []
    assert verdict["recommendation"] == "hold: no architecture was gated"


def test_single_run_without_aggregate():
    """Every fold failed: no mean over folds, so the run's only "seed" fails."""
    verdict = build_verdict(make_report({"mlp_small": None}), THRESHOLDS, passed=True)
    gate = verdict["gate"]
    assert gate["mean_plcc"] is None
    assert gate["per_seed_plccs"] == {"-": None}
    assert (gate["mean_plcc_pass"], gate["failing_seeds"], gate["passed"]) == (False, ["-"], False)
    assert verdict["verdict"] == "HOLD"
    assert verdict["reasons"] == ["mlp_small: not checked"]


def seeds_report(per_seed, *, spread, seed_checks=None, failures=(), seeds_check=PASSED, extra_archs=None):
    """``mlp_small`` over seeds; ``per_seed`` maps seed (int, or str as read back from JSON) -> mean PLCC."""
    seeds = sorted(int(s) for s in per_seed)
    mean = sum(per_seed.values()) / len(per_seed)
    summary = {"seeds": seeds, "n_seeds": len(seeds), "per_seed": {s: {"mean_plcc": v} for s, v in per_seed.items()},
               "mean_plcc": mean, "spread_plcc": spread, "check": seeds_check}
    runs = {f"mlp_small-seed{s}": v for s, v in per_seed.items()}
    runs.update(extra_archs or {})
    checks = {run: check(f"aggregate[{run}]") for run in runs}
    checks.update(seed_checks or {})
    return make_report(runs, seeds={"mlp_small": summary}, aggregate_checks=checks, failures=failures)


@pytest.mark.parametrize("key", [int, str])
def test_promote_over_seeds(key):
    report = seeds_report({key(1): 0.96, key(2): 0.95, key(3): 0.97}, spread=0.02)
    verdict = build_verdict(report, THRESHOLDS, passed=True)
    assert verdict["verdict"] == "PROMOTE"
    assert verdict["seeds"] == [1, 2, 3]
    assert list(verdict["gates"]) == ["mlp_small"]  # the seeds' runs are gated through their arch
    gate = verdict["gate"]
    assert gate["per_seed_plccs"] == {"1": 0.96, "2": 0.95, "3": 0.97}
    assert gate["mean_plcc"] == pytest.approx(0.96)
    assert gate["per_seed_min"] == 0.85  # min_seed_mean_plcc unset: min_mean_plcc
    assert (gate["plcc_spread"], gate["plcc_spread_max"], gate["plcc_spread_pass"]) == (0.02, None, True)
    assert gate["failing_seeds"] == []
    assert gate["check"] == PASSED


@pytest.mark.parametrize("key", [int, str])
def test_failing_seeds_are_ints(key):
    thresholds = Thresholds(fold=Bounds(), min_mean_plcc=0.85, min_seed_mean_plcc=0.95, max_seed_spread=0.005)
    failures = [{"test": "aggregate[mlp_small-seed2]", "message": "mean PLCC 0.9400 is below the minimum 0.9500"},
                {"test": "aggregate[mlp_small-seed10]", "message": "mean PLCC 0.9000 is below the minimum 0.9500"},
                {"test": "seeds[mlp_small]", "message": "spread 0.0600 is above the maximum 0.0050"}]
    report = seeds_report({key(1): 0.96, key(2): 0.94, key(10): 0.90}, spread=0.06, failures=failures,
                          seeds_check=check("seeds[mlp_small]", "failed", "spread"),
                          seed_checks={"mlp_small-seed2": check("aggregate[mlp_small-seed2]", "failed", "m"),
                                       "mlp_small-seed10": check("aggregate[mlp_small-seed10]", "failed", "m")})
    verdict = build_verdict(report, thresholds, passed=False)
    gate = verdict["gate"]
    assert gate["failing_seeds"] == [2, 10]  # ints, in numeric order
    assert gate["per_seed_min"] == 0.95
    assert gate["per_seed_pass"] is False
    assert (gate["plcc_spread_max"], gate["plcc_spread_pass"]) == (0.005, False)
    assert gate["mean_plcc_pass"] is True  # 0.9333 >= 0.85
    assert gate["passed"] is False
    assert verdict["verdict"] == "HOLD"
    assert verdict["reasons"] == [
        "aggregate[mlp_small-seed2]: mean PLCC 0.9400 is below the minimum 0.9500",
        "aggregate[mlp_small-seed10]: mean PLCC 0.9000 is below the minimum 0.9500",
        "seeds[mlp_small]: spread 0.0600 is above the maximum 0.0050"]


def test_a_seed_failing_another_bound_fails_the_gate():
    """Each seed's aggregate test holds more than its PLCC (e.g. the mean RMSE): the gate needs them all."""
    report = seeds_report({1: 0.96, 2: 0.95}, spread=0.01,
                          seed_checks={"mlp_small-seed2": check("aggregate[mlp_small-seed2]", "failed", "RMSE")})
    verdict = build_verdict(report, THRESHOLDS, passed=True)
    gate = verdict["gate"]
    assert gate["failing_seeds"] == []
    assert gate["per_seed_pass"] is True
    assert gate["passed"] is False
    assert verdict["verdict"] == "HOLD"


def test_an_undefined_spread_holds_when_the_spread_is_bounded():
    """A seed's fold with constant predictions has an undefined PLCC (NaN): its seed's mean, the mean over
    seeds and their spread are NaN, null in the report. The verdict should be HOLD, not a crash."""
    report = seeds_report({1: 0.96, 2: 0.95}, spread=0.01,
                          failures=[{"test": "fold[mlp_small-seed2-A]", "message": "PLCC is undefined (nan)"}])
    summary = report["seeds"]["mlp_small"]
    summary["per_seed"][2]["mean_plcc"] = summary["mean_plcc"] = summary["spread_plcc"] = None
    thresholds = Thresholds(fold=Bounds(), min_mean_plcc=0.85, max_seed_spread=0.005)
    verdict = build_verdict(report, thresholds, passed=False)
    assert verdict["verdict"] == "HOLD"
    assert verdict["gate"]["plcc_spread_pass"] is False
    assert verdict["gate"]["failing_seeds"] == [2]


def test_an_undefined_seed_mean_fails_that_seed_when_the_spread_is_not_bounded():
    report = seeds_report({1: 0.96, 2: 0.95}, spread=0.01,
                          failures=[{"test": "fold[mlp_small-seed2-A]", "message": "PLCC is undefined (nan)"}])
    summary = report["seeds"]["mlp_small"]
    summary["per_seed"][2]["mean_plcc"] = summary["mean_plcc"] = summary["spread_plcc"] = None
    verdict = build_verdict(report, THRESHOLDS, passed=False)
    gate = verdict["gate"]
    assert (gate["failing_seeds"], gate["mean_plcc_pass"], gate["passed"]) == ([2], False, False)
    assert gate["per_seed_plccs"] == {"1": 0.96, "2": None}
    assert verdict["verdict"] == "HOLD"


def test_a_run_without_seeds_beside_a_sweep_is_gated_as_itself():
    """A fold-model run beside a seed sweep has a gate of its own; the headline stays the sweep's."""
    report = seeds_report({1: 0.96, 2: 0.95}, spread=0.01, extra_archs={"linear": 0.7},
                          seed_checks={"linear": check("aggregate[linear]", "failed", "mean PLCC 0.7000 is below")})
    verdict = build_verdict(report, THRESHOLDS, passed=False)
    assert list(verdict["gates"]) == ["mlp_small", "linear"]
    assert verdict["gate"] is verdict["gates"]["mlp_small"] and verdict["seeds"] == [1, 2]
    linear = verdict["gates"]["linear"]
    assert linear["per_seed_plccs"] == {"-": 0.7} and linear["passed"] is False
    assert linear["check"]["outcome"] == "failed"
    assert verdict["verdict"] == "HOLD"


def test_an_unseeded_run_whose_check_could_not_be_made_holds_the_verdict():
    """Nothing failed, but the unseeded run's aggregate was not judged: not a PROMOTE on the sweep alone."""
    report = seeds_report({1: 0.96, 2: 0.95}, spread=0.01, extra_archs={"linear": None},
                          seed_checks={"linear": check("aggregate[linear]", "skipped", "covers 0 of 3 folds")})
    verdict = build_verdict(report, THRESHOLDS, passed=True)
    assert verdict["verdict"] == "HOLD"
    assert verdict["reasons"] == ["linear: covers 0 of 3 folds"]
