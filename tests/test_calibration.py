"""Issue 19, part 3: an ensemble's calibration (coverage and width of μ ± zσ at 50/80/95%) reported
and judged with --loso-min-coverage."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from scipy.stats import norm

from loso_helpers import ENSEMBLE_MEMBERS, SOURCES
from pytest_loso.errors import LosoUsageError
from pytest_loso.metrics.calibration import calibration, worst_sources
from pytest_loso.settings import parse_min_coverage
from shared_runs import template_gate  # noqa: F401 (a fixture)

MEMBERS = ENSEMBLE_MEMBERS
ENSEMBLE = "loso::ensemble[fr]"


@pytest.fixture
def ensemble(template_gate, ensemble_members):
    """The template run in place (the tests only read it), the members copied into the test's folder."""
    shutil.copytree(ensemble_members, template_gate.root / "ens")
    return template_gate


def _predict(path, x) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0].reshape(-1)


def _mu_sigma(gate, x):
    preds = np.stack([_predict(p, x) for p in sorted((gate.root / "ens").glob("member_seed*.onnx"))])
    return preds.mean(axis=0), preds.std(axis=0, ddof=1)


def _expected(mu, sigma, y, level: float) -> tuple[float, float]:
    z = norm.ppf(0.5 + level / 200)
    return float(np.mean(np.abs(y - mu) <= z * sigma)), float(np.mean(2 * z * sigma))


def test_coverage_and_width_at_50_80_95_per_source_and_overall(ensemble):
    junit = ensemble.root / "junit.xml"
    run = ensemble.run("--loso-ensemble", "fr=ens/member_seed*.onnx", "-k", "ensemble", f"--junitxml={junit}",
                       baseline=False)
    assert run.outcomes == {ENSEMBLE: "PASSED"}, run.output
    block = run.report["ensembles"]["fr"]
    x, y = ensemble.all_xy()
    mu, sigma = _mu_sigma(ensemble, x)
    concat = block["all_clips_concat"]
    assert sorted(concat["calibration"], key=float) == ["50", "80", "95"]
    for level in (50, 80, 95):
        coverage, width = _expected(mu, sigma, y, level)
        assert concat["calibration"][str(level)]["coverage"] == pytest.approx(coverage, abs=1e-12)
        assert concat["calibration"][str(level)]["mean_width"] == pytest.approx(width, rel=1e-5)
    # today's keys stay as they were
    assert concat["coverage_95"] == float(np.mean(np.abs(y - mu) <= 1.96 * sigma))
    assert concat["mean_sigma"] == pytest.approx(float(sigma.mean()), rel=1e-6)
    per_source = {}
    for source in SOURCES:
        xs, ys = ensemble.xy(source)
        mu_s, sigma_s = _mu_sigma(ensemble, xs)
        coverage, width = _expected(mu_s, sigma_s, ys, 80)
        row = block["per_clip"][source]["calibration"]["80"]
        assert row["coverage"] == pytest.approx(coverage, abs=1e-12)
        assert row["mean_width"] == pytest.approx(width, rel=1e-5)
        per_source[source] = coverage
    worst = min(SOURCES, key=lambda s: (per_source[s], s))
    assert concat["calibration"]["80"]["worst_source"] == worst
    assert "nominal 50%: " in run.markdown and "80%: " in run.markdown and "(width " in run.markdown
    properties = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    assert float(properties["loso_calibration_95_coverage"]) == pytest.approx(concat["calibration"]["95"]["coverage"])
    assert float(properties["loso_calibration_50_mean_width"]) == pytest.approx(concat["calibration"]["50"]["mean_width"])
    assert properties["loso_calibration_95_worst_source"] in SOURCES


def test_min_coverage_fails_the_ensemble_naming_level_coverage_and_worst_source(ensemble):
    run = ensemble.run("--loso-ensemble", "fr=ens/member_seed*.onnx", "-k", "ensemble",
                       "--loso-min-coverage", "95=0.9999", "--loso-min-coverage", "50=0", baseline=False)
    assert run.outcomes == {ENSEMBLE: "FAILED"}
    figures = run.report["ensembles"]["fr"]["all_clips_concat"]["calibration"]["95"]
    assert figures["coverage"] < 0.9999
    text = run.failure_text(ENSEMBLE)
    assert (f"ensemble fr on all sources: coverage of μ ± 1.960σ at nominal 95% is {figures['coverage']:.4f}, "
            f"below the minimum 0.9999; worst source {figures['worst_source']}: "
            f"{figures['worst_source_coverage']:.4f}") in text
    assert "nominal 50%" not in text  # 50=0 holds
    assert run.report["failures"][0]["test"] == "ensemble[fr]"


def test_min_coverage_from_the_ini_at_a_level_of_its_own_passes_when_met(ensemble):
    ensemble.pytester.makeini("[pytest]\nloso_min_coverage =\n    90=0.0\n    95=0.01\n")
    run = ensemble.run("--loso-ensemble", "fr=ens/member_seed*.onnx", "-k", "ensemble", baseline=False)
    assert run.outcomes == {ENSEMBLE: "PASSED"}, run.output
    levels = run.report["ensembles"]["fr"]["all_clips_concat"]["calibration"]
    assert sorted(levels, key=float) == ["50", "80", "90", "95"]
    assert levels["90"]["z"] == pytest.approx(norm.ppf(0.95))
    assert run.report["run_provenance"]["options"]["min_coverage"] == {"90": 0.0, "95": 0.01}


def test_a_malformed_min_coverage_is_a_usage_error(ensemble):
    run = ensemble.run("--loso-ensemble", "fr=ens/member_seed*.onnx", "--loso-min-coverage", "95", baseline=False)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--loso-min-coverage / loso_min_coverage: '95' is not LEVEL=COVERAGE" in run.output


@pytest.mark.parametrize("text", ["95", "0=0.5", "100=0.5", "95=1.5", "95=x", "x=0.5"])
def test_parse_min_coverage_refuses(text):
    with pytest.raises(LosoUsageError, match="LEVEL=COVERAGE"):
        parse_min_coverage([text])


def test_parse_min_coverage_keys_levels_as_the_report_does():
    assert parse_min_coverage(["95=0.9", " 80.0 = 0.7 ", "", "97.5=0.95"]) == {"95": 0.9, "80": 0.7, "97.5": 0.95}


def test_calibration_counts_frames_inside_and_the_width():
    mu = np.zeros(4)
    sigma = np.ones(4)
    target = np.array([0.0, 0.5, 1.0, 3.0])
    found = calibration(mu, sigma, target, ("50", "95"))
    z50 = norm.ppf(0.75)  # 0.674: holds 0.0 and 0.5
    assert found["50"] == {"z": pytest.approx(z50), "coverage": 0.5, "mean_width": pytest.approx(2 * z50)}
    assert found["95"]["coverage"] == 0.75  # 3.0 lies outside ±1.96
    assert worst_sources({"A": {"calibration": found}, "B": {"calibration": {"50": {"coverage": 0.25}}}}) == {
        "50": {"source": "B", "coverage": 0.25}, "95": {"source": "A", "coverage": 0.75}}
