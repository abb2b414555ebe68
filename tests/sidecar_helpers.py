"""Helpers of the sidecar tests: a small two-input ONNX model and the sidecar beside it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from pytest_loso.features import FEATURE_NAMES
from pytest_loso.frames import SourceData

# A feature order other than the cache's, one name in libvmaf's spelling: picked by name.
ORDER = ["motion2", "integer_adm2", "vif_scale3", "vif_scale0", "vif_scale2", "vif_scale1"]
MEAN = [9.0, 0.9, 0.85, 0.4, 0.8, 0.7]
STD = [6.0, 0.1, 0.14, 0.16, 0.17, 0.19]


def _weights(seed: int = 9) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    w1, b1 = rng.normal(size=(6, 8)), rng.normal(size=8)
    w2, b2 = rng.normal(size=(8, 1)), np.array([60.0])
    wc = rng.normal(size=(20, 8)) * 3  # the codec block's weights into the hidden layer
    return w1, b1, w2, b2, wc


def _save(path: Path, codec_width: int | None = None, feature_width: int = 6, seed: int = 9) -> Path:
    """relu(features @ W1 [+ codec @ WC] + B1) @ W2 + B2, inputs ``features`` (and ``codec``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w1, b1, w2, b2, wc = _weights(seed)
    f32 = np.float32
    inits = [numpy_helper.from_array(w1[:feature_width].astype(f32), "W1"),
             numpy_helper.from_array(b1.astype(f32), "B1"),
             numpy_helper.from_array(w2.astype(f32), "W2"), numpy_helper.from_array(b2.astype(f32), "B2")]
    inputs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", feature_width])]
    nodes = [helper.make_node("MatMul", ["features", "W1"], ["a"])]
    pre = "a"
    if codec_width is not None:
        inputs.append(helper.make_tensor_value_info("codec", TensorProto.FLOAT, ["batch", codec_width]))
        inits.append(numpy_helper.from_array(wc[:codec_width].astype(f32), "WC"))
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


VOCAB = ["libx264", "libx265", "libsvtav1", "unknown"]


CQ_RANGE = (19.0, 37.0)


def _layout(vocab: list[str]) -> list[str]:
    return [f"encoder_onehot[{e}]" for e in vocab] + ["preset_norm", "crf_norm"]


def _codec_sidecar(model: Path, **changes) -> Path:
    """As export_ensemble_v2_seeds.py writes it: the training corpus's cq range in ``corpus``."""
    return _sidecar(model, **{"input_names": ["features", "codec"], "encoder_vocab": VOCAB,
                              "codec_block_layout": _layout(VOCAB), "encoder_vocab_version": 2,
                              "corpus": {"cq_min": CQ_RANGE[0], "cq_max": CQ_RANGE[1]}, **changes})


def _source(x: np.ndarray, names=FEATURE_NAMES, files=(), **columns) -> SourceData:
    return SourceData(source="Clip", features=x.astype(np.float32), scores=np.zeros(len(x), np.float32),
                      feature_names=tuple(names), pair_frames=(len(x),), cache_files=files, fingerprint="",
                      columns={k: np.asarray(v) for k, v in columns.items()})


def _frames(n: int = 40) -> np.ndarray:
    rng = np.random.default_rng(3)
    return np.column_stack([rng.uniform(0.7, 1, n), rng.uniform(0.2, 0.7, n), rng.uniform(0.5, 1, n),
                            rng.uniform(0.6, 1, n), rng.uniform(0.7, 1, n), rng.uniform(0, 20, n)])
