"""The report's numbers against independent computations, and the report's shape.

Two references for every number:

* first principles: the trained weights run forward in float64 numpy (``Regressor.predict``,
  no onnxruntime, no plugin code) and scored with scipy/numpy; agreement within 1e-5
  (the plugin works in float32, as the script did);
* the evaluation script's recipe: ``onnxruntime.InferenceSession(path)`` on
  ``x.astype(float32)`` and ``pearsonr(pred, y).statistic`` on float32 ``y``; the report must
  hold exactly these values (``==``), since the gate replaces that script.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from loso_helpers import (
    ARCHS,
    BASELINE_ID,
    BASELINE_TAG,
    FRAMES,
    PAIRS_PER_SOURCE,
    SOURCES,
    assert_close,
    assert_exact,
    independent_metrics,
    script_metrics,
    scored_ids,
)
from loso_testing.training import cache_payload, export_onnx, write_cache
from shared_runs import template_gate  # noqa: F401 (a fixture: runs that only read the template)


def test_fold_metrics_match_float64_forward_pass(clean):
    gate = clean.env  # read only
    report = clean.run.report
    for arch in ARCHS:
        per_fold = report["archs"][arch]["per_fold"]
        assert sorted(per_fold) == list(SOURCES)
        for source in SOURCES:
            x, y = gate.xy(source)
            assert y.size == PAIRS_PER_SOURCE * FRAMES
            expected = independent_metrics(gate.folds[arch][source].predict(x), y)
            assert_close(per_fold[source], expected)
            assert "error" not in per_fold[source]


def test_fold_metrics_equal_the_evaluation_script_bit_for_bit(clean):
    gate = clean.env  # read only
    report = clean.run.report
    for arch in ARCHS:
        for source in SOURCES:
            x, y = gate.xy(source)
            expected = script_metrics(gate.fold_path(arch, source), x, y)
            assert_exact(report["archs"][arch]["per_fold"][source], expected)


def test_aggregate_is_mean_and_sample_std_over_folds(clean):
    gate = clean.env  # read only
    report = clean.run.report
    for arch in ARCHS:
        script = [script_metrics(gate.fold_path(arch, s), *gate.xy(s)) for s in SOURCES]
        independent = [independent_metrics(gate.folds[arch][s].predict(gate.xy(s)[0]), gate.xy(s)[1]) for s in SOURCES]
        aggregate = report["archs"][arch]["aggregate"]
        assert aggregate["n_folds"] == len(SOURCES)
        for name in ("plcc", "srocc", "rmse"):
            values = [m[name] for m in script]
            assert aggregate[f"mean_{name}"] == float(np.mean(values))
            assert aggregate[f"std_{name}"] == float(np.std(values, ddof=1))
            # ddof=1, not the population std
            assert aggregate[f"std_{name}"] != pytest.approx(float(np.std(values)), rel=1e-3)
            values = [m[name] for m in independent]
            assert aggregate[f"mean_{name}"] == pytest.approx(float(np.mean(values)), rel=1e-5, abs=1e-5)
            assert aggregate[f"std_{name}"] == pytest.approx(float(np.std(values, ddof=1)), rel=1e-3, abs=1e-6)
    # the single-architecture keys of the script describe mlp_small
    assert report["loso_per_fold"] == report["archs"]["mlp_small"]["per_fold"]
    assert report["loso_aggregate"] == report["archs"]["mlp_small"]["aggregate"]


def test_baseline_per_clip_and_concatenation(clean):
    gate = clean.env  # read only
    block = clean.run.report["baselines"][BASELINE_TAG]
    assert block["model_path"] == str(gate.baseline)
    assert sorted(block["per_clip"]) == list(SOURCES)
    for source in SOURCES:
        x, y = gate.xy(source)
        assert_close(block["per_clip"][source], independent_metrics(gate.baseline_model.predict(x), y))
        assert_exact(block["per_clip"][source], script_metrics(gate.baseline, x, y))
    x, y = gate.all_xy()
    assert y.size == len(SOURCES) * PAIRS_PER_SOURCE * FRAMES
    assert_close(block["all_clips_concat"], independent_metrics(gate.baseline_model.predict(x), y))
    assert_exact(block["all_clips_concat"], script_metrics(gate.baseline, x, y))


def test_report_keys(clean):
    gate = clean.env  # read only
    report = clean.run.report
    for key in (
        "generated", "corpus", "loso_per_fold", "loso_aggregate", "archs", "baselines",
        "thresholds", "failures", "dropped_frames", "run_provenance",
    ):
        assert key in report, key
    assert report["corpus"] == str(gate.data_root)
    assert sorted(report["archs"]) == sorted(ARCHS)
    for block in report["archs"].values():
        assert set(block) == {"per_fold", "aggregate"}
        assert set(block["aggregate"]) >= {
            "mean_plcc", "mean_srocc", "mean_rmse", "std_plcc", "std_srocc", "std_rmse", "n_folds",
        }
        for metrics in block["per_fold"].values():
            assert set(metrics) >= {"n", "plcc", "srocc", "rmse"}
            assert "error" not in metrics
    assert set(report["baselines"][BASELINE_TAG]) == {"model_path", "per_clip", "all_clips_concat"}
    assert report["failures"] == []
    assert report["dropped_frames"] == {}
    thresholds = report["thresholds"]
    assert thresholds["fold"] == {"min_plcc": 0.75, "min_srocc": 0.70, "max_rmse": 20.0}
    assert thresholds["aggregate"] == {"min_mean_plcc": 0.85, "max_mean_rmse": 12.0}
    datetime.strptime(report["generated"], "%Y-%m-%dT%H:%M:%S%z")
    # strict JSON: no NaN/Infinity tokens anywhere
    text = (gate.report_dir / "loso_eval.json").read_text()
    json.loads(text, parse_constant=lambda token: pytest.fail(f"non-standard JSON token {token}"))


def test_run_provenance(clean):
    gate = clean.env  # read only
    prov = clean.run.report["run_provenance"]
    argv = prov["argv"]
    assert f"--loso-dir={gate.runs}" in argv and f"--loso-baseline={gate.baseline}" in argv
    assert prov["options"]["data_root"] == str(gate.data_root)
    assert prov["options"]["cache_dir"] == str(gate.cache_dir)
    assert prov["options"]["loso_dirs"] == [str(gate.runs)]
    assert prov["options"]["baselines"] == [str(gate.baseline)]
    assert prov["data_root"] == str(gate.data_root)
    assert prov["cache_dir"] == str(gate.cache_dir)

    def sha(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert prov["baselines"] == {str(gate.baseline): sha(gate.baseline)}
    expected_models = {}
    for path in [gate.fold_path(a, s) for a in ARCHS for s in SOURCES] + [gate.baseline]:
        data = path.with_name(path.name + ".data")
        expected_models[str(path)] = {"sha256": sha(path), "data_path": str(data), "data_sha256": sha(data)}
    assert prov["models"] == expected_models

    fingerprint = prov["cache_fingerprint"]
    assert fingerprint["files"] == len(SOURCES) * PAIRS_PER_SOURCE
    assert sorted(fingerprint["sources"]) == list(SOURCES)
    assert len(fingerprint["sha256"]) == 64

    versions = prov["versions"]
    import numpy, onnxruntime, scipy  # noqa: E401

    assert versions["numpy"] == numpy.__version__
    assert versions["scipy"] == scipy.__version__
    assert versions["onnxruntime"] == onnxruntime.__version__
    assert versions["pytest"] == pytest.__version__
    started = datetime.strptime(prov["started"], "%Y-%m-%dT%H:%M:%S%z")
    finished = datetime.strptime(prov["finished"], "%Y-%m-%dT%H:%M:%S%z")
    assert started <= finished
    assert prov["items_run"] == len(scored_ids())


def test_cache_fingerprint_tracks_cache_bytes(gate, clean):
    before = clean.run.report["run_provenance"]["cache_fingerprint"]
    path = gate.cache_file("Src0001", 2)
    payload = json.loads(path.read_text())
    payload["scores"]["pooled"] += 1.0  # bytes change, frames do not
    path.write_text(json.dumps(payload))
    after = gate.run().report["run_provenance"]["cache_fingerprint"]
    assert after["sources"]["Src0001"] != before["sources"]["Src0001"]
    assert after["sources"]["Src0000"] == before["sources"]["Src0000"]
    assert after["sources"]["Src0002"] == before["sources"]["Src0002"]
    assert after["sha256"] != before["sha256"]


def test_renamed_model_with_stale_external_data_location(template_gate, built):
    gate = template_gate
    """Exported as mlp_small_final.onnx, then renamed: the location inside names the old file.

    The plain ``InferenceSession(path)`` of the old script fails on it; the gate uses the
    sibling ``<model>.onnx.data`` and scores it as a baseline with the right numbers.
    """
    import onnxruntime as ort

    folder = gate.root / "shipped"
    exported = export_onnx(built.baseline, folder / "mlp_small_final.onnx")
    renamed = folder / "vmaf_tiny_v1.onnx"
    exported.rename(renamed)
    (folder / "mlp_small_final.onnx.data").rename(folder / "vmaf_tiny_v1.onnx.data")
    assert sorted(p.name for p in folder.iterdir()) == ["vmaf_tiny_v1.onnx", "vmaf_tiny_v1.onnx.data"]
    with pytest.raises(Exception) as excinfo:
        ort.InferenceSession(str(renamed), providers=["CPUExecutionProvider"])
    assert "mlp_small_final.onnx.data" in str(excinfo.value)

    run = gate.run("--loso-arch", "linear", f"--loso-baseline={renamed}", baseline=False)
    assert run.result.ret == 0, run.output
    assert run.outcomes[BASELINE_ID] == "PASSED"
    block = run.report["baselines"][BASELINE_TAG]
    assert block["model_path"] == str(renamed)
    # the same weights under their original name load fine: the script's numbers, bit for bit
    x, y = gate.all_xy()
    assert_exact(block["all_clips_concat"], script_metrics(gate.baseline, x, y))
    assert_close(block["all_clips_concat"], independent_metrics(built.baseline.predict(x), y))
    for source in SOURCES:
        assert_exact(block["per_clip"][source], script_metrics(gate.baseline, *gate.xy(source)))
    models = run.report["run_provenance"]["models"]
    assert models[str(renamed)]["data_path"] == str(folder / "vmaf_tiny_v1.onnx.data")


def test_frame_count_mismatch_uses_first_frames_and_is_reported(gate):
    source, index = "Src0001", 2
    x_pair, y_pair = gate.truth[source][index]
    path = gate.cache_file(source, index)
    extra = np.full((3, x_pair.shape[1]), 0.5, dtype=np.float32)
    write_cache(path, cache_payload(np.concatenate([x_pair, extra]), y_pair))
    # a second pair with 3 fewer scores than features: the scores decide, frames are cut
    other = 0
    x_other, y_other = gate.truth[source][other]
    other_path = gate.cache_file(source, other)
    write_cache(other_path, cache_payload(x_other, y_other[:-3]))

    run = gate.run()
    assert run.result.ret == 0, run.output
    assert set(run.outcomes.values()) == {"PASSED"}

    pairs = list(gate.truth[source])
    pairs[other] = (x_other[:-3], y_other[:-3])
    x = np.concatenate([p[0] for p in pairs])
    y = np.concatenate([p[1] for p in pairs])
    assert y.size == PAIRS_PER_SOURCE * FRAMES - 3
    for arch in ARCHS:
        reported = run.report["archs"][arch]["per_fold"][source]
        assert_close(reported, independent_metrics(gate.folds[arch][source].predict(x), y))
        assert_exact(reported, script_metrics(gate.fold_path(arch, source), x, y))

    assert run.report["dropped_frames"] == {
        source: {
            path.stem: {"feature_frames": FRAMES + 3, "score_frames": FRAMES, "dropped": 3},
            other_path.stem: {"feature_frames": FRAMES, "score_frames": FRAMES - 3, "dropped": 3},
        }
    }
    run.result.stdout.fnmatch_lines(["*warnings summary*"])
    output = run.output
    assert "LosoDataWarning" in output
    assert f"{path.stem}.json: {FRAMES + 3} feature frames vs {FRAMES} score frames" in output
    assert "3 dropped" in output
    md = (gate.report_dir / "loso_eval.md").read_text()
    assert f"{source}/{path.stem}: {FRAMES + 3} feature vs {FRAMES} score frames, 3 dropped" in md


def test_bundled_example_matches_the_script(pytester):
    """``--loso-example``: the corpus shipped in the package, scored like the evaluation script."""
    from pytest_loso.options import EXAMPLE_DIR

    report_dir = pytester.path / "report"
    result = pytester.runpytest("-p", "no:cacheprovider", "--loso-example", "-m", "loso", f"--loso-report={report_dir}")
    assert result.ret == 0, result.stdout.str()
    report = json.loads((report_dir / "loso_eval.json").read_text())
    assert report["run_provenance"]["options"]["example"] is True

    def source_xy(source):
        files = sorted((EXAMPLE_DIR / "cache" / source).glob("*.json"))
        assert files
        payloads = [json.loads(f.read_text()) for f in files]
        x = np.concatenate([np.asarray(p["features"]["per_frame"], dtype=np.float32) for p in payloads])
        y = np.concatenate([np.asarray(p["scores"]["per_frame"], dtype=np.float32) for p in payloads])
        return x, y

    sources = sorted(p.stem.split("_")[0] for p in (EXAMPLE_DIR / "corpus" / "ref").glob("*.yuv"))
    assert len(sources) >= 3
    checked = 0
    for arch, block in report["archs"].items():
        assert sorted(block["per_fold"]) == sources
        for source in sources:
            model = next((EXAMPLE_DIR / "folds").rglob(f"fold_{source}/{arch}_final.onnx"))
            assert_exact(block["per_fold"][source], script_metrics(model, *source_xy(source)))
            checked += 1
    assert checked >= 2 * len(sources)
    assert report["baselines"]
    for tag, block in report["baselines"].items():
        parts = [source_xy(s) for s in sources]
        x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        restored = _restore_exported_name(Path(block["model_path"]), pytester.path / "restored" / tag)
        assert_exact(block["all_clips_concat"], script_metrics(restored, x, y))


def _restore_exported_name(model: Path, folder: Path) -> Path:
    """A copy of ``model`` whose external-data file carries the name its ``location`` says, so plain
    ``InferenceSession(path)`` loads it (the example baseline is shipped renamed)."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    locations = {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}
    folder.mkdir(parents=True)
    copy = folder / model.name
    shutil.copy(model, copy)
    if locations:
        (location,) = locations
        shutil.copy(model.with_name(model.name + ".data"), folder / location)
    return copy


def test_srocc_with_ordinal_ranks_as_the_teams_newer_scripts(gate):
    """Tied VMAF-100 frames: spearmanr averages ties, argsort(argsort(x)) does not; either can be asked for."""
    x, y = gate.xy("Src0001")
    y = y.copy()
    y[y > np.percentile(y, 70)] = 100.0  # a saturated tail, as VMAF has
    pairs = gate.truth["Src0001"]
    start = 0
    for i, (px, _) in enumerate(pairs):
        write_cache(gate.cache_file("Src0001", i), cache_payload(px, y[start:start + len(px)]))
        start += len(px)
    model = gate.fold_path("mlp_small", "Src0001")
    script = script_metrics(model, x, y)  # the evaluation script's recipe: spearmanr
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    p = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0].reshape(-1)
    ordinal = float(np.corrcoef(np.argsort(np.argsort(p.astype(np.float64))),
                                np.argsort(np.argsort(y.astype(np.float64))))[0, 1])
    average = gate.run("-k", "mlp_small-Src0001").report
    assert average["archs"]["mlp_small"]["per_fold"]["Src0001"]["srocc"] == script["srocc"]
    assert average["srocc_method"] == "average ranks (scipy.stats.spearmanr)"
    run_srocc = gate.run("-k", "mlp_small-Src0001", "--loso-srocc-ranks=ordinal").report
    assert run_srocc["archs"]["mlp_small"]["per_fold"]["Src0001"]["srocc"] == ordinal
    assert abs(ordinal - script["srocc"]) > 1e-4  # the ties matter
    assert run_srocc["srocc_method"] == "ordinal ranks argsort(argsort(x)), ties not averaged"
    assert run_srocc["run_provenance"]["options"]["srocc_ranks"] == "ordinal"
