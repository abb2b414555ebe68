"""Model sidecars (issue 9 items 1 and 2): ``X.json`` beside ``X.onnx`` says how to feed the model.

The models are built here with onnx.helper; every expected number comes from a float64
numpy forward pass with the fork's input recipe written out independently below
(ai/scripts/train_fr_regressor_v2_ensemble_loso.py:_load_corpus: standardisation, encoder
one-hot over encoder_vocab with the ``unknown`` slot, preset_norm 0.5, crf_norm over the
training corpus's cq range).
"""

from __future__ import annotations

import hashlib
import shutil
import json
from pathlib import Path

import numpy as np
import pytest
from loso_helpers import BASELINE_TAG, SOURCES, assert_close, independent_metrics

from pytest_loso.corpus import SourceData
from pytest_loso.errors import LosoInputError
from pytest_loso.features import FEATURE_NAMES
from pytest_loso.models import load_model

NODE = f"loso::baseline[{BASELINE_TAG}]"
# A feature order other than the cache's, one name in libvmaf's spelling: picked by name.
ORDER = ["motion2", "integer_adm2", "vif_scale3", "vif_scale0", "vif_scale2", "vif_scale1"]
MEAN = [9.0, 0.9, 0.85, 0.4, 0.8, 0.7]
STD = [6.0, 0.1, 0.14, 0.16, 0.17, 0.19]
VOCAB = ["libx264", "libx265", "libsvtav1", "unknown"]
CQ_RANGE = (19.0, 37.0)
RNG = np.random.default_rng(9)
W1, B1 = RNG.normal(size=(6, 8)), RNG.normal(size=8)
W2, B2 = RNG.normal(size=(8, 1)), np.array([60.0])
WC = RNG.normal(size=(len(VOCAB) + 2, 8)) * 3  # the codec block's weights into the hidden layer


def _save(path: Path, codec_width: int | None = None, feature_width: int = 6) -> Path:
    """relu(features @ W1 [+ codec @ WC] + B1) @ W2 + B2, inputs ``features`` (and ``codec``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    f32 = np.float32
    inits = [numpy_helper.from_array(W1[:feature_width].astype(f32), "W1"),
             numpy_helper.from_array(B1.astype(f32), "B1"),
             numpy_helper.from_array(W2.astype(f32), "W2"), numpy_helper.from_array(B2.astype(f32), "B2")]
    inputs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", feature_width])]
    nodes = [helper.make_node("MatMul", ["features", "W1"], ["a"])]
    pre = "a"
    if codec_width is not None:
        inputs.append(helper.make_tensor_value_info("codec", TensorProto.FLOAT, ["batch", codec_width]))
        inits.append(numpy_helper.from_array(WC[:codec_width].astype(f32), "WC"))
        nodes += [helper.make_node("MatMul", ["codec", "WC"], ["c"]), helper.make_node("Add", ["a", "c"], ["ac"])]
        pre = "ac"
    nodes += [helper.make_node("Add", [pre, "B1"], ["z"]), helper.make_node("Relu", ["z"], ["h"]),
              helper.make_node("Gemm", ["h", "W2", "B2"], ["score"])]
    graph = helper.make_graph(nodes, "sidecar_test", inputs,
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))
    return path


def _sidecar(model: Path, **changes) -> Path:
    payload = {"feature_order": ORDER, "feature_mean": MEAN, "feature_std": STD, "input_names": ["features"],
               "sha256": hashlib.sha256(model.read_bytes()).hexdigest()}
    payload.update(changes)
    path = model.with_suffix(".json")
    path.write_text(json.dumps({k: v for k, v in payload.items() if v is not None}))
    return path


def _codec_sidecar(model: Path, **changes) -> Path:
    layout = [f"encoder_onehot[{e}]" for e in VOCAB] + ["preset_norm", "crf_norm"]
    return _sidecar(model, **{"input_names": ["features", "codec"], "encoder_vocab": VOCAB,
                              "codec_block_layout": layout,
                              "corpus": {"cq_min": CQ_RANGE[0], "cq_max": CQ_RANGE[1]}, **changes})


def _forward(x_cache: np.ndarray, names=FEATURE_NAMES, encoders=None, cqs=None) -> np.ndarray:
    """The fork's recipe, float64: features by name, standardised; codec block; the MLP."""
    canonical = [n.removeprefix("integer_") for n in names]
    x = x_cache.astype(np.float64)[:, [canonical.index(n.removeprefix("integer_")) for n in ORDER]]
    x = (x - np.array(MEAN)) / np.array(STD)
    z = x @ W1 + B1
    if encoders is not None:
        onehot = np.zeros((len(encoders), len(VOCAB)))
        for row, enc in enumerate(encoders):
            onehot[row, VOCAB.index(enc) if enc in VOCAB else VOCAB.index("unknown")] = 1.0
        crf_norm = (np.asarray(cqs, dtype=np.float64) - CQ_RANGE[0]) / (CQ_RANGE[1] - CQ_RANGE[0])
        block = np.column_stack([onehot, np.full(len(cqs), 0.5), crf_norm])
        z = z + block @ WC
    return (np.maximum(z, 0) @ W2 + B2).reshape(-1)


def _source(x: np.ndarray, names=FEATURE_NAMES, **columns) -> SourceData:
    return SourceData(source="Clip", features=x.astype(np.float32), scores=np.zeros(len(x), np.float32),
                      feature_names=tuple(names), pair_frames=(len(x),), cache_files=(), fingerprint="",
                      columns={k: np.asarray(v) for k, v in columns.items()})


def _frames(n: int = 40) -> np.ndarray:
    rng = np.random.default_rng(3)
    return np.column_stack([rng.uniform(0.7, 1, n), rng.uniform(0.2, 0.7, n), rng.uniform(0.5, 1, n),
                            rng.uniform(0.6, 1, n), rng.uniform(0.7, 1, n), rng.uniform(0, 20, n)])


def test_standardised_sidecar_model_scored_as_the_fork_feeds_it(gate):
    _save(gate.baseline)
    gate.baseline.with_name(gate.baseline.name + ".data").unlink()
    _sidecar(gate.baseline)
    run = gate.run()
    assert run.outcomes[NODE] in ("PASSED", "FAILED"), run.output  # scored (bounds may fail the made-up model)
    block = run.report["baselines"][BASELINE_TAG]
    for source in SOURCES:
        x, y = gate.xy(source)
        assert_close(block["per_clip"][source], independent_metrics(_forward(x), y), tol=1e-4)
    x, y = gate.all_xy()
    assert_close(block["all_clips_concat"], independent_metrics(_forward(x), y), tol=1e-4)
    # the raw, position-ordered feed (the old behaviour) gives other numbers
    raw = (np.maximum(x @ W1 + B1, 0) @ W2 + B2).reshape(-1)
    assert abs(independent_metrics(raw, y)["rmse"] - block["all_clips_concat"]["rmse"]) > 1


def test_codec_model_inputs_built_from_encoder_and_cq(tmp_path):
    _save(tmp_path / "fr_v2.onnx", codec_width=len(VOCAB) + 2)
    _codec_sidecar(tmp_path / "fr_v2.onnx")
    model = load_model(tmp_path / "fr_v2.onnx")
    x = _frames()
    names = ["integer_" + n for n in reversed(FEATURE_NAMES)]  # another order and spelling
    x_named = x[:, ::-1]
    encoders = (["libx264", "libx265", "libsvtav1", "h264_nvenc"] * 10)  # h264_nvenc: the unknown slot
    cqs = np.linspace(19, 37, len(x))
    got = model.predict_data(_source(x_named, names, encoder=encoders, cq=cqs))
    expected = _forward(x_named, names, encoders, cqs)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    # the codec block matters: another encoder / cq gives other predictions
    other = model.predict_data(_source(x_named, names, codec=["libx265"] * len(x), cq=cqs[::-1]))
    assert np.abs(other - got).max() > 0.1
    np.testing.assert_allclose(other, _forward(x_named, names, ["libx265"] * len(x), cqs[::-1]), rtol=1e-4, atol=1e-3)


def test_missing_feature_is_named(tmp_path):
    _save(tmp_path / "m.onnx")
    _sidecar(tmp_path / "m.onnx")
    model = load_model(tmp_path / "m.onnx")
    names = list(FEATURE_NAMES[:5]) + ["psnr_y"]
    with pytest.raises(LosoInputError, match="missing feature motion2"):
        model.predict_data(_source(_frames(), names))


def test_codec_model_on_yuv_corpus_fails_naming_the_missing_column(gate):
    _save(gate.baseline, codec_width=len(VOCAB) + 2)
    gate.baseline.with_name(gate.baseline.name + ".data").unlink()
    sidecar = _codec_sidecar(gate.baseline)
    run = gate.run()
    assert run.outcomes[NODE] == "FAILED"
    text = run.failure_text(NODE)
    assert str(sidecar) in text and "has no encoder or codec column" in text
    assert "Traceback" not in text
    assert run.outcomes["loso::fold[linear-Src0000]"] == "PASSED"  # only the affected test fails
    assert run.report is not None


@pytest.mark.parametrize(
    ("codec", "changes", "says"),
    [
        (False, {"feature_order": ORDER[:5], "feature_mean": MEAN[:5], "feature_std": STD[:5]},
         "feature_order has 5 entries but the model's input features is [batch, 6]"),
        (False, {"input_names": ["x"]}, "input_names ['x'] disagree with the model's inputs ['features']"),
        (False, {"sha256": "0" * 64}, "does not match m.onnx"),
        (False, {"feature_std": STD[:3]}, "feature_std must be 6 finite numbers"),
        (True, {"encoder_vocab": None}, "lacks 'encoder_vocab'"),
        (True, {"corpus": {"path": "x.jsonl"}}, "lacks 'cq_min'"),
        (True, {"corpus": "runs/phase_a/x.jsonl"}, "lacks corpus.cq_min / corpus.cq_max as numbers"),
        (True, {"codec_block_layout": ["preset_norm", "crf_norm"]}, "is not the one-hot of encoder_vocab"),
    ],
)
def test_bad_sidecar_named_with_fix(tmp_path, codec, changes, says):
    model = _save(tmp_path / "m.onnx", codec_width=len(VOCAB) + 2 if codec else None)
    sidecar = (_codec_sidecar if codec else _sidecar)(model, **changes)
    with pytest.raises(LosoInputError) as info:
        load_model(model)
    assert info.value.path == sidecar and says in info.value.problem and info.value.fix


def test_sidecar_not_json_fails_only_its_test(gate):
    gate.baseline.with_suffix(".json").write_text("{not json")
    run = gate.run()
    assert run.outcomes[NODE] == "FAILED"
    assert f"{gate.baseline.with_suffix('.json')}: model sidecar is not readable JSON" in run.failure_text(NODE)
    assert run.outcomes["loso::fold[mlp_small-Src0001]"] == "PASSED"


def test_two_inputs_without_sidecar_name_the_sidecar(tmp_path):
    model = _save(tmp_path / "m.onnx", codec_width=3)
    with pytest.raises(LosoInputError, match="expected one input") as info:
        load_model(model)
    assert "m.json" in info.value.fix


def test_first_generation_model_picks_its_features_by_name(gate):
    """A cache listing the six features in another order (libvmaf's spelling) gives the same numbers."""
    for path in sorted(gate.cache_dir.glob("*/*.json")):
        payload = json.loads(path.read_text())
        features = payload["features"]
        features["feature_names"] = ["integer_" + n for n in reversed(features["feature_names"])]
        features["per_frame"] = [row[::-1] for row in features["per_frame"]]
        path.write_text(json.dumps(payload))
    run = gate.run()
    block = run.report["baselines"][BASELINE_TAG]
    x, y = gate.all_xy()
    assert_close(block["all_clips_concat"], independent_metrics(gate.baseline_model.predict(x), y))
    x, y = gate.xy("Src0001")
    fold = run.report["archs"]["linear"]["per_fold"]["Src0001"]
    assert_close(fold, independent_metrics(gate.folds["linear"]["Src0001"].predict(x), y))


# -- named baselines: --loso-baseline NAME=PATH, ini loso_baseline lines ----------------------------

def test_named_baselines_on_the_command_line(gate):
    copy = gate.root / "other" / gate.baseline.name
    shutil.copytree(gate.baseline.parent, copy.parent)
    run = gate.run(f"--loso-baseline=v1_copy={copy}")  # with the bare path: stem vmaf_tiny_v1
    assert run.outcomes[NODE] == "PASSED" and run.outcomes["loso::baseline[v1_copy]"] == "PASSED", run.output
    assert run.report["baselines"]["v1_copy"]["model_path"] == str(copy)
    assert run.report["baselines"]["v1_copy"]["all_clips_concat"] == run.report["baselines"][BASELINE_TAG][
        "all_clips_concat"]  # the same model under two names, scored alike


def test_named_baselines_in_the_ini_relative_to_it(gate, monkeypatch):
    gate.pytester.makeini("[pytest]\nloso_dir = runs\ndata_root = corpus\nloso_cache = cache\n"
                          "loso_report = report\nloso_baseline =\n    v1 = base/vmaf_tiny_v1.onnx\n"
                          "    base/vmaf_tiny_v1.onnx\n")
    monkeypatch.chdir(gate.pytester.mkdir("sub"))
    run = gate.run("-p", "no:cacheprovider", "-rA", plain=True)
    outcomes = {nodeid.removeprefix("../"): outcome for nodeid, outcome in run.outcomes.items()}
    assert outcomes["loso::baseline[v1]"] == "PASSED" and outcomes[NODE] == "PASSED", run.output
    assert run.report["baselines"]["v1"]["model_path"] == str(gate.baseline)
