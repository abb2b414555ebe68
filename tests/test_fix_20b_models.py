"""Issue 20, items 11, 17, 19 and 20: a model's sidecar and files that are not what they claim fail
that model's test naming the file, never a traceback, and nothing outside the model's folder is read."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from sidecar_helpers import STD, _save, _sidecar

from loso_helpers import SOURCES, Built, GateEnv
from pytest_loso import models
from pytest_loso.errors import LosoInputError
from pytest_loso.features import FEATURE_NAMES
from pytest_loso.frames import SourceData
from pytest_loso.models import load_model
from loso_testing.training import Regressor, export_onnx
from shared_runs import Batch, Breakage, SharedRuns

SHARED = SharedRuns()


def _source(n: int = 20) -> SourceData:
    rng = np.random.default_rng(1)
    x = rng.random((n, 6)).astype(np.float32) * [20, 1, 1, 1, 1, 1]
    return SourceData(source="SrcA", features=x, scores=(rng.random(n) * 100).astype(np.float32),
                      feature_names=FEATURE_NAMES, pair_frames=(n,), cache_files=(), fingerprint="")


# -- item 11: a sidecar link leaving the model's folder ------------------------------------------------


def test_sidecar_link_leaving_the_folder_is_refused_unread(tmp_path):
    model = _save(tmp_path / "models" / "m.onnx")
    outside = _sidecar(model)  # a valid sidecar, moved out of the folder and linked back in
    secret = tmp_path / "secret.json"
    outside.rename(secret)
    model.with_suffix(".json").symlink_to(Path("..") / "secret.json")
    with pytest.raises(LosoInputError) as info:
        load_model(model)
    assert info.value.path == model.with_suffix(".json")
    assert "link that leaves the model's folder" in info.value.problem
    assert "feature_order" not in str(info.value)  # its content is not printed


def test_sidecar_link_inside_the_folder_is_followed(tmp_path):
    model = _save(tmp_path / "m.onnx")
    _sidecar(model).rename(tmp_path / "real.json")
    model.with_suffix(".json").symlink_to("real.json")
    assert load_model(model).sidecar is not None


# -- item 19: a sidecar that cannot be read is a failure, not a model fed raw -----------------------


@pytest.mark.parametrize("kind", ["broken link", "FIFO", "folder"])
def test_unreadable_sidecar_fails_naming_it(tmp_path, kind):
    model = _save(tmp_path / "m.onnx")
    sidecar = model.with_suffix(".json")
    if kind == "broken link":
        sidecar.symlink_to("gone.json")
    elif kind == "FIFO":
        os.mkfifo(sidecar)
    else:
        sidecar.mkdir()
    with pytest.raises(LosoInputError) as info:
        load_model(model)
    assert info.value.path == sidecar and kind.split()[-1] in info.value.problem


@pytest.fixture
def baseline_and_ensemble_broken(pytester: pytest.Pytester, built: Built) -> Batch:
    """One run for two breakages that cannot interact: a FIFO as the baseline's sidecar, and an
    ensemble whose members' outputs differ in shape (a fold model's copy and a 6-wide identity)."""

    def make() -> Batch:
        from onnx import TensorProto

        gate = GateEnv(pytester, built)
        sidecar = gate.baseline.with_suffix(".json")
        os.mkfifo(sidecar)
        other = gate.root / "ens" / "b.onnx"
        other.parent.mkdir()
        for suffix in (".onnx", ".onnx.data"):
            shutil.copy(gate.fold_path("mlp_small", SOURCES[0]).with_suffix(suffix), other.with_name("a" + suffix))
        _identity_model(other, TensorProto.FLOAT, ["b", 6])
        run = gate.run(f"--loso-ensemble=pair={other.parent}/*.onnx")
        return Batch(gate, {"run": run}, {"sidecar FIFO": Breakage({"loso::baseline[vmaf_tiny_v1]"}, sidecar),
                                          "ensemble": Breakage({"loso::ensemble[pair]"}, other)})

    return SHARED.get("baseline_and_ensemble_broken", make)


def test_sidecar_fifo_fails_that_test_in_a_run(baseline_and_ensemble_broken):
    run, sidecar = baseline_and_ensemble_broken.run, baseline_and_ensemble_broken.breakages["sidecar FIFO"].names
    node = "loso::baseline[vmaf_tiny_v1]"
    assert run.outcomes[node] == "FAILED"
    assert f"{sidecar}: the model's sidecar is a FIFO" in run.failure_text(node)
    assert run.outcomes["loso::fold[mlp_small-Src0001]"] == "PASSED"


# -- item 20: wrong types in a sidecar, bad outputs, unreadable weights ---------------------------------


@pytest.mark.parametrize("changes, says", [
    ({"feature_order": None}, "feature_order must be a list of feature names, got None"),
    ({"feature_order": 5}, "feature_order must be a list of feature names, got 5"),
    ({"input_names": 5}, "input_names must be a list of the model's input names, got 5"),
])
def test_sidecar_keys_of_the_wrong_type_are_named(tmp_path, changes, says):
    model = _save(tmp_path / "m.onnx")
    path = _sidecar(model)
    payload = json.loads(path.read_text())
    payload.update(changes)  # null kept: _sidecar drops None values
    path.write_text(json.dumps(payload))
    with pytest.raises(LosoInputError) as info:
        load_model(model)
    assert info.value.path == path and says in info.value.problem


def test_tiny_feature_std_blames_the_sidecar(tmp_path):
    model = _save(tmp_path / "m.onnx")
    sidecar = _sidecar(model, feature_std=[1e-300] + STD[1:])
    loaded = load_model(model)
    with pytest.raises(LosoInputError) as info:
        loaded.predict_data(_source())
    assert info.value.path == sidecar and "feature_std 1e-300 overflows float32" in info.value.problem


def _identity_model(path: Path, output_type, out_shape) -> Path:
    import onnx
    from onnx import TensorProto, helper

    nodes = ([helper.make_node("Cast", ["x"], ["y"], to=output_type)] if output_type == TensorProto.STRING
             else [helper.make_node("Identity", ["x"], ["y"])])
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 6])],
                              [helper.make_tensor_value_info("y", output_type, out_shape)])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save_model(proto, str(path))
    return path


def test_string_output_is_named_not_a_traceback(tmp_path):
    from onnx import TensorProto

    loaded = load_model(_identity_model(tmp_path / "m.onnx", TensorProto.STRING, ["b", 6]))
    with pytest.raises(LosoInputError, match="first output is a .* tensor, not numbers"):
        loaded.predict_data(_source())


def test_member_with_another_output_shape_is_named(tmp_path):
    from onnx import TensorProto

    wide = load_model(_identity_model(tmp_path / "wide.onnx", TensorProto.FLOAT, ["b", 6]))
    with pytest.raises(LosoInputError) as info:
        wide.predict_data(_source())
    assert info.value.path == tmp_path / "wide.onnx"
    assert "returned 120 predictions for 20 frames of source SrcA" in info.value.problem


def test_ensemble_members_with_different_output_shapes_fail_naming_the_member(baseline_and_ensemble_broken):
    run, other = baseline_and_ensemble_broken.run, baseline_and_ensemble_broken.breakages["ensemble"].names
    node = "loso::ensemble[pair]"
    assert run.outcomes[node] == "FAILED", run.output
    text = run.failure_text(node)
    assert f"{other}: model returned" in text and "Traceback" not in text


def test_unreadable_external_data_is_named(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    net = Regressor([(rng.normal(size=(6, 4)), rng.normal(size=4)), (rng.normal(size=(4, 1)), rng.normal(size=1))])
    path = export_onnx(net, tmp_path / "mlp_small_final.onnx")
    real_open = open

    def deny(file, *args, **kwargs):
        if str(file).endswith(".onnx.data"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(models, "open", deny, raising=False)
    with pytest.raises(LosoInputError) as info:
        load_model(path)
    assert info.value.path == path.with_name(path.name + ".data")
    assert "cannot read the external data file: Permission denied" in info.value.problem


# -- item 17: a preallocated, never-filled download ------------------------------------------------------


def _no_whole_read(monkeypatch):
    def refuse(self):
        raise AssertionError(f"{self} read whole")

    monkeypatch.setattr(Path, "read_bytes", refuse)


def test_zero_filled_model_is_refused_from_its_first_byte(tmp_path, monkeypatch):
    path = tmp_path / "mlp_small_final.onnx"
    with open(path, "wb") as handle:
        handle.truncate(200 << 20)  # sparse: zeros, as a preallocated download
    _no_whole_read(monkeypatch)
    real_open = open
    reads = []

    class Counting:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def read(self, n=-1):
            data = self.handle.read(n)
            reads.append(len(data))
            return data

    monkeypatch.setattr(models, "open", lambda *a, **k: Counting(real_open(*a, **k)), raising=False)
    with pytest.raises(LosoInputError, match="does not start with a protobuf field"):
        load_model(path)
    assert sum(reads) < 1 << 20


def test_model_above_protobufs_limit_is_refused_unread(tmp_path, monkeypatch):
    path = tmp_path / "mlp_small_final.onnx"
    with open(path, "wb") as handle:
        handle.write(b"\x08\x08")
        handle.truncate((2 << 30) + 1)
    _no_whole_read(monkeypatch)
    monkeypatch.setattr(models, "open", lambda *a, **k: pytest.fail("opened"), raising=False)
    with pytest.raises(LosoInputError, match="larger than the 2 GiB"):
        load_model(path)


def test_zeros_after_a_valid_first_byte_are_refused_at_once():
    with pytest.raises(ValueError, match="field number 0"):
        models.external_tensors(b"\x08\x08" + bytes(1 << 20))
