"""Loading models: ONNX into onnxruntime from memory, external data read safely.

Shipped models have two traps this module exists for:

* a model renamed after export keeps an external-data ``location`` naming the old file,
  so ``InferenceSession(path)`` fails. Like the team's evaluation script, the actual
  sibling ``<model>.onnx.data`` is used when it exists;
* ``location`` is data from the file and may say ``../../x``, an absolute path, or name
  a symlink that leaves the folder. Nothing outside the model's own folder is ever
  opened: such a model fails with an error instead.

The weights are attached to the in-memory proto and handed to onnxruntime as bytes; no
rewritten copy is written to disk.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .errors import LosoInputError

if TYPE_CHECKING:
    import numpy as np
    import onnx


@dataclass
class OnnxModel:
    """A loaded model and what provenance needs to know about it."""

    path: Path
    sha256: str
    data_path: Path | None
    data_sha256: str | None
    input_name: str
    input_width: int | None  # None when the model leaves the width symbolic
    session: Any  # onnxruntime.InferenceSession

    def predict(self, features: np.ndarray) -> np.ndarray:
        """One batched run; returns the first output flattened, as the script did."""
        import numpy as np

        if self.input_width is not None and features.shape[1] != self.input_width:
            raise LosoInputError(
                self.path,
                f"model input is [batch, {self.input_width}] but the feature cache has "
                f"{features.shape[1]} features per frame",
                "score it on a cache with the features it was trained on, or re-export it",
            )
        try:
            outputs = self.session.run(None, {self.input_name: features.astype(np.float32, copy=False)})
        except Exception as exc:  # onnxruntime raises its own exception types
            raise LosoInputError(self.path, f"onnxruntime failed to run the model: {exc}") from None
        return np.asarray(outputs[0]).reshape(-1)


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor that may hold external data: initializers and attributes, subgraphs too."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def _inside(folder: Path, candidate: Path) -> bool:
    """True when ``candidate``, all symlinks followed, lies in ``folder``."""
    real = Path(os.path.realpath(candidate))
    return real == folder or folder in real.parents


def _data_file(model_path: Path, locations: set[str]) -> Path:
    """Choose the one file external data may be read from, refusing anything outside the folder."""
    folder = Path(os.path.realpath(model_path.parent))
    for location in sorted(locations):
        if os.path.isabs(location) or not _inside(folder, model_path.parent / location):
            raise LosoInputError(
                model_path,
                f"external data location {location!r} points outside the model's folder; refusing to read it",
                f"re-export the model with its weights in {model_path.name}.data beside it",
            )
    sibling = model_path.with_name(model_path.name + ".data")
    if sibling.is_file():
        return sibling  # the renamed-model defect: the sibling is the real weights file
    if len(locations) == 1:
        declared = model_path.parent / next(iter(locations))
        if declared.is_file():
            return declared
    raise LosoInputError(
        model_path,
        f"external data file {', '.join(sorted(locations))} not found, and no sibling {sibling.name}",
        f"put the weights next to the model as {sibling.name}",
    )


def _attach_external_data(model_path: Path, proto: onnx.ModelProto) -> tuple[Path | None, str | None]:
    import onnx

    external = [t for t in _tensors(proto.graph) if t.data_location == onnx.TensorProto.EXTERNAL]
    if not external:
        return None, None
    entries = [{e.key: e.value for e in t.external_data} for t in external]
    data_path = _data_file(model_path, {e.get("location", "") for e in entries})
    if not _inside(Path(os.path.realpath(model_path.parent)), data_path):
        raise LosoInputError(data_path, "is a link that leaves the model's folder; refusing to read it")
    blob = data_path.read_bytes()
    for tensor, entry in zip(external, entries):
        offset = int(entry.get("offset", 0))
        length = int(entry.get("length", len(blob) - offset))
        if offset < 0 or length < 0 or offset + length > len(blob):
            raise LosoInputError(
                data_path,
                f"truncated: tensor {tensor.name!r} needs bytes {offset}..{offset + length} "
                f"but the file has {len(blob)}",
                "copy the complete weights file",
            )
        tensor.raw_data = blob[offset : offset + length]
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
    return data_path, hashlib.sha256(blob).hexdigest()


def load_model(path: Path) -> OnnxModel:
    """Load ``path`` into an onnxruntime session (CPU, one thread: the models are tiny)."""
    import onnx
    import onnxruntime as ort
    from google.protobuf.message import DecodeError

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LosoInputError(path, "model file not found") from None
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(raw)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise LosoInputError(path, f"not an ONNX model, or truncated ({exc})", "re-export or re-copy it") from None
    if not proto.graph.node:
        raise LosoInputError(path, "not an ONNX model, or truncated (no graph)", "re-export or re-copy it")
    data_path, data_sha = _attach_external_data(path, proto)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            raw if data_path is None else proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own exception types
        raise LosoInputError(path, f"onnxruntime cannot load the model: {exc}", "re-export it") from None
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 2:
        shapes = ", ".join(f"{i.name}{i.shape}" for i in inputs)
        raise LosoInputError(path, f"expected one input [batch, features], found {shapes}")
    width = inputs[0].shape[1]
    return OnnxModel(
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        data_path=data_path,
        data_sha256=data_sha,
        input_name=inputs[0].name,
        input_width=width if isinstance(width, int) else None,
        session=session,
    )


def find_fold_models(loso_dirs: list[Path] | tuple[Path, ...]) -> dict[tuple[str, str], list[Path]]:
    """``{(arch, source): [model paths]}`` from ``fold_<Source>/<arch>_final.onnx`` files.

    Each folder may be a single-architecture run or a sweep holding ``loso_<arch>/``
    runs; the architecture is read from the model's file name. More than one path
    for one key means two folders offer the same fold.
    """
    found: dict[tuple[str, str], list[Path]] = {}
    for root in loso_dirs:
        for run in [root, *sorted(p for p in root.glob("loso_*") if p.is_dir())]:
            for fold_dir in sorted(p for p in run.glob("fold_*") if p.is_dir()):
                source = fold_dir.name[len("fold_") :]
                for model in sorted(fold_dir.glob("*_final.onnx")):
                    arch = model.name[: -len("_final.onnx")]
                    found.setdefault((arch, source), []).append(model)
    return found
