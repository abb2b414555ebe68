"""Helpers of the sidecar tests: a small two-input ONNX model and the sidecar beside it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

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
