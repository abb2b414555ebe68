"""Unit tests of the comparison rules (``compare.py``): one metric's before/after judged by
``SlideRule`` / ``NoiseRule``, ``compare``, ``aggregate_changes`` and ``session_comparison``
on small hand-made report dicts. Every expectation is worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_loso.compare import (
    EPSILON,
    Change,
    NoiseRule,
    SlideRule,
    aggregate_changes,
    compare,
    session_comparison,
    slide_rule,
)
from pytest_loso.settings import Allowance

ALLOW = {"plcc": Allowance(0.005), "srocc": Allowance(0.005), "rmse": Allowance(0.5)}
PAIRED_TEXT = "the 95% interval of the difference new − accepted over the same resampled clips"


# -- SlideRule (bound mode) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "old", "new", "status"),
    [
        ("plcc", 0.90, 0.91, "better"),
        ("plcc", 0.90, 0.90, "same"),
        ("plcc", 0.90, 0.897, "worse (allowed)"),
        ("plcc", 0.90, 0.895, "worse (allowed)"),  # exactly at the allowance (0.9 - 0.895 > 0.005 in floats)
        ("plcc", 0.90, 0.8949, "REGRESSED"),
        ("srocc", 0.80, 0.7949, "REGRESSED"),
        # RMSE: lower is better
        ("rmse", 5.0, 4.0, "better"),
        ("rmse", 5.0, 5.0, "same"),
        ("rmse", 5.0, 5.3, "worse (allowed)"),
        ("rmse", 5.0, 5.5, "worse (allowed)"),  # exactly at the allowance
        ("rmse", 5.0, 5.51, "REGRESSED"),
        ("rmse", 5.0, 4.49, "better"),  # a big drop of RMSE is an improvement, not a slide
    ],
)
def test_slide_rule_statuses(metric, old, new, status):
    change = SlideRule(ALLOW).judge(metric, old, new)
    assert change.status == status
    assert (change.metric, change.before, change.after) == (metric, old, new)
    assert change.allowed == ALLOW[metric].absolute
    assert change.regressed is (status == "REGRESSED")
    assert change.rule == ("drop beyond the allowance" if status == "REGRESSED" else None)


def test_drop_at_the_allowance_needs_epsilon():
    """The float difference 0.9 - 0.895 is a hair above 0.005: EPSILON is what lets it pass."""
    assert 0.90 - 0.895 > 0.005
    assert 0.90 - 0.895 <= 0.005 + EPSILON
    # a drop beyond the allowance by more than EPSILON still fails
    assert SlideRule({"plcc": Allowance(0.005)}).judge("plcc", 0.5, 0.5 - 0.005 - 1e-9).regressed


def test_slide_rule_ignores_intervals_and_pairing():
    """Bound mode: a drop beyond the allowance is REGRESSED whatever the bootstrap says."""
    change = SlideRule(ALLOW).judge("plcc", 0.9, 0.8, intervals={"plcc": [0.7, 0.95]},
                                    paired={"ci": {"plcc": [-0.2, 0.1]}})
    assert change.status == "REGRESSED"
    assert change.rule == "drop beyond the allowance"


@pytest.mark.parametrize(
    ("allowance", "accepted", "expected"),
    [
        (Allowance(), 0.9, 0.0),
        (Allowance(absolute=0.3), 10.0, 0.3),
        (Allowance(relative=0.05), 10.0, 0.5),
        (Allowance(relative=0.05), -4.0, 0.2),  # of the accepted value's magnitude
        (Allowance(absolute=0.3, relative=0.05), 10.0, 0.5),  # the larger applies
        (Allowance(absolute=0.3, relative=0.05), 2.0, 0.3),
    ],
)
def test_allowance_of(allowance, accepted, expected):
    assert allowance.of(accepted) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize(
    ("new", "status"),
    [(10.4, "worse (allowed)"), (10.5, "worse (allowed)"), (10.6, "REGRESSED"), (9.0, "better")],
)
def test_relative_allowance_rmse(new, status):
    change = SlideRule({"rmse": Allowance(relative=0.05)}).judge("rmse", 10.0, new)
    assert change.allowed == pytest.approx(0.5)
    assert change.status == status


def test_relative_allowance_larger_than_absolute_for_plcc():
    rule = SlideRule({"plcc": Allowance(absolute=0.001, relative=0.01)})
    assert rule.judge("plcc", 0.9, 0.892).status == "worse (allowed)"  # 0.008 <= 0.009
    assert rule.judge("plcc", 0.9, 0.890).status == "REGRESSED"  # 0.010 > 0.009


# -- Change ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "sentence"),
    [
        (Change("plcc", 0.9, 0.894, 0.005, "REGRESSED", "drop beyond the allowance"),
         "PLCC 0.9000 -> 0.8940 (-0.0060, allowed -0.005) [drop beyond the allowance]"),
        (Change("rmse", 5.0, 5.6, 0.5, "REGRESSED", "drop beyond the allowance"),
         "RMSE 5.000 -> 5.600 (+0.600, allowed +0.5) [drop beyond the allowance]"),
        (Change("srocc", 0.8, 0.81, 0.005, "better"), "SROCC 0.8000 -> 0.8100 (+0.0100, allowed -0.005)"),
        (Change("rmse", 5.0, 4.25, 0.25, "better"), "RMSE 5.000 -> 4.250 (-0.750, allowed +0.25)"),
        (Change("krcc", 0.7, 0.7, 0.0, "same"), "KRCC 0.7000 -> 0.7000 (+0.0000, allowed -0)"),
    ],
)
def test_change_sentence(change, sentence):
    assert change.sentence() == sentence


def test_change_to_json_writes_status_as_verdict():
    change = Change("rmse", 5.0, 5.75, 0.5, "REGRESSED", "drop beyond the allowance")
    assert change.delta == pytest.approx(0.75)
    assert change.to_json() == {"metric": "rmse", "before": 5.0, "after": 5.75, "delta": 0.75, "allowed": 0.5,
                                "verdict": "REGRESSED", "rule": "drop beyond the allowance"}
    assert "status" not in change.to_json()


# -- NoiseRule ------------------------------------------------------------------------------------


def test_noise_rule_within_allowance_is_not_about_noise():
    """Within the allowance the noise rule is the bound rule: the intervals are not consulted."""
    rule = NoiseRule(ALLOW)
    assert rule.judge("plcc", 0.9, 0.897, intervals=None).status == "worse (allowed)"
    assert rule.judge("plcc", 0.9, 0.91, intervals={"plcc": [0.95, 0.99]}).status == "better"
    assert rule.judge("plcc", 0.9, 0.9, paired={"ci": {"plcc": [-0.1, -0.05]}}).status == "same"


@pytest.mark.parametrize(
    ("metric", "old", "new", "interval", "status", "rule"),
    [
        ("plcc", 0.9, 0.89, [-0.02, -0.001], "REGRESSED",
         f"paired: drop beyond the allowance and {PAIRED_TEXT}, -0.0100 [-0.0200, -0.0010], wholly below zero"),
        ("plcc", 0.9, 0.89, [-0.02, 0.001], "worse (noise)",
         f"paired: {PAIRED_TEXT}, -0.0100 [-0.0200, +0.0010], includes zero"),
        # an interval ending exactly at zero includes zero
        ("plcc", 0.9, 0.89, [-0.02, 0.0], "worse (noise)",
         f"paired: {PAIRED_TEXT}, -0.0100 [-0.0200, +0.0000], includes zero"),
        # RMSE: worse is up, so the interval must lie wholly above zero
        ("rmse", 5.0, 6.0, [0.2, 1.8], "REGRESSED",
         f"paired: drop beyond the allowance and {PAIRED_TEXT}, +1.000 [+0.200, +1.800], wholly above zero"),
        ("rmse", 5.0, 6.0, [0.0, 1.8], "worse (noise)",
         f"paired: {PAIRED_TEXT}, +1.000 [+0.000, +1.800], includes zero"),
        ("rmse", 5.0, 6.0, [-0.3, 1.8], "worse (noise)",
         f"paired: {PAIRED_TEXT}, +1.000 [-0.300, +1.800], includes zero"),
    ],
)
def test_noise_rule_paired(metric, old, new, interval, status, rule):
    paired = {"rule": "paired", "ci": {metric: interval}}
    # the paired interval decides even when this run's own interval says otherwise
    change = NoiseRule(ALLOW).judge(metric, old, new, intervals={metric: [0.0, 0.1]}, paired=paired)
    assert (change.status, change.rule) == (status, rule)
    assert change.allowed == ALLOW[metric].absolute


INSIDE = "unpaired: the accepted value inside this run's 95% bootstrap interval"


@pytest.mark.parametrize(
    ("intervals", "paired", "status", "rule"),
    [
        ({"plcc": [0.85, 0.92]}, None, "worse (noise)", INSIDE),
        ({"plcc": [0.85, 0.90]}, None, "worse (noise)", INSIDE),  # at the interval's edge: inside
        ({"plcc": [0.85, 0.92]}, {"rule": "unpaired", "reason": "no accepted predictions"}, "worse (noise)",
         INSIDE + "; not paired: no accepted predictions"),
        ({"plcc": [0.85, 0.895]}, None, "REGRESSED",
         "unpaired: drop beyond the allowance and the accepted value outside this run's "
         "95% bootstrap interval [0.85, 0.895]"),
        ({"plcc": [0.851234, 0.8951234]}, {"reason": "targets differ"}, "REGRESSED",
         "unpaired: drop beyond the allowance and the accepted value outside this run's "
         "95% bootstrap interval [0.8512, 0.8951]; not paired: targets differ"),
        # a paired block without this metric's interval falls back to the unpaired rule
        ({"plcc": [0.85, 0.92]}, {"rule": "paired", "ci": {"srocc": [-0.1, -0.05]}}, "worse (noise)", INSIDE),
        ({"plcc": [0.85, 0.92]}, {"rule": "paired", "ci": {"plcc": None}}, "worse (noise)", INSIDE),
        (None, None, "REGRESSED",
         "drop beyond the allowance (no bootstrap intervals: --loso-bootstrap is 0)"),
        ({"srocc": [0.7, 0.8]}, None, "REGRESSED",
         "drop beyond the allowance (no bootstrap interval is computed for PLCC)"),
        ({"plcc": None, "srocc": None, "rmse": None}, None, "REGRESSED",
         "drop beyond the allowance (no bootstrap interval: fewer than 2 clips)"),
    ],
)
def test_noise_rule_unpaired(intervals, paired, status, rule):
    change = NoiseRule(ALLOW).judge("plcc", 0.9, 0.89, intervals=intervals, paired=paired)
    assert (change.status, change.rule) == (status, rule)


def test_noise_rule_metric_without_interval():
    """KRCC has no bootstrap interval: beyond its allowance it regresses, and says why."""
    rule = NoiseRule({"krcc": Allowance(0.01)})
    change = rule.judge("krcc", 0.7, 0.6, intervals={"plcc": [0.8, 0.9], "srocc": [0.7, 0.8], "rmse": [4, 6]})
    assert change.status == "REGRESSED"
    assert change.rule == "drop beyond the allowance (no bootstrap interval is computed for KRCC)"


def test_noise_rule_rmse_unpaired_outside():
    change = NoiseRule(ALLOW).judge("rmse", 5.0, 6.0, intervals={"rmse": [5.5, 6.5]})
    assert change.status == "REGRESSED"
    assert change.rule.endswith("95% bootstrap interval [5.5, 6.5]")
    assert NoiseRule(ALLOW).judge("rmse", 5.0, 6.0, intervals={"rmse": [4.9, 6.5]}).status == "worse (noise)"


@pytest.mark.parametrize(("mode", "cls"), [("bound", SlideRule), ("noise", NoiseRule), ("anything", SlideRule)])
def test_slide_rule_by_mode(mode, cls):
    assert type(slide_rule(ALLOW, mode)) is cls


# -- compare / aggregate_changes ------------------------------------------------------------------


def test_compare_only_metrics_in_both_and_allowed():
    before = {"plcc": 0.9, "srocc": 0.8, "rmse": 5, "krcc": 0.6, "n": 100}
    after = {"plcc": 0.88, "srocc": None, "rmse": 5.2, "krcc": 0.1, "n": 90}
    changes = compare(before, after, ALLOW)
    # srocc is None in this run, krcc has no allowance, n is not a metric
    assert [(c.metric, c.status) for c in changes] == [("plcc", "REGRESSED"), ("rmse", "worse (allowed)")]
    assert changes[1].before == 5.0 and isinstance(changes[1].before, float)


def test_compare_prefix_and_mode():
    before = {"mean_plcc": 0.9, "plcc": 0.1}
    after = {"mean_plcc": 0.88, "plcc": 0.9}
    changes = compare(before, after, {"plcc": Allowance(0.005)}, prefix="mean_", mode="noise",
                      intervals={"plcc": [0.85, 0.95]})
    assert changes == [Change("plcc", 0.9, 0.88, 0.005, "worse (noise)", INSIDE)]


def test_compare_nothing_in_common():
    assert compare({"plcc": 0.9}, {"srocc": 0.9}, ALLOW) == []
    assert compare({}, {}, ALLOW) == []


AGG_BEFORE = {"mean_plcc": 0.9, "mean_srocc": 0.8, "mean_rmse": 5.0, "std_plcc": 0.01, "n_folds": 3}


@pytest.mark.parametrize(
    ("mode", "after_extra", "plcc"),
    [
        ("bound", {"ci": {"plcc": [0.85, 0.95]}}, ("REGRESSED", "drop beyond the allowance")),
        ("noise", {"ci": {"plcc": [0.85, 0.95]}}, ("worse (noise)", INSIDE)),
        ("noise", {"ci": {"plcc": [0.85, 0.95]}, "paired": {"rule": "paired", "ci": {"plcc": [-0.03, -0.01]}}},
         ("REGRESSED", f"paired: drop beyond the allowance and {PAIRED_TEXT}, -0.0200 [-0.0300, -0.0100], "
                       "wholly below zero")),
        ("noise", {}, ("REGRESSED", "drop beyond the allowance (no bootstrap intervals: --loso-bootstrap is 0)")),
    ],
)
def test_aggregate_changes(mode, after_extra, plcc):
    after = {"mean_plcc": 0.88, "mean_srocc": 0.8, "mean_rmse": 4.0, "std_plcc": 0.5, "n_folds": 3, **after_extra}
    changes = aggregate_changes(AGG_BEFORE, after, ALLOW, mode)
    assert [c.metric for c in changes] == ["plcc", "srocc", "rmse"]
    assert (changes[0].status, changes[0].rule) == plcc
    assert [c.status for c in changes[1:]] == ["same", "better"]


# -- session_comparison ---------------------------------------------------------------------------

FP_OLD, FP_NEW = "a" * 64, "b" * 64
OPTIONS = {"archs": [], "bootstrap": {"resamples": 0, "seed": 0}, "logistic": False, "srocc_ranks": "average"}


def fold(plcc, srocc=0.8, rmse=5.0, **extra):
    return {"n": 10, "plcc": plcc, "srocc": srocc, "rmse": rmse, **extra}


def aggregate(plcc, n_folds=2, planned=2):
    return {"mean_plcc": plcc, "mean_srocc": 0.8, "mean_rmse": 5.0, "n_folds": n_folds, "n_folds_planned": planned}


def report(per_fold, agg, baselines=None, fp=FP_OLD, options=None, **extra):
    return {
        "generated": "2024-05-01T12:00:00+0000",
        "archs": {"mlp_small": {"per_fold": per_fold, "aggregate": agg}},
        "baselines": {tag: {"model_path": f"{tag}.onnx", "per_clip": {}, "all_clips_concat": m}
                      for tag, m in (baselines or {}).items()},
        "run_provenance": {"cache_fingerprint": {"sha256": fp}, "options": dict(OPTIONS, **(options or {}))},
        **extra,
    }


ACCEPTED = report({"A": fold(0.9), "B": fold(0.9)}, aggregate(0.9), {"base": fold(0.95)})


def test_session_comparison_same_report():
    result = session_comparison(ACCEPTED, ACCEPTED, ALLOW, "bound", Path("acc/loso_eval.json"))
    assert result["accepted"] == str(Path("acc/loso_eval.json"))
    assert result["accepted_generated"] == "2024-05-01T12:00:00+0000"
    assert result["mode"] == "bound"
    assert result["pairing"] is None
    assert result["max_drop"] == {"plcc": {"absolute": 0.005, "relative": None},
                                  "srocc": {"absolute": 0.005, "relative": None},
                                  "rmse": {"absolute": 0.5, "relative": None}}
    assert result["fingerprint_match"] is True
    assert result["warnings"] == []
    assert (result["added"], result["removed"], result["failed"], result["not_compared"]) == ([], [], [], {})
    assert result["regressions"] == []
    # sorted by test, then the allowances' order
    assert [(r["test"], r["metric"], r["verdict"]) for r in result["rows"]] == [
        (test, metric, "same")
        for test in ("aggregate[mlp_small]", "baseline[base]", "fold[mlp_small-A]", "fold[mlp_small-B]")
        for metric in ("plcc", "srocc", "rmse")
    ]


def test_session_comparison_regression_added_removed_failed():
    new = report({"A": fold(0.8), "B": {"n": 10, "error": "could not read"}, "C": fold(0.9)},
                 aggregate(0.85, n_folds=2, planned=3), {"other": fold(0.95)}, fp=FP_OLD)
    result = session_comparison(ACCEPTED, new, ALLOW, "bound", Path("accepted.json"))
    assert result["added"] == ["baseline[other]", "fold[mlp_small-C]"]
    assert result["removed"] == ["baseline[base]"]
    assert result["failed"] == ["fold[mlp_small-B]"]  # failed, not removed
    assert result["not_compared"] == {"aggregate[mlp_small]": "over 2 of 3 folds"}
    assert [(r["test"], r["metric"], r["verdict"]) for r in result["rows"]] == [
        ("fold[mlp_small-A]", "plcc", "REGRESSED"), ("fold[mlp_small-A]", "srocc", "same"),
        ("fold[mlp_small-A]", "rmse", "same")]
    assert result["rows"][0] == {"test": "fold[mlp_small-A]", "metric": "plcc", "before": 0.9, "after": 0.8,
                                 "delta": pytest.approx(-0.1), "allowed": 0.005, "verdict": "REGRESSED",
                                 "rule": "drop beyond the allowance"}
    assert result["regressions"] == [
        "fold[mlp_small-A]: PLCC 0.9000 -> 0.8000 (-0.1000, allowed -0.005) [drop beyond the allowance]"]


def test_session_comparison_partial_run():
    """A partial run: aggregates are not compared, tests not run are not removed, and a different
    fingerprint (fewer sources read) is not warned about."""
    new = report({"A": fold(0.9)}, aggregate(0.9, n_folds=1, planned=2), {"base": fold(0.95)}, fp=FP_NEW)
    result = session_comparison(ACCEPTED, new, ALLOW, "bound", Path("a.json"),
                                not_run=["fold[mlp_small-B]", "aggregate[mlp_small]"])
    assert result["not_compared"] == {"aggregate[mlp_small]": "partial run"}
    assert result["removed"] == []
    assert result["added"] == []
    assert result["warnings"] == []
    assert result["fingerprint_match"] is False
    assert sorted({r["test"] for r in result["rows"]}) == ["baseline[base]", "fold[mlp_small-A]"]


def test_session_comparison_warnings():
    new = report({"A": fold(0.9), "B": fold(0.9)}, aggregate(0.9), {"base": fold(0.95)}, fp=FP_NEW,
                 options={"bootstrap": {"resamples": 100, "seed": 0}, "logistic": True})
    result = session_comparison(ACCEPTED, new, ALLOW, "bound", Path("a.json"))
    assert result["fingerprint_match"] is False
    assert result["warnings"] == [
        "the accepted report was made on a different corpus (cache fingerprint aaaaaaaaaaaa here bbbbbbbbbbbb): "
        "deltas compare different data",
        "the accepted report was made with bootstrap={'resamples': 0, 'seed': 0}, "
        "this run with {'resamples': 100, 'seed': 0}",
        "the accepted report was made with logistic=False, this run with True",
    ]


def test_session_comparison_old_report_without_srocc_ranks_ranked_as_average():
    old_options = {k: v for k, v in OPTIONS.items() if k != "srocc_ranks"}
    accepted = dict(ACCEPTED, run_provenance={"cache_fingerprint": {"sha256": FP_OLD}, "options": old_options})
    same = session_comparison(accepted, ACCEPTED, ALLOW, "bound", Path("a.json"))
    assert same["warnings"] == []
    ordinal = report({"A": fold(0.9), "B": fold(0.9)}, aggregate(0.9), {"base": fold(0.95)},
                     options={"srocc_ranks": "ordinal"})
    result = session_comparison(accepted, ordinal, ALLOW, "bound", Path("a.json"))
    assert result["warnings"] == ["the accepted report was made with srocc_ranks='average', this run with 'ordinal'"]


def test_session_comparison_accepted_without_provenance():
    accepted = {k: v for k, v in ACCEPTED.items() if k != "run_provenance"}
    result = session_comparison(accepted, ACCEPTED, ALLOW, "bound", Path("a.json"))
    assert result["fingerprint_match"] is False
    assert result["warnings"] == [
        "the accepted report has no provenance (an evaluation script's report?): whether it was made on this "
        "corpus, with these options, cannot be checked"]
    assert len(result["rows"]) == 12


def test_session_comparison_noise_pairing():
    new = report(
        {"A": fold(0.88, paired={"rule": "paired", "ci": {"plcc": [-0.03, -0.01]}}),
         "B": fold(0.88, ci={"plcc": [0.85, 0.95]}, paired={"rule": "unpaired", "reason": "no accepted predictions"})},
        aggregate(0.9), {"base": fold(0.95, ci={"plcc": [0.9, 0.99]})})
    result = session_comparison(ACCEPTED, new, ALLOW, "noise", Path("a.json"))
    default = "no bootstrap of the difference (--loso-bootstrap is 0, or under 2 clips or folds)"
    assert result["pairing"] == {"paired": 1, "compared": 4, "unpaired": {
        "aggregate[mlp_small]": default, "baseline[base]": default,
        "fold[mlp_small-B]": "no accepted predictions"}}
    verdicts = {(r["test"], r["metric"]): (r["verdict"], r["rule"]) for r in result["rows"]}
    assert verdicts[("fold[mlp_small-A]", "plcc")][0] == "REGRESSED"
    assert verdicts[("fold[mlp_small-B]", "plcc")] == ("worse (noise)", INSIDE + "; not paired: no accepted predictions")
    assert result["regressions"] == [
        f"fold[mlp_small-A]: PLCC 0.9000 -> 0.8800 (-0.0200, allowed -0.005) [paired: drop beyond the allowance "
        f"and {PAIRED_TEXT}, -0.0200 [-0.0300, -0.0100], wholly below zero]"]


def test_session_comparison_seeds_not_whole_are_not_compared():
    seeds_old = {"mlp_small": {"mean_plcc": 0.9, "mean_srocc": 0.8, "mean_rmse": 5.0,
                               "check": {"outcome": "passed", "message": None}}}
    seeds_new = {"mlp_small": {"mean_plcc": 0.5, "mean_srocc": 0.8, "mean_rmse": 5.0,
                               "check": {"outcome": "skipped", "message": "seed 2 ran 1 of 2 folds"}}}
    accepted = dict(ACCEPTED, seeds=seeds_old)
    new = dict(ACCEPTED, seeds=seeds_new)
    result = session_comparison(accepted, new, ALLOW, "bound", Path("a.json"))
    assert result["not_compared"] == {"seeds[mlp_small]": "seed 2 ran 1 of 2 folds"}
    assert result["removed"] == []
    assert result["regressions"] == []
    # whole, it is compared (as an aggregate: mean_ keys)
    whole = dict(ACCEPTED, seeds={"mlp_small": dict(seeds_new["mlp_small"], check={"outcome": "failed"})})
    result = session_comparison(accepted, whole, ALLOW, "bound", Path("a.json"))
    assert result["regressions"] == [
        "seeds[mlp_small]: PLCC 0.9000 -> 0.5000 (-0.4000, allowed -0.005) [drop beyond the allowance]"]
