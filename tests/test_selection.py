"""Node ids and selection: the gate's items behave like any pytest test."""

from __future__ import annotations

import json
import re

import pytest

from loso_helpers import ARCHS, BASELINE_ID, SOURCES, aggregate_ids, all_ids, fold_ids
from shared_runs import template_gate  # noqa: F401  (a fixture)

PLAIN_TEST = """
def test_plain():
    assert 1 + 1 == 2
"""


def test_collect_only_lists_node_ids(template_gate):
    gate = template_gate  # its runs only read the template
    run = gate.run("--collect-only", "-q")
    assert run.result.ret == 0, run.output
    listed = [line for line in run.result.stdout.lines if "::" in line]
    assert listed == fold_ids(tuple(sorted(ARCHS))) + [BASELINE_ID] + aggregate_ids(tuple(sorted(ARCHS)))
    assert "loso::fold[mlp_small-Src0000]" in listed
    # collecting is not scoring: no report
    assert run.report is None
    assert not (gate.report_dir / "loso_eval.json").exists()


def test_k_selects_by_source(template_gate):
    gate = template_gate  # its runs only read the template
    run = gate.run("-k", "Src0001")
    assert run.result.ret == 0, run.output
    assert run.outcomes == {f"loso::fold[{a}-Src0001]": "PASSED" for a in ARCHS}
    run.result.assert_outcomes(passed=2, deselected=7)
    # the report describes what ran: one fold per architecture, no baseline
    for arch in ARCHS:
        assert list(run.report["archs"][arch]["per_fold"]) == ["Src0001"]
        aggregate = run.report["archs"][arch]["aggregate"]
        assert aggregate["n_folds"] == 1
        assert aggregate["std_plcc"] is None  # one value has no sample spread
        assert aggregate["mean_plcc"] == run.report["archs"][arch]["per_fold"]["Src0001"]["plcc"]
    assert run.report["baselines"] == {}


def test_k_selects_by_arch_and_kind(template_gate):
    gate = template_gate  # its runs only read the template
    run = gate.run("-k", "linear and not Src0002 or baseline")
    assert set(run.outcomes) == {"loso::fold[linear-Src0000]", "loso::fold[linear-Src0001]", BASELINE_ID}
    run.result.assert_outcomes(passed=3, skipped=1, deselected=5)  # aggregate[linear]: one fold not run


def test_deselect_by_node_id(template_gate):
    gate = template_gate  # its runs only read the template
    run = gate.run("--deselect", "loso::fold[mlp_small-Src0000]", "--deselect", BASELINE_ID)
    assert run.result.ret == 0, run.output
    expected = set(all_ids()) - {"loso::fold[mlp_small-Src0000]", BASELINE_ID, "loso::aggregate[mlp_small]"}
    assert set(run.outcomes) == expected
    run.result.assert_outcomes(passed=6, skipped=1, deselected=2)  # aggregate[mlp_small] over 2 of 3 folds
    assert sorted(run.report["archs"]["mlp_small"]["per_fold"]) == ["Src0001", "Src0002"]


def test_deselect_prefix_drops_the_whole_gate(template_gate):
    gate = template_gate  # its runs only read the template
    run = gate.run("--deselect", "loso")
    assert run.result.ret == pytest.ExitCode.NO_TESTS_COLLECTED, run.output
    run.result.assert_outcomes(deselected=9)


def test_loso_arch_restricts(template_gate):
    gate = template_gate  # its runs only read the template
    run = gate.run("--loso-arch", "linear", baseline=False)
    assert run.result.ret == 0, run.output
    assert run.outcomes == {nodeid: "PASSED" for nodeid in fold_ids(("linear",)) + aggregate_ids(("linear",))}
    assert list(run.report["archs"]) == ["linear"]
    # with mlp_small absent, the single-architecture keys describe the one that ran
    assert run.report["loso_per_fold"] == run.report["archs"]["linear"]["per_fold"]
    assert run.report["run_provenance"]["options"]["archs"] == ["linear"]


def test_loso_arch_repeatable(template_gate):
    gate = template_gate  # its runs only read the template
    run = gate.run("--loso-arch", "linear", "--loso-arch", "mlp_small", baseline=False)
    assert set(run.outcomes) == set(fold_ids()) | set(aggregate_ids())


def test_marker_selects_gate_items_only(template_gate):
    gate = template_gate  # its runs only read the template
    gate.pytester.makepyfile(test_plain=PLAIN_TEST)
    run = gate.run("-m", "loso")
    assert run.result.ret == 0, run.output
    assert set(run.outcomes) == set(all_ids())
    run.result.assert_outcomes(passed=9, deselected=1)

    run = gate.run("-m", "not loso")
    assert run.outcomes == {"test_plain.py::test_plain": "PASSED"}
    run.result.assert_outcomes(passed=1, deselected=9)


def test_plain_tests_run_alongside_the_gate(template_gate):
    gate = template_gate  # its runs only read the template
    gate.pytester.makepyfile(test_plain=PLAIN_TEST)
    run = gate.run()
    assert run.result.ret == 0, run.output
    assert set(run.outcomes) == set(all_ids()) | {"test_plain.py::test_plain"}


def test_without_loso_dir_the_plugin_adds_nothing(gate):
    gate.pytester.makepyfile(test_plain=PLAIN_TEST)
    run = gate.run("-p", "no:cacheprovider", "-rA", f"--loso-report={gate.report_dir}", plain=True)
    assert run.result.ret == 0, run.output
    assert run.outcomes == {"test_plain.py::test_plain": "PASSED"}
    # one line says why the gate did not run, though asked for (issue 20 item 6); nothing else
    said = [line for line in run.result.stdout.lines if line.startswith("loso: the gate did not run:")]
    assert len(said) == 1 and "--loso-report given, but no --loso-dir" in said[0]
    text = "\n".join(line for line in run.result.stdout.lines if not line.startswith("plugins:") and line not in said)
    assert "loso" not in text.replace(str(gate.root), "")
    assert not gate.report_dir.exists()
    assert not (gate.root / "runs" / "loso_eval").exists()


def test_without_loso_dir_nothing_heavy_is_imported(pytester):
    """The plugin loads in every pytest session: off, it must not import numpy, scipy or onnxruntime."""
    pytester.makeconftest(
        """
        import json, sys

        def pytest_unconfigure(config):
            heavy = [m for m in ("numpy", "scipy", "onnx", "onnxruntime") if m in sys.modules]
            (config.rootpath / "heavy.json").write_text(json.dumps(heavy))
        """
    )
    pytester.makepyfile(test_plain=PLAIN_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 0
    assert json.loads((pytester.path / "heavy.json").read_text()) == []


# An ini that configures the gate with paths relative to itself.
GATE_INI = """
[pytest]
loso_dir = runs
data_root = corpus
loso_cache = cache
loso_report = report
"""


def test_disabled_with_p_no_loso(gate):
    """An ini that configures the gate is ignored when the plugin is disabled."""
    gate.pytester.makeini(GATE_INI)
    gate.pytester.makepyfile(test_plain=PLAIN_TEST)
    run = gate.run("-p", "no:cacheprovider", "-rA", "-p", "no:loso", plain=True)
    assert run.result.ret == 0, run.output
    assert run.outcomes == {"test_plain.py::test_plain": "PASSED"}
    assert not gate.report_dir.exists()

    # the same ini with the plugin on: the gate runs, its relative paths taken from the ini's folder
    run = gate.run("-p", "no:cacheprovider", "-rA", plain=True)
    assert run.result.ret == 0, run.output
    assert set(run.outcomes) == set(fold_ids()) | set(aggregate_ids()) | {"test_plain.py::test_plain"}
    assert run.report is not None
    assert run.report["corpus"] == str(gate.data_root)
    assert run.report["run_provenance"]["cache_dir"] == str(gate.cache_dir)


def test_ini_paths_are_relative_to_the_ini_file(gate, monkeypatch):
    gate.pytester.makeini(GATE_INI + "loso_baseline = base/vmaf_tiny_v1.onnx\n")
    sub = gate.pytester.mkdir("sub")
    monkeypatch.chdir(sub)
    run = gate.run("-p", "no:cacheprovider", "-rA", plain=True)
    assert run.result.ret == 0, run.output
    # pytest shows node ids relative to the working directory
    assert {nodeid.removeprefix("../") for nodeid in run.outcomes} == set(all_ids())
    assert run.report["run_provenance"]["options"]["loso_dirs"] == [str(gate.runs)]


def test_cli_relative_paths_are_relative_to_the_invocation_dir(gate):
    run = gate.run(
        "-p", "no:cacheprovider", "-rA",
        "--loso-dir=runs", "--data-root=corpus", "--loso-cache=cache", "--loso-report=report",
        "--loso-baseline=base/vmaf_tiny_v1.onnx",
        plain=True,
    )
    assert run.result.ret == 0, run.output
    assert set(run.outcomes) == set(all_ids())
    assert run.report["run_provenance"]["data_root"] == str(gate.data_root)


def test_cache_dir_from_environment(template_gate, monkeypatch):
    gate = template_gate  # its run only reads the template
    monkeypatch.setenv("VMAF_TINY_AI_CACHE", str(gate.cache_dir))
    run = gate.run(
        "-p", "no:cacheprovider", "-rA",
        f"--loso-dir={gate.runs}", f"--data-root={gate.data_root}", f"--loso-report={gate.report_dir}",
        plain=True,
    )
    assert run.result.ret == 0, run.output
    assert set(run.outcomes) == set(fold_ids()) | set(aggregate_ids())
    assert run.report["run_provenance"]["cache_dir"] == str(gate.cache_dir)


def test_default_report_dir(gate):
    run = gate.run(
        "-p", "no:cacheprovider",
        f"--loso-dir={gate.runs}", f"--data-root={gate.data_root}", f"--loso-cache={gate.cache_dir}",
        plain=True,
    )
    assert run.result.ret == 0, run.output
    assert (gate.root / "runs" / "loso_eval" / "loso_eval.json").is_file()
    assert (gate.root / "runs" / "loso_eval" / "loso_eval.md").is_file()


def test_single_run_layout(template_gate):
    """A --loso-dir that is one architecture's run (fold_<Source>/ directly inside) works too."""
    gate = template_gate  # its run only reads the template
    run = gate.run(
        "-p", "no:cacheprovider", "-rA",
        f"--loso-dir={gate.runs / 'loso_linear'}", f"--data-root={gate.data_root}",
        f"--loso-cache={gate.cache_dir}", f"--loso-report={gate.report_dir}",
        plain=True,
    )
    assert run.result.ret == 0, run.output
    assert run.outcomes == {nodeid: "PASSED" for nodeid in fold_ids(("linear",)) + aggregate_ids(("linear",))}
    assert sorted(run.report["archs"]["linear"]["per_fold"]) == list(SOURCES)


def test_pyproject_configuration_as_in_the_docs(gate):
    """The [tool.pytest.ini_options] example of docs/options.md: lists for paths, strings for bounds, a block of overrides."""
    gate.pytester.makepyprojecttoml(
        """
        [tool.pytest.ini_options]
        loso_dir = ["runs"]
        data_root = "corpus"
        loso_cache = "cache"
        loso_report = "report"
        loso_baseline = ["base/vmaf_tiny_v1.onnx"]
        loso_min_plcc = "0.90"
        loso_max_rmse = "12"
        loso_min_mean_plcc = "0.95"
        loso_max_mean_rmse = "10"
        loso_source_thresholds = \"\"\"
            Src0001: min_plcc=0.99999 max_rmse=18
            Src0002: min_srocc=0.85
        \"\"\"
        """
    )
    run = gate.run("-p", "no:cacheprovider", "-rA", plain=True)
    thresholds = run.report["thresholds"]
    assert thresholds["fold"] == {"min_plcc": 0.90, "min_srocc": 0.70, "max_rmse": 12.0}
    assert thresholds["aggregate"] == {"min_mean_plcc": 0.95, "max_mean_rmse": 10.0}
    assert thresholds["per_source"] == {
        "Src0001": {"min_plcc": 0.99999, "min_srocc": 0.70, "max_rmse": 18.0},
        "Src0002": {"min_plcc": 0.90, "min_srocc": 0.85, "max_rmse": 12.0},
    }
    assert {n for n, o in run.outcomes.items() if o == "FAILED"} == {f"loso::fold[{a}-Src0001]" for a in ARCHS}
    assert run.report["corpus"] == str(gate.data_root)
    assert run.report["run_provenance"]["options"]["baselines"] == [str(gate.baseline)]


def test_last_failed_and_failed_first(gate):
    """--lf / --ff (the cache provider) match the gate's items by node id like any test's."""
    failing = {f"loso::fold[{arch}-Src0001]" for arch in ARCHS}
    tight = ("--loso-source-threshold", "Src0001: min_plcc=0.99999")
    args = gate.args()
    del args[args.index("no:cacheprovider") - 1 : args.index("no:cacheprovider") + 1]  # keep the cache
    run = gate.run(*args, *tight, plain=True)
    assert {n for n, o in run.outcomes.items() if o == "FAILED"} == failing

    run = gate.run(*args, *tight, "--lf", plain=True)
    assert set(run.outcomes) == failing, run.output
    run.result.assert_outcomes(failed=2, deselected=7)

    run = gate.run(*args, *tight, "--ff", "-v", plain=True)
    order = [line.split()[0] for line in run.result.stdout.lines if re.match(r"^loso::\S+ (PASSED|FAILED)", line)]
    assert len(order) == 9 and set(order[:2]) == failing, run.output
    assert set(order[-2:]) == set(aggregate_ids()), run.output  # the aggregates judge every fold: last

    run = gate.run(*args, "--lf", plain=True)  # fixed: the two run, and pass
    assert run.result.ret == 0, run.output
    assert set(run.outcomes) == failing, run.output
    run.result.assert_outcomes(passed=2, deselected=7)


def test_native_toml_numbers_and_lists_configure_the_gate(gate):
    """pytest 9's ``[tool.pytest]`` keeps TOML types: a float bound and a list of per-source lines."""
    if tuple(int(p) for p in pytest.__version__.split(".")[:2]) < (9, 0):
        pytest.skip("[tool.pytest] is pytest 9's")
    gate.pytester.makepyprojecttoml(
        '[tool.pytest]\nloso_dir = ["runs"]\ndata_root = "corpus"\nloso_cache = "cache"\nloso_report = "report"\n'
        'loso_min_plcc = 0.5\nloso_max_mean_rmse = 15\nloso_jobs = 1\n'
        'loso_source_thresholds = ["Src0001: min_plcc=0.99999"]\n'
    )
    run = gate.run("-p", "no:cacheprovider", "-rA", "--strict-config", plain=True)
    if tuple(int(p) for p in pytest.__version__.split(".")[:2]) < (9, 2):
        # pytest 9.0 and 9.1 take a plugin's values as text only: a usage error that says so (was INTERNALERROR)
        errors = run.result.stderr.str()
        assert run.result.ret == pytest.ExitCode.USAGE_ERROR and "INTERNALERROR" not in run.output + errors
        assert "loso_min_plcc: " in errors and "write the value in quotes, as a TOML string" in errors
        assert f"(pytest {pytest.__version__} takes plugins' values as text; 9.2 and later take numbers)" in errors
        return
    assert {n for n, o in run.outcomes.items() if o == "FAILED"} == {f"loso::fold[{a}-Src0001]" for a in ARCHS}
    thresholds = run.report["thresholds"]
    assert thresholds["fold"]["min_plcc"] == 0.5 and thresholds["aggregate"]["max_mean_rmse"] == 15.0
    assert thresholds["per_source"]["Src0001"]["min_plcc"] == 0.99999


def test_disabling_the_plugin_leaves_its_ini_keys_quiet(gate):
    gate.pytester.makeini(GATE_INI + "loso_min_plcc = 0.9\nloso_source_thresholds =\n    Src0001: min_plcc=0.9\n")
    gate.pytester.makepyfile(test_plain=PLAIN_TEST)
    run = gate.run("-p", "no:cacheprovider", "-rA", "-p", "no:loso", "--strict-config", plain=True)
    assert run.result.ret == 0, run.output
    assert "Unknown config option" not in run.output and "warning" not in run.output
    assert run.outcomes == {"test_plain.py::test_plain": "PASSED"}
