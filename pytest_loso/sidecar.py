"""Model sidecars: ``X.json`` beside ``X.onnx`` says how the team's code feeds the model.

The team's shipped models (``model/tiny/fr_regressor_*.json`` in lusoris/vmaf) carry
``feature_order``, ``feature_mean`` / ``feature_std`` (standardisation), ``input_names`` and,
for codec-aware models, ``encoder_vocab`` / ``codec_block_layout``. This module reads and
checks a sidecar against its model, and builds every input from a source's data exactly as
the fork's code does. A model without a sidecar is fed as before (the first generation's six
features, picked by name).

A codec block is built by the recipe of the trainer that wrote the sidecar (see
:func:`codec_recipe`): the three trainers of the shipped models build it differently. The
fork's inference seam, tools/vmaf-tune/src/vmaftune/proxy.py:encode_codec_block, is not the
reference: its vocab order differs from the shipped sidecars' and it feeds one concatenated
input where the shipped models have two, so it cannot run them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import LosoInputError, what_is_at
from .features import FEATURE_NAMES, canonical, select

if TYPE_CHECKING:
    import numpy as np

    from .frames import SourceData

# The codec block's fixed tail after the encoder one-hot (fork: codec_block_layout).
_CODEC_TAIL = ("preset_norm", "crf_norm")
ENCODER_COLUMNS = ("encoder", "codec")
PRESET_COLUMN = "preset"

# --- The recipe of ai/scripts/train_fr_regressor_v2.py (the shipped fr_regressor_v2) -------------
# _encoder_index: stripped, lower-cased, these aliases, else the "unknown" slot.
V2_ENCODER_ALIASES = {"h264": "libx264", "x264": "libx264", "hevc": "libx265", "x265": "libx265",
                      "av1": "libsvtav1", "vvc": "libvvenc", "vp9": "libvpx-vp9"}
_X26X = {p: i for i, p in enumerate(("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                                      "slower", "veryslow", "placebo"))}
_NVENC = {"p1": 0, "p2": 2, "p3": 3, "p4": 5, "p5": 6, "p6": 7, "p7": 9}
_QSV = {"veryfast": 2, "faster": 3, "fast": 4, "medium": 5, "slow": 6, "slower": 7, "veryslow": 8}
# PRESET_ORDINAL: per encoder, preset name (or number, looked up as str(preset)) -> 0..9.
V2_PRESET_ORDINAL: dict[str, dict[str, int]] = {
    "libx264": _X26X, "libx265": _X26X,
    "libsvtav1": {str(i): min(i, 9) for i in range(14)},
    "libvvenc": {"faster": 1, "fast": 3, "medium": 5, "slow": 7, "slower": 8},
    "libvpx-vp9": {"realtime": 0, "good": 5, "best": 9},
    "h264_nvenc": _NVENC, "hevc_nvenc": _NVENC, "av1_nvenc": _NVENC,
    "h264_qsv": _QSV, "hevc_qsv": _QSV, "av1_qsv": _QSV,
}
V2_PRESET_DEFAULT = "medium"  # _row_to_features: row.get("preset", "medium")
V2_PRESET_UNLISTED = 5  # _preset_ordinal: table.get(str(preset), 5)
V2_PRESET_MAX_ORDINAL = 9.0
V2_CRF_MAX = 63.0  # crf_norm = crf / CRF_MAX

# --- The min-max recipe of the LOSO loaders (ensemble seeds and fr_regressor_v3) -------------------
# preset_norm is this constant whatever the corpus says: hw_encoder_corpus.py rows record no preset
# (train_fr_regressor_v2_ensemble_loso.py:_load_corpus, ADR-0319), and train_fr_regressor_v3.py:
# _load_corpus keeps 0.5 even for rows that carry one.
PRESET_NORM = 0.5
# The cq range of training corpora whose sidecar names the corpus but not its range, by the sha256
# the sidecar records. runs/phase_a/full_grid/per_frame_canonical6.jsonl: cq 19..37, as
# export_ensemble_v2_seeds.py:_build_sidecar recorded for this very file (same sha256) in the
# shipped fr_regressor_v2_ensemble_v1_seed{0..4}.json; fr_regressor_v3.json names it as its corpus,
# and train_fr_regressor_v3.py:_load_corpus normalises over that file's min..max of crf, else cq
# (the file has only cq: scripts/dev/hw_encoder_corpus.py writes cq).
KNOWN_CORPUS_CQ_RANGES: dict[str, tuple[float, float]] = {
    "58512e6c2400a8c7962d29f6a16fa090e6742f5746f2897128c381fb00808e3f": (19.0, 37.0),
}


@dataclass(frozen=True)
class CodecRecipe:
    """How the fork script that produced a codec-aware model builds its codec block."""

    script: str  # the fork's file:function that builds it, for the report and error messages
    cq_columns: tuple[str, ...]  # the quality knob's column, first present wins
    fallback_slot: int  # the one-hot slot of an encoder outside encoder_vocab
    aliases: bool = False  # encoder names stripped, lower-cased and aliased (train_fr_regressor_v2.py)
    cq_range: tuple[float, float] | None = None  # min-max normalisation; None: crf / V2_CRF_MAX
    cq_range_from: str = ""  # where cq_range came from
    preset_ordinal: bool = False  # preset_norm from the preset column (v2), else PRESET_NORM


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
    recipe: CodecRecipe | None = None


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


MAX_SIDECAR_BYTES = 16 << 20  # a sidecar is a few KB; a bigger file is not one


def _read_sidecar(model_path: Path, path: Path, fix: str) -> bytes:
    """The sidecar's bytes: only a regular file inside the model's own folder, read with a cap.

    A sidecar that is there but cannot be read (a broken link, a FIFO, a folder) fails the
    model: feeding it raw instead would score the wrong inputs and could still pass loose bounds.
    A link that leaves the folder is refused as external data is, before anything is read.
    """
    there = what_is_at(path)
    if there is not None:
        raise LosoInputError(path, f"the model's sidecar is {there}, not a regular file; refusing to read it",
                             f"put {model_path.stem}.json beside the model as a file, or remove it")
    folder, real = Path(os.path.realpath(model_path.parent)), Path(os.path.realpath(path))
    if folder not in real.parents:
        raise LosoInputError(path, "the model's sidecar is a link that leaves the model's folder; refusing to read it",
                             f"copy the sidecar into {model_path.parent} as {path.name}")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_SIDECAR_BYTES + 1)
    except OSError as exc:
        raise LosoInputError(path, f"cannot read the model's sidecar: {exc.strerror or exc}", fix) from None
    if len(raw) > MAX_SIDECAR_BYTES:
        raise LosoInputError(path, f"the model's sidecar is larger than {MAX_SIDECAR_BYTES >> 20} MiB; "
                             "refusing to read it", fix)
    return raw


def load_sidecar(model_path: Path, raw: bytes, inputs: Sequence[tuple[str, int | None]]) -> Sidecar | None:
    """The model's sidecar, checked against the model's bytes and ``(name, width)`` inputs; None without one."""
    path = sidecar_path(model_path)
    if not os.path.lexists(path):
        return None
    fix = "use the sidecar exported with this model (ai/scripts/export_*.py), or fix it"
    raw_sidecar = _read_sidecar(model_path, path, fix)
    try:
        payload = json.loads(raw_sidecar)
    except (ValueError, RecursionError) as exc:
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
    if not isinstance(input_names, list) or not all(isinstance(name, str) for name in input_names):
        raise LosoInputError(path, f"input_names must be a list of the model's input names, got {input_names!r}", fix)
    if sorted(map(str, input_names)) != sorted(names) or len(input_names) > 2:
        raise LosoInputError(path, f"input_names {input_names} disagree with the model's inputs {names}", fix)
    order = payload.get("feature_order", FEATURE_NAMES)
    if not isinstance(order, (list, tuple)):
        raise LosoInputError(path, f"feature_order must be a list of feature names, got {order!r}", fix)
    order = tuple(order)
    if not all(isinstance(name, str) for name in order):
        raise LosoInputError(path, f"feature_order {list(order)} holds values that are not feature names", fix)
    canonical_order = [canonical(name) for name in order]
    twice = sorted({name for name in canonical_order if canonical_order.count(name) > 1})
    if twice:  # one column fed to two inputs: the model was not trained on that
        raise LosoInputError(path, f"feature_order {list(order)} names {', '.join(twice)} twice (adm2 and "
                             "integer_adm2 are one feature)", fix)
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
    except (KeyError, TypeError) as exc:
        raise LosoInputError(
            path, f"codec-aware model ({codec_input} input) but the sidecar lacks {exc} "
            "(encoder_vocab and codec_block_layout say how to build the codec block)",
            "use the sidecar the fork's trainer exported with this model") from None
    expected = tuple(f"encoder_onehot[{e}]" for e in vocab) + _CODEC_TAIL
    if layout != expected:
        raise LosoInputError(path, f"codec_block_layout {list(layout)} is not the one-hot of encoder_vocab "
                             "followed by preset_norm, crf_norm", fix)
    _width(path, codec_input, widths[codec_input], len(layout), "codec_block_layout")
    return Sidecar(path, order, mean, std, features_input, codec_input, vocab, codec_recipe(path, payload, vocab))


def codec_recipe(path: Path, payload: dict, vocab: tuple[str, ...]) -> CodecRecipe:
    """The recipe of the fork script that wrote this sidecar, recognised by the keys it writes.

    - ``corpus`` an object with ``cq_min`` / ``cq_max``: export_ensemble_v2_seeds.py:_build_sidecar
      (the ensemble seeds), whose codec block is train_fr_regressor_v2_ensemble_loso.py:_load_corpus's:
      exact vocab match else the ``unknown`` slot (slot 0 without one, as train_fr_regressor_v3.py:
      _enc_idx_v3), preset_norm 0.5, crf_norm = (cq - cq_min) / (cq_max - cq_min).
    - ``encoder_vocab_version`` 3 with ``corpus`` a path: train_fr_regressor_v3.py:
      write_sidecar_and_registry; _load_corpus builds the same min-max block over the training
      corpus's crf (else cq) range, which this sidecar does not record: it is taken from
      KNOWN_CORPUS_CQ_RANGES by the sidecar's ``corpus_sha256``.
    - ``encoder_vocab_version`` 2 and no ``corpus``: train_fr_regressor_v2.py:
      _write_sidecar_and_registry; _row_to_features builds crf_norm = crf / 63 and preset_norm from
      its per-encoder preset ordinal.
    """
    version = payload.get("encoder_vocab_version")
    corpus = payload.get("corpus")
    fallback = vocab.index("unknown") if "unknown" in vocab else 0
    fix = ("give the sidecar the training corpus's cq range as \"corpus\": {\"cq_min\": ..., \"cq_max\": ...} "
           "(the min and max cq / crf of the corpus the model was trained on)")
    if isinstance(corpus, dict) and ("cq_min" in corpus or "cq_max" in corpus):
        try:
            cq_range = (float(corpus["cq_min"]), float(corpus["cq_max"]))
        except (KeyError, TypeError, ValueError):
            raise LosoInputError(path, f"corpus.cq_min / corpus.cq_max must both be numbers, got {corpus!r}",
                                 fix) from None
        script = ("train_fr_regressor_v3.py:_load_corpus" if version == 3
                  else "train_fr_regressor_v2_ensemble_loso.py:_load_corpus")
        return CodecRecipe(script, ("cq", "crf") if version != 3 else ("crf", "cq"), fallback,
                           cq_range=cq_range, cq_range_from=f"{path.name} corpus.cq_min / cq_max")
    if version == 3 and (corpus is None or isinstance(corpus, str)):
        known = KNOWN_CORPUS_CQ_RANGES.get(str(payload.get("corpus_sha256")))
        if known is None:
            raise LosoInputError(
                path, f"fr_regressor_v3-style sidecar (encoder_vocab_version 3) does not record its training "
                f"corpus's cq range, and its corpus_sha256 {payload.get('corpus_sha256')} is not a corpus "
                "whose range the gate knows (train_fr_regressor_v3.py:_load_corpus normalises crf over it)", fix)
        return CodecRecipe("train_fr_regressor_v3.py:_load_corpus", ("crf", "cq"), fallback, cq_range=known,
                           cq_range_from=f"KNOWN_CORPUS_CQ_RANGES by corpus_sha256 {payload['corpus_sha256']}")
    if version == 2 and "corpus" not in payload:
        if "unknown" not in vocab:
            raise LosoInputError(path, "train_fr_regressor_v2.py-style sidecar whose encoder_vocab has no "
                                 "\"unknown\" slot, which its encoder mapping needs", fix)
        return CodecRecipe("train_fr_regressor_v2.py:_row_to_features", ("crf", "cq"), fallback, aliases=True,
                           preset_ordinal=True)
    raise LosoInputError(
        path, f"codec-aware sidecar matches no known fork recipe (encoder_vocab_version {version!r}, corpus "
        f"{type(corpus).__name__ if corpus is not None else 'absent'}): the gate knows "
        "train_fr_regressor_v2.py (version 2, no corpus), export_ensemble_v2_seeds.py (corpus.cq_min / cq_max) "
        "and train_fr_regressor_v3.py (version 3, corpus_sha256)",
        fix)


def _width(path: Path, name: str, width: int | None, expected: int, key: str) -> None:
    if width is not None and width != expected:
        raise LosoInputError(path, f"{key} has {expected} entries but the model's input {name} is [batch, {width}]",
                             "use the sidecar exported with this model")


def _column(sidecar: Sidecar, data: SourceData, names: tuple[str, ...], what: str) -> tuple[str, Any]:
    """The first of ``names`` the source's frames have, or an error saying which columns the model needs."""
    assert sidecar.recipe is not None
    for name in names:
        if name in data.columns:
            return name, data.columns[name]
    raise LosoInputError(
        sidecar.path,
        f"codec-aware model needs each frame's {what}, but source {data.source} has no "
        f"{' or '.join(names)} column",
        f"score it on a per-frame table with {ENCODER_COLUMNS[0]} and {sidecar.recipe.cq_columns[0]} columns "
        "(a YUV + cache corpus has none)",
    )


def build_inputs(sidecar: Sidecar, data: SourceData) -> dict[str, np.ndarray]:
    """Every model input for ``data``'s frames, as the fork's code builds them."""
    import numpy as np

    x = select(data.features, data.feature_names, sidecar.feature_order, path=data.names_file,
               fix=f"score {sidecar.path.stem} on data with the features of its sidecar's feature_order")
    if sidecar.mean is not None and sidecar.std is not None:
        # (x - mean) / std in float64, then float32: ai/scripts/train_fr_regressor_v2_ensemble_loso.py
        # (_load_corpus fits the scaler, the training loop applies it) and the sidecar stores it.
        raw = x
        with np.errstate(all="ignore"):
            x = ((x.astype(np.float64) - np.asarray(sidecar.mean)) / np.asarray(sidecar.std)).astype(np.float32)
        overflow = ~np.isfinite(x) & np.isfinite(raw)
        if overflow.any():  # the sidecar's scale, not the model's weights, made these values
            column = int(np.flatnonzero(overflow.any(axis=0))[0])
            raise LosoInputError(
                sidecar.path, f"standardising {sidecar.feature_order[column]} of source {data.source} by "
                f"feature_std {sidecar.std[column]!r} overflows float32: the sidecar's feature_std is not "
                "the scale the model was trained with", "use the sidecar exported with this model, or fix "
                "its feature_mean / feature_std")
    inputs = {sidecar.features_input: np.asarray(x, dtype=np.float32)}
    if sidecar.codec_input is not None:
        inputs[sidecar.codec_input] = codec_block(sidecar, data)
    return inputs


def _encoder_slot(recipe: CodecRecipe, slots: dict[str, int], encoder: object) -> int:
    name = str(encoder)
    if recipe.aliases:  # train_fr_regressor_v2.py:_encoder_index
        if encoder is None:
            return recipe.fallback_slot
        name = name.strip().lower()
        name = V2_ENCODER_ALIASES.get(name, name)
    return slots.get(name, recipe.fallback_slot)


def v2_preset_ordinal(encoder: object, preset: object) -> float:
    """train_fr_regressor_v2.py:_preset_ordinal: the encoder's (not aliased) table, str(preset), 5 if unlisted."""
    enc = str(encoder).strip().lower() if encoder else "unknown"
    return V2_PRESET_ORDINAL.get(enc, {}).get(str(preset), V2_PRESET_UNLISTED) / V2_PRESET_MAX_ORDINAL


def _finite_number(value: object) -> bool:
    """A finite int or float (not a bool), and one a float can hold: a 400-digit int is none."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def codec_block(sidecar: Sidecar, data: SourceData) -> np.ndarray:
    """``[one-hot(encoder over encoder_vocab), preset_norm, crf_norm]`` per frame, by the model's recipe."""
    import numpy as np

    recipe = sidecar.recipe
    assert recipe is not None
    _, encoders = _column(sidecar, data, ENCODER_COLUMNS, "encoder")
    cq_name, cqs = _column(sidecar, data, recipe.cq_columns, recipe.cq_columns[0])
    slots = {name: i for i, name in enumerate(sidecar.encoder_vocab)}
    encoder_list = encoders.tolist()
    odd = next((k for k, e in enumerate(encoder_list) if isinstance(e, (list, dict))), None)
    if odd is not None:  # str() of it would pick a one-hot slot for a value that names no encoder
        raise LosoInputError(data.names_file, f"source {data.source}: encoder value {encoder_list[odd]!r} (frame "
                             f"{odd} of the source) is not an encoder name, and {sidecar.path.stem} needs each "
                             "frame's encoder", "fix or drop that source's bad rows in the encoder column")
    index = np.array([_encoder_slot(recipe, slots, e) for e in encoder_list], dtype=np.int64)
    onehot = np.eye(len(sidecar.encoder_vocab), dtype=np.float32)[index]
    if cqs.dtype.kind in "iuf":  # numbers: checked at once (this runs for every model on every source)
        nonfinite = np.flatnonzero(~np.isfinite(cqs))
        bad = int(nonfinite[0]) if nonfinite.size else None
    else:  # texts, nulls or booleans among them: the first that is not a finite number
        bad = next((k for k, v in enumerate(cqs.tolist()) if not _finite_number(v)), None)
    if bad is not None:  # the table's file, and the value, as for a bad feature value
        value = cqs.tolist()[bad]
        shown = f"a {len(str(abs(value)))}-digit number" if isinstance(value, int) and not isinstance(value, bool) \
            else repr(value)
        raise LosoInputError(data.names_file, f"source {data.source}: {cq_name} value {shown} (frame "
                             f"{bad} of the source) is not a finite number, and {sidecar.path.stem} needs each "
                             f"frame's {cq_name}", f"fix or drop that source's bad rows in the {cq_name} column")
    cq = np.asarray(cqs, dtype=np.float32)
    if recipe.cq_range is None:
        crf_norm = cq / np.float32(V2_CRF_MAX)
    else:
        cq_min, cq_max = recipe.cq_range
        crf_norm = np.full_like(cq, 0.5) if cq_max - cq_min < 1e-6 else (cq - cq_min) / (cq_max - cq_min)
    if recipe.preset_ordinal:
        column = data.columns.get(PRESET_COLUMN)
        presets = column.tolist() if column is not None else [None] * len(cq)
        preset = np.array([v2_preset_ordinal(e, V2_PRESET_DEFAULT if p is None else p)
                           for e, p in zip(encoders.tolist(), presets)], dtype=np.float32)
    else:
        preset = np.full((len(cq),), PRESET_NORM, dtype=np.float32)
    return np.concatenate([onehot, preset[:, None], crf_norm[:, None]], axis=1).astype(np.float32)


def describe_feed(sidecar: Sidecar, columns: Collection[str]) -> dict:
    """How the model is fed, for the report: the recipe, and where preset_norm / crf_norm come from.

    ``columns`` are the corpus's per-frame columns (none for a YUV + cache corpus).
    """
    feed: dict[str, Any] = {"sidecar": str(sidecar.path), "feature_order": list(sidecar.feature_order),
                            "standardised": sidecar.mean is not None}
    recipe = sidecar.recipe
    if recipe is None:
        return feed
    cq = next((c for c in recipe.cq_columns if c in columns), None)
    encoder = next((c for c in ENCODER_COLUMNS if c in columns), None)
    feed.update(recipe=f"ai/scripts/{recipe.script}", encoder_column=encoder, cq_column=cq)
    if recipe.cq_range is None:
        feed["crf_norm"] = f"{cq or 'crf'} / {V2_CRF_MAX:g}" + (
            # the trainer reads row.get("crf", 23): a cq-only table would feed it 23 for every frame
            " (cq read as the crf: without a crf column the trainer's own default is 23 for every frame)"
            if cq == "cq" else "")
    else:
        lo, hi = recipe.cq_range
        feed["crf_norm"] = f"({cq or 'cq'} - {lo:g}) / ({hi:g} - {lo:g}), the training corpus's range from " \
                           f"{recipe.cq_range_from}"
    if not recipe.preset_ordinal:
        feed["preset_norm"] = f"{PRESET_NORM:g}, the recipe's constant" + (
            f" (the table's {PRESET_COLUMN} column is not used by this recipe)" if PRESET_COLUMN in columns else "")
    elif PRESET_COLUMN in columns:
        feed["preset_norm"] = f"the table's {PRESET_COLUMN} column through the per-encoder preset ordinal / 9"
    else:
        feed["preset_norm"] = (f"no {PRESET_COLUMN} column: the fork's default {V2_PRESET_DEFAULT!r} "
                               "(ordinal 5 / 9 for every encoder)")
    return feed
