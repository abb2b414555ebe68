"""One feature-cache file: ``<cache>/<Source>/<dis-stem>.json``, read and checked.

A file that is not in this layout, or names its own schema, is another tool's
(:class:`ForeignCacheFile`) and is never replaced; one in this layout that cannot be used
(not JSON, no frames, not numbers) is corrupt, and a configured extractor recomputes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import made_by
from .errors import LosoInputError

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Pair:
    """One (reference, distorted) clip pair of a source."""

    source: str
    ref_path: Path
    dis_path: Path

    def cache_path(self, cache_dir: Path) -> Path:
        return cache_dir / self.source / f"{self.dis_path.stem}.json"


MAX_CACHE_FILE_BYTES = 256 * 1024 * 1024  # a pair's features: ~1 MB per 1,000 frames; far above any real clip


def read_capped(path: Path) -> bytes:
    """A cache file's bytes, refusing one too large to be a pair's features (before reading it)."""
    size = path.stat().st_size
    if size > MAX_CACHE_FILE_BYTES:
        raise LosoInputError(path, f"{size} bytes is too large for a cache file (cap {MAX_CACHE_FILE_BYTES} bytes)",
                             "delete it and recompute this pair's features")
    return path.read_bytes()


class ForeignCacheFile(LosoInputError):
    """A cache file that parses but is another tool's (not the gate's schema): it is never
    replaced, whatever extractor is set; the test that needs it fails naming what it found."""


def _parse(path: Path, raw: bytes) -> object:
    """The JSON of a cache file; anything that cannot be parsed at all is corrupt (recomputable)."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        problem = f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    except RecursionError:
        problem = "JSON nested too deep to read"
    except ValueError as exc:  # e.g. an integer of thousands of digits
        problem = f"unreadable JSON ({exc})"
    raise LosoInputError(path, f"corrupt cache file, {problem}", "delete it and recompute this pair's features")


def _holds_boolean(values: object) -> bool:
    if isinstance(values, list):
        return any(_holds_boolean(value) for value in values)
    return isinstance(values, bool)


def _numeric(path: Path, values: object, what: str, may_hold_booleans: bool) -> np.ndarray:
    """JSON numbers as float32, as the training dataset converts them; anything else (booleans,
    strings, nulls) is refused rather than read as 1.0 / 0.0 or parsed from text."""
    import numpy as np

    try:
        array = np.asarray(values)
    except ValueError as exc:  # ragged rows
        raise LosoInputError(path, f"{what} is not a numeric table ({exc})", "recompute this pair") from None
    if may_hold_booleans and array.dtype.kind != "b" and _holds_boolean(values):  # numpy made them 1.0 / 0.0
        raise LosoInputError(path, f"{what} holds booleans among its numbers", "recompute this pair")
    if array.size and array.dtype.kind not in "fiu":
        kind = {"b": "booleans", "U": "strings", "O": "values that are not numbers"}.get(array.dtype.kind, "values")
        raise LosoInputError(path, f"{what} holds {kind}, not numbers", "recompute this pair")
    return array.astype(np.float32)


CACHE_SCHEMA = '{"features": {"feature_names", "per_frame", "n_frames"}, "scores": {"per_frame", "pooled"}}'
_SCHEMA_KEYS = ("schema", "$schema", "schema_version")  # a tool that names its schema is not the gate's


def _json_type(value: object) -> str:
    """What JSON calls the type of a parsed value."""
    for kind, name in ((bool, "boolean"), (dict, "object"), (list, "array"), (str, "string"), ((int, float), "number")):
        if isinstance(value, kind):
            return name
    return "null"


def _not_this_schema(payload: object) -> str | None:
    """What in a parsed cache file is not the gate's layout (``None``: nothing); without a
    ``made_by`` record (the gate's own, then broken) that makes it another tool's file.

    Only the layout is judged here: values in the right layout that are not usable (NaN,
    no frames, ragged rows) are a corrupt file of this schema, which a recomputation replaces.
    """
    if not isinstance(payload, dict):
        return f"a JSON {_json_type(payload)}"
    found = f"an object with keys {', '.join(map(str, list(payload)[:8])) or 'none'}"
    named = [f"{key} {payload[key]!r}" for key in _SCHEMA_KEYS if key in payload]
    if named:
        return f"{found}, which names its own schema ({', '.join(named)})"
    for block, keys in (("features", ("feature_names", "per_frame")), ("scores", ("per_frame",))):
        value = payload.get(block)
        if not isinstance(value, dict):
            return f"{found}: {block} is " + ("missing" if block not in payload
                                               else f"a JSON {_json_type(value)}, not an object")
        for key in keys:
            if not isinstance(value.get(key), list):
                return f"{found}: {block}.{key} is " + ("missing" if key not in value
                                                          else f"a JSON {_json_type(value[key])}, not an array")
    if not all(isinstance(name, str) for name in payload["features"]["feature_names"]):
        return f"{found}: features.feature_names holds values that are not names"
    return None


def _read_payload(path: Path, raw: bytes) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], object]:
    payload = _parse(path, raw)
    foreign = _not_this_schema(payload)
    if foreign is not None and isinstance(payload, dict) and made_by.KEY in payload:  # the gate's own, broken
        raise LosoInputError(path, f"corrupt cache file: it holds {foreign}, not {CACHE_SCHEMA}",
                             "delete it and recompute this pair's features")
    if foreign is not None:
        raise ForeignCacheFile(
            path,
            f"not a feature-cache file of this schema: it holds {foreign}, not {CACHE_SCHEMA}; left as it is",
            "point --loso-cache (or $VMAF_TINY_AI_CACHE) at the gate's own cache, not another tool's; "
            "or delete the file, if it is a broken one of this cache, to recompute it",
        )
    assert isinstance(payload, dict)
    names = tuple(payload["features"]["feature_names"])
    features = payload["features"]["per_frame"]
    scores = payload["scores"]["per_frame"]
    booleans = b"true" in raw or b"false" in raw  # a bytes scan keeps the exact check off the common path
    feature_array = _numeric(path, features, "features.per_frame", booleans)
    score_array = _numeric(path, scores, "scores.per_frame", booleans)
    if feature_array.size == 0 or score_array.size == 0:
        raise LosoInputError(path, "holds no frames (features.per_frame or scores.per_frame is empty)",
                             "recompute this pair")
    if feature_array.shape[1:] != (len(names),) or score_array.ndim != 1:
        raise LosoInputError(
            path,
            f"features have shape {feature_array.shape} for {len(names)} feature names, scores {score_array.shape}",
            "recompute this pair",
        )
    return feature_array, score_array, names, payload.get(made_by.KEY)


@dataclass(frozen=True)
class PairFrames:
    """One cache file's aligned frames, and how the file was made (``None``: not by the gate)."""

    features: np.ndarray
    scores: np.ndarray
    feature_names: tuple[str, ...]
    dropped: dict[str, int] | None  # frame counts when features and scores differed in length
    made_by: object = None


def read_pair(path: Path, raw: bytes) -> PairFrames:
    """One cache file's aligned frames.

    The first min(n) frames are kept when features and scores differ in length
    (``dropped`` then says by how much). Any refusal here (bad JSON, bad schema, values
    that are not finite numbers, no frames) marks the file corrupt: a configured extractor
    recomputes it.
    """
    import numpy as np

    features, scores, names, record = _read_payload(path, raw)
    n = min(len(features), len(scores))
    dropped = None
    if len(features) != len(scores):
        dropped = {"feature_frames": len(features), "score_frames": len(scores),
                   "dropped": abs(len(features) - len(scores))}
    features, scores = features[:n], scores[:n]
    bad = int(np.count_nonzero(~np.isfinite(features).all(axis=1) | ~np.isfinite(scores)))
    if bad:
        raise LosoInputError(path, f"{bad} of {n} frames have NaN or infinite features or scores",
                             "recompute this pair")
    return PairFrames(features, scores, names, dropped, record)
