"""What CI reads: JUnit XML properties, the GitHub step summary, OpenMetrics, PNG plots.

Each output is parsed the way its consumer would (xml.etree, a strict line grammar for
OpenMetrics, matplotlib's PNG decoder) and its numbers checked against ``loso_eval.json``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from loso_helpers import ARCHS, BASELINE_TAG, SOURCES, all_ids
from loso_helpers import _parse_openmetrics
from shared_runs import SharedRuns, template_gate  # noqa: F401  (template_gate: a fixture)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SHARED = SharedRuns()


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


@pytest.fixture
def outputs_run(template_gate):
    """One run of the untouched template that writes OpenMetrics and (with matplotlib) the plots,
    in place: the run and the folder its relative paths are in. Asked two questions: the metrics
    file (a plot is no number of it) and the plots (the metrics file is no plot)."""
    def make():
        gate = template_gate
        plots = ("--loso-plot=plots",) if _has_matplotlib() else ()
        if plots:  # see pyplot_once
            import matplotlib.pyplot  # noqa: F401
        return gate.run("--loso-metrics=metrics.txt", *plots, "--loso-bootstrap=100"), gate.root

    return SHARED.get("outputs_run", make)


def _case_metrics(report: dict, name: str) -> dict:
    """The report's metrics for a JUnit test case named ``fold[arch-Source]`` / ``baseline[tag]``."""
    kind, label = re.fullmatch(r"(fold|baseline)\[(.+)\]", name).groups()
    if kind == "baseline":
        return report["baselines"][label]["all_clips_concat"]
    arch, source = label.rsplit("-", 1)
    return report["archs"][arch]["per_fold"][source]


# -- 1. JUnit XML ------------------------------------------------------------------------------


def test_junit_properties_equal_the_report(template_gate):
    gate = template_gate  # its run only reads the template
    run = gate.run("--junitxml=out.xml", "--loso-bootstrap=100",
                   "--loso-source-threshold", "Src0002: min_plcc=0.99999")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED, run.output
    report = run.report
    tree = ET.parse(gate.root / "out.xml")
    cases = {case.get("name"): case for case in tree.iter("testcase")}
    expected_names = {nodeid.split("::")[1] for nodeid in all_ids()}
    assert set(cases) == expected_names
    for name, case in cases.items():
        props = {}
        for prop in case.iter("property"):
            assert prop.get("name") not in props, (name, prop.get("name"))  # recorded once
            props[prop.get("name")] = prop.get("value")
        if name.startswith("aggregate["):  # judges the folds' numbers: it has none of its own, and held
            assert case.find("failure") is None and not props, name
            continue
        metrics = _case_metrics(report, name)
        for key in ("plcc", "srocc", "rmse", "krcc"):
            assert float(props[f"loso_{key}"]) == metrics[key], (name, key)
        assert int(props["loso_n"]) == metrics["n"]
        for key in ("plcc", "srocc", "rmse"):
            low, high = metrics["ci"][key]
            assert float(props[f"loso_{key}_ci_low"]) == low
            assert float(props[f"loso_{key}_ci_high"]) == high
        model = report["baselines"][BASELINE_TAG]["model_path"] if name.startswith("baseline") else \
            str(gate.fold_path(*name[5:-1].rsplit("-", 1)))
        assert props["loso_model"] == model
        # a failed fold still carries its numbers, next to its failure
        failing = name in {f"fold[{arch}-Src0002]" for arch in ARCHS}
        assert (case.find("failure") is not None) == failing, name
    assert "Src0002" in cases["fold[mlp_small-Src0002]"].find("failure").get("message")


# -- 2. GitHub step summary ----------------------------------------------------------------------


def test_github_step_summary_is_appended(template_gate, monkeypatch):
    gate = template_gate  # its runs only read the template (the accepted report is in its own folder)
    summary = gate.root / "step_summary.md"
    previous = "## Build\n\nearlier step's output\n"
    summary.write_text(previous)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    accepted = gate.root / "accepted.json"

    run = gate.run(f"--loso-compare={accepted}", "--loso-accept")
    assert run.result.ret == 0, run.output
    first = summary.read_text()
    assert first.startswith(previous)
    added = first[len(previous):]
    assert added.startswith("# LOSO evaluation")
    assert "## Aggregate (mean ± std across folds)" in added
    assert "| arch | folds | PLCC | SROCC | RMSE | status |" in added
    for arch in ARCHS:
        agg = run.report["archs"][arch]["aggregate"]
        def cell(name: str, digits: int) -> str:  # mean ± std [the mean's bootstrap interval]
            low, high = agg["ci"][name]
            return (f"{agg['mean_' + name]:.{digits}f} ± {agg['std_' + name]:.{digits}f} "
                    f"[{low:.{digits}f}, {high:.{digits}f}]")

        row = f"| {arch} | {len(SOURCES)} folds | {cell('plcc', 4)} | {cell('srocc', 4)} | {cell('rmse', 3)} | ok |"
        assert row in added.splitlines()
    assert "## Comparison with the accepted report" not in added  # nothing accepted yet
    assert "## Provenance" not in added  # the summary leaves provenance to the report file
    assert f"step summary: appended to {summary}" in run.output

    run = gate.run(f"--loso-compare={accepted}")
    assert run.result.ret == 0, run.output
    second = summary.read_text()
    assert second.startswith(first)  # appended, nothing before it rewritten
    added = second[len(first):]
    assert added.startswith("# LOSO evaluation")
    assert "## Comparison with the accepted report" in added
    assert f"Accepted: `{accepted}`" in added
    assert "| fold[mlp_small-Src0000] | plcc |" in added
    assert "| aggregate[linear] | rmse |" in added

    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    run = gate.run()
    assert summary.read_text() == second
    assert "step summary" not in run.output


# -- 3. OpenMetrics -----------------------------------------------------------------------------




def test_openmetrics_file(outputs_run):
    run, root = outputs_run
    assert run.result.ret == 0, run.output
    text = (root / "metrics.txt").read_text()
    families = _parse_openmetrics(text)
    report = run.report
    value = report["archs"]["mlp_small"]["per_fold"]["Src0000"]["plcc"]
    assert f'loso_plcc{{arch="mlp_small",fold="Src0000"}} {value}' in text.splitlines()
    for arch in ARCHS:
        for source in SOURCES:
            metrics = report["archs"][arch]["per_fold"][source]
            labels = (("arch", arch), ("fold", source))
            for key in ("plcc", "srocc", "krcc", "rmse", "n"):
                assert families[f"loso_{key}"][labels] == metrics[key], (arch, source, key)
        aggregate = report["archs"][arch]["aggregate"]
        for key in ("mean_plcc", "std_plcc", "mean_rmse", "n_folds"):
            assert families[f"loso_{key}"][(("arch", arch),)] == aggregate[key]
    concat = report["baselines"][BASELINE_TAG]["all_clips_concat"]
    assert families["loso_plcc"][(("baseline", BASELINE_TAG), ("split", "all"))] == concat["plcc"]
    per_clip = report["baselines"][BASELINE_TAG]["per_clip"]["Src0001"]
    assert families["loso_rmse"][(("baseline", BASELINE_TAG), ("split", "Src0001"))] == per_clip["rmse"]
    assert f"metrics: {root / 'metrics.txt'}" in run.output


# -- 4. plots ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pyplot_once():
    """pyplot (and its font list) loaded once, outside the inner runs: an in-process run drops the
    modules it imported, and under pytester's temporary $HOME matplotlib has no font cache either,
    so each plotting run would load them afresh. The plugin still picks its backend itself."""
    return pytest.importorskip("matplotlib.pyplot")


def test_plots_are_decodable_pngs(pyplot_once, outputs_run):
    import matplotlib.image

    run, root = outputs_run
    assert run.result.ret == 0, run.output
    plots = root / "plots"
    expected = {f"{kind}_{arch}.png" for kind in ("scatter", "folds") for arch in ARCHS}
    assert {p.name for p in plots.iterdir()} == expected
    for name in sorted(expected):
        path = plots / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE, name
        image = matplotlib.image.imread(path)
        height, width = image.shape[:2]
        assert image.ndim == 3 and image.shape[2] in (3, 4), (name, image.shape)
        assert 200 <= height <= 3000 and 300 <= width <= 3000, (name, image.shape)
        assert image[..., :3].std() > 0.01, f"{name} is blank"
        assert f"plot: {path}" in run.output


def test_plots_when_no_fold_of_an_architecture_was_scored(pyplot_once, gate):
    import matplotlib.image

    for source in SOURCES:
        gate.fold_path("linear", source).write_text("not a model\n")
    run = gate.run("--loso-plot=plots", "--loso-min-plcc=none")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED, run.output
    assert "Traceback" not in run.output and "INTERNALERROR" not in run.output, run.output
    assert run.report is not None and run.report["archs"]["linear"]["aggregate"] is None
    plots = gate.root / "plots"
    # no points to scatter for linear, but its (empty) bar chart and mlp_small's plots are there
    assert {p.name for p in plots.iterdir()} == {"scatter_mlp_small.png", "folds_mlp_small.png", "folds_linear.png"}
    assert matplotlib.image.imread(plots / "folds_linear.png").ndim == 3
