"""Thresholds: per fold from the command line and ini, per source, disabled, baselines, aggregates."""

from __future__ import annotations

import re

import pytest

from loso_helpers import ARCHS, BASELINE_ID, BASELINE_TAG, SOURCES, aggregate_ids, all_ids, fold_ids, scored_ids
from shared_runs import template_gate  # noqa: F401 (a fixture: runs that only read the template)


def _no_traceback(output: str) -> None:
    assert "Traceback" not in output
    assert "def runtest" not in output
    assert "INTERNALERROR" not in output
    assert "gate.py" not in output and "items.py" not in output


def test_min_plcc_fails_every_fold_with_a_reviewer_sentence(template_gate, clean):
    gate = template_gate
    clean = clean.run.report
    run = gate.run("--loso-min-plcc", "0.9999")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    # every fold and the baseline break the bound; the aggregates' own bounds hold
    assert run.outcomes == {nodeid: "FAILED" for nodeid in scored_ids()} | {n: "PASSED" for n in aggregate_ids()}
    _no_traceback(run.output)
    for arch in ARCHS:
        for source in SOURCES:
            text = run.failure_text(f"loso::fold[{arch}-{source}]")
            plcc = clean["archs"][arch]["per_fold"][source]["plcc"]
            assert f"{arch} fold {source}" in text
            assert f"PLCC {plcc:.4f} is below the minimum 0.9999" in text
            assert "(n=120 frames)" in text
            assert f"model: {gate.fold_path(arch, source)}" in text
            # only the broken bound is named
            assert "SROCC" not in text and "RMSE" not in text
    text = run.failure_text(BASELINE_ID)
    plcc = clean["baselines"][BASELINE_TAG]["all_clips_concat"]["plcc"]
    assert f"baseline {BASELINE_TAG} on all sources: PLCC {plcc:.4f} is below the minimum 0.9999 (n=360 frames)" in text
    assert f"model: {gate.baseline}" in text

    # the report keeps the metrics of failed folds, and lists every failure
    report = run.report
    assert report["archs"]["mlp_small"]["per_fold"]["Src0000"]["plcc"] == clean["archs"]["mlp_small"]["per_fold"]["Src0000"]["plcc"]
    assert "below the minimum" in report["archs"]["mlp_small"]["per_fold"]["Src0000"]["error"]
    assert sorted(f["test"] for f in report["failures"]) == sorted(
        nodeid.removeprefix("loso::") for nodeid in scored_ids()
    )
    assert report["thresholds"]["fold"]["min_plcc"] == 0.9999
    # aggregates are still computed over the (failed but scored) folds
    assert report["archs"]["mlp_small"]["aggregate"] == clean["archs"]["mlp_small"]["aggregate"]


def test_several_bounds_broken_are_all_named(template_gate):
    gate = template_gate
    run = gate.run("--loso-arch", "linear", "-k", "Src0000", "--loso-min-plcc", "0.9999",
                   "--loso-min-srocc", "0.9999", "--loso-max-rmse", "0.01", baseline=False)
    text = run.failure_text("loso::fold[linear-Src0000]")
    assert "PLCC" in text and "SROCC" in text and "RMSE" in text
    assert "is above the maximum 0.010" in text


def test_ini_threshold(template_gate):
    gate = template_gate
    gate.pytester.makeini("[pytest]\nloso_min_plcc = 0.9999\n")
    run = gate.run(baseline=False)
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    assert {run.outcomes[n] for n in fold_ids()} == {"FAILED"}
    assert "below the minimum 0.9999" in run.failure_text("loso::fold[linear-Src0001]")
    assert run.report["thresholds"]["fold"]["min_plcc"] == 0.9999


def test_cli_overrides_ini(template_gate):
    gate = template_gate
    gate.pytester.makeini("[pytest]\nloso_min_plcc = 0.9999\nloso_max_rmse = 0.01\n")
    run = gate.run("--loso-min-plcc", "0.5", "--loso-max-rmse", "50")
    assert run.result.ret == 0, run.output
    assert run.outcomes == {nodeid: "PASSED" for nodeid in all_ids()}
    assert run.report["thresholds"]["fold"] == {"min_plcc": 0.5, "min_srocc": 0.70, "max_rmse": 50.0}


def test_none_disables_a_bound(template_gate):
    gate = template_gate
    gate.pytester.makeini("[pytest]\nloso_min_plcc = 0.9999\nloso_max_mean_rmse = 0.001\n")
    run = gate.run("--loso-min-plcc", "none", "--loso-max-mean-rmse", "off")
    assert run.result.ret == 0, run.output
    assert run.outcomes == {nodeid: "PASSED" for nodeid in all_ids()}
    assert run.report["thresholds"]["fold"]["min_plcc"] is None
    assert run.report["thresholds"]["aggregate"]["max_mean_rmse"] is None
    assert run.report["failures"] == []


def test_none_in_ini_disables_a_default(template_gate):
    gate = template_gate
    # the default max_rmse is 20; a per-source override can only tighten what is enabled
    gate.pytester.makeini("[pytest]\nloso_max_rmse = none\nloso_min_srocc = none\n")
    run = gate.run()
    assert run.result.ret == 0, run.output
    assert run.report["thresholds"]["fold"] == {"min_plcc": 0.75, "min_srocc": None, "max_rmse": None}


def test_bad_threshold_is_a_usage_error(template_gate):
    gate = template_gate
    run = gate.run("--loso-min-plcc", "high")
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--loso-min-plcc" in run.output and "'high' is not a number" in run.output
    assert run.report is None


def test_per_source_override_in_ini_fails_only_that_source(template_gate):
    gate = template_gate
    gate.pytester.makeini(
        """
        [pytest]
        loso_source_thresholds =
            Src0001: min_plcc=0.99999
        """
    )
    run = gate.run()
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    failed = {nodeid for nodeid, outcome in run.outcomes.items() if outcome == "FAILED"}
    assert failed == {f"loso::fold[{arch}-Src0001]" for arch in ARCHS}
    assert {n for n, o in run.outcomes.items() if o == "PASSED"} == set(all_ids()) - failed
    text = run.failure_text("loso::fold[mlp_small-Src0001]")
    assert "mlp_small fold Src0001: PLCC" in text and "below the minimum 1.0000" in text
    per_source = run.report["thresholds"]["per_source"]
    assert per_source == {"Src0001": {"min_plcc": 0.99999, "min_srocc": 0.70, "max_rmse": 20.0}}


def test_per_source_override_on_command_line_and_relaxing(template_gate):
    gate = template_gate
    # a global bound every fold breaks, relaxed for one source: only that source passes
    run = gate.run(
        "--loso-min-plcc", "0.9999",
        "--loso-source-threshold", "Src0002: min_plcc=0.5, max_rmse=none",
        baseline=False,
    )
    passed = {nodeid for nodeid, outcome in run.outcomes.items() if outcome == "PASSED"}
    assert passed == {f"loso::fold[{arch}-Src0002]" for arch in ARCHS} | set(aggregate_ids())
    assert run.report["thresholds"]["per_source"]["Src0002"] == {
        "min_plcc": 0.5, "min_srocc": 0.70, "max_rmse": None,
    }


def test_per_source_override_with_unknown_key_is_a_usage_error(template_gate):
    gate = template_gate
    run = gate.run("--loso-source-threshold", "Src0001: min_pclc=0.9")
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert "min_pclc" in run.output


def test_baseline_bounds_apply_to_the_concatenation_not_per_clip(template_gate, clean):
    gate = template_gate
    clean = clean.run.report["baselines"][BASELINE_TAG]
    concat = clean["all_clips_concat"]["rmse"]
    clips = sorted(m["rmse"] for m in clean["per_clip"].values())
    # equal clip lengths: concat RMSE^2 is the mean of the clips' RMSE^2, so it lies strictly between
    assert clips[0] < concat < clips[-1]

    loose = (concat + clips[-1]) / 2  # one clip is above it, the concatenation is not
    run = gate.run("-k", "baseline", "--loso-max-rmse", repr(loose))
    assert run.outcomes == {BASELINE_ID: "PASSED"}, run.output

    tight = (concat + clips[0]) / 2  # one clip is below it, the concatenation is not
    run = gate.run("-k", "baseline", "--loso-max-rmse", repr(tight))
    assert run.outcomes == {BASELINE_ID: "FAILED"}
    text = run.failure_text(BASELINE_ID)
    assert f"RMSE {concat:.3f} is above the maximum {tight:.3f} (n=360 frames)" in text
    assert run.report["failures"][0]["test"] == f"baseline[{BASELINE_TAG}]"


def test_per_source_override_does_not_apply_to_baselines(template_gate):
    gate = template_gate
    run = gate.run("-k", "baseline", "--loso-source-threshold", "Src0001: min_plcc=0.99999")
    assert run.outcomes == {BASELINE_ID: "PASSED"}


def test_aggregate_threshold_fails_the_session_though_every_item_passes(template_gate):
    gate = template_gate
    run = gate.run("--loso-max-mean-rmse", "0.001")
    # every fold passes; the aggregate tests fail, counted by pytest like any test
    assert run.outcomes == {nodeid: "PASSED" for nodeid in scored_ids()} | {n: "FAILED" for n in aggregate_ids()}
    run.result.assert_outcomes(passed=7, failed=2)
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    run.result.stdout.fnmatch_lines(["*= 2 failed, 7 passed in *"])
    for arch in ARCHS:
        mean = run.report["archs"][arch]["aggregate"]["mean_rmse"]
        assert f"{arch}: mean RMSE {mean:.3f} is above the maximum 0.001 over 3 folds" in run.output
    failures = {f["test"]: f["message"] for f in run.report["failures"]}
    assert set(failures) == {f"aggregate[{arch}]" for arch in ARCHS}
    assert "mean RMSE" in failures["aggregate[linear]"]
    _no_traceback(run.output)
    md = (gate.report_dir / "loso_eval.md").read_text()
    assert "## Failures" in md and "**aggregate[mlp_small]**" in md


def test_aggregate_min_mean_plcc_ini_one_arch(template_gate, clean):
    gate = template_gate
    clean = clean.run.report
    between = sorted(clean["archs"][a]["aggregate"]["mean_plcc"] for a in ARCHS)
    bound = sum(between) / 2
    worse = min(ARCHS, key=lambda a: clean["archs"][a]["aggregate"]["mean_plcc"])
    gate.pytester.makeini(f"[pytest]\nloso_min_mean_plcc = {bound!r}\n")
    run = gate.run()
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    assert [f["test"] for f in run.report["failures"]] == [f"aggregate[{worse}]"]
    assert re.search(rf"{worse}: mean PLCC \S+ is below the minimum", run.output)


def test_aggregate_threshold_over_the_selected_folds_only(template_gate, clean):
    gate = template_gate
    clean = clean.run.report["archs"]["linear"]["per_fold"]
    best = min(SOURCES, key=lambda s: clean[s]["rmse"])
    bound = (min(m["rmse"] for m in clean.values()) + sorted(m["rmse"] for m in clean.values())[1]) / 2
    run = gate.run("--loso-arch", "linear", "--loso-max-mean-rmse", repr(bound), baseline=False)
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    run = gate.run("--loso-arch", "linear", "--loso-max-mean-rmse", repr(bound), "-k", best, baseline=False)
    assert run.result.ret == 0, run.output
    assert run.report["failures"] == []


def test_aggregate_failure_does_not_hide_item_failures(template_gate):
    gate = template_gate
    run = gate.run("--loso-max-mean-rmse", "0.001", "--loso-source-threshold", "Src0000: min_plcc=0.99999")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    tests = [f["test"] for f in run.report["failures"]]
    assert set(tests) == {"fold[mlp_small-Src0000]", "fold[linear-Src0000]", "aggregate[mlp_small]", "aggregate[linear]"}
    assert set(fold_ids(sources=("Src0000",))) <= {n for n, o in run.outcomes.items() if o == "FAILED"}


@pytest.mark.parametrize("value", ["nan", "NaN"])
def test_nan_bound_is_a_usage_error_not_a_disabled_bound(template_gate, value):
    gate = template_gate
    """Every comparison with NaN is false: a NaN bound would pass everything without a word."""
    run = gate.run("--loso-min-plcc", value)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR, run.output
    assert "--loso-min-plcc" in run.output
    run = gate.run("--loso-source-threshold", f"Src0001: max_rmse={value}")
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR, run.output
