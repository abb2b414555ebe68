"""Comparing with the accepted report, bootstrap intervals, KRCC and logistic metrics.

Every run compares against an accepted ``loso_eval.json``: either the one ``--loso-accept``
wrote, or a copy of it edited by the test so that the expected verdict is known exactly
(a drop exactly at the allowance, a fold that disappeared, a different corpus...). The
numbers the checks rely on (KRCC, logistic fit, bootstrap intervals) are recomputed here
from the script's recipe (onnxruntime on float32 arrays, scipy on explicitly
concatenated resamples), independently of the plugin's vectorised code.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import curve_fit
from scipy.stats import kendalltau, pearsonr

from compare_helpers import (COMPARED, accept, accepted_file, all_tests, compare_with, degrade_linear_fold,
                             explicit_bootstrap, explicit_resample_metrics, failed, fold, ort_predict, rows, sentence)
from loso_helpers import ARCHS, BASELINE_TAG, FRAMES, PAIRS_PER_SOURCE, SOURCES, Built, Run, all_ids
from pytest_loso.metrics import clip_statistic
from loso_testing.training import Regressor, cache_payload, export_onnx, write_cache
from shared_runs import SharedRuns, TemplateGate, template_gate  # noqa: F401 (a fixture)

# The tests whose runs only read the template (they accept it, edit the accepted report they compare
# with, or only run) run on it in place (``template_gate``); the ones that change a model or the cache copy it.
_SHARED = SharedRuns()


def _identical_rerun(pytester: pytest.Pytester, built: Built,
                     tmp_path_factory: pytest.TempPathFactory) -> tuple[TemplateGate, dict, Run]:
    """The untouched template accepted, then compared with the file the gate wrote: the gate it ran in
    (its accepted and report files in a folder of their own, not the test's), the accepted report and
    the run. Made once for the tests that read it."""
    def make() -> tuple[TemplateGate, dict, Run]:
        gate = TemplateGate(pytester, built)
        gate.root = tmp_path_factory.mktemp("identical_rerun")
        gate.report_dir = gate.root / "report"
        accepted = accept(gate)
        return gate, accepted, compare_with(gate, None)

    return _SHARED.get("identical", make)


# -- 1. identical corpus and models ------------------------------------------------------------


def test_identical_rerun_compares_same(pytester, built, tmp_path_factory):
    gate, accepted, run = _identical_rerun(pytester, built, tmp_path_factory)
    assert accepted["run_provenance"]["options"]["bootstrap"] == {"resamples": 1000, "seed": 0}
    assert run.result.ret == 0, run.output
    assert run.outcomes == {nodeid: "PASSED" for nodeid in all_ids()}, run.output
    comparison = run.report["comparison"]
    assert comparison["accepted"] == str(accepted_file(gate))
    assert comparison["mode"] == "bound"
    assert comparison["fingerprint_match"] is True
    assert comparison["warnings"] == []
    assert comparison["added"] == [] and comparison["removed"] == []
    assert comparison["regressions"] == []
    found = rows(run.report)
    assert set(found) == {(test, m) for test in all_tests() for m in COMPARED}
    for row in found.values():
        assert row["verdict"] == "same", row
        assert row["before"] == row["after"] and row["delta"] == 0 and row["rule"] is None
    # comparing turns the bootstrap on: every fold has intervals
    for arch in ARCHS:
        for source in SOURCES:
            assert set(fold(run.report, arch, source)["ci"]) == {"plcc", "srocc", "rmse"}
    assert "no metric changed" in run.output
    assert "LOSO comparison WARNING" not in run.output
    md = (gate.report_dir / "loso_eval.md").read_text()
    assert "## Comparison with the accepted report" in md


# -- 2. a degraded fold model ------------------------------------------------------------------


def test_degraded_fold_fails_alone_with_before_after_and_allowance(gate):
    accepted = accept(gate)
    degrade_linear_fold(gate, "Src0001")
    run = compare_with(gate, None)
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED, run.output
    # the fold fails, and so does its architecture's aggregate test (the mean RMSE slid too; below)
    assert failed(run) == {"loso::fold[linear-Src0001]", "loso::aggregate[linear]"}, run.output
    assert set(run.outcomes) == set(all_ids())

    before, after = fold(accepted, "linear", "Src0001"), fold(run.report, "linear", "Src0001")
    assert before["plcc"] - after["plcc"] > 0.01  # well beyond the 0.005 allowance
    assert after["plcc"] > 0.75 and after["rmse"] < 20  # yet within the absolute thresholds
    text = run.failure_text("loso::fold[linear-Src0001]")
    plcc_line = sentence("Src0001 (linear)", "PLCC", before["plcc"], after["plcc"], "-0.005",
                         "drop beyond the allowance")
    rmse_line = sentence("Src0001 (linear)", "RMSE", before["rmse"], after["rmse"], "+0.5",
                         "drop beyond the allowance")
    assert plcc_line in text.splitlines(), text
    assert rmse_line in text.splitlines(), text
    assert f"model: {gate.fold_path('linear', 'Src0001')}" in text
    # the same sentences in the report, with the fold's metrics kept
    comparison = run.report["comparison"]
    assert f"fold[linear-Src0001]: {plcc_line.split(': ', 1)[1]}" in comparison["regressions"]
    assert plcc_line in after["error"]
    found = rows(run.report)
    assert found[("fold[linear-Src0001]", "plcc")]["verdict"] == "REGRESSED"
    assert found[("fold[linear-Src0001]", "plcc")]["delta"] == pytest.approx(after["plcc"] - before["plcc"])
    for (test, _), row in found.items():
        if test not in ("fold[linear-Src0001]", "aggregate[linear]"):
            assert row["verdict"] == "same", row
    # its fold pulls the linear mean RMSE up by more than the allowance: that aggregate fails too
    agg_before, agg_after = accepted["archs"]["linear"]["aggregate"], run.report["archs"]["linear"]["aggregate"]
    assert agg_after["mean_rmse"] - agg_before["mean_rmse"] > 0.5
    assert {f["test"] for f in run.report["failures"]} == {"fold[linear-Src0001]", "aggregate[linear]"}
    rmse_mean = sentence("linear", "mean RMSE", agg_before["mean_rmse"], agg_after["mean_rmse"], "+0.5",
                         "drop beyond the allowance")
    assert rmse_mean in run.failure_text("loso::aggregate[linear]").splitlines()


# -- 3. tolerance edges, relative allowances, direction ------------------------------------------


def test_drop_exactly_at_the_allowance_passes_and_a_hair_more_fails(template_gate):
    gate = template_gate
    accepted = accept(gate)
    edited = copy.deepcopy(accepted)
    at_edge = fold(accepted, "mlp_small", "Src0000")["plcc"]
    beyond = fold(accepted, "mlp_small", "Src0001")["plcc"]
    # the accepted value 0.005 above, up to float rounding: the smallest one whose computed drop
    # exceeds 0.005 by a few ulps (the allowance must not fail on representation error)
    edge = at_edge + 0.005
    while edge - at_edge <= 0.005:
        edge = float(np.nextafter(edge, 2.0))
    assert 0.005 < edge - at_edge < 0.005 + 1e-15
    fold(edited, "mlp_small", "Src0000")["plcc"] = edge
    fold(edited, "mlp_small", "Src0001")["plcc"] = beyond + 0.005 + 1e-7
    run = compare_with(gate, edited)
    assert failed(run) == {"loso::fold[mlp_small-Src0001]"}, run.output
    found = rows(run.report)
    row = found[("fold[mlp_small-Src0000]", "plcc")]
    assert row["verdict"] == "worse (allowed)"
    assert row["delta"] == pytest.approx(-0.005, abs=1e-12)
    assert row["allowed"] == 0.005
    assert found[("fold[mlp_small-Src0001]", "plcc")]["verdict"] == "REGRESSED"

    # the same accepted value, an allowance a hair below the drop: now it fails
    run = compare_with(gate, None, "--loso-max-drop=plcc=0.0049999,srocc=0.005,krcc=0.005,rmse=0.5")
    assert failed(run) == {"loso::fold[mlp_small-Src0000]", "loso::fold[mlp_small-Src0001]"}, run.output
    text = run.failure_text("loso::fold[mlp_small-Src0000]")
    # seven decimals: enough to show the drop (0.0050000) beyond the allowance (0.0049999)
    assert sentence("Src0000 (mlp_small)", "PLCC", edge, at_edge, "-0.0049999",
                    "drop beyond the allowance", digits=7) in text.splitlines(), text


def test_relative_allowance(template_gate):
    gate = template_gate
    accepted = accept(gate)
    rmse = {s: fold(accepted, "linear", s)["rmse"] for s in SOURCES}
    edited = copy.deepcopy(accepted)
    fold(edited, "linear", "Src0000")["rmse"] = rmse["Src0000"] - 0.45  # +0.45: within 0.5, beyond 5%
    fold(edited, "linear", "Src0001")["rmse"] = rmse["Src0001"] / 1.06  # +6% of the accepted value
    fold(edited, "linear", "Src0002")["rmse"] = rmse["Src0002"] / 1.04  # +4%
    assert 0.05 * (rmse["Src0000"] - 0.45) < 0.45 < 0.5
    assert 0.06 * rmse["Src0001"] / 1.06 < 0.5  # the absolute allowance alone would pass it

    run = compare_with(gate, edited, "--loso-max-drop=rmse=5%")
    assert failed(run) == {"loso::fold[linear-Src0000]", "loso::fold[linear-Src0001]"}, run.output
    comparison = run.report["comparison"]
    assert comparison["max_drop"] == {"rmse": {"absolute": None, "relative": 0.05}}
    found = rows(run.report)
    assert {metric for _, metric in found} == {"rmse"}
    row = found[("fold[linear-Src0002]", "rmse")]
    assert row["verdict"] == "worse (allowed)"
    assert row["allowed"] == pytest.approx(0.05 * rmse["Src0002"] / 1.04)
    accepted_1 = rmse["Src0001"] / 1.06
    text = run.failure_text("loso::fold[linear-Src0001]")
    assert sentence("Src0001 (linear)", "RMSE", accepted_1, rmse["Src0001"], f"+{0.05 * accepted_1:g}",
                    "drop beyond the allowance") in text.splitlines(), text

    # both given: the larger allowance applies (0.5 for these folds, 5% elsewhere would be larger)
    run = compare_with(gate, None, "--loso-max-drop=rmse=0.5,rmse=5%")
    assert run.result.ret == 0, run.output
    found = rows(run.report)
    assert found[("fold[linear-Src0000]", "rmse")]["verdict"] == "worse (allowed)"
    assert found[("fold[linear-Src0000]", "rmse")]["allowed"] == 0.5
    assert run.report["comparison"]["max_drop"] == {"rmse": {"absolute": 0.5, "relative": 0.05}}


def test_direction_of_each_metric(template_gate):
    gate = template_gate
    accepted = accept(gate)
    edited = copy.deepcopy(accepted)
    better, worse = fold(edited, "mlp_small", "Src0000"), fold(edited, "mlp_small", "Src0001")
    better["rmse"] += 3.0  # this run's RMSE is 3 lower: better
    better["plcc"] -= 0.1  # this run's PLCC is 0.1 higher: better
    better["srocc"] -= 0.1
    worse["rmse"] -= 0.001  # 0.001 higher now: worse
    worse["plcc"] += 0.001  # 0.001 lower now: worse
    run = compare_with(gate, edited, "--loso-max-drop=plcc=0,srocc=0,krcc=0,rmse=0")
    assert failed(run) == {"loso::fold[mlp_small-Src0001]"}, run.output
    found = rows(run.report)
    for metric in ("rmse", "plcc", "srocc"):
        assert found[("fold[mlp_small-Src0000]", metric)]["verdict"] == "better"
    assert found[("fold[mlp_small-Src0000]", "krcc")]["verdict"] == "same"
    assert found[("fold[mlp_small-Src0000]", "rmse")]["delta"] == pytest.approx(-3.0)
    assert found[("fold[mlp_small-Src0001]", "rmse")]["verdict"] == "REGRESSED"
    assert found[("fold[mlp_small-Src0001]", "plcc")]["verdict"] == "REGRESSED"
    text = run.failure_text("loso::fold[mlp_small-Src0001]").splitlines()
    after = fold(run.report, "mlp_small", "Src0001")
    assert sentence("Src0001 (mlp_small)", "RMSE", after["rmse"] - 0.001, after["rmse"], "+0",
                    "drop beyond the allowance") in text
    assert sentence("Src0001 (mlp_small)", "PLCC", after["plcc"] + 0.001, after["plcc"], "-0",
                    "drop beyond the allowance") in text


# -- 4. folds added and removed ------------------------------------------------------------------


def test_added_and_removed_folds(template_gate):
    gate = template_gate
    accepted = accept(gate)
    edited = copy.deepcopy(accepted)
    edited["archs"]["mlp_small"]["per_fold"]["Src0099"] = dict(fold(accepted, "mlp_small", "Src0000"))
    del edited["archs"]["linear"]["per_fold"]["Src0002"]
    del edited["baselines"][BASELINE_TAG]
    edited["archs"]["mlp_medium"] = copy.deepcopy(accepted["archs"]["linear"])
    run = compare_with(gate, edited)
    assert run.result.ret == 0, run.output
    assert "INTERNALERROR" not in run.output
    assert run.outcomes == {nodeid: "PASSED" for nodeid in all_ids()}
    comparison = run.report["comparison"]
    assert comparison["added"] == [f"baseline[{BASELINE_TAG}]", "fold[linear-Src0002]"]
    assert comparison["removed"] == (["aggregate[mlp_medium]"] + [f"fold[mlp_medium-{s}]" for s in SOURCES]
                                     + ["fold[mlp_small-Src0099]"])
    tested = {test for test, _ in rows(run.report)}
    assert tested == all_tests() - {f"baseline[{BASELINE_TAG}]", "fold[linear-Src0002]"}
    assert "added since the accepted report: baseline[vmaf_tiny_v1], fold[linear-Src0002]" in run.output
    assert "removed since the accepted report: aggregate[mlp_medium]" in run.output
    md = (gate.report_dir / "loso_eval.md").read_text()
    assert "added since the accepted report: baseline[vmaf_tiny_v1], fold[linear-Src0002]" in md


# -- 5. a different corpus ----------------------------------------------------------------------------


def test_fingerprint_mismatch_warns(template_gate, pytester, built, tmp_path_factory):
    gate = template_gate
    accepted = accept(gate)
    edited = copy.deepcopy(accepted)
    edited["run_provenance"]["cache_fingerprint"]["sha256"] = "0" * 64
    edited["run_provenance"]["options"]["bootstrap"] = {"resamples": 500, "seed": 0}
    run = compare_with(gate, edited)
    assert run.result.ret == 0, run.output  # a warning, not a failure
    comparison = run.report["comparison"]
    assert comparison["fingerprint_match"] is False
    assert len(comparison["warnings"]) == 2
    assert "different corpus" in comparison["warnings"][0] and "000000000000" in comparison["warnings"][0]
    assert "bootstrap" in comparison["warnings"][1]
    assert "LOSO comparison WARNING" in run.output
    for warning in comparison["warnings"]:
        assert warning in run.output
    assert "**Warning:**" in (gate.report_dir / "loso_eval.md").read_text()

    # the untouched report again (the identical rerun's comparison): no warning
    _, _, run = _identical_rerun(pytester, built, tmp_path_factory)
    assert run.report["comparison"]["fingerprint_match"] is True
    assert run.report["comparison"]["warnings"] == []
    assert "LOSO comparison WARNING" not in run.output


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not a readable JSON report"),
    ('{"runs": {}}', "not a pytest-loso report"),
])
def test_unreadable_accepted_report_is_a_usage_error(template_gate, content, problem):
    gate = template_gate
    path = accepted_file(gate)
    path.write_text(content)
    run = compare_with(gate, None)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR, run.output
    assert "INTERNALERROR" not in run.output and "Traceback" not in run.output, run.output
    assert f"--loso-compare {path}: {problem}" in run.output
    assert not run.outcomes  # nothing was scored against a report that cannot be read
    assert path.read_text() == content


# -- 6. accepting ------------------------------------------------------------------------------------


def test_accept_round_trip_refusal_and_force(gate, monkeypatch):
    path = accepted_file(gate)
    replaced = []
    real_replace = os.replace

    def spy(src, dst, *args, **kwargs):
        replaced.append((Path(src), Path(dst)))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", spy)
    run = gate.run(f"--loso-compare={path}", "--loso-accept")
    assert run.result.ret == 0, run.output
    # written as a whole: a temporary file beside it, renamed over it
    temps = [src for src, dst in replaced if dst == path]
    assert len(temps) == 1 and temps[0].parent == path.parent and not temps[0].exists()
    assert temps[0].name.startswith(".accepted.json.") and temps[0].name.endswith(".tmp")
    assert not list(path.parent.glob(".accepted.json.*"))
    assert path.stat().st_mode & 0o777 == 0o644
    assert path.read_text() == (gate.report_dir / "loso_eval.json").read_text()
    assert json.loads(path.read_text()) == run.report
    assert f"accepted: this run's report is now {path}" in run.output

    # accepting again from a passing run compares first, then replaces the file
    replaced.clear()
    run = gate.run(f"--loso-compare={path}", "--loso-accept")
    assert run.result.ret == 0, run.output
    assert run.report["comparison"]["regressions"] == []
    assert json.loads(path.read_text()) == run.report
    assert [dst for _, dst in replaced].count(path) == 1

    # a failing run is not accepted
    kept = path.read_bytes()
    replaced.clear()
    run = gate.run(f"--loso-compare={path}", "--loso-accept", "--loso-min-plcc", "0.99999")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED, run.output
    assert path.read_bytes() == kept
    assert path not in [dst for _, dst in replaced]
    assert f"NOT accepted: tests failed, {path} is unchanged" in run.output

    # unless forced
    run = gate.run(f"--loso-compare={path}", "--loso-accept", "--loso-accept-force", "--loso-min-plcc", "0.99999")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED, run.output
    assert path.read_bytes() != kept
    assert json.loads(path.read_text()) == run.report
    assert run.report["failures"]
    assert f"accepted: this run's report is now {path}" in run.output


# -- 7. the aggregate slides ---------------------------------------------------------------------


def test_aggregate_regression_fails_the_session(template_gate):
    gate = template_gate
    accepted = accept(gate)
    edited = copy.deepcopy(accepted)
    mean_before = accepted["archs"]["mlp_small"]["aggregate"]["mean_plcc"]
    edited["archs"]["mlp_small"]["aggregate"]["mean_plcc"] = mean_before + 0.01
    run = compare_with(gate, edited, "--loso-accept")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED, run.output
    # every fold passed; the aggregate test failed, as pytest counts it: the report is not accepted
    assert run.outcomes == {n: "PASSED" for n in all_ids() if n != "loso::aggregate[mlp_small]"} | {
        "loso::aggregate[mlp_small]": "FAILED"}, run.output
    run.result.assert_outcomes(passed=8, failed=1)
    assert json.loads(accepted_file(gate).read_text()) == edited
    assert "NOT accepted" in run.output
    line = sentence("mlp_small", "mean PLCC", mean_before + 0.01, mean_before, "-0.005", "drop beyond the allowance")
    assert run.report["failures"] == [{"test": "aggregate[mlp_small]", "message": line}]
    assert run.report["comparison"]["regressions"] == ["aggregate[mlp_small]: " + line.split(": ", 1)[1]
                                                       .removeprefix("mean ")]
    assert run.failure_text("loso::aggregate[mlp_small]").splitlines() == [line]  # said once, not doubled
    assert rows(run.report)[("aggregate[mlp_small]", "plcc")]["verdict"] == "REGRESSED"


# -- 8. noise rule ---------------------------------------------------------------------------------


def test_noise_mode_forgives_drops_within_the_bootstrap_interval(template_gate):
    gate = template_gate
    accepted = accept(gate)
    within, outside = fold(accepted, "mlp_small", "Src0000"), fold(accepted, "mlp_small", "Src0001")
    low, high = within["ci"]["plcc"]
    assert low <= within["plcc"] < high - 1e-4
    allowance = (high - within["plcc"]) / 4
    edited = copy.deepcopy(accepted)
    old_plcc = within["plcc"] + (high - within["plcc"]) / 2  # a drop of 2 allowances, inside the interval
    fold(edited, "mlp_small", "Src0000")["plcc"] = old_plcc
    rmse_low, rmse_high = outside["ci"]["rmse"]
    old_rmse = rmse_low / 2  # far below this run's interval: RMSE rose well beyond noise
    assert outside["rmse"] - old_rmse > 0.5
    fold(edited, "mlp_small", "Src0001")["rmse"] = old_rmse
    max_drop = f"--loso-max-drop=plcc={allowance!r},srocc=0.005,krcc=0.005,rmse=0.5"

    run = compare_with(gate, edited, "--loso-compare-mode", "noise", max_drop)
    assert failed(run) == {"loso::fold[mlp_small-Src0001]"}, run.output
    assert run.report["comparison"]["mode"] == "noise"
    found = rows(run.report)
    # the edited accepted values are not those of the accepted predictions: the unpaired rule, which says why
    edited_note = "not paired: the accepted report's {} of fold[mlp_small-{}] is not that of its predictions " \
                  "(the report was edited?)"
    assert found[("fold[mlp_small-Src0000]", "plcc")]["verdict"] == "worse (noise)"
    assert found[("fold[mlp_small-Src0000]", "plcc")]["rule"] == (
        "unpaired: the accepted value inside this run's 95% bootstrap interval; "
        + edited_note.format("plcc", "Src0000"))
    regressed = found[("fold[mlp_small-Src0001]", "rmse")]
    assert regressed["verdict"] == "REGRESSED"
    assert "bootstrap interval" in regressed["rule"]
    interval = fold(run.report, "mlp_small", "Src0001")["ci"]["rmse"]
    assert interval == [rmse_low, rmse_high]  # same data, same seed
    rule = (f"unpaired: drop beyond the allowance and the accepted value outside this run's 95% bootstrap interval "
            f"[{rmse_low:.4g}, {rmse_high:.4g}]; " + edited_note.format("rmse", "Src0001"))
    text = run.failure_text("loso::fold[mlp_small-Src0001]")
    assert sentence("Src0001 (mlp_small)", "RMSE", old_rmse, outside["rmse"], "+0.5", rule) in text.splitlines(), text

    # KRCC has no bootstrap interval: the noise rule cannot forgive it, and says why
    edited = copy.deepcopy(edited)
    fold(edited, "mlp_small", "Src0002")["krcc"] += 0.01
    run = compare_with(gate, edited, "--loso-compare-mode=noise", max_drop)
    assert failed(run) == {"loso::fold[mlp_small-Src0001]", "loso::fold[mlp_small-Src0002]"}, run.output
    krcc = fold(run.report, "mlp_small", "Src0002")["krcc"]
    assert sentence("Src0002 (mlp_small)", "KRCC", krcc + 0.01, krcc, "-0.005",
                    "drop beyond the allowance (no bootstrap interval is computed for KRCC)"
                    ) in run.failure_text("loso::fold[mlp_small-Src0002]").splitlines()
    # without intervals at all, noise mode is the bound rule, and says so
    run = compare_with(gate, None, "--loso-compare-mode=noise", "--loso-bootstrap=0", max_drop)
    assert "loso::fold[mlp_small-Src0000]" in failed(run), run.output
    assert sentence("Src0000 (mlp_small)", "PLCC", old_plcc, within["plcc"], f"-{allowance:g}",
                    "drop beyond the allowance (no bootstrap intervals: --loso-bootstrap is 0)"
                    ) in run.failure_text("loso::fold[mlp_small-Src0000]").splitlines()

    # the bound rule fails the drop within the noise too
    run = compare_with(gate, None, max_drop)
    assert failed(run) == {"loso::fold[mlp_small-Src0000]", "loso::fold[mlp_small-Src0001]",
                           "loso::fold[mlp_small-Src0002]"}, run.output
    text = run.failure_text("loso::fold[mlp_small-Src0000]")
    assert sentence("Src0000 (mlp_small)", "PLCC", old_plcc, within["plcc"], f"-{allowance:g}",
                    "drop beyond the allowance") in text.splitlines(), text
    assert "95% bootstrap interval" not in text


# -- 9. bootstrap intervals, KRCC, logistic metrics ----------------------------------------------------


def test_bootstrap_seeded_and_equal_to_explicit_resampling(template_gate, clean):
    gate = template_gate
    plain = clean.run
    for arch in ARCHS:
        assert all("ci" not in m for m in plain.report["archs"][arch]["per_fold"].values())  # off by default
    first = gate.run("--loso-bootstrap=300", "--loso-bootstrap-seed=7")
    second = gate.run("--loso-bootstrap=300", "--loso-bootstrap-seed=7")
    other = gate.run("--loso-bootstrap=300", "--loso-bootstrap-seed=8")
    for run in (first, second, other):
        assert run.result.ret == 0, run.output

    def intervals(report):
        found = {(a, s): fold(report, a, s)["ci"] for a in ARCHS for s in SOURCES}
        found[BASELINE_TAG] = report["baselines"][BASELINE_TAG]["all_clips_concat"]["ci"]
        return found

    assert intervals(first.report) == intervals(second.report)
    assert intervals(first.report) != intervals(other.report)
    for key, ci in intervals(first.report).items():
        metrics = fold(first.report, *key) if key != BASELINE_TAG else \
            first.report["baselines"][BASELINE_TAG]["all_clips_concat"]
        for name in ("plcc", "srocc", "rmse"):
            low, high = ci[name]
            # BCa corrects the downward bias duplicated frames give SROCC; with only 4 clips a fallback may be
            # needed, and is named: every interval covers its estimate
            assert low - 1e-12 <= metrics[name] <= high + 1e-12, (key, name, low, metrics[name], high)  # float rounding
            assert metrics["ci_method"][name].split(" (")[0] in ("BCa", "percentile", "percentile extended to the estimate")

    # the weighted, vectorised intervals equal scipy's on explicitly concatenated resamples
    pair_frames = (FRAMES,) * PAIRS_PER_SOURCE
    for arch, source in (("mlp_small", "Src0000"), ("linear", "Src0002")):
        x, y = gate.xy(source)
        pred = ort_predict(gate.fold_path(arch, source), x)
        expected = explicit_bootstrap(pred, y, pair_frames, n_resamples=300, seed=7)
        metrics = fold(first.report, arch, source)
        for name in ("plcc", "srocc", "rmse"):
            method = metrics["ci_method"][name]
            explicit = expected[name]["BCa" if method == "BCa" else "percentile"]
            if method.startswith("percentile extended"):
                explicit = [min(explicit[0], metrics[name]), max(explicit[1], metrics[name])]
            assert metrics["ci"][name] == pytest.approx(explicit, abs=1e-6), (arch, source, name, method)


def test_perfect_predictor_has_a_zero_width_plcc_interval(gate):
    w = np.array([30.0, 12.0, 18.0, 20.0, 25.0, 0.75])
    b = 4.0
    x, _ = gate.xy("Src0000")
    for index, stem in enumerate(gate.stems("Src0000")):
        features = gate.truth["Src0000"][index][0]
        targets = features.astype(np.float64) @ w + b
        write_cache(gate.cache_dir / "Src0000" / f"{stem}.json", cache_payload(features, targets))
    export_onnx(Regressor([(w[:, None], np.array([b]))]), gate.fold_path("linear", "Src0000"))
    run = gate.run("--loso-arch=linear", "--loso-bootstrap=200", baseline=False)
    assert run.result.ret == 0, run.output
    metrics = fold(run.report, "linear", "Src0000")
    assert metrics["plcc"] == pytest.approx(1.0, abs=1e-6)
    low, high = metrics["ci"]["plcc"]
    assert low == pytest.approx(1.0, abs=1e-6) and high == pytest.approx(1.0, abs=1e-6)
    assert metrics["ci"]["rmse"][1] < 1e-3
    # the other folds are scored on untouched data and have real intervals
    low, high = fold(run.report, "linear", "Src0001")["ci"]["plcc"]
    assert high - low > 1e-3


@pytest.mark.parametrize("n_clips, threads, chunk", [(4, 1, None), (40, 1, None), (300, 1, None), (300, 3, None),
                                                     (300, 1, 5)],
                         ids=["4-clips", "40-clips", "300-clips", "300-clips-3-threads", "300-clips-tiny-ranges"])
# cubic rank forms (<= 32 clips), sorted cumulative sums beyond; a baseline's concatenation splits its
# resamples over threads (forced here on a small one) and makes y's ranks a range of frames at a time
# (here ranges of 5 frames: the tied groups, some far larger, must not be split)
def test_clip_statistic_equals_explicit_concatenation(n_clips, threads, chunk, monkeypatch):
    """The per-clip-sums statistic equals pearsonr / spearmanr / RMSE of the explicitly concatenated resample."""
    assert (n_clips <= clip_statistic.RANK_FORM_MAX_CLIPS) == (n_clips == 4)
    if threads > 1:
        monkeypatch.setattr(clip_statistic, "PARALLEL_RANK_WORK", 0)
        monkeypatch.setattr(clip_statistic, "_cores", lambda: threads)
    if chunk is not None:
        monkeypatch.setattr(clip_statistic, "RANGE_CELLS", chunk)
    rng = np.random.default_rng(42 + n_clips)
    pair_frames = tuple(int(f) for f in rng.integers(3, 9, n_clips))
    n = sum(pair_frames)
    target = np.round(rng.uniform(0, 100, n) / 5) * 5  # coarse: many ties, in both variables
    target[rng.random(n) < 0.1] = 100.0  # and one large tied group, as saturated VMAF frames
    pred = np.round(target + rng.normal(0, 12, n))
    pred[::7] = pred[0]  # ties spanning clips
    pred, target = pred.astype(np.float32), target.astype(np.float32)
    resamples = rng.integers(0, n_clips, (25, n_clips))
    resamples[0] = 0  # a resample of one clip repeated
    jackknife = np.array([[c for c in range(n_clips) if c != left] for left in range(min(n_clips, 10))])

    statistic = clip_statistic.ClipStatistic(pred, target, pair_frames)
    if chunk is not None:
        ranges = statistic.rank_sums.y_ranges  # ranges of one frame, widened to whole tied groups
        assert len(ranges) > 10 and any(end - start > 10 * chunk for start, end, *_ in ranges)
    for chosen in (resamples, jackknife):
        values = statistic(chosen, axis=-1)
        assert values.shape == (3, len(chosen))
        expected = np.array([explicit_resample_metrics(pred, target, pair_frames, c) for c in chosen])
        assert np.allclose(values.T, expected, atol=1e-9, equal_nan=True)
    # the delete-a-group jackknife, from per-clip sums too
    groups = statistic.jackknife(7)
    group_of_clip = np.arange(n_clips) * min(n_clips, 7) // n_clips
    for g in range(groups.shape[1]):
        kept = np.flatnonzero(group_of_clip != g)
        assert np.allclose(groups[:, g], explicit_resample_metrics(pred, target, pair_frames, kept), atol=1e-9)


def check_krcc_and_logistic(metrics: dict, pred: np.ndarray, y: np.ndarray) -> None:
    """KRCC and the logistic-mapped PLCC/RMSE, recomputed here from the predictions."""

    def logistic(x, b1, b2, b3, b4):  # the documented 4-parameter logistic
        return b2 + (b1 - b2) / (1 + np.exp(-(x - b3) / np.abs(b4)))

    assert metrics["krcc"] == pytest.approx(float(kendalltau(pred, y).statistic), abs=1e-12)
    p, t = pred.astype(np.float64), y.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params, _ = curve_fit(logistic, p, t, p0=[t.max(), t.min(), np.median(p), p.std()], maxfev=20000)
    mapped = logistic(p, *params)
    assert metrics["plcc_logistic"] == pytest.approx(float(pearsonr(mapped, t).statistic), abs=1e-3)
    assert metrics["rmse_logistic"] == pytest.approx(float(np.sqrt(np.mean((mapped - t) ** 2))), abs=1e-3)


def test_krcc_and_logistic_metrics(template_gate, clean):
    gate = template_gate
    run = gate.run("--loso-logistic")
    assert run.result.ret == 0, run.output

    for arch in ARCHS:
        aggregate = run.report["archs"][arch]["aggregate"]
        for source in SOURCES:
            x, y = gate.xy(source)
            metrics = fold(run.report, arch, source)
            check_krcc_and_logistic(metrics, ort_predict(gate.fold_path(arch, source), x), y)
            assert metrics["plcc_logistic"] >= metrics["plcc"] - 0.01  # a monotone refit barely moves PLCC
        for name in ("krcc", "plcc_logistic", "rmse_logistic"):
            values = [fold(run.report, arch, s)[name] for s in SOURCES]
            assert aggregate[f"mean_{name}"] == pytest.approx(float(np.mean(values)), abs=1e-12)
            assert aggregate[f"std_{name}"] == pytest.approx(float(np.std(values, ddof=1)), abs=1e-12)
    assert run.report["run_provenance"]["options"]["logistic"] is True
    baseline = run.report["baselines"][BASELINE_TAG]["all_clips_concat"]
    assert baseline["plcc_logistic"] is not None and baseline["rmse_logistic"] is not None
    # the baseline on all sources concatenated: KRCC and the logistic fit, recomputed here too
    x, y = gate.all_xy()
    check_krcc_and_logistic(baseline, ort_predict(gate.baseline, x), y)
    # shown in the terminal and Markdown tables too, next to the plain value
    m = fold(run.report, "linear", "Src0001")
    cell = f"{m['plcc']:.4f}; logistic {m['plcc_logistic']:.4f}"
    assert cell in run.markdown and cell in run.output
    assert f"{m['rmse']:.3f}; logistic {m['rmse_logistic']:.3f}" in run.markdown
    plain = clean.run
    assert "plcc_logistic" not in fold(plain.report, "linear", "Src0000")
    assert "; logistic" not in plain.markdown


# -- 10. the evaluation script's baselines (under xdist: test_paired) ---------------------------


@pytest.mark.parametrize("baselines, keys", [
    ({"mlp_small_v1": {"model_path": "/m/vmaf_tiny_v1.onnx"}}, ["vmaf_tiny_v1"]),
    # a stem that is another entry's tag: both keep their tags (entry "a" was dropped)
    ({"a": {"model_path": "/m/b.onnx"}, "b": {}}, ["a", "b"]),
    # two files with one stem: both keep their tags
    ({"x": {"model_path": "/m/v1.onnx"}, "y": {"model_path": "/n/v1.onnx"}}, ["x", "y"]),
    # a clash found only after another entry fell back to its tag
    ({"a": {"model_path": "/m/c.onnx"}, "b": {"model_path": "/m/c.onnx"}, "d": {"model_path": "/m/a.onnx"}},
     ["a", "b", "d"]),
])
def test_script_baselines_are_keyed_by_stem_without_losing_one(baselines, keys):
    from pytest_loso.accepted import _baselines_by_stem

    renamed = _baselines_by_stem(baselines)
    assert list(renamed) == keys
    assert list(renamed.values()) == list(baselines.values())  # every entry, in order, unchanged
