"""The gate runs only when the user's selection includes it, and a cold cache is filled only
for the gate tests that will run (issue 8, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loso_helpers import BASELINE_ID, aggregate_ids, all_ids, fold_ids
from shared_runs import template_gate  # noqa: F401  (a fixture)

PLAIN_TEST = "def test_plain():\n    assert 1 + 1 == 2\n"


def reports(report_dir) -> list[str]:
    return sorted(p.name for p in report_dir.glob("loso_eval*")) if report_dir.exists() else []


def test_naming_other_tests_leaves_the_gate_out(template_gate):
    gate = template_gate  # its runs only read the template
    gate.pytester.makepyfile(test_plain=PLAIN_TEST)
    for selection in (["test_plain.py::test_plain"], ["test_plain.py"], ["test_plain.py", "-k", "plain"]):
        run = gate.run(*selection)
        assert run.result.ret == pytest.ExitCode.OK, run.output
        assert run.outcomes == {"test_plain.py::test_plain": "PASSED"}, run.output
        run.result.assert_outcomes(passed=1)  # no gate test collected, none deselected
        assert reports(gate.report_dir) == [] and "LOSO gate" not in run.output


def test_the_loso_node_or_marker_selects_the_gate(template_gate):
    gate = template_gate  # its runs only read the template
    gate.pytester.makepyfile(test_plain=PLAIN_TEST)
    run = gate.run("loso")
    assert run.result.ret == pytest.ExitCode.OK, run.output
    assert set(run.outcomes) == set(all_ids())  # the gate alone: the plain test is not named
    assert run.report["partial"] is None

    run = gate.run("loso::fold[mlp_small-Src0001]", "test_plain.py")
    assert set(run.outcomes) == {"loso::fold[mlp_small-Src0001]", "test_plain.py::test_plain"}, run.output
    assert run.report["partial"]["tests_ran"] == ["fold[mlp_small-Src0001]"]

    run = gate.run("loso::aggregate[linear]", *[f"loso::fold[linear-{s}]" for s in ("Src0000", "Src0001", "Src0002")])
    assert run.result.ret == pytest.ExitCode.OK, run.output
    assert run.outcomes == {n: "PASSED" for n in fold_ids(("linear",)) + aggregate_ids(("linear",))}

    run = gate.run("test_plain.py", "-m", "loso")
    assert set(run.outcomes) == set(all_ids()), run.output
    run.result.assert_outcomes(passed=len(all_ids()), deselected=1)


def test_named_gate_tests_under_xdist(template_gate):
    gate = template_gate  # its runs only read the template
    pytest.importorskip("xdist")
    gate.pytester.makepyfile(test_plain=PLAIN_TEST)
    run = gate.run("-n", "2", "loso::fold[linear-Src0002]", BASELINE_ID)
    assert run.result.ret == pytest.ExitCode.OK, run.output
    assert set(run.outcomes) == {"loso::fold[linear-Src0002]", BASELINE_ID}, run.output

    run = gate.run("-n", "2", "test_plain.py")
    assert run.outcomes == {"test_plain.py::test_plain": "PASSED"}, run.output
    assert reports(gate.report_dir) == []


def test_naming_a_gate_test_that_does_not_exist_says_so(template_gate):
    gate = template_gate  # its runs only read the template
    run = gate.run("loso::fold[mlp_small-Nope]")
    assert run.result.ret == pytest.ExitCode.INTERRUPTED, run.output
    assert "no gate test loso::fold[mlp_small-Nope]" in run.output
    assert "pytest loso --collect-only -q" in run.output and "Traceback" not in run.output


def test_the_readme_quick_start_runs_the_example_gate(pytester):
    """`pytest --loso-example pytest_loso/example`: the path keeps a project's tests out, the flag asks for the gate."""
    import pytest_loso

    example = Path(pytest_loso.__file__).parent / "example"
    result = pytester.runpytest_subprocess("--loso-example", str(example), f"--loso-report={pytester.path / 'r'}",
                                           "-p", "no:cacheprovider", timeout=300)
    assert result.ret == 0, result.stdout.str()
    folds = len(list((example / "folds").glob("fold_*/*_final.onnx")))  # 2 archs x 4 sources
    result.assert_outcomes(passed=folds + 1 + 2)  # and a baseline, and each arch's aggregate


def test_the_example_gate_scores_your_baseline_beside_its_own_and_refuses_another_corpus(pytester):
    """Trying a model on the bundled corpus: ``--loso-baseline`` adds it (it was silently dropped);
    ``--data-root`` with ``--loso-example`` would gate a corpus other than the one asked for."""
    import shutil

    import pytest_loso

    example = Path(pytest_loso.__file__).parent / "example"
    for suffix in (".onnx", ".onnx.data"):  # the example's baseline under another name: a model of yours
        shutil.copy(example / "baselines" / f"vmaf_tiny_example{suffix}", pytester.path / f"mine{suffix}")
    common = ("--loso-example", str(example), f"--loso-report={pytester.path / 'r'}", "-p", "no:cacheprovider")
    result = pytester.runpytest(*common, "--loso-baseline", "yours=mine.onnx")
    assert result.ret == 0, result.stdout.str()
    report = json.loads((pytester.path / "r" / "loso_eval.json").read_text())
    assert sorted(report["baselines"]) == ["vmaf_tiny_example", "yours"]
    ours, yours = (report["baselines"][name]["all_clips_concat"] for name in ("vmaf_tiny_example", "yours"))
    assert yours == ours  # the same weights, scored the same way
    assert f"baseline yours ({pytester.path / 'mine.onnx'})" in result.stdout.str()

    refused = pytester.runpytest(*common, f"--data-root={pytester.path}")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    assert "--loso-example gates the bundled example corpus and its folds: drop --data-root" in refused.stderr.str()


def test_the_example_gate_ignores_your_ini_table_and_refuses_table_options(pytester):
    """A project whose ini names its own per-frame table can still try the example: the ini's
    loso_table / loso_where describe that project's corpus, as its ini baselines do."""
    import pytest_loso

    example = Path(pytest_loso.__file__).parent / "example"
    pytester.makeini("[pytest]\nloso_table = frames.jsonl\nloso_where = corpus=netflix\n")
    common = ("--loso-example", str(example), f"--loso-report={pytester.path / 'r'}", "-p", "no:cacheprovider")
    result = pytester.runpytest(*common)
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    refused = pytester.runpytest(*common, "--loso-where", "corpus=netflix")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    assert "--loso-example gates the bundled example corpus and its folds: drop --loso-where" in refused.stderr.str()


@pytest.mark.parametrize("option", ["--loso-where=corpus=netflix", "--loso-target=teacher"])
def test_table_options_on_a_yuv_corpus_are_a_usage_error(template_gate, option):
    gate = template_gate  # its runs only read the template
    run = gate.run(option)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    name = option.split("=")[0]
    assert f"{name} (or {name[2:].replace('-', '_')} in the ini) apply to a per-frame table (--loso-table); this " \
           "run reads --data-root" in run.output
