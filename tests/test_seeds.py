"""A LOSO run repeated over seeds: one test per arch x seed x fold, and the promotion rule across seeds."""

from __future__ import annotations

import numpy as np
import pytest

from loso_helpers import SOURCES, STEPS, script_metrics
from pytest_loso.training import train_folds

SEEDS = (0, 1, 2)
ARCH = "mlp_small"


@pytest.fixture
def seeded(gate):
    """loso_mlp_small/seed<N>/fold_<Source>/mlp_small_final.onnx for three seeds (seed_2 spelled with '_')."""
    sweep = gate.root / "sweep"
    for seed in SEEDS:
        folder = sweep / f"loso_{ARCH}" / (f"seed_{seed}" if seed == 2 else f"seed{seed}")
        train_folds(folder, gate.truth, ARCH, steps=STEPS, seed=seed + 10)
    gate.sweep = sweep
    return gate


def _run(gate, *extra, subprocess: bool = False):
    args = [a for a in gate.args(baseline=False) if not a.startswith("--loso-dir=")]
    return gate.run(*args, f"--loso-dir={gate.sweep}", *extra, plain=True, subprocess=subprocess)


def _fold_path(gate, seed: int, source: str):
    folder = f"seed_{seed}" if seed == 2 else f"seed{seed}"
    return gate.sweep / f"loso_{ARCH}" / folder / f"fold_{source}" / f"{ARCH}_final.onnx"


def _independent(gate) -> dict[int, dict[str, dict]]:
    """Every fold of every seed scored by the evaluation script's recipe, here."""
    return {seed: {s: script_metrics(_fold_path(gate, seed, s), *gate.xy(s)) for s in SOURCES} for seed in SEEDS}


def test_one_test_per_seed_and_fold_and_the_figures_across_seeds(seeded):
    run = _run(seeded)
    assert run.result.ret == 0, run.output
    folds = {f"loso::fold[{ARCH}-seed{seed}-{s}]" for seed in SEEDS for s in SOURCES}
    aggregates = {f"loso::aggregate[{ARCH}-seed{seed}]" for seed in SEEDS} | {f"loso::seeds[{ARCH}]"}
    assert run.outcomes == {n: "PASSED" for n in folds | aggregates}, run.output
    truth = _independent(seeded)
    per_seed_mean = {seed: float(np.mean([truth[seed][s]["plcc"] for s in SOURCES])) for seed in SEEDS}
    report = run.report
    for seed in SEEDS:
        block = report["archs"][f"{ARCH}-seed{seed}"]
        for source in SOURCES:
            assert block["per_fold"][source]["plcc"] == truth[seed][source]["plcc"]
        assert block["aggregate"]["mean_plcc"] == per_seed_mean[seed]
    summary = report["seeds"][ARCH]
    means = np.array([per_seed_mean[s] for s in SEEDS])
    assert summary["seeds"] == list(SEEDS)
    assert summary["mean_plcc"] == float(np.mean(means))
    assert summary["std_plcc"] == float(np.std(means, ddof=1))
    assert summary["spread_plcc"] == float(means.max() - means.min())
    lowest = min(SEEDS, key=per_seed_mean.get)
    assert (summary["lowest_seed"], summary["lowest_seed_mean_plcc"]) == (lowest, per_seed_mean[lowest])
    fold = summary["per_fold"][SOURCES[1]]
    across = [truth[seed][SOURCES[1]]["rmse"] for seed in SEEDS]
    assert fold["n_seeds"] == 3
    assert fold["mean_rmse"] == float(np.mean(across)) and fold["std_rmse"] == float(np.std(across, ddof=1))
    assert summary["check"]["outcome"] == "passed"
    assert f"## {ARCH} over seeds: each seed's mean over folds" in run.markdown
    assert f"lowest seed: {lowest}" in run.output


def test_the_promotion_rule_fails_the_seeds_test_naming_the_seed(seeded):
    clean = _run(seeded).report["seeds"][ARCH]
    spread, lowest = clean["spread_plcc"], clean["lowest_seed_mean_plcc"]
    run = _run(seeded, f"--loso-max-seed-spread={spread / 2}", f"--loso-min-seed-mean-plcc={lowest + 1e-6}")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    assert run.outcomes[f"loso::seeds[{ARCH}]"] == "FAILED"
    run.result.assert_outcomes(passed=12, failed=1)
    text = run.failure_text(f"loso::seeds[{ARCH}]").splitlines()
    who = f"{ARCH} over 3 seeds"
    assert text == [
        f"{who}: lowest seed's mean PLCC {lowest:.4f} is below the minimum {lowest + 1e-6:.4f} "
        f"(seed {clean['lowest_seed']})",
        f"{who}: spread of the seeds' mean PLCC {spread:.4f} is above the maximum {spread / 2:.4f}",
    ]
    # the same bounds hold: the run passes
    assert _run(seeded, f"--loso-max-seed-spread={spread}", f"--loso-min-seed-mean-plcc={lowest}").result.ret == 0


def test_a_seed_missing_a_fold_fails_that_fold_and_the_rule_is_not_applied(seeded):
    _fold_path(seeded, 1, SOURCES[2]).unlink()
    run = _run(seeded, "--loso-max-seed-spread=0")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    missing = f"loso::fold[{ARCH}-seed1-{SOURCES[2]}]"
    assert {n for n, o in run.outcomes.items() if o == "FAILED"} == {missing}
    assert f"expected {_fold_path(seeded, 1, SOURCES[2])}" in run.failure_text(missing)
    check = run.report["seeds"][ARCH]["check"]
    assert check["outcome"] == "skipped" and f"{ARCH}-seed1 covers 2 of 3 folds" in check["message"]


def test_seeds_run_under_xdist_as_serially(seeded):
    serial = _run(seeded, "--loso-max-seed-spread=0", subprocess=True)
    parallel = _run(seeded, "--loso-max-seed-spread=0", "-n", "2", subprocess=True)
    assert parallel.result.ret == serial.result.ret == pytest.ExitCode.TESTS_FAILED, parallel.output
    assert "2 workers" in parallel.output or "gw1" in parallel.output
    assert parallel.outcomes == serial.outcomes and parallel.outcomes[f"loso::seeds[{ARCH}]"] == "FAILED"
    assert parallel.report["seeds"] == serial.report["seeds"]


def test_comparison_works_per_seed_and_across_seeds(seeded):
    import json

    accepted_path = seeded.root / "accepted.json"
    assert _run(seeded, f"--loso-compare={accepted_path}", "--loso-accept").result.ret == 0
    accepted = json.loads(accepted_path.read_text())
    mean = accepted["seeds"][ARCH]["mean_plcc"]
    accepted["seeds"][ARCH]["mean_plcc"] = mean + 0.01
    seed1 = accepted["archs"][f"{ARCH}-seed1"]["per_fold"][SOURCES[0]]
    seed1["plcc"] += 0.01
    accepted_path.write_text(json.dumps(accepted))
    run = _run(seeded, f"--loso-compare={accepted_path}")
    failed = {n for n, o in run.outcomes.items() if o == "FAILED"}
    assert failed == {f"loso::fold[{ARCH}-seed1-{SOURCES[0]}]", f"loso::seeds[{ARCH}]"}, run.output
    assert run.failure_text(f"loso::seeds[{ARCH}]").splitlines() == [
        f"{ARCH} over 3 seeds: mean PLCC {mean + 0.01:.4f} -> {mean:.4f} (-0.0100, allowed -0.005) "
        "[drop beyond the allowance]"]
    verdicts = {(r["test"], r["metric"]): r["verdict"] for r in run.report["comparison"]["rows"]}
    assert verdicts[(f"seeds[{ARCH}]", "plcc")] == "REGRESSED"
    assert verdicts[(f"fold[{ARCH}-seed1-{SOURCES[0]}]", "plcc")] == "REGRESSED"
    assert verdicts[(f"fold[{ARCH}-seed0-{SOURCES[0]}]", "plcc")] == "same"
