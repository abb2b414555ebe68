"""Issue 19: the team's shipped models (tests/data/shipped, from lusoris/vmaf model/tiny) run by the
gate on a table of the bundled example corpus with made-up encoder / preset / cq columns: the
fp32 vmaf_tiny_v3 / v4 with their int8 files paired as quant[...], and the five-seed ensemble,
with the registry's pins checked. The run must complete with numbers; no bound is asserted."""

from __future__ import annotations

import json
import math
from pathlib import Path

from loso_helpers import write_jsonl
from pytest_loso.options import EXAMPLE_DIR

SHIPPED = Path(__file__).parent / "data" / "shipped"
ENCODERS = ("libx264", "libx265", "libsvtav1")  # made up: the example corpus was not encoded by any
PRESETS = ("medium", "slow", "fast")


def _example_table(path: Path) -> Path:
    """One row per frame of the example corpus's cache files, with made-up encoder columns per clip."""
    rows = []
    for i, cache in enumerate(sorted((EXAMPLE_DIR / "cache").glob("*/*.json"))):
        data = json.loads(cache.read_text())
        names = data["features"]["feature_names"]
        for frame, (features, vmaf) in enumerate(zip(data["features"]["per_frame"], data["scores"]["per_frame"])):
            rows.append({"source": cache.parent.name, "dis_basename": cache.stem, "frame_index": frame,
                         "encoder": ENCODERS[i % 3], "preset": PRESETS[i % 3], "cq": 19 + 6 * (i % 4),
                         "vmaf": vmaf, **dict(zip(names, features))})
    return write_jsonl(path, rows)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_the_shipped_models_run_on_the_example_corpus_table(gate):
    table = _example_table(gate.root / "example.jsonl")
    run = gate.run("-p", "no:cacheprovider", "-rA", f"--loso-dir={EXAMPLE_DIR / 'folds'}", f"--loso-table={table}",
                   f"--loso-report={gate.report_dir}",
                   f"--loso-baseline=v3={SHIPPED / 'vmaf_tiny_v3.onnx'}",
                   f"--loso-baseline=v4={SHIPPED / 'vmaf_tiny_v4.onnx'}",
                   f"--loso-ensemble=v2_ensemble={SHIPPED / 'fr_regressor_v2_ensemble_v1_seed*.onnx'}",
                   f"--loso-registry={SHIPPED / 'registry.json'}", plain=True)
    report = run.report
    assert report is not None, run.output
    expected = {"loso::baseline[v3]", "loso::baseline[v4]", "loso::quant[v3]", "loso::quant[v4]",
                "loso::ensemble[v2_ensemble]"}
    assert expected <= set(run.outcomes), run.output
    assert all(run.outcomes[n] in ("PASSED", "FAILED") for n in expected), run.output
    for tag in ("v3", "v4"):
        concat = report["baselines"][tag]["all_clips_concat"]
        assert all(_finite(concat[m]) for m in ("plcc", "srocc", "rmse")), concat
        quant = report["quantized"]["models"][tag]["all_clips_concat"]
        assert _finite(quant["agreement"]) if "agreement" in quant else False, quant
        assert report["quantized"]["models"][tag]["model_path"].endswith(f"vmaf_tiny_{tag}.int8.onnx")
    ensemble = report["ensembles"]["v2_ensemble"]
    assert len(ensemble["members"]) == 5
    concat = ensemble["all_clips_concat"]
    assert _finite(concat["plcc"]) and _finite(concat["mean_sigma"]), concat
    assert set(concat["calibration"]) == {"50", "80", "95"}
    assert report["registry"] is not None
