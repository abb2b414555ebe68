"""Issue 20 item 10: --loso-metrics holds seeds (a label, and the figures across seeds) and
ensembles, and a partial run's metrics are written beside the whole run's, never over them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loso_helpers import SOURCES, sweep_folder
from loso_helpers import _parse_openmetrics
from shared_runs import SharedRuns, TemplateGate, template_gate  # noqa: F401 (a fixture)

SEEDS = (0, 1)
ARCH = "mlp_small"

_SHARED = SharedRuns()


def _whole_runs_metrics(gate: TemplateGate, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, bytes]:
    """The template's whole run with ``--loso-metrics``: its exit status and metrics file, made once, in a
    folder of its own. The two tests below start from that file, each in its own folder, and check that
    their run keeps it."""
    def make() -> tuple[int, bytes]:
        metrics = tmp_path_factory.mktemp("fix20d_whole_metrics") / "metrics.txt"
        return gate.run(f"--loso-metrics={metrics}").result.ret, metrics.read_bytes()

    return _SHARED.get("whole", make)


@pytest.fixture(scope="module")
def sweep_and_members(tmp_path_factory, seed_sweep, ensemble_members) -> Path:
    """sweep/loso_mlp_small/seed<N>/fold_<Source>/ for two seeds, and ens/member_seed<N>.onnx for two members:
    a part of the session's seed sweep and ensemble."""
    root = tmp_path_factory.mktemp("fix20d_metrics")
    for seed in SEEDS:
        folder = f"loso_{ARCH}/{sweep_folder(seed)}"
        shutil.copytree(seed_sweep[0] / folder, root / "sweep" / folder)
    (root / "ens").mkdir()
    for member in range(2):  # the model and its external data
        for path in ensemble_members.glob(f"member_seed{member}.onnx*"):
            shutil.copy2(path, root / "ens")
    return root


def test_metrics_label_seeds_and_hold_the_figures_across_seeds_and_the_ensembles(template_gate, sweep_and_members):
    gate = template_gate
    shutil.copytree(sweep_and_members / "sweep", gate.root / "sweep")
    shutil.copytree(sweep_and_members / "ens", gate.root / "ens")
    args = [a for a in gate.args(baseline=False) if not a.startswith("--loso-dir=")]
    run = gate.run(*args, f"--loso-dir={gate.root / 'sweep'}", "--loso-ensemble", "fr=ens/member_seed*.onnx",
                   "--loso-metrics=metrics.txt", plain=True)
    assert run.result.ret == 0, run.output
    families = _parse_openmetrics((gate.root / "metrics.txt").read_text())
    report = run.report
    for seed in SEEDS:
        per_fold = report["archs"][f"{ARCH}-seed{seed}"]["per_fold"]
        for source in SOURCES:
            labels = (("arch", ARCH), ("fold", source), ("seed", str(seed)))
            assert families["loso_plcc"][labels] == per_fold[source]["plcc"]
        aggregate = report["archs"][f"{ARCH}-seed{seed}"]["aggregate"]
        assert families["loso_mean_plcc"][(("arch", ARCH), ("seed", str(seed)))] == aggregate["mean_plcc"]
    # no run is mistaken for an architecture of its own
    assert not any(dict(labels).get("arch", "").endswith(f"-seed{s}")
                   for samples in families.values() for labels in samples for s in SEEDS)
    summary = report["seeds"][ARCH]
    for key in ("mean_plcc", "std_plcc", "spread_plcc", "mean_rmse", "n_seeds", "lowest_seed_mean_plcc"):
        assert families[f"loso_seeds_{key}"][(("arch", ARCH),)] == summary[key], key
    fold = summary["per_fold"][SOURCES[1]]
    assert families["loso_seeds_mean_plcc"][(("arch", ARCH), ("fold", SOURCES[1]))] == fold["mean_plcc"]
    concat = report["ensembles"]["fr"]["all_clips_concat"]
    for key in ("plcc", "srocc", "rmse", "n", "coverage_95", "mean_sigma"):
        assert families[f"loso_{key}"][(("ensemble", "fr"), ("split", "all"))] == concat[key], key
    per_clip = report["ensembles"]["fr"]["per_clip"][SOURCES[2]]
    assert families["loso_rmse"][(("ensemble", "fr"), ("split", SOURCES[2]))] == per_clip["rmse"]


def test_a_partial_run_writes_its_metrics_beside_the_whole_runs(template_gate, tmp_path_factory):
    gate = template_gate
    metrics = gate.root / "metrics.txt"
    ret, whole = _whole_runs_metrics(gate, tmp_path_factory)
    assert ret == 0
    metrics.write_bytes(whole)
    run = gate.run(f"--loso-metrics={metrics}", "-k", "Src0000")
    assert run.result.ret == 0, run.output
    assert run.report["partial"] is not None
    assert metrics.read_bytes() == whole
    partial = gate.root / "metrics.partial.txt"
    families = _parse_openmetrics(partial.read_text())
    value = run.report["archs"][ARCH]["per_fold"]["Src0000"]["plcc"]
    assert families["loso_plcc"][(("arch", ARCH), ("fold", "Src0000"))] == value
    assert (f"metrics: {partial} (partial run: written beside {metrics}, which is left as it was)"
            in run.output)


def test_a_run_that_could_not_plan_keeps_the_whole_runs_metrics(template_gate, tmp_path_factory):
    gate = template_gate
    metrics = gate.root / "metrics.txt"
    ret, whole = _whole_runs_metrics(gate, tmp_path_factory)
    assert ret == 0
    metrics.write_bytes(whole)
    run = gate.run(f"--loso-metrics={metrics}", "--loso-arch=mlp_smal")
    assert run.result.ret != 0
    assert metrics.read_bytes() == whole
    assert (gate.root / "metrics.partial.txt").exists()
