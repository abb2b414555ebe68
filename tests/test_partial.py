"""Partial runs (-k, --deselect, --lf, -x): reported as such, never judged or accepted as a whole."""

from __future__ import annotations

import json
import shutil

import pytest

from loso_helpers import all_ids
from shared_runs import template_gate  # noqa: F401  (a fixture)

MEAN_RMSE_TOO_TIGHT = "--loso-max-mean-rmse=0.001"


def _whole_report_from(clean, gate) -> None:
    """The untouched template's whole report (``clean``'s run: it asserted ret == 0) where ``gate``'s
    runs write theirs, as that run would have left it there: the runs here only look at its files."""
    shutil.copytree(clean.env.report_dir, gate.report_dir)


def test_a_selected_subset_is_marked_partial_and_spared_the_aggregate_bounds(template_gate):
    gate = template_gate  # its runs only read the template
    full = gate.run(MEAN_RMSE_TOO_TIGHT)
    assert full.result.ret == pytest.ExitCode.TESTS_FAILED  # the whole run breaks the aggregate bound
    assert full.report["partial"] is None

    run = gate.run(MEAN_RMSE_TOO_TIGHT, "-k", "Src0000")
    assert run.result.ret == pytest.ExitCode.OK, run.output
    ran = {nodeid for nodeid in run.outcomes}
    assert ran == {f"loso::fold[{arch}-Src0000]" for arch in ("mlp_small", "linear")}
    # the aggregate tests too: -k deselected them, as pytest's "7 deselected" counts
    expected_not_run = sorted(n.split("::")[-1] for n in set(all_ids()) - ran)
    assert run.report["partial"] == {"not_run": expected_not_run, "ran": 2,
                                     "tests_ran": sorted(n.split("::")[-1] for n in ran)}
    assert "partial run: 7 of 9 gate tests did not run" in run.output
    run.result.stdout.fnmatch_lines(["*= 2 passed, 7 deselected in *"])
    assert "LOSO aggregate thresholds FAILED" not in run.output
    assert not any(f["test"].startswith("aggregate[") for f in run.report["failures"])
    # the mean is still shown, for what it is
    assert run.report["archs"]["mlp_small"]["aggregate"]["n_folds"] == 1

    # the other way round, counted out of the same 9 (the aggregate tests that ran count as run)
    rest = gate.run(MEAN_RMSE_TOO_TIGHT, "-k", "not Src0000")
    assert "partial run: 2 of 9 gate tests did not run" in rest.output, rest.output
    rest.result.assert_outcomes(passed=5, skipped=2, deselected=2)  # the aggregates skip: they are partial
    assert rest.report["partial"]["ran"] == 7
    assert rest.report["partial"]["tests_ran"] == sorted(
        [n.split("::")[-1] for n in rest.outcomes] + ["aggregate[linear]", "aggregate[mlp_small]"])


def test_a_partial_run_is_not_accepted_and_not_compared_as_a_whole(template_gate):
    gate = template_gate  # its runs only read the template (the accepted report is in its own folder)
    path = gate.root / "accepted" / "loso_eval.json"
    assert gate.run(f"--loso-compare={path}", "--loso-accept").result.ret == 0
    kept = path.read_bytes()
    junit = gate.root / "junit.xml"
    run = gate.run(f"--loso-compare={path}", "--loso-accept", "-k", "Src0000", f"--junitxml={junit}")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED, run.output  # a refused accept fails the run
    # every scoring test that ran passed; the refused accept is the failed test, as pytest and JUnit count it
    assert run.outcomes == {f"loso::fold[{a}-Src0000]": "PASSED" for a in ("mlp_small", "linear")} | {
        "loso::accept": "FAILED"}
    run.result.stdout.fnmatch_lines(["*= 1 failed, 2 passed, 7 deselected in *"])
    import xml.etree.ElementTree as ET

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "1"
    failure = [c for c in suite.iter("testcase") if c.find("failure") is not None][0].find("failure")
    assert "NOT accepted: a partial run" in failure.get("message")
    assert path.read_bytes() == kept
    assert "NOT accepted: a partial run" in run.output and "the run fails" in run.output
    comparison = run.report["comparison"]
    assert comparison["removed"] == [] and comparison["added"] == []
    assert comparison["warnings"] == []  # fewer sources read is not "a different corpus"
    assert {row["test"] for row in comparison["rows"]} == {"fold[mlp_small-Src0000]", "fold[linear-Src0000]"}


def test_no_gate_test_run_leaves_the_report_alone(template_gate, clean):
    gate = template_gate  # its run only reads the template
    _whole_report_from(clean, gate)
    report = gate.report_dir / "loso_eval.json"
    before = report.read_bytes()
    gate.pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = gate.pytester.runpytest(*gate.args("-m", "not loso"))
    assert result.ret == 0
    assert report.read_bytes() == before
    assert json.loads(before)["partial"] is None


def test_a_partial_run_writes_beside_the_whole_report_and_says_it_is_partial(template_gate, clean, monkeypatch):
    gate = template_gate  # its run only reads the template
    _whole_report_from(clean, gate)
    whole_json, whole_md = gate.report_dir / "loso_eval.json", gate.report_dir / "loso_eval.md"
    kept = whole_json.read_bytes(), whole_md.read_bytes()
    assert b"Partial run" not in kept[1] and b"## Aggregate (mean \xc2\xb1 std across folds)" in kept[1]
    summary = gate.root / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = gate.pytester.runpytest(*gate.args("-k", "Src0001"))
    assert result.ret == pytest.ExitCode.OK
    assert (whole_json.read_bytes(), whole_md.read_bytes()) == kept  # the whole run's report is untouched
    partial_json, partial_md = gate.report_dir / "loso_eval.partial.json", gate.report_dir / "loso_eval.partial.md"
    report = json.loads(partial_json.read_text())
    assert report["partial"]["tests_ran"] == ["fold[linear-Src0001]", "fold[mlp_small-Src0001]"]
    assert report["run_provenance"]["outputs"] == {"json": str(partial_json), "markdown": str(partial_md)}
    output = result.stdout.str()
    assert f"report: {partial_json} (and loso_eval.partial.md)" in output
    assert f"{whole_json} is left as it was" in output
    for markdown in (partial_md.read_text(), summary.read_text()):
        assert ("**Partial run:** 2 of 9 gate tests ran (fold[linear-Src0001], fold[mlp_small-Src0001]); "
                "not run: aggregate[linear], aggregate[mlp_small], baseline[vmaf_tiny_v1], fold[linear-Src0000]"
                ) in markdown, markdown
        assert "Aggregate (mean ± std across folds)" not in markdown
        assert "## Mean over the folds that ran (partial run: not the aggregate)" in markdown
        assert "1 of 3 folds" in markdown
