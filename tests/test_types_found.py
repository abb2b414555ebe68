"""Defects that type checking (`mypy pytest_loso`) pointed at: each a None or a wrong type that
reached a line on some input. One test per defect, each failing on the code before its fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loso_helpers import SOURCES, GateEnv


def test_a_fold_model_named_only_final_onnx_is_an_input_error_not_an_internal_error(gate: GateEnv) -> None:
    # "_final.onnx" names no architecture: its folds had no run, and the report crashed sorting runs
    # (INTERNALERROR) after every test had passed
    nameless = gate.fold_path("linear", SOURCES[0]).with_name("_final.onnx")
    shutil.copy(gate.fold_path("linear", SOURCES[0]), nameless)
    junit = gate.root / "junit.xml"
    run = gate.run(f"--junitxml={junit}")
    assert "INTERNALERROR" not in run.output and "Traceback" not in run.output, run.output
    assert run.result.ret == pytest.ExitCode.INTERRUPTED  # pytest's collection error, counted as one
    assert f"{nameless}: a fold model's file name gives its architecture, <arch>_final.onnx" in run.output
    assert "fix: rename it after its architecture, e.g. mlp_small_final.onnx" in run.output
    # the (partial) report and JUnit say the same
    assert run.report is not None and [f["test"] for f in run.report["failures"]] == ["loso"]
    assert str(nameless) in run.report["failures"][0]["message"]
    assert 'errors="1"' in junit.read_text() and str(nameless) in junit.read_text()


def test_a_tensor_repeating_its_data_location_in_another_wire_type_is_still_external(tmp_path: Path) -> None:
    # protobuf keeps a field given in the wrong wire type as an unknown field, so onnx and onnxruntime
    # read the tensor as external; the gate's walk took the bytes as the location ("not external"),
    # and onnxruntime read the weights from disk itself, past the gate's checks (a regular file in the
    # model's folder), with no digest of them in the report
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import convert_model_to_external_data

    from pytest_loso.models import external_tensors, load_model

    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
                              [numpy_helper.from_array(np.ones((2, 1), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    convert_model_to_external_data(model, location="m.onnx.data", size_threshold=0)
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path))  # writes m.onnx.data beside it
    model = onnx.load(str(path), load_external_data=False)
    tensor = model.graph.initializer[0]
    crafted = TensorProto()
    crafted.ParseFromString(tensor.SerializeToString() + bytes([14 << 3 | 2, 0]))  # field 14, length-delimited
    tensor.CopyFrom(crafted)
    path.write_bytes(model.SerializeToString())
    reparsed = onnx.load(str(path), load_external_data=False)
    assert reparsed.graph.initializer[0].data_location == TensorProto.EXTERNAL  # onnx's own reading

    has_graph, found = external_tensors(path.read_bytes())
    assert has_graph
    assert found == [("w", {"location": "m.onnx.data", "offset": "0", "length": "8"})]
    loaded = load_model(path)
    assert loaded.data_path == tmp_path / "m.onnx.data"
    assert loaded.data_sha256 is not None
