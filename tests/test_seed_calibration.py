"""Issue 19 part 3 for seed sweeps: the seeds' folds on a source form an ensemble (μ, σ over seeds
per frame); its calibration is in ``seeds[<arch>]`` and held to ``--loso-min-coverage``."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from loso_helpers import SOURCES
from test_seeds import ARCH, SEEDS, _fold_path, _run, seed_sweep, seeded  # noqa: F401  (fixtures)


def _predict(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0].reshape(-1)


def _independent(gate) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per source: μ and σ (ddof=1) over the seeds' fold models, and the VMAF targets, computed here."""
    found = {}
    for source in SOURCES:
        x, y = gate.xy(source)
        preds = np.stack([_predict(_fold_path(gate, seed, source), x) for seed in SEEDS]).astype(np.float64)
        found[source] = (preds.mean(axis=0), preds.std(axis=0, ddof=1), y.astype(np.float32))
    return found


def _coverage(mu, sigma, y, level: str) -> tuple[float, float]:
    z = norm.ppf(0.5 + float(level) / 200)
    return float(np.mean(np.abs(y - mu) <= z * sigma)), float(np.mean(2 * z * sigma))


def test_the_seeds_calibration_per_source_and_overall_in_the_report(seeded):
    run = _run(seeded)
    assert run.result.ret == 0, run.output
    summary = run.report["seeds"][ARCH]
    truth = _independent(seeded)
    assert set(summary["calibration"]) == {"50", "80", "95"}
    for source in SOURCES:
        mu, sigma, y = truth[source]
        for level in ("50", "80", "95"):
            coverage, width = _coverage(mu, sigma, y, level)
            figures = summary["per_fold"][source]["calibration"][level]
            assert figures["coverage"] == pytest.approx(coverage, abs=1e-12)
            assert figures["mean_width"] == pytest.approx(width, rel=1e-5)
    mu, sigma, y = (np.concatenate([truth[s][i] for s in SOURCES]) for i in range(3))
    for level in ("50", "80", "95"):
        coverage, width = _coverage(mu, sigma, y, level)
        overall = summary["calibration"][level]
        assert overall["coverage"] == pytest.approx(coverage, abs=1e-12)
        assert overall["mean_width"] == pytest.approx(width, rel=1e-5)
        worst = min(SOURCES, key=lambda s: (summary["per_fold"][s]["calibration"][level]["coverage"], s))
        assert overall["worst_source"] == worst
    assert summary["calibration_n"] == len(y)
    assert "as an ensemble of its seeds' folds: calibration" in run.markdown


def test_min_coverage_fails_the_seeds_test_naming_level_coverage_and_worst_source(seeded):
    clean = _run(seeded).report["seeds"][ARCH]["calibration"]["80"]
    assert _run(seeded, f"--loso-min-coverage=80={clean['coverage']}").result.ret == 0  # met exactly: passes
    bound = min(1.0, clean["coverage"] + 0.01)
    run = _run(seeded, f"--loso-min-coverage=80={bound}")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    assert {n for n, o in run.outcomes.items() if o == "FAILED"} == {f"loso::seeds[{ARCH}]"}
    text = run.failure_text(f"loso::seeds[{ARCH}]")
    assert f"coverage of μ ± {clean['z']:.3f}σ at nominal 80% is {clean['coverage']:.4f}" in text
    assert f"below the minimum {bound:g}; worst source {clean['worst_source']}" in text
    assert run.report["seeds"][ARCH]["check"]["outcome"] == "failed"


def test_the_seeds_calibration_under_xdist_as_serially(seeded):
    clean = _run(seeded).report["seeds"][ARCH]["calibration"]["95"]
    bound = min(1.0, clean["coverage"] + 0.01)
    serial = _run(seeded, f"--loso-min-coverage=95={bound}")
    parallel = _run(seeded, f"--loso-min-coverage=95={bound}", "-n", "2", subprocess=True)
    assert parallel.result.ret == serial.result.ret == pytest.ExitCode.TESTS_FAILED, parallel.output
    assert parallel.outcomes == serial.outcomes and parallel.outcomes[f"loso::seeds[{ARCH}]"] == "FAILED"
    assert parallel.report["seeds"] == serial.report["seeds"]
