"""The ONNX reading behind the gate's model loading, checked against onnx's own parser."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import _get_all_tensors, convert_model_to_external_data

from pytest_loso.models import external_tensors, load_model
from pytest_loso.training import Regressor, export_onnx


def _model_with_subgraphs() -> onnx.ModelProto:
    """An If node whose branches hold their own initializers, plus attribute tensors."""
    branch = lambda name, value: helper.make_graph(  # noqa: E731
        [helper.make_node("Add", ["x", f"{name}_c"], [f"{name}_out"])],
        name,
        [],
        [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.full(2, value, np.float32), f"{name}_c")],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["x"], value=numpy_helper.from_array(np.ones(2, np.float32), "k")),
            helper.make_node("If", ["cond"], ["y"], then_branch=branch("then", 1.0), else_branch=branch("else", 2.0)),
        ],
        "top",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.arange(4, dtype=np.float32), "unused")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_external_tensors_match_onnx_everywhere_in_the_model():
    model = _model_with_subgraphs()
    convert_model_to_external_data(
        model, all_tensors_to_one_file=True, location="w.data", size_threshold=0, convert_attribute=True
    )
    expected = {
        (t.name, tuple(sorted((e.key, e.value) for e in t.external_data)))
        for t in _get_all_tensors(model)
        if t.data_location == TensorProto.EXTERNAL
    }
    assert len(expected) == 4  # the initializer, the Constant's tensor and one per branch
    has_graph, found = external_tensors(model.SerializeToString())
    assert has_graph
    assert {(name, tuple(sorted(entries.items()))) for name, entries in found} == expected


def test_model_without_external_data_has_none(tmp_path):
    path = export_onnx(Regressor([(np.ones((6, 1)), np.zeros(1))]), tmp_path / "m.onnx", external_data=False)
    assert external_tensors(path.read_bytes()) == (True, [])


def test_every_truncation_is_refused_or_parsed_never_a_crash(tmp_path):
    path = export_onnx(Regressor([(np.ones((6, 2)), np.zeros(2)), (np.ones((2, 1)), np.zeros(1))]), tmp_path / "m.onnx")
    raw = path.read_bytes()
    for cut in range(len(raw)):
        try:
            external_tensors(raw[:cut])
        except ValueError:
            pass  # what load_model turns into "not an ONNX model, or truncated"


def test_loaded_model_predicts_like_the_numpy_forward_pass(tmp_path):
    rng = np.random.default_rng(3)
    model = Regressor([(rng.normal(size=(6, 4)), rng.normal(size=4)), (rng.normal(size=(4, 1)), rng.normal(size=1))])
    path = export_onnx(model, tmp_path / "fold_X" / "mlp_small_final.onnx")
    x = rng.random((50, 6)).astype(np.float32)
    loaded = load_model(path)
    assert loaded.data_path == path.with_name(path.name + ".data")
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("junk", [b"", b"hello world, not a model\n", bytes(range(256)) * 4])
def test_junk_is_not_a_model(tmp_path, junk):
    from pytest_loso.errors import LosoInputError

    path = tmp_path / "junk.onnx"
    path.write_bytes(junk)
    with pytest.raises(LosoInputError, match="not an ONNX model"):
        load_model(path)
