"""What the gate reports is what happened: pytest's counts, JUnit, the report and the terminal agree."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from compare_helpers import accept
from loso_helpers import ARCHS, aggregate_ids, scored_ids
from shared_runs import SharedRuns, template_gate  # noqa: F401  (template_gate: a fixture)

SHARED = SharedRuns()


def _junit(path) -> tuple[ET.Element, dict[str, ET.Element]]:
    suite = ET.parse(path).getroot().find("testsuite")
    return suite, {case.get("name"): case for case in suite.iter("testcase")}


@pytest.fixture
def refused_broken_aggregate(template_gate) -> tuple[object, dict]:
    """A broken aggregate bound, with an accept asked for (refused: tests failed) and JUnit written,
    on the template in place: the run, and ``{"accepted": path, "junit": path}``. Asked two questions:
    the aggregate tests and JUnit (the refusal is not a test, so it changes none of their counts),
    and the refused accept."""
    def make():
        gate = template_gate
        paths = {"accepted": gate.root / "accepted.json", "junit": gate.root / "junit.xml"}
        run = gate.run(f"--loso-compare={paths['accepted']}", "--loso-accept", "--loso-max-mean-rmse=0.001",
                       f"--junitxml={paths['junit']}")
        return run, paths

    return SHARED.get("refused_broken_aggregate", make)


def test_a_broken_aggregate_bound_is_a_failed_test_in_pytest_and_junit(refused_broken_aggregate):
    run, paths = refused_broken_aggregate
    junit = paths["junit"]
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    run.result.stdout.fnmatch_lines(["*= 2 failed, 7 passed in *"])
    suite, cases = _junit(junit)
    assert (suite.get("tests"), suite.get("failures")) == ("9", "2")
    for arch in ARCHS:
        failure = cases[f"aggregate[{arch}]"].find("failure")
        mean = run.report["archs"][arch]["aggregate"]["mean_rmse"]
        assert f"{arch}: mean RMSE {mean:.3f} is above the maximum 0.001 over 3 folds" in failure.get("message")
        assert run.report["aggregate_checks"][arch] == {
            "test": f"aggregate[{arch}]", "outcome": "failed",
            "message": f"{arch}: mean RMSE {mean:.3f} is above the maximum 0.001 over 3 folds"}
    # the short summary names the test once, then the sentence (no doubled "aggregate[x]: aggregate[x]:")
    assert "FAILED loso::aggregate[linear] - linear: mean RMSE" in run.output
    assert "aggregate[linear]: aggregate[linear]" not in run.output


def test_aggregates_run_after_their_folds_whatever_the_order(template_gate):
    gate = template_gate  # its run only reads the template
    run = gate.run("-v", "-p", "no:randomly", "--loso-max-mean-rmse=0.001", "-k", "aggregate or Src")
    order = [line.split()[0] for line in run.result.stdout.lines if line.startswith("loso::") and " " in line]
    assert order[-2:] == sorted(aggregate_ids()), order
    assert set(order[:-2]) == {n for n in scored_ids() if "Src" in n}


def test_a_fold_that_failed_is_listed_as_failed_not_removed_and_its_aggregate_is_not_compared(gate):
    path = gate.root / "accepted.json"
    accept(gate)  # the accept run on the untouched template (made once: it asserts ret == 0)
    gate.fold_path("linear", "Src0001").write_text("not a model\n")
    run = gate.run(f"--loso-compare={path}")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    run.result.assert_outcomes(passed=7, failed=1, skipped=1)
    comparison = run.report["comparison"]
    assert comparison["failed"] == ["fold[linear-Src0001]"]
    assert comparison["removed"] == []
    assert comparison["not_compared"] == {"aggregate[linear]": "over 2 of 3 folds"}
    assert not any(row["test"] == "aggregate[linear]" for row in comparison["rows"])
    assert run.report["archs"]["linear"]["aggregate"]["n_folds"] == 2
    assert run.report["archs"]["linear"]["aggregate"]["n_folds_planned"] == 3
    assert "failed in this run, not compared: fold[linear-Src0001]" in run.output
    assert "aggregate[linear] not compared: over 2 of 3 folds" in run.output
    md = run.markdown
    assert "| linear | 2 of 3 folds |" in md and "| not checked |" in md
    assert "mean ± std (2 of 3 folds)" in md
    assert "removed since" not in md and "Removed since" not in md


def test_fold_folder_names_are_escaped_in_markdown(gate, monkeypatch):
    name = "Evil|<img src=x onerror=alert(1)>"
    shutil.copytree(gate.fold_path("mlp_small", "Src0000").parent, gate.runs / "loso_mlp_small" / f"fold_{name}")
    summary = gate.root / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    run = gate.run()
    assert [f["test"] for f in run.report["failures"]] == [f"fold[mlp_small-{name}]"]
    for text in (run.markdown, summary.read_text()):
        assert "<img" not in text
        assert "Evil\\|&lt;img src=x onerror=alert(1)&gt;" in text
        for line in text.splitlines():  # every table row keeps its 7 cells
            if line.startswith("| Evil"):
                assert line.replace("\\|", "").count("|") == 8, line


# -- bad output paths and options: a usage error at start, or said at the end with the rest kept --------


@pytest.mark.parametrize("where", ["a file", "under a file", "a broken link", "its report file a folder",
                                   "read-only"])
def test_a_report_folder_that_cannot_be_one_is_a_usage_error_at_start(template_gate, where):
    from loso_helpers import read_only

    gate = template_gate  # a usage error: its run only reads the template

    blocker, target = gate.root / "blocker", gate.root / "elsewhere"
    says = f"--loso-report {target}: "
    if where in ("a file", "under a file"):
        blocker.write_text("not a folder\n")
        target = blocker if where == "a file" else blocker / "report"
        says = f"--loso-report {target}: {blocker} is not a folder"
    elif where == "a broken link":
        target.symlink_to(blocker)
        says += f"{target} is a broken link (to {blocker})"
    elif where == "its report file a folder":
        (target / "loso_eval.json").mkdir(parents=True)
        says += f"{target / 'loso_eval.json'} is a folder, not a regular file"
    else:  # os.access says yes to root: a real write says no (these were tracebacks after every test ran)
        blocker.mkdir()
        target = blocker / "report"
        says = f"--loso-report {target}: cannot write in {blocker}: "
    with read_only(blocker) if where == "read-only" else contextlib.nullcontext():
        run = gate.run(f"--loso-report={target}")
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR, run.output
    assert says in run.output
    assert "Traceback" not in run.output and "passed" not in run.output  # nothing ran
    assert not list(gate.root.glob("**/.loso-write-check-*"))  # the write check leaves nothing


def test_a_report_that_cannot_be_written_at_the_end_is_said_and_fails_the_run(gate):
    """Writable at start, not at the end (here a plain test locks the folder; a full disk alike)."""
    import os

    if os.geteuid() == 0 and shutil.which("chattr") is None:
        pytest.skip("running as root without chattr +i: no way to make a folder read-only here")
    late = gate.root / "late"
    late.mkdir()
    lock = ["chattr", "+i", str(late)] if os.geteuid() == 0 else ["chmod", "555", str(late)]
    gate.pytester.makepyfile(test_lock=f"import subprocess\n\n\ndef test_lock():\n"
                                       f"    subprocess.run({lock!r}, check=True)\n")
    verdict_path, accepted, junit = gate.root / "verdict.json", gate.root / "accepted.json", gate.root / "junit.xml"
    try:
        run = gate.run(f"--loso-report={late}", f"--loso-verdict={verdict_path}", f"--loso-compare={accepted}",
                       "--loso-accept", f"--junitxml={junit}")
    finally:
        subprocess.run(["chattr", "-i", str(late)] if os.geteuid() == 0 else ["chmod", "755", str(late)],
                       check=True)
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED, run.output
    # the lost report is a failed test of its own (issue 20 item 7): counted, and in JUnit
    assert run.outcomes.pop("loso::report") == "FAILED", run.outcomes
    assert all(outcome == "PASSED" for outcome in run.outcomes.values()), run.outcomes
    run.result.assert_outcomes(passed=10, failed=1)  # the gate's nine tests and the one that locks the folder
    xml = junit.read_text()
    assert 'failures="1"' in xml and 'name="report"' in xml and "report NOT written" in xml
    said = f"report NOT written: {late / 'loso_eval.predictions.npz'}: "  # the file, not its temporary
    assert said in run.output and "the run fails, as its report is lost" in run.output
    assert "Traceback" not in run.output and "INTERNALERROR" not in run.output
    assert not any(late.iterdir())
    # the verdict says why it holds, and names no report; nothing is accepted
    verdict = json.loads(verdict_path.read_text())
    assert verdict["verdict"] == "HOLD" and verdict["report"] is None
    assert any(reason.startswith(said) for reason in verdict["reasons"]), verdict["reasons"]
    assert f"NOT accepted: this run's report was not written, {accepted} is unchanged" in run.output
    assert not accepted.exists()


def test_metrics_path_that_is_a_folder_is_a_usage_error_and_a_lost_step_summary_is_said(template_gate, monkeypatch):
    gate = template_gate  # its runs only read the template
    run = gate.run(f"--loso-metrics={gate.root}")
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--loso-metrics {gate.root}: is a folder" in run.output

    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(gate.root / "missing" / "summary.md"))
    run = gate.run()
    assert run.result.ret == 0, run.output
    assert f"step summary NOT written: $GITHUB_STEP_SUMMARY={gate.root / 'missing' / 'summary.md'}" in run.output
    assert run.report is not None and "LOSO gate" in run.output and "Traceback" not in run.output


def test_default_report_folder_is_under_the_invocation_dir_not_the_rootdir_guess(gate):
    """pytest's rootdir guess counts option values: absolute --loso-dir / --data-root moved the report."""
    args = [a for a in gate.args() if not a.startswith("--loso-report=")]
    run = gate.run(*args, plain=True)
    assert run.result.ret == 0, run.output
    assert (gate.root / "runs" / "loso_eval" / "loso_eval.json").is_file()
    assert f"report: {gate.root / 'runs' / 'loso_eval' / 'loso_eval.json'}" in run.output


def test_a_data_warning_is_not_an_error_under_W_error(gate):
    (gate.data_root / "dis" / "Orphan_30_48_100.yuv").write_bytes(b"\0" * 10)
    run = gate.run("-W", "error")
    assert run.result.ret == 0, run.output
    run.result.assert_outcomes(passed=9, warnings=1)
    assert "distorted clips of Orphan have no reference" in run.output


def test_the_same_loso_dir_twice_is_one_set_of_folds(template_gate):
    gate = template_gate  # its run only reads the template
    run = gate.run(f"--loso-dir={gate.runs}", f"--loso-dir={gate.runs / 'loso_linear'}")
    assert run.result.ret == 0, run.output
    run.result.assert_outcomes(passed=9)
    assert "two fold models" not in run.output


@pytest.mark.parametrize("spec", ["plcc=..", "plcc=nan", "plcc=-1", "plcc"])
def test_a_bad_max_drop_names_the_option(template_gate, spec):
    gate = template_gate  # a usage error: its run only reads the template
    run = gate.run(f"--loso-max-drop={spec}")
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--loso-max-drop: {spec!r} is not metric=number or metric=number%" in run.output
    assert "could not convert" not in run.output


def test_files_outside_the_naming_contract_are_warned_about_and_counted(gate):
    names = ["Src0001_01_480_1000.YUV", "Src0001_02_480_1000.yuv ", "Sörc_01_480_1000.yuv", "Src0002_24fps.y4m"]
    for name in names:
        (gate.data_root / ("ref" if name.endswith("y4m") else "dis") / name).write_bytes(b"\0" * 12)
    run = gate.run("-W", "error")
    assert run.result.ret == 0, run.output
    (warning,) = [w for w in run.report["warnings"] if "naming contract" in w]
    assert warning.startswith("4 files in ref/ or dis/ are outside the naming contract")
    for name in names:
        assert repr(name) in warning
    assert "outside the naming contract" in run.output  # in pytest's warnings summary too


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_tb_line_and_the_short_summary_give_the_whole_sentence(template_gate, xdist):
    gate = template_gate  # its run only reads the template
    run = gate.run("--tb=line", "--loso-source-threshold", "Src0001: min_plcc=0.99999", "--loso-max-mean-rmse=0.001",
                   *xdist)
    plcc = run.report["archs"]["linear"]["per_fold"]["Src0001"]["plcc"]
    sentence = f"linear fold Src0001: PLCC {plcc:.4f} is below the minimum 1.0000 (n=120 frames)"
    assert f"{gate.fold_path('linear', 'Src0001')}:1: {sentence}" in run.output  # --tb=line: whole, not cut at 50
    mean = run.report["archs"]["mlp_small"]["aggregate"]["mean_rmse"]
    assert f"loso:1: mlp_small: mean RMSE {mean:.3f} is above the maximum 0.001 over 3 folds" in run.output


def _failed_in_junit(path) -> set[str]:
    _, cases = _junit(path)
    return {name for name, case in cases.items() if case.find("failure") is not None}


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_deselected_aggregate_is_reported_as_not_run_not_as_failed(template_gate, xdist):
    """Every fold ran, one broken aggregate test was deselected: pytest, JUnit and the report agree
    that it judged nothing (not a failure, not a pass), and the run is partial."""
    gate = template_gate  # its run only reads the template
    junit = gate.root / "junit.xml"
    run = gate.run("--loso-max-mean-rmse=0.001", "--deselect", "loso::aggregate[mlp_small]",
                   f"--junitxml={junit}", *xdist)
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    run.result.stdout.fnmatch_lines(["*= 1 failed, 7 passed*"])  # xdist's controller counts no deselected
    assert _failed_in_junit(junit) == {"aggregate[linear]"}
    assert [f["test"] for f in run.report["failures"]] == ["aggregate[linear]"]
    assert run.report["aggregate_checks"]["mlp_small"]["outcome"] == "not run"
    assert run.report["aggregate_checks"]["linear"]["outcome"] == "failed"
    assert run.report["partial"]["not_run"] == ["aggregate[mlp_small]"]
    assert "| mlp_small | 3 folds |" in run.markdown and "| not run |" in run.markdown


def test_a_refused_accept_is_in_the_report_as_the_failed_test_pytest_counts(gate, refused_broken_aggregate):
    path = gate.root / "accepted.json"
    # accepted: the accept run on the untouched template (made once: it asserts ret == 0 and that the
    # file is its report), first here, then taken away, so the refused run below finds a tree as fresh
    accepted = accept(gate)
    assert accepted["acceptance"] == {"path": str(path), "accepted": True, "refused": None}
    assert json.loads(path.read_text())["acceptance"]["accepted"] is True
    path.unlink()
    path.with_name("accepted.predictions.npz").unlink()

    junit = gate.root / "junit.xml"
    run = gate.run(f"--loso-compare={path}", "--loso-accept", "-k", "Src0000", f"--junitxml={junit}")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    assert _failed_in_junit(junit) == {"accept"}
    assert [f["test"] for f in run.report["failures"]] == ["accept"]
    assert run.report["failures"][0]["message"].startswith("NOT accepted: a partial run")
    assert run.report["acceptance"] == {"path": str(path), "accepted": False,
                                        "refused": run.report["failures"][0]["message"]}
    assert "accept" in run.markdown and not path.exists()

    # tests failed: the refusal is said, but it is not a test (the failed tests say why the run is red)
    run, _ = refused_broken_aggregate  # that run, on the template in place
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    assert sorted(f["test"] for f in run.report["failures"]) == sorted(aggregate_ids_names())
    assert run.report["acceptance"]["accepted"] is False and "tests failed" in run.report["acceptance"]["refused"]


def aggregate_ids_names() -> list[str]:
    return [n.split("::")[-1] for n in aggregate_ids()]
