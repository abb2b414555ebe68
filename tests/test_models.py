"""The ONNX reading behind the gate's model loading, checked against onnx's own parser."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import _get_all_tensors, convert_model_to_external_data

from pytest_loso.models import external_tensors, load_model
from loso_testing.training import Regressor, export_onnx


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
    refused = parsed = 0
    for cut in range(len(raw)):
        # onnx's own parser decides: a cut inside a field is not a model, a cut between fields is one
        reference = onnx.ModelProto()
        try:
            reference.ParseFromString(raw[:cut])
        except Exception:  # google.protobuf.message.DecodeError
            reference = None
        try:
            has_graph, found = external_tensors(raw[:cut])
        except ValueError:
            # what load_model turns into "not an ONNX model, or truncated"
            assert reference is None, f"cut at {cut} of {len(raw)}: onnx parses it, the gate refused it"
            refused += 1
            continue
        assert reference is not None, f"cut at {cut} of {len(raw)}: onnx refuses it, the gate parsed it"
        parsed += 1
        assert has_graph == reference.HasField("graph"), cut
        expected = sorted(
            (t.name, tuple(sorted((e.key, e.value) for e in t.external_data)))
            for t in _get_all_tensors(reference)
            if t.data_location == TensorProto.EXTERNAL
        )
        assert sorted((name, tuple(sorted(entries.items()))) for name, entries in found) == expected, cut
    assert refused > len(raw) // 2 and parsed >= 1, (refused, parsed)  # most cuts land inside a field


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


def test_function_default_attribute_tensors_are_found_and_outside_paths_refused(tmp_path):
    # A local function's default attribute (FunctionProto.attribute_proto) can hold a tensor
    # whose data is external; onnxruntime inlines it, so it must be checked like the rest.
    default = numpy_helper.from_array(np.arange(4, dtype=np.float32), "default_value")
    default.ClearField("raw_data")
    default.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../outside.bin"), ("offset", "0"), ("length", "16")):
        default.external_data.add(key=key, value=value)
    attribute = helper.make_attribute("value", default)
    function = helper.make_function(
        "local", "Const4", [], ["out"], [helper.make_node("Constant", [], ["out"], value=default)],
        [helper.make_opsetid("", 17)], attributes=[], attribute_protos=[attribute],
    )
    graph = helper.make_graph(
        [helper.make_node("Const4", [], ["y"], domain="local")], "g", [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    model = helper.make_model(graph, functions=[function],
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)])
    raw = model.SerializeToString()
    has_graph, found = external_tensors(raw)
    names = [name for name, _ in found]
    assert names.count("default_value") == 2  # in the function's node and in its default attribute
    outside = tmp_path / "outside.bin"
    outside.write_bytes(np.full(4, 1000, np.float32).tobytes())
    path = tmp_path / "models" / "m.onnx"
    path.parent.mkdir()
    path.write_bytes(raw)
    from pytest_loso.errors import LosoInputError

    with pytest.raises(LosoInputError, match="outside the model's folder"):
        load_model(path)


def _len_field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field, encoded by hand."""
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def test_deeply_nested_graphs_are_refused_not_a_recursion_error():
    # graph.node(1) -> node.attribute(5) -> attribute.g(6) -> graph ..., 400 levels: a few KB
    # that protobuf itself refuses to parse; the walker must refuse it cleanly too.
    graph = b""
    for _ in range(400):
        graph = _len_field(1, _len_field(5, _len_field(6, graph)))
    with pytest.raises(ValueError, match="nested deeper"):
        external_tensors(_len_field(7, graph))
