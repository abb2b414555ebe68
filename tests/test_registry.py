"""Issue 19, part 2: --loso-registry pins checked before scoring, and weights changes flagged by
--loso-compare."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from loso_helpers import BASELINE_ID, BASELINE_TAG, STEPS
from pytest_loso.errors import LosoInputError
from pytest_loso.registry import load_registry
from loso_testing.training import export_onnx, train
from shared_runs import template_gate  # noqa: F401 (a fixture: runs that only read the template)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_registry(gate, entries: list[dict], name: str = "registry.json"):
    path = gate.root / name
    path.write_text(json.dumps({"$schema": "./registry.schema.json", "schema_version": 1, "models": entries}))
    return path


def _baseline_entry(gate, sha256: str | None = None) -> dict:
    return {"id": BASELINE_TAG, "kind": "fr", "onnx": f"{BASELINE_TAG}.onnx", "opset": 17,
            "sha256": sha256 or _sha(gate.baseline), "smoke": False}


def test_a_model_matching_its_pin_is_scored_and_unlisted_models_are_listed(template_gate):
    gate = template_gate
    registry = _write_registry(gate, [_baseline_entry(gate), {"id": "other", "onnx": "other.onnx",
                                                              "sha256": "0" * 64}])
    run = gate.run(f"--loso-registry={registry}", "-k", "baseline or Src0000")
    assert run.result.ret == 0, run.output
    block = run.report["registry"]
    assert block["path"] == str(registry) and block["sha256"] == _sha(registry) and block["entries"] == 2
    assert block["checked"] == {str(gate.baseline): {"entry": BASELINE_TAG, "pin": "sha256",
                                                     "pinned": _sha(gate.baseline), "matches": True}}
    assert block["mismatched"] == [] and block["unpinned"] == []
    assert str(gate.fold_path("mlp_small", "Src0000")) in block["unlisted"]
    models = run.report["run_provenance"]["models"]
    assert models[str(gate.baseline)]["data_sha256"] == _sha(gate.baseline.with_name(gate.baseline.name + ".data"))
    assert "## Registry" in run.markdown and "1 of 1 listed models match their pins" in run.markdown


def test_a_model_whose_digest_is_not_the_pinned_one_fails_its_test_naming_entry_file_and_digests(template_gate):
    gate = template_gate
    pinned = "ab" * 32
    registry = _write_registry(gate, [_baseline_entry(gate, pinned)])
    run = gate.run(f"--loso-registry={registry}", "-k", "baseline or Src0000")
    assert {n for n, o in run.outcomes.items() if o == "FAILED"} == {BASELINE_ID}
    text = run.failure_text(BASELINE_ID)
    assert (f"{gate.baseline}: sha256 {_sha(gate.baseline)} does not match registry entry {BASELINE_TAG} "
            f"({registry}), whose sha256 pins {pinned}; nothing was scored from this file") in text
    assert run.report["baselines"][BASELINE_TAG]["all_clips_concat"].get("plcc") is None  # nothing scored
    assert run.report["registry"]["mismatched"] == [str(gate.baseline)]


def test_an_ensemble_member_is_checked_too(template_gate):
    gate = template_gate
    x, y = gate.all_xy()
    for seed in range(2):
        export_onnx(train(x, y, "linear", steps=STEPS, seed=seed), gate.root / "ens" / f"m_seed{seed}.onnx")
    member = gate.root / "ens" / "m_seed1.onnx"
    registry = _write_registry(gate, [{"id": "m1", "onnx": "m_seed1.onnx", "sha256": "cd" * 32}])
    run = gate.run(f"--loso-registry={registry}", "--loso-ensemble", "e=ens/m_seed*.onnx", "-k", "ensemble",
                   baseline=False)
    assert run.outcomes == {"loso::ensemble[e]": "FAILED"}
    assert f"{member}: sha256 {_sha(member)} does not match registry entry m1" in run.failure_text("loso::ensemble[e]")


@pytest.mark.parametrize("text, said", [
    ("{not json", "not a readable JSON registry"),
    ('{"models": {"a": 1}}', "not a model registry: expected an object with a 'models' list"),
    ('{"models": [{"id": "a"}]}', "models[0].onnx should be the model's file name"),
    ('{"models": [{"id": "a", "onnx": "a.onnx", "sha256": "xyz"}]}', "models[0].sha256 (a) should be a sha256"),
    ('{"models": [{"onnx": "a.onnx", "quant_accuracy_budget_plcc": "1%"}]}', "models[0].quant_accuracy_budget_plcc (a) should be a number"),
])
def test_a_registry_not_in_the_registry_shape_is_a_usage_error(template_gate, text, said):
    gate = template_gate
    (gate.root / "registry.json").write_text(text)
    run = gate.run("--loso-registry=registry.json")
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--loso-registry {gate.root / 'registry.json'}: {said}" in run.output
    assert run.report is None


def test_weights_changed_without_the_model_file_changing_are_flagged_by_the_comparison(gate):
    accepted = gate.root / "accepted" / "loso_eval.json"
    first = gate.run(f"--loso-compare={accepted}", "--loso-accept", "--loso-bootstrap=0")
    assert first.result.ret == 0, first.output
    data = gate.baseline.with_name(gate.baseline.name + ".data")
    before = _sha(data)
    weights = np.frombuffer(data.read_bytes(), dtype=np.float32) * np.float32(1.5)
    data.write_bytes(weights.tobytes())
    run = gate.run(f"--loso-compare={accepted}", "--loso-bootstrap=0", "--loso-max-drop=plcc=1,srocc=1,rmse=1000",
                   "-k", "baseline")
    comparison = run.report["comparison"]
    assert comparison["models_changed"] == [{
        "model": str(gate.baseline), "file": "data", "before": before, "after": _sha(data),
        "sentence": f"model {gate.baseline}: its external data ({data}) changed since the accepted report "
                    f"(sha256 {before[:12]} -> {_sha(data)[:12]})"}]
    assert comparison["models_changed"][0]["sentence"] in comparison["warnings"]
    assert "its external data" in run.markdown


def test_the_int8_sibling_is_pinned_by_int8_sha256(tmp_path):
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"models": [{"id": "v3", "onnx": "vmaf_tiny_v3.onnx", "sha256": "a" * 64,
                                            "int8_sha256": "B" * 64, "quant_accuracy_budget_plcc": 0.02},
                                           {"id": "v4", "onnx": "vmaf_tiny_v4.onnx", "sha256": "c" * 64}]}))
    registry = load_registry(path)
    assert registry.check(tmp_path / "vmaf_tiny_v3.int8.onnx", "b" * 64) == (
        {"entry": "v3", "pin": "int8_sha256", "pinned": "b" * 64, "matches": True}, None)
    record, error = registry.check(tmp_path / "x" / "vmaf_tiny_v3.onnx", "f" * 64)
    assert record["matches"] is False and isinstance(error, LosoInputError)
    assert registry.check(tmp_path / "vmaf_tiny_v4.int8.onnx", "f" * 64)[0]["matches"] is None  # no int8 pin
    assert registry.check(tmp_path / "vmaf_tiny_v5.onnx", "f" * 64) == ({"entry": None}, None)
    assert registry.quant_budget(tmp_path / "vmaf_tiny_v3.onnx") == 0.02
    assert registry.quant_budget(tmp_path / "vmaf_tiny_v4.onnx") is None
