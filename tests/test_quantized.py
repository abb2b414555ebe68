"""Issue 19, part 1: quant[<tag>], an int8 model against its fp32 parent on the corpus."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr

from loso_helpers import BASELINE_TAG, SOURCES, Built, GateEnv
from pytest_loso.quantized import cpu_vnni
from shared_runs import SharedRuns, TemplateGate

QUANT_ID = f"loso::quant[{BASELINE_TAG}]"

_SHARED = SharedRuns()


@pytest.fixture
def quantised(pytester: pytest.Pytester, built: Built, tmp_path_factory: pytest.TempPathFactory) -> TemplateGate:
    """The template with its baseline's int8 sibling beside it, made once (a copy of its own), and run in
    place: the tests only read it (their registries and other files go to their own folder)."""
    def make() -> Built:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        gate = GateEnv(pytester, built, root=tmp_path_factory.mktemp("quantised"))
        quantize_dynamic(str(gate.baseline), str(gate.baseline.with_name(f"{BASELINE_TAG}.int8.onnx")),
                         weight_type=QuantType.QInt8)
        return Built(gate.root, built.truth, built.folds, built.baseline)

    return TemplateGate(pytester, _SHARED.get("tree", make))


def _int8(gate) -> Path:
    return gate.baseline.with_name(f"{BASELINE_TAG}.int8.onnx")


def _run(path: Path, x: np.ndarray, batch: int | None) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    step = len(x) if batch is None else batch
    return np.concatenate([session.run(None, {"features": x[i:i + step].astype(np.float32)})[0].reshape(-1)
                           for i in range(0, len(x), step)])


def _expected(gate, batch: int | None) -> dict:
    fp32, int8 = [], []
    for source in SOURCES:
        x, _ = gate.xy(source)
        fp32.append(_run(gate.baseline, x, None))
        int8.append(_run(_int8(gate), x, batch))
    fp32, int8 = np.concatenate(fp32), np.concatenate(int8)
    return {"fp32": fp32, "int8": int8, "agreement": 1 - float(pearsonr(fp32, int8).statistic),
            "bias": float(np.mean(int8.astype(np.float64) - fp32)), "max": float(np.abs(int8 - fp32.astype(np.float64)).max())}


def test_a_baselines_int8_sibling_is_scored_frame_by_frame_against_its_parent(quantised):
    run = quantised.run("-k", "quant or baseline")
    assert run.outcomes == {f"loso::baseline[{BASELINE_TAG}]": "PASSED", QUANT_ID: "PASSED"}, run.output
    block = run.report["quantized"]
    assert block["batch"] == 1 and block["batch_means"] == "1 frame per run"
    assert block["onnxruntime"] == __import__("onnxruntime").__version__
    assert block["cpu_vnni"] == cpu_vnni()
    entry = block["models"][BASELINE_TAG]
    assert entry["model_path"] == str(_int8(quantised)) and entry["parent_path"] == str(quantised.baseline)
    concat = entry["all_clips_concat"]
    expected = _expected(quantised, 1)
    _, y = quantised.all_xy()
    assert concat["n"] == y.size
    assert concat["plcc"] == pytest.approx(float(pearsonr(expected["int8"], y).statistic), abs=1e-9)
    assert concat["fp32"]["plcc"] == run.report["baselines"][BASELINE_TAG]["all_clips_concat"]["plcc"]
    assert concat["agreement"] == pytest.approx(expected["agreement"], rel=1e-6, abs=1e-12)
    assert concat["bias"] == pytest.approx(expected["bias"], abs=1e-6)
    assert concat["max_abs_diff"] == pytest.approx(expected["max"], abs=1e-6)
    assert concat["max_abs_diff"] > 0  # int8 moved some frames
    assert concat["plcc_drop"] == pytest.approx(concat["fp32"]["plcc"] - concat["plcc"])
    assert concat["rmse_rise"] == pytest.approx(concat["rmse"] - concat["fp32"]["rmse"])
    for name in ("plcc_drop", "rmse_rise"):
        low, high = concat["ci"][name]
        assert low <= high and concat["ci_method"][name].startswith("paired")
    assert concat["bounds"]["agreement"] == 0.01 and concat["bounds"]["agreement_from"] == "default"
    assert set(entry["per_clip"]) == set(SOURCES) and "agreement" in entry["per_clip"][SOURCES[0]]
    assert "## Quantised models against their fp32 parents" in run.markdown
    assert f"| {BASELINE_TAG} | {BASELINE_TAG}.int8.onnx | {y.size} |" in run.markdown
    assert "Int8 models run 1 frame per run" in run.markdown


def test_quant_batch_source_runs_a_source_at_once(quantised):
    run = quantised.run("-k", "quant", "--loso-quant-batch=source")
    assert run.outcomes == {QUANT_ID: "PASSED"}, run.output
    concat = run.report["quantized"]["models"][BASELINE_TAG]["all_clips_concat"]
    assert run.report["quantized"]["batch"] == "source" and concat["batch"] == "source"
    assert concat["agreement"] == pytest.approx(_expected(quantised, None)["agreement"], rel=1e-6, abs=1e-12)


def test_a_breached_bound_fails_the_quant_test_naming_figure_and_worst_source(quantised):
    run = quantised.run("-k", "quant", "--loso-max-quant-drop=agreement=0.0000001,bias=none")
    assert run.outcomes == {QUANT_ID: "FAILED"}
    entry = run.report["quantized"]["models"][BASELINE_TAG]
    concat, rows = entry["all_clips_concat"], entry["per_clip"]
    worst = max(rows, key=lambda s: rows[s]["agreement"])
    assert (f"quant {BASELINE_TAG} ({BASELINE_TAG}.int8.onnx against {BASELINE_TAG}.onnx, batch 1): agreement "
            f"1 - PLCC(fp32, int8) {concat['agreement']:.4f} is above the maximum 1e-07 on all sources concatenated; "
            f"worst source {worst}: {rows[worst]['agreement']:.4f}") in run.failure_text(QUANT_ID)


def test_per_source_bounds_name_each_source_that_breaks(quantised):
    run = quantised.run("-k", "quant", "--loso-max-quant-drop=agreement=1,bias=1000", "--loso-quant-per-source")
    assert run.outcomes == {QUANT_ID: "PASSED"}, run.output
    rows = run.report["quantized"]["models"][BASELINE_TAG]["per_clip"]
    smallest = min(abs(r["bias"]) for r in rows.values())
    run = quantised.run("-k", "quant", f"--loso-max-quant-drop=bias={smallest / 2}", "--loso-quant-per-source")
    assert run.outcomes == {QUANT_ID: "FAILED"}
    text = run.failure_text(QUANT_ID)
    assert all(f"on source {s}" in text for s in SOURCES)


def test_the_registry_budget_is_the_default_agreement_and_int8_sha256_is_checked(quantised):
    def sha(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    registry = quantised.root / "registry.json"
    entry = {"id": "tiny", "onnx": f"{BASELINE_TAG}.onnx", "sha256": sha(quantised.baseline),
             "quant_mode": "dynamic", "int8_sha256": sha(_int8(quantised)), "quant_accuracy_budget_plcc": 1e-9}
    registry.write_text(json.dumps({"schema_version": 1, "models": [entry]}))
    run = quantised.run("-k", "quant", f"--loso-registry={registry}")
    assert run.outcomes == {QUANT_ID: "FAILED"}
    bounds = run.report["quantized"]["models"][BASELINE_TAG]["all_clips_concat"]["bounds"]
    assert bounds["agreement"] == 1e-9 and bounds["agreement_from"] == "registry registry.json"
    assert "is above the maximum 1e-09 on all sources concatenated" in run.failure_text(QUANT_ID)
    registry.write_text(json.dumps({"models": [dict(entry, int8_sha256="0" * 64, quant_accuracy_budget_plcc=1)]}))
    run = quantised.run("-k", "quant", f"--loso-registry={registry}")
    assert run.outcomes == {QUANT_ID: "FAILED"}
    assert (f"{_int8(quantised)}: sha256 {sha(_int8(quantised))} does not match registry entry tiny ({registry}), "
            f"whose int8_sha256 pins {'0' * 64}") in run.failure_text(QUANT_ID)


def test_an_explicit_int8_model_without_its_parent_fails_naming_it(quantised):
    lone = quantised.root / "ship" / "other.int8.onnx"
    lone.parent.mkdir()
    lone.write_bytes(_int8(quantised).read_bytes())
    run = quantised.run("-k", "quant", f"--loso-quantized=mine={lone}", f"--loso-quantized={_int8(quantised)}")
    assert run.outcomes == {"loso::quant[mine]": "FAILED", QUANT_ID: "PASSED"}, run.output
    assert f"its fp32 parent {lone.with_name('other.onnx')} is not there" in run.failure_text("loso::quant[mine]")


@pytest.mark.parametrize("option, said", [("--loso-quant-batch=0", "--loso-quant-batch / loso_quant_batch: '0'"),
                                          ("--loso-max-quant-drop=srocc=1", "'srocc=1' is not KEY=NUMBER")])
def test_malformed_quant_options_are_usage_errors(quantised, option, said):
    run = quantised.run(option)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert said in run.output


def test_cpu_vnni_reads_the_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512_vnni\n")
    assert cpu_vnni(cpuinfo) is True
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert cpu_vnni(cpuinfo) is False
    cpuinfo.write_text("processor\t: 0\n")
    assert cpu_vnni(cpuinfo) == "unknown"
    assert cpu_vnni(tmp_path / "none") == "unknown"
