"""Unit tests of the report's rendering (``report/render.py``): Markdown and terminal tables on a
small hand-made report."""

from __future__ import annotations

import copy

import pytest

from pytest_loso.report.render import _md, render_markdown, render_terminal
from pytest_loso.settings import Bounds, Thresholds

THRESHOLDS = Thresholds(fold=Bounds(0.75, 0.7, 20.0), per_source={"X|Y": Bounds(0.9, None, None)},
                        min_mean_plcc=0.85, max_mean_rmse=None)

ODD = "B|<x>\nC"  # a source name with a pipe, HTML and a newline


def make_report(**changes):
    report = {
        "generated": "2024-05-01T12:00:00+0000",
        "corpus": "/data/corpus",
        "archs": {"mlp_small": {
            "per_fold": {
                "A": {"n": 10, "plcc": 0.9, "srocc": 0.8, "rmse": 5.0},
                ODD: {"n": 12, "plcc": 0.91234, "srocc": 0.85, "krcc": 0.7, "rmse": 4.5,
                      "ci": {"plcc": [0.85, 0.95], "srocc": [0.8, 0.9], "rmse": None},
                      "ci_method": {"plcc": "BCa", "srocc": "percentile"}},
                "D": {"n": 5, "error": "could not read"},
            },
            "aggregate": {"mean_plcc": 0.9, "std_plcc": 0.01, "mean_srocc": 0.8, "std_srocc": None,
                          "mean_rmse": 5.0, "std_rmse": 0.5, "n_folds": 2, "n_folds_planned": 3,
                          "ci": {"plcc": [0.88, 0.92]}},
        }},
        "aggregate_checks": {"mlp_small": {"test": "aggregate[mlp_small]", "outcome": "skipped",
                                           "message": "the aggregate of mlp_small covers 2 of 3 folds"}},
        "baselines": {"base": {
            "model_path": "/m/base.onnx",
            "per_clip": {"A": {"n": 10, "plcc": 0.99, "srocc": 0.98, "rmse": 1.0}},
            "all_clips_concat": {"n": 27, "plcc": 0.95, "srocc": 0.9, "krcc": 0.8, "rmse": 2.0,
                                 "plcc_logistic": 0.93, "rmse_logistic": 3.2},
        }},
        "ensembles": {},
        "seeds": {},
        "thresholds": THRESHOLDS.to_json(),
        "srocc_method": "average ranks (scipy.stats.spearmanr)",
        "failures": [{"test": "fold[mlp_small-D]", "message": "could not read\n  fix: <restore> it | now"}],
        "warnings": ["w & x"],
        "dropped_frames": {"A": {"clip1": {"feature_frames": 10, "score_frames": 9, "dropped": 1}}},
        "partial": None,
        "run_provenance": {
            "plugin_version": "0.1.0", "entry_point": "pytest11: loso = pytest_loso.plugin",
            "argv": ["pytest", "--loso-example"], "git": "abc123",
            "cache_fingerprint": {"sha256": "f" * 64, "files": 2},
            "versions": {"python": "3.11", "numpy": "2.0"},
            "options": {"bootstrap": {"resamples": 200, "seed": 0}},
        },
        "intervals": {"method": "BCa", "resamples": 200, "few_clips": {}, "note": None},
    }
    report.update(changes)
    return report


def block(lines, title):
    """The lines from ``title`` to the next blank line."""
    start = lines.index(title)
    end = lines.index("", start)
    return lines[start:end]


@pytest.mark.parametrize(
    ("text", "escaped"),
    [("a|b", "a\\|b"), ("<b>&", "&lt;b&gt;&amp;"), ("a\nb\r\nc", "a b  c"), ("`x`", "\\`x\\`"), ("a\\b", "a\\\\b"),
     ("plain [x] *y*", "plain [x] *y*"), (3.5, "3.5"), (None, "None")],
)
def test_md_escapes(text, escaped):
    assert _md(text) == escaped


def test_markdown_fold_table():
    lines = render_markdown(make_report()).splitlines()
    assert block(lines, "## mlp_small: each fold on its held-out source") == [
        "## mlp_small: each fold on its held-out source"]  # the title is followed by a blank line
    start = lines.index("## mlp_small: each fold on its held-out source")
    assert lines[start + 1:start + 8] == [
        "",
        "| split | n | PLCC | SROCC | KRCC | RMSE | status |",
        "|---|---:|---:|---:|---:|---:|---|",
        "| A | 10 | 0.9000 | 0.8000 | — | 5.000 | ok |",
        # BCa is named once in the note; another method is named in the cell
        "| B\\|&lt;x&gt; C | 12 | 0.9123 [0.8500, 0.9500] | 0.8500 [0.8000, 0.9000]* | 0.7000 | 4.500 | ok |",
        "| D | — | — | — | — | — | FAILED |",
        "| mean ± std (2 of 3 folds) | — | 0.9000 ± 0.0100 [0.8800, 0.9200] | 0.8000 ± — | — | 5.000 ± 0.500 "
        "| not checked |",
    ]
    assert lines[start + 8] == ""


def test_markdown_aggregate_table_and_notes():
    lines = render_markdown(make_report()).splitlines()
    assert block(lines, "## Aggregate (mean ± std across folds)") == ["## Aggregate (mean ± std across folds)"]
    start = lines.index("## Aggregate (mean ± std across folds)")
    assert lines[start + 1:start + 8] == [
        "",
        "| arch | folds | PLCC | SROCC | RMSE | status |",
        "|---|---:|---:|---:|---:|---|",
        "| mlp_small | 2 of 3 folds | 0.9000 ± 0.0100 [0.8800, 0.9200] | 0.8000 ± — | 5.000 ± 0.500 | not checked |",
        "",
        "- **aggregate[mlp_small]** not checked: the aggregate of mlp_small covers 2 of 3 folds",
        "",
    ]


def test_markdown_baseline_table_and_summary():
    full = render_markdown(make_report()).splitlines()
    title = "## baseline base (/m/base.onnx)"
    assert block(full, title)[0] == title
    start = full.index(title)
    assert full[start + 2:start + 6] == [
        "| split | n | PLCC | SROCC | KRCC | RMSE | status |",
        "|---|---:|---:|---:|---:|---:|---|",
        "| A | 10 | 0.9900 | 0.9800 | — | 1.000 | — |",  # per-source rows: context, no bound
        "| all sources concatenated | 27 | 0.9500; logistic 0.9300 | 0.9000 | 0.8000 | 2.000; logistic 3.200 | ok |",
    ]
    short = render_markdown(make_report(), summary=True).splitlines()
    start = short.index(title)
    assert short[start + 4:start + 6] == [
        "| all sources concatenated | 27 | 0.9500; logistic 0.9300 | 0.9000 | 0.8000 | 2.000; logistic 3.200 | ok |",
        ""]
    # the summary: the same without the baselines' per-source rows and the provenance
    kept = [line for line in full[:full.index("## Provenance")] if not line.startswith("| A | 10 | 0.9900")]
    assert len(kept) == full.index("## Provenance") - 1
    assert short == kept[:-1]  # (the text's last newline ends it)


def test_markdown_sections():
    text = render_markdown(make_report())
    lines = text.splitlines()
    assert lines[:5] == ["# LOSO evaluation", "", "Generated: 2024-05-01T12:00:00+0000  ", "Corpus: `/data/corpus`", ""]
    assert ("Intervals: 95% BCa bootstrap over clips (200 resamples); an interval marked * is the percentile one, BCa "
            "being undefined or missing its estimate there (its method is ci_method in loso_eval.json).") in lines
    assert "SROCC: average ranks (scipy.stats.spearmanr)." in lines
    start = lines.index("## Thresholds")
    assert lines[start:start + 7] == [
        "## Thresholds", "",
        "- each fold, and each baseline on all sources: PLCC ≥ 0.75, SROCC ≥ 0.7, RMSE ≤ 20",
        "- fold X\\|Y: PLCC ≥ 0.9, SROCC ≥ off, RMSE ≤ off",
        "- each architecture's mean over folds: mean PLCC ≥ 0.85, mean RMSE ≤ off",
        "- baselines' per-source rows: not held to a bound (status —)", ""]
    assert block(lines, "## Failures") == ["## Failures"]
    assert "- **fold[mlp_small-D]**: could not read   fix: &lt;restore&gt; it \\| now" in lines
    assert lines[lines.index("## Warnings") + 2] == "- w &amp; x"
    assert "- A/clip1: 10 feature vs 9 score frames, 1 dropped" in lines
    start = lines.index("## Provenance")
    assert lines[start:] == [
        "## Provenance", "",
        "- plugin 0.1.0, pytest11: loso = pytest_loso.plugin",
        "- command: pytest --loso-example",
        f"- cache fingerprint: `{'f' * 64}` (2 files)",
        "- git: abc123",
        "- versions: python 3.11, numpy 2.0",
    ]
    assert "## Comparison with the accepted report" not in lines
    assert "**Partial run:**" not in text


def test_markdown_without_bootstrap_failures_or_warnings():
    report = make_report(failures=[], warnings=[], dropped_frames={})
    report["run_provenance"]["options"]["bootstrap"]["resamples"] = 0
    report["intervals"] = None
    lines = render_markdown(report).splitlines()
    assert not [line for line in lines if line.startswith("Intervals:")]
    assert "## Failures" not in lines and "## Warnings" not in lines
    assert "## Frames dropped to align features and scores" not in lines


def test_markdown_partial_run():
    partial = {"not_run": ["fold[mlp_small-C]", "aggregate[mlp_small]"], "ran": 2,
               "tests_ran": ["fold[mlp_small-A]", "fold[a|b]"]}
    lines = render_markdown(make_report(partial=partial)).splitlines()
    assert lines[5] == (
        "**Partial run:** 2 of 4 gate tests ran (fold[mlp_small-A], fold[a\\|b]); not run: fold[mlp_small-C], "
        "aggregate[mlp_small]. Means below cover only the folds that ran: they are not the aggregate, and no "
        "aggregate bound or comparison was applied.")
    assert "## Mean over the folds that ran (partial run: not the aggregate)" in lines
    assert "## Aggregate (mean ± std across folds)" not in lines
    none_ran = render_markdown(make_report(partial={"not_run": ["x"], "ran": 0, "tests_ran": []})).splitlines()
    assert none_ran[5].startswith("**Partial run:** 0 of 1 gate tests ran (none); not run: x.")


def test_markdown_no_archs():
    lines = render_markdown(make_report(archs={}, aggregate_checks={})).splitlines()
    assert not [line for line in lines if line.startswith("## Aggregate")]
    assert "## baseline base (/m/base.onnx)" in lines


COMPARISON = {
    "accepted": "/acc/loso_eval.json", "accepted_generated": "2024-04-01T00:00:00+0000", "mode": "noise",
    "warnings": ["the accepted report was made with logistic=False, this run with True"],
    "rows": [
        {"test": "fold[mlp_small-A]", "metric": "plcc", "before": 0.9, "after": 0.88, "delta": -0.02,
         "allowed": 0.005, "verdict": "REGRESSED", "rule": "drop beyond the allowance"},
        {"test": "fold[mlp_small-A]", "metric": "rmse", "before": 5.0, "after": 5.0, "delta": 0.0,
         "allowed": 0.5, "verdict": "same", "rule": None},
        {"test": "baseline[b|c]", "metric": "rmse", "before": 2.0, "after": 1.75, "delta": -0.25,
         "allowed": 0.5, "verdict": "better", "rule": None},
    ],
    "added": ["fold[mlp_small-E]"], "removed": [], "failed": ["fold[mlp_small-D]"],
    "not_compared": {"aggregate[mlp_small]": "over 2 of 3 folds"},
    "pairing": {"paired": 1, "compared": 2, "unpaired": {"baseline[b|c]": "no accepted predictions"}},
}


def test_markdown_comparison():
    lines = render_markdown(make_report(comparison=COMPARISON)).splitlines()
    start = lines.index("## Comparison with the accepted report")
    assert lines[start:start + 20] == [
        "## Comparison with the accepted report", "",
        "Accepted: `/acc/loso_eval.json` (2024-04-01T00:00:00+0000), rule: noise", "",
        "> **Warning:** the accepted report was made with logistic=False, this run with True", "",
        "| test | metric | before | after | delta | verdict |",
        "|---|---|---:|---:|---:|---|",
        "| fold[mlp_small-A] | plcc | 0.9000 | 0.8800 | -0.0200 | REGRESSED (drop beyond the allowance) |",
        "| fold[mlp_small-A] | rmse | 5.000 | 5.000 | +0.000 | same |",
        "| baseline[b\\|c] | rmse | 2.000 | 1.750 | -0.250 | better |",
        "",
        "added since the accepted report: fold[mlp_small-E]",
        "",
        "failed in this run, not compared: fold[mlp_small-D]",
        "",
        "aggregate[mlp_small] not compared: over 2 of 3 folds",
        "",
        "noise rule: paired (bootstrap of new − accepted over the same clips) for 1 of 2 tests",
        "",
    ]
    assert lines[start + 20:start + 22] == [
        "baseline[b\\|c]: unpaired rule (this run's interval vs the accepted value): no accepted predictions", ""]


def test_terminal_tables():
    report = make_report()
    report["archs"]["mlp_small"]["per_fold"] = {"A": {"n": 10, "plcc": 0.9, "srocc": 0.8, "rmse": 5.0}}
    report["archs"]["mlp_small"]["aggregate"] = {"mean_plcc": 0.9, "std_plcc": None, "mean_srocc": 0.8,
                                                 "std_srocc": None, "mean_rmse": 5.0, "std_rmse": None,
                                                 "n_folds": 2}
    report["aggregate_checks"]["mlp_small"]["outcome"] = "passed"
    report["baselines"] = {}
    assert render_terminal(report) == [
        "mlp_small: each fold on its held-out source",
        # widths: 19 ("mean ± std (2 folds)" is 20), 2, 10, 10, 4, 9; the status column is not padded
        "  split                  n        PLCC       SROCC  KRCC       RMSE  status",
        "  A                     10      0.9000      0.8000     —      5.000  ok",
        "  mean ± std (2 folds)   —  0.9000 ± —  0.8000 ± —     —  5.000 ± —  ok",
        "",
    ]


def test_terminal_comparison_changed_only():
    lines = render_terminal(make_report(comparison=COMPARISON, archs={}, baselines={}))
    assert lines == [
        "compared with /acc/loso_eval.json (rule: noise): 2 metrics changed",
        "  test               metric  before  after   delta    verdict",
        "  fold[mlp_small-A]  plcc    0.9000  0.8800  -0.0200  REGRESSED (drop beyond the allowance)",
        "  baseline[b|c]      rmse    2.000   1.750   -0.250   better",
        "added since the accepted report: fold[mlp_small-E]",
        "failed in this run, not compared: fold[mlp_small-D]",
        "aggregate[mlp_small] not compared: over 2 of 3 folds",
        "noise rule: paired (bootstrap of new − accepted over the same clips) for 1 of 2 tests",
        "baseline[b|c]: unpaired rule (this run's interval vs the accepted value): no accepted predictions",
        "",
    ]


def test_terminal_comparison_nothing_changed():
    comparison = copy.deepcopy(COMPARISON)
    comparison.update(rows=[COMPARISON["rows"][1]], added=[], failed=[], not_compared={}, pairing=None,
                      removed=["fold[mlp_small-Z]"], mode="bound")
    lines = render_terminal(make_report(comparison=comparison, archs={}, baselines={}))
    assert lines == ["compared with /acc/loso_eval.json (rule: bound): no metric changed",
                     "removed since the accepted report: fold[mlp_small-Z]", ""]


def stats(plcc, srocc, rmse, **extra):
    return {"mean_plcc": plcc, "std_plcc": 0.01, "mean_srocc": srocc, "std_srocc": None, "mean_rmse": rmse,
            "std_rmse": 0.5, **extra}


SEEDS = {"mlp_small": {
    "seeds": [1, 2], "n_seeds": 2,
    "per_seed": {1: stats(0.96, 0.9, 4.0, n_folds=2), 2: stats(0.94, 0.88, 4.5, n_folds=2)},
    **stats(0.95, 0.89, 4.25), "spread_plcc": 0.02, "spread_srocc": 0.02, "spread_rmse": 0.5,
    "lowest_seed": 2, "lowest_seed_mean_plcc": 0.94,
    "per_fold": {"A": stats(0.97, 0.91, 3.0, n_seeds=2)},
    "check": {"test": "seeds[mlp_small]", "outcome": "failed", "message": "spread"},
}}


def test_markdown_seed_tables():
    full = render_markdown(make_report(seeds=SEEDS)).splitlines()
    title = "## mlp_small over seeds: each seed's mean over folds"
    start = full.index(title)
    assert full[start + 4:start + 9] == [
        "| seed 1 | 2 folds | 0.9600 ± 0.0100 | 0.9000 ± — | — | 4.000 ± 0.500 |  |",
        "| seed 2 | 2 folds | 0.9400 ± 0.0100 | 0.8800 ± — | — | 4.500 ± 0.500 |  |",
        "| mean ± std over 2 seeds | — | 0.9500 ± 0.0100 | 0.8900 ± — | — | 4.250 ± 0.500 | FAILED |",
        "| spread (max − min) | — | 0.0200 | 0.0200 | — | 0.500 |  |",
        "| lowest seed: 2 | — | 0.9400 | — | — | — |  |",
    ]
    folds = "## mlp_small over seeds: each fold's mean ± std across seeds"
    start = full.index(folds)
    assert full[start + 4] == "| A | 2 seeds | 0.9700 ± 0.0100 | 0.9100 ± — | — | 3.000 ± 0.500 |  |"
    short = render_markdown(make_report(seeds=SEEDS), summary=True).splitlines()
    assert title in short
    assert folds not in short


def test_seed_tables_show_undefined_figures_as_dashes():
    seeds = copy.deepcopy(SEEDS)
    summary = seeds["mlp_small"]
    summary["per_seed"][2]["mean_plcc"] = summary["mean_plcc"] = summary["spread_plcc"] = None
    summary["lowest_seed_mean_plcc"] = None
    lines = render_markdown(make_report(seeds=seeds)).splitlines()
    start = lines.index("## mlp_small over seeds: each seed's mean over folds")
    assert lines[start + 5:start + 9] == [
        "| seed 2 | 2 folds | — ± 0.0100 | 0.8800 ± — | — | 4.500 ± 0.500 |  |",
        "| mean ± std over 2 seeds | — | — ± 0.0100 | 0.8900 ± — | — | 4.250 ± 0.500 | FAILED |",
        "| spread (max − min) | — | — | 0.0200 | — | 0.500 |  |",
        "| lowest seed: 2 | — | — | — | — | — |  |",
    ]
