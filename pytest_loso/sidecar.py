"""Model sidecars: ``X.json`` beside ``X.onnx`` says how the team's code feeds the model.

The team's shipped models (``model/tiny/fr_regressor_*.json`` in lusoris/vmaf) carry
``feature_order``, ``feature_mean`` / ``feature_std`` (standardisation), ``input_names`` and,
for codec-aware models, ``encoder_vocab`` / ``codec_block_layout``. This module reads and
checks a sidecar against its model, and builds every input from a source's data exactly as
the fork's code does. A model without a sidecar is fed as before (the first generation's six
features, picked by name).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import LosoInputError
from .features import FEATURE_NAMES, select

if TYPE_CHECKING:
    import numpy as np

    from .corpus import SourceData

# The codec block's fixed tail after the encoder one-hot (fork: codec_block_layout).
_CODEC_TAIL = ("preset_norm", "crf_norm")
# The fork's loaders materialise preset_norm as this constant: the per-frame corpora do not
# record a usable preset (train_fr_regressor_v2_ensemble_loso.py:_load_corpus, ADR-0319;
# train_fr_regressor_v3.py:_load_corpus does the same).
PRESET_NORM = 0.5
ENCODER_COLUMNS = ("encoder", "codec")
CQ_COLUMNS = ("crf", "cq")  # train_fr_regressor_v3.py:_load_corpus: crf when present, else cq


@dataclass(frozen=True)
class Sidecar:
    """What a sidecar says about feeding its model, checked against the model."""

    path: Path
    feature_order: tuple[str, ...]
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    features_input: str
    codec_input: str | None = None
    encoder_vocab: tuple[str, ...] = ()
    cq_range: tuple[float, float] | None = None


def sidecar_path(model_path: Path) -> Path:
    """``X.onnx`` -> ``X.json``."""
    return model_path.with_suffix(".json")


def _numbers(path: Path, payload: dict, key: str, n: int) -> tuple[float, ...]:
    values = payload[key]
    if (not isinstance(values, list) or len(values) != n
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)):
        raise LosoInputError(path, f"{key} must be {n} finite numbers (one per feature_order entry), got {values!r}",
                             "fix the sidecar, or re-export it with the model")
    return tuple(float(v) for v in values)


def load_sidecar(model_path: Path, raw: bytes, inputs: Sequence[tuple[str, int | None]]) -> Sidecar | None:
    """The model's sidecar, checked against the model's bytes and ``(name, width)`` inputs; None without one."""
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    fix = "use the sidecar exported with this model (ai/scripts/export_*.py), or fix it"
    try:
        payload = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        raise LosoInputError(path, f"model sidecar is not readable JSON ({exc})", fix) from None
    if not isinstance(payload, dict):
        raise LosoInputError(path, "model sidecar is not a JSON object", fix)
    want_sha = payload.get("sha256")
    if want_sha is not None and want_sha != hashlib.sha256(raw).hexdigest():
        raise LosoInputError(path, f"sha256 {want_sha} does not match {model_path.name} "
                             f"({hashlib.sha256(raw).hexdigest()}): the sidecar belongs to another model", fix)
    names = [name for name, _ in inputs]
    widths = dict(inputs)
    input_names = payload.get("input_names", names if len(names) == 1 else None)
    if input_names is None:
        raise LosoInputError(path, f"lacks input_names, which a model with inputs {', '.join(names)} needs", fix)
    if sorted(map(str, input_names)) != sorted(names) or len(input_names) > 2:
        raise LosoInputError(path, f"input_names {input_names} disagree with the model's inputs {names}", fix)
    order = tuple(payload.get("feature_order", FEATURE_NAMES))
    features_input = input_names[0]  # the fork binds [features, codec block] in this order
    _width(path, features_input, widths[features_input], len(order), "feature_order")
    mean = std = None
    if "feature_mean" in payload or "feature_std" in payload:
        try:
            mean = _numbers(path, payload, "feature_mean", len(order))
            std = _numbers(path, payload, "feature_std", len(order))
        except KeyError as exc:
            raise LosoInputError(path, f"has feature_mean or feature_std but lacks {exc}", fix) from None
        if any(s == 0 for s in std):
            raise LosoInputError(path, "feature_std has a zero: standardisation would divide by it", fix)
    if len(input_names) == 1:
        return Sidecar(path, order, mean, std, features_input)
    codec_input = input_names[1]
    try:
        vocab = tuple(str(e) for e in payload["encoder_vocab"])
        layout = tuple(payload["codec_block_layout"])
        corpus = payload["corpus"]
        cq_range = (float(corpus["cq_min"]), float(corpus["cq_max"]))
    except (KeyError, TypeError, ValueError) as exc:
        what = exc if isinstance(exc, KeyError) else "corpus.cq_min / corpus.cq_max as numbers"
        raise LosoInputError(
            path, f"codec-aware model ({codec_input} input) but the sidecar lacks {what} "
            "(encoder_vocab, codec_block_layout and corpus.cq_min / corpus.cq_max: the training corpus's cq range)",
            "export the sidecar with export_ensemble_v2_seeds.py, which records them") from None
    expected = tuple(f"encoder_onehot[{e}]" for e in vocab) + _CODEC_TAIL
    if layout != expected:
        raise LosoInputError(path, f"codec_block_layout {list(layout)} is not the one-hot of encoder_vocab "
                             "followed by preset_norm, crf_norm", fix)
    _width(path, codec_input, widths[codec_input], len(layout), "codec_block_layout")
    return Sidecar(path, order, mean, std, features_input, codec_input, vocab, cq_range)


def _width(path: Path, name: str, width: int | None, expected: int, key: str) -> None:
    if width is not None and width != expected:
        raise LosoInputError(path, f"{key} has {expected} entries but the model's input {name} is [batch, {width}]",
                             "use the sidecar exported with this model")


def _column(sidecar: Sidecar, data: SourceData, names: tuple[str, ...], what: str) -> Any:
    for name in names:
        if name in data.columns:
            return data.columns[name]
    raise LosoInputError(
        sidecar.path,
        f"codec-aware model needs each frame's {what}, but source {data.source} has no "
        f"{' or '.join(names)} column",
        "score it on a per-frame table with encoder and cq columns (a YUV + cache corpus has none)",
    )


def build_inputs(sidecar: Sidecar, data: SourceData) -> dict[str, np.ndarray]:
    """Every model input for ``data``'s frames, as the fork's code builds them."""
    import numpy as np

    where = data.cache_files[0].parent if data.cache_files else Path(data.source)
    x = select(data.features, data.feature_names, sidecar.feature_order, path=where,
               fix=f"score {sidecar.path.stem} on data with the features of its sidecar's feature_order")
    if sidecar.mean is not None and sidecar.std is not None:
        # (x - mean) / std in float64, then float32: ai/scripts/train_fr_regressor_v2_ensemble_loso.py
        # (_load_corpus fits the scaler, the training loop applies it) and the sidecar stores it.
        x = ((x.astype(np.float64) - np.asarray(sidecar.mean)) / np.asarray(sidecar.std))
    inputs = {sidecar.features_input: np.asarray(x, dtype=np.float32)}
    if sidecar.codec_input is not None:
        inputs[sidecar.codec_input] = codec_block(sidecar, data)
    return inputs


def codec_block(sidecar: Sidecar, data: SourceData) -> np.ndarray:
    """``[one-hot(encoder over encoder_vocab), preset_norm, crf_norm]`` per frame.

    As ai/scripts/train_fr_regressor_v2_ensemble_loso.py:_load_corpus builds it: an encoder
    outside the vocab goes to the ``unknown`` slot (slot 0 when the vocab has none, as
    train_fr_regressor_v3.py:_enc_idx_v3); preset_norm is 0.5; crf_norm is
    ``(cq - cq_min) / (cq_max - cq_min)`` over the training corpus's cq range (the sidecar's
    ``corpus.cq_min`` / ``cq_max``, written by export_ensemble_v2_seeds.py), 0.5 when that
    range is a single value.
    """
    import numpy as np

    encoders = _column(sidecar, data, ENCODER_COLUMNS, "encoder")
    cqs = _column(sidecar, data, CQ_COLUMNS, "cq")
    vocab = sidecar.encoder_vocab
    fallback = vocab.index("unknown") if "unknown" in vocab else 0
    slots = {name: i for i, name in enumerate(vocab)}
    index = np.array([slots.get(str(e), fallback) for e in encoders], dtype=np.int64)
    onehot = np.eye(len(vocab), dtype=np.float32)[index]
    try:
        cq = np.asarray(cqs, dtype=np.float32)
    except (TypeError, ValueError):
        raise LosoInputError(sidecar.path, f"source {data.source}: cq values are not numbers",
                             "fix the table's cq column") from None
    assert sidecar.cq_range is not None
    cq_min, cq_max = sidecar.cq_range
    crf_norm = np.full_like(cq, 0.5) if cq_max - cq_min < 1e-6 else (cq - cq_min) / (cq_max - cq_min)
    preset = np.full((len(cq),), PRESET_NORM, dtype=np.float32)
    return np.concatenate([onehot, preset[:, None], crf_norm[:, None]], axis=1).astype(np.float32)
