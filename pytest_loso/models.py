"""Loading models: ONNX into onnxruntime from memory, external data read safely.

Shipped models have two traps this module exists for:

* a model renamed after export keeps an external-data ``location`` naming the old file,
  so ``InferenceSession(path)`` fails. Like the team's evaluation script, the actual
  sibling ``<model>.onnx.data`` is used when it exists;
* ``location`` is data from the file and may say ``../../x``, an absolute path, or name
  a symlink that leaves the folder. Nothing outside the model's own folder is ever
  opened: such a model fails with an error instead.

The model's bytes go to onnxruntime as they are, and the weights file's bytes are handed
over in memory under every name the model uses for it: no rewritten copy is written to
disk. onnxruntime (>= 1.24) also refuses by itself any external path that leaves the
folder given as the model's, should a tensor ever escape the walk below.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import LosoInputError, readable, what_is_at
from .features import FEATURE_NAMES, select
from .sidecar import Sidecar, build_inputs, load_sidecar

if TYPE_CHECKING:
    import numpy as np

    from .frames import SourceData


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
    sidecar: Sidecar | None = None  # X.json beside X.onnx: how the team's code feeds it

    def inputs(self, data: SourceData) -> dict[str, np.ndarray]:
        """Every input for ``data``'s frames: as the sidecar says, else the first generation's six features."""
        if self.sidecar is not None:
            return build_inputs(self.sidecar, data)
        features = data.features
        if self.input_width in (None, len(FEATURE_NAMES)):  # picked by name, never by position
            features = select(features, data.feature_names, FEATURE_NAMES, path=data.names_file,
                              fix=f"score {self.path.name} on data with the features it was trained on")
        return {self.input_name: features}

    def predict_data(self, data: SourceData) -> np.ndarray:
        """The model's predictions for one source's frames, one per frame."""
        pred = self.run(self.inputs(data))
        if pred.shape != data.scores.shape:  # before an ensemble stacks its members' predictions
            raise LosoInputError(self.path, f"model returned {pred.shape[0]} predictions for "
                                 f"{data.scores.shape[0]} frames of source {data.source}")
        return pred

    def predict(self, features: np.ndarray) -> np.ndarray:
        """One batched run of a single-input model on ``features`` as they are."""
        return self.run({self.input_name: features})

    def run_batched(self, inputs: dict[str, np.ndarray], batch: int | None) -> np.ndarray:
        """The model run on ``batch`` frames at a time (``None``: all at once), as a runtime that scores
        frame by frame feeds it: a dynamic-quantised model's scale is picked per run."""
        import numpy as np

        frames = len(next(iter(inputs.values())))
        if batch is None or batch >= frames:
            return self.run(inputs)
        return np.concatenate([self.run({k: v[i:i + batch] for k, v in inputs.items()})
                               for i in range(0, frames, batch)])

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """One batched run; returns the first output flattened, as the script did."""
        import numpy as np

        features = inputs.get(self.input_name)
        if features is not None and self.input_width is not None and features.shape[1] != self.input_width:
            raise LosoInputError(
                self.path,
                f"model input is [batch, {self.input_width}] but the feature cache has "
                f"{features.shape[1]} features per frame",
                "score it on a cache with the features it was trained on, or re-export it",
            )
        try:
            outputs = self.session.run(None, {k: v.astype(np.float32, copy=False) for k, v in inputs.items()})
        except Exception as exc:  # onnxruntime raises its own exception types
            raise LosoInputError(self.path, f"onnxruntime failed to run the model: {exc}") from None
        output = np.asarray(outputs[0])
        if output.dtype.kind not in "fiu":
            raise LosoInputError(self.path, f"the model's first output is a {output.dtype} tensor, not numbers",
                                 "score a model whose first output is the predicted VMAF")
        return output.reshape(-1)


# Where tensors live in the ONNX protobuf schema (onnx.proto3), by field number. Reading
# these few fields directly spares importing onnx (and protobuf) on every gate run.
_SUBMESSAGES = {  # message -> {field: message}
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node", 11: "attribute"},  # attribute_proto: default attribute values
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _EXTERNAL = 8, 13, 14, 1
_MAX_DEPTH = 100  # protobuf's own recursion limit


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if byte < 0x80:
            return value, i


def _fields(buf: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """``(field number, value)`` of one protobuf message: an int for varints, bytes otherwise."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        wire = key & 7
        value: int | memoryview
        if key >> 3 == 0:  # field 0 does not exist: zeros (a preallocated file) are refused at once
            raise ValueError("field number 0")
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire in (1, 5):
            value, i = buf[i : i + (8 if wire == 1 else 4)], i + (8 if wire == 1 else 4)
        elif wire == 2:
            length, i = _varint(buf, i)
            value, i = buf[i : i + length], i + length
        else:
            raise ValueError(f"wire type {wire}")
        if i > len(buf):
            raise ValueError("truncated message")
        yield key >> 3, value


def external_tensors(raw: bytes) -> tuple[bool, list[tuple[str, dict[str, str]]]]:
    """``(has_graph, [(tensor name, external_data entries)])`` of a serialized ONNX model.

    Every field of the schema that can hold a tensor is visited: initializers, sparse
    initializers, node attributes, subgraphs, local functions (their nodes and default
    attributes) and training graphs.
    Raises ``ValueError`` when the bytes are not a well-formed protobuf message.
    """
    found: list[tuple[str, dict[str, str]]] = []
    has_graph = False

    def walk(buf: memoryview, kind: str, depth: int) -> None:
        nonlocal has_graph
        if depth > _MAX_DEPTH:
            raise ValueError(f"messages nested deeper than {_MAX_DEPTH}")
        if kind == "tensor":
            name, entries, location = "", {}, 0
            for field, value in _fields(buf):
                if field == _TENSOR_NAME and isinstance(value, memoryview):
                    name = bytes(value).decode("utf-8", "replace")
                elif field == _TENSOR_EXTERNAL_DATA and isinstance(value, memoryview):
                    entry = {f: bytes(v).decode("utf-8", "replace") for f, v in _fields(value)
                             if isinstance(v, memoryview)}
                    entries[entry.get(1, "")] = entry.get(2, "")
                elif field == _TENSOR_DATA_LOCATION and isinstance(value, int):  # an enum: a varint
                    location = value
            if location == _EXTERNAL:
                found.append((name, entries))
            return
        for field, value in _fields(buf):
            child = _SUBMESSAGES[kind].get(field)
            if child is not None and isinstance(value, memoryview):
                has_graph = has_graph or (kind == "model" and child == "graph")
                walk(value, child, depth + 1)

    walk(memoryview(raw), "model", 0)
    return has_graph, found


def _inside(folder: Path, candidate: Path) -> bool:
    """True when ``candidate``, all symlinks followed, lies in ``folder``."""
    real = Path(os.path.realpath(candidate))
    return real == folder or folder in real.parents


def _data_file(model_path: Path, locations: set[str]) -> Path:
    """Choose the one file external data may be read from, refusing anything outside the folder."""
    folder = Path(os.path.realpath(model_path.parent))
    for location in sorted(locations):
        if "\0" in location or os.path.isabs(location) or not _inside(folder, model_path.parent / location):
            raise LosoInputError(
                model_path,
                f"external data location {location!r} points outside the model's folder; refusing to read it",
                f"re-export the model with its weights in {model_path.name}.data beside it",
            )
    sibling = model_path.with_name(model_path.name + ".data")
    if what_is_at(sibling) is not None:  # say what is there, not "not found"
        _regular_file(sibling, "external data file")
    # The renamed-model defect: when the sibling exists, it is the real weights file.
    chosen = sibling if sibling.is_file() else None
    if chosen is None and len(locations) == 1 and (model_path.parent / next(iter(locations))).is_file():
        chosen = model_path.parent / next(iter(locations))
    if chosen is not None:
        if not _inside(folder, chosen):
            raise LosoInputError(chosen, "is a link that leaves the model's folder; refusing to read it")
        return chosen
    raise LosoInputError(
        model_path,
        f"external data file {', '.join(sorted(locations))} not found, and no sibling {sibling.name}",
        f"put the weights next to the model as {sibling.name}",
    )


def _regular_file(path: Path, what: str) -> int:
    """The size of ``path``, which must be a regular file: a FIFO or a device would hang or never end."""
    there = what_is_at(path)
    if there is not None:
        raise LosoInputError(path, f"the {what} is {there}, not a regular file; refusing to read it")
    try:
        return path.stat().st_size
    except FileNotFoundError:
        raise LosoInputError(path, f"{what} not found") from None
    except OSError as exc:
        raise LosoInputError(path, f"cannot read the {what}: {exc.strerror or exc}") from None


def _external_data(model_path: Path, tensors: list[tuple[str, dict[str, str]]]) -> tuple[Path, bytes]:
    """The one weights file the model's external tensors are read from, checked to hold them all.

    Only the bytes the tensors need are read (from the start of the file to the end of the last
    tensor, so every offset stays valid): a stray multi-GB file costs nothing.
    """
    data_path = _data_file(model_path, {entries.get("location", "") for _, entries in tensors})
    size = _regular_file(data_path, "external data file")
    end = 0
    for name, entries in tensors:
        try:
            offset = int(entries.get("offset", 0))
            length = int(entries.get("length", size - offset))
        except ValueError:
            raise LosoInputError(
                model_path, f"tensor {name!r} has a malformed external-data offset or length: {entries}"
            ) from None
        if offset < 0 or length < 0 or offset + length > size:
            raise LosoInputError(
                data_path,
                f"truncated: tensor {name!r} needs bytes {offset}..{offset + length} but the file has {size}",
                "copy the complete weights file",
            )
        end = max(end, offset + length)
    try:
        with open(data_path, "rb") as handle:
            blob = handle.read(end)
    except OSError as exc:
        raise LosoInputError(data_path, f"cannot read the external data file: {exc.strerror or exc}") from None
    return data_path, blob


MAX_MODEL_BYTES = 2 << 30  # protobuf's limit for one message: a bigger .onnx cannot be a model


def _starts_a_field(head: bytes) -> bool:
    """True when ``head`` can begin a ModelProto: a field number above 0 and a known wire type."""
    return bool(head) and head[0] >> 3 != 0 and head[0] & 7 in (0, 1, 2, 5)


def load_model(path: Path) -> OnnxModel:
    """Load ``path`` into an onnxruntime session (CPU, one thread: the models are tiny)."""
    import onnxruntime as ort

    size = _regular_file(path, "model file")
    if size > MAX_MODEL_BYTES:
        raise LosoInputError(path, f"{size} bytes: larger than the 2 GiB a serialized ONNX model can be; "
                             "refusing to read it", "re-export it with its weights in external data")
    try:
        with open(path, "rb") as handle:
            head = handle.read(1)
            if head and not _starts_a_field(head):  # (an empty file: "no graph", below)  # e.g. a preallocated download never filled: not read further
                raise LosoInputError(path, "not an ONNX model, or truncated (it does not start with a "
                                     f"protobuf field: first byte {head!r})", "re-export or re-copy it")
            raw = head + handle.read()
    except OSError as exc:
        raise LosoInputError(path, f"cannot read the model: {exc.strerror or exc}") from None
    try:
        has_graph, tensors = external_tensors(raw)
    except ValueError as exc:
        raise LosoInputError(path, f"not an ONNX model, or truncated ({exc})", "re-export or re-copy it") from None
    if not has_graph:
        raise LosoInputError(path, "not an ONNX model, or truncated (no graph)", "re-export or re-copy it")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # The folder onnxruntime resolves (and, since 1.24, confines) external paths to, should a
    # tensor ever escape our walk and be looked up on disk.
    # onnxruntime takes UTF-8 only: a folder named with a non-UTF-8 byte is fenced by a folder that does
    # not exist (every initializer is served from memory below; nothing may be looked up on disk).
    folder = str(path.parent) if readable(str(path.parent)) == str(path.parent) else "/nonexistent/pytest-loso"
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", folder)
    data_path, data_sha = None, None
    if tensors:
        data_path, blob = _external_data(path, tensors)
        data_sha = hashlib.sha256(blob).hexdigest()
        # Every location the model names is served from the chosen file's bytes, in memory:
        # onnxruntime opens no file, and a renamed model's stale location still resolves.
        locations = sorted({entries.get("location", "") for _, entries in tensors})
        options.add_external_initializers_from_files_in_memory(
            locations, [blob] * len(locations), [len(blob)] * len(locations)
        )
    try:
        session = ort.InferenceSession(raw, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise LosoInputError(path, f"onnxruntime cannot load the model: {exc}", "re-export it") from None
    inputs = session.get_inputs()
    shapes = ", ".join(f"{i.name}{i.shape}" for i in inputs)
    if any(len(i.shape) != 2 for i in inputs):
        raise LosoInputError(path, f"expected [batch, width] inputs, found {shapes}")
    widths = [(i.name, i.shape[1] if isinstance(i.shape[1], int) else None) for i in inputs]
    sidecar = load_sidecar(path, raw, widths)
    if sidecar is None and len(inputs) != 1:
        raise LosoInputError(path, f"expected one input [batch, features], found {shapes}",
                             f"put the model's sidecar {path.stem}.json (input_names, codec_block_layout...) beside it")
    main_input = sidecar.features_input if sidecar is not None else inputs[0].name
    width = dict(widths)[main_input]
    return OnnxModel(
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        data_path=data_path,
        data_sha256=data_sha,
        input_name=main_input,
        input_width=width,
        session=session,
        sidecar=sidecar,
    )


_SEED_DIR = re.compile(r"^seed_?(\d+)$")


def _seed_runs(run: Path) -> list[tuple[int | None, Path]]:
    """``run`` itself (no seed) and each of its ``seed<N>/`` (or ``seed_<N>/``) folders."""
    seeds = [(int(m[1]), p) for p in sorted(run.iterdir()) if p.is_dir() and (m := _SEED_DIR.match(p.name))]
    return [(None, run), *sorted(seeds, key=lambda item: item[0])]


def find_fold_models(loso_dirs: list[Path] | tuple[Path, ...]) -> dict[tuple[str, int | None, str], list[Path]]:
    """``{(arch, seed, source): [model paths]}`` from ``fold_<Source>/<arch>_final.onnx`` files.

    Each folder may be a single-architecture run or a sweep holding ``loso_<arch>/``
    runs, either with ``seed<N>/`` folders above the folds (a run repeated over seeds;
    ``seed`` is ``None`` without). The architecture is read from the model's file name.
    More than one path for one key means two folders offer the same fold.
    """
    found: dict[tuple[str, int | None, str], list[Path]] = {}
    seen: set[Path] = set()  # the same folder given twice, or a sweep and one of its runs: one fold
    for root in loso_dirs:
        for run in [root, *sorted(p for p in root.glob("loso_*") if p.is_dir())]:
            for seed, seed_run in _seed_runs(run):
                for fold_dir in sorted(p for p in seed_run.glob("fold_*") if p.is_dir()):
                    source = fold_dir.name[len("fold_") :]
                    for model in sorted(fold_dir.glob("*_final.onnx")):
                        if model.resolve() in seen:
                            continue
                        seen.add(model.resolve())
                        arch = model.name[: -len("_final.onnx")]
                        found.setdefault((arch, seed, source), []).append(model)
    return found


def find_empty_seed_runs(loso_dirs: list[Path] | tuple[Path, ...],
                         found: dict[tuple[str, int | None, str], list[Path]]) -> dict[tuple[str, int], Path]:
    """``{(arch, seed): seed folder}`` of each ``seed<N>/`` that has ``fold_*/`` folders but no fold model,
    while another seed of the same run has models of ``arch``: a seed whose training never exported
    (or whose download never came) must fail its folds, not vanish from the promotion."""
    owners = {p.resolve().parent.parent: arch for (arch, _, _), paths in found.items() for p in paths}
    empty: dict[tuple[str, int], Path] = {}
    for root in loso_dirs:
        for run in [root, *sorted(p for p in root.glob("loso_*") if p.is_dir())]:
            seeds = _seed_runs(run)
            archs = {arch for _, seed_run in seeds if (arch := owners.get(seed_run.resolve()))}
            for seed, seed_run in seeds:
                if seed is None or seed_run.resolve() in owners:
                    continue
                if any(p.is_dir() for p in seed_run.glob("fold_*")):
                    for arch in archs:
                        if not any(a == arch and sd == seed for a, sd, _ in found):
                            empty.setdefault((arch, seed), seed_run)
    return empty
