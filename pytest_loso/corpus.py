"""Reading the corpus: which sources and pairs exist, and their cached features and scores.

Layout (the team's existing data contract)::

    <data-root>/ref/<Source>_<fps>fps.yuv
    <data-root>/dis/<Source>_<quality>_<height>_<kbps>.yuv
    <cache>/<Source>/<dis-stem>.json    # {"features": {...}, "scores": {...}}

Pairs are taken in sorted distorted-file-name order and their frames concatenated in
that order, exactly as the hand-run evaluation script did, so the numbers match.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import made_by
from .errors import LosoInputError, data_warning, what_is_at
from .features import canonical, select

if TYPE_CHECKING:
    import numpy as np

    from .extract import CacheFiller

_DIS_RE = re.compile(r"^(?P<source>[A-Za-z0-9]+)_(?P<quality>\d+)_(?P<height>\d+)_(?P<kbps>\d+)\.yuv$")
_REF_RE = re.compile(r"^(?P<source>[A-Za-z0-9]+)_(?P<fps>\d+)fps\.yuv$")

CACHE_ENV = "VMAF_TINY_AI_CACHE"


def default_cache_dir() -> Path:
    """``$VMAF_TINY_AI_CACHE``, else ``~/.cache/vmaf-tiny-ai`` (shared with the training scripts)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "vmaf-tiny-ai"


@dataclass(frozen=True)
class Pair:
    """One (reference, distorted) clip pair of a source."""

    source: str
    ref_path: Path
    dis_path: Path

    def cache_path(self, cache_dir: Path) -> Path:
        return cache_dir / self.source / f"{self.dis_path.stem}.json"


@dataclass(frozen=True)
class Corpus:
    """What ``<data-root>`` holds: sources (by reference file) and their pairs."""

    data_root: Path
    refs: dict[str, Path]
    pairs: dict[str, tuple[Pair, ...]]
    orphans: tuple[Path, ...] = ()  # distorted clips whose source has no reference
    unnamed: tuple[Path, ...] = ()  # files in ref/ or dis/ outside the naming contract: not read

    @property
    def sources(self) -> list[str]:
        return sorted(self.refs)

    def describe(self) -> str:
        return "data root"

    def warnings(self) -> list[str]:
        """Files the naming contract leaves out: distorted clips without a reference, other names."""
        found = []
        orphans = sorted({p.name.split("_")[0] for p in self.orphans})
        if orphans:
            found.append(
                f"{self.data_root / 'dis'}: distorted clips of {', '.join(orphans)} have no reference in "
                f"ref/, so these sources are not scored ({len(self.orphans)} clips left out)"
            )
        if self.unnamed:
            found.append(
                f"{len(self.unnamed)} files in ref/ or dis/ are outside the naming contract "
                "(<Source>_<fps>fps.yuv, <Source>_<quality>_<height>_<kbps>.yuv; ASCII letters and digits, "
                f"lower-case .yuv) and were not read: {', '.join(repr(p.name) for p in self.unnamed)}"
            )
        return found


def discover_corpus(data_root: Path) -> Corpus:
    """List sources and pairs from file names alone (no file is opened)."""
    ref_dir, dis_dir = data_root / "ref", data_root / "dis"
    for folder in (ref_dir, dis_dir):
        if not folder.is_dir():
            raise LosoInputError(
                folder,
                "folder not found",
                "--data-root must hold ref/<Source>_<fps>fps.yuv and dis/<Source>_<q>_<h>_<kbps>.yuv",
            )
    refs: dict[str, Path] = {}
    unnamed = []
    for entry in sorted(ref_dir.iterdir()):
        match = _REF_RE.match(entry.name)
        if not match:
            unnamed.append(entry)
        # First in sorted order wins when a source has two references, as in the script.
        elif entry.is_file() and match["source"] not in refs:
            refs[match["source"]] = entry
    pairs: dict[str, list[Pair]] = {source: [] for source in refs}
    orphans = []
    for entry in sorted(dis_dir.iterdir()):
        match = _DIS_RE.match(entry.name)
        if not match:
            unnamed.append(entry)
            continue
        if not entry.is_file():
            continue
        source = match["source"]
        if source in refs:
            pairs[source].append(Pair(source, refs[source], entry))
        else:
            orphans.append(entry)
    return Corpus(data_root, refs, {s: tuple(p) for s, p in pairs.items()}, tuple(orphans), tuple(unnamed))


@dataclass
class SourceData:
    """One source's frames: features ``(n, k)`` and VMAF targets ``(n,)``, both float32."""

    source: str
    features: np.ndarray
    scores: np.ndarray
    feature_names: tuple[str, ...]
    pair_frames: tuple[int, ...]  # frames contributed by each pair, in order
    cache_files: tuple[Path, ...]
    fingerprint: str  # sha256 over the names and bytes of the cache files read
    file_sha256: dict[str, str] = field(default_factory=dict)  # each file read ("<Source>/<name>") -> its sha256
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)  # dis stem -> frame counts
    # Per-frame metadata a codec-aware model needs (e.g. "encoder", "cq", "preset"), when the
    # corpus has it: a per-frame table does, a YUV + cache corpus does not.
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def names_file(self) -> Path:
        """The file that names the features: the source's first cache file (the others are
        matched to it by name), or the table."""
        return self.cache_files[0] if self.cache_files else Path(self.source)


def _fill_hint(cache_dir: Path) -> str:
    return (
        f"let the gate compute it with libvmaf (pip install 'pytest-loso[vmaf]', or --loso-vmaf-bin / "
        f"--loso-ffmpeg, and not --loso-extractor=none), or fill {cache_dir} with the training pipeline's "
        "feature extraction, or point --loso-cache / $VMAF_TINY_AI_CACHE at a filled cache"
    )


MAX_CACHE_FILE_BYTES = 256 * 1024 * 1024  # a pair's features: ~1 MB per 1,000 frames; far above any real clip


def _read_capped(path: Path) -> bytes:
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


def _read_cached_pair(pair: Pair, path: Path, cache_dir: Path, filler: CacheFiller | None,
                      expected: Callable[[], made_by.Extraction] | None) -> tuple[bytes, PairFrames]:
    """A pair's cache file, computed when missing and recomputed when corrupt or stale (with a
    ``filler``); without one, either is an error that says how to fill the cache."""
    there = what_is_at(path)
    if there is not None:
        raise LosoInputError(path, f"is {there}, not a regular file; refusing to read or replace it",
                             "remove it, so the pair's features can be cached there")
    if filler is not None and not path.is_file():
        filler.ensure(pair)
    try:
        raw = _read_capped(path)
        frames = read_pair(path, raw)
    except FileNotFoundError:
        raise LosoInputError(path, f"no cached features for {pair.dis_path.name}", _fill_hint(cache_dir)) from None
    except OSError as exc:
        raise LosoInputError(path, f"cannot read the cache file: {exc.strerror or exc}") from None
    except LosoInputError as corrupt:
        if filler is None or isinstance(corrupt, ForeignCacheFile):  # another tool's file: never replaced
            raise
        return _recomputed(pair, path, filler, "corrupt", corrupt.problem, corrupt.fix)
    if frames.made_by is None or expected is None:
        return raw, frames  # not written by the gate: read as it is
    stale = made_by.differences(frames.made_by, pair.ref_path, pair.dis_path, expected())
    if not stale:
        return raw, frames
    problem = "made differently from what this run would make: " + "; ".join(stale)
    if filler is None:
        raise LosoInputError(path, problem, "let the gate recompute it (an extractor, not --loso-extractor none), "
                             "or run with the options it was made with (e.g. --loso-frame-size)")
    return _recomputed(pair, path, filler, "stale", problem, None)


def _recomputed(pair: Pair, path: Path, filler: CacheFiller, reason: str, problem: str,
                fix: str | None) -> tuple[bytes, PairFrames]:
    try:
        filler.ensure(pair, replace=reason)
    except LosoInputError as failed:
        raise LosoInputError(path, f"{problem}; recomputing it failed:\n  {failed}", fix) from None
    # the terminal says what was replaced, not only the report's provenance
    data_warning(f"{path}: {problem}; replaced by a recomputation with libvmaf")
    raw = _read_capped(path)
    return raw, read_pair(path, raw)


def _same_features(features: np.ndarray, names: tuple[str, ...], first_names: tuple[str, ...], path: Path,
                   first: Path) -> np.ndarray:
    """A cache file's features in the order of its source's first file, matched by name; a file
    with other features than the first is an error naming both files and what differs."""
    have, want = {canonical(n) for n in names}, {canonical(n) for n in first_names}
    if have != want or len(names) != len(first_names):
        differences = ([f"lacks {', '.join(sorted(want - have))}"] if want - have else []) + (
            [f"has {', '.join(sorted(have - want))}"] if have - want else [])
        raise LosoInputError(
            path,
            f"feature_names {list(names)} are not those of {first.name}, the source's first cache file "
            f"({list(first_names)}): " + (f"{path.name} " + " and ".join(differences) if differences else
                                          f"{(path if len(names) > len(first_names) else first).name} lists a "
                                          "feature twice"),
            "recompute the cache so every file of a source has the same features",
        )
    return select(features, names, first_names, path=path, fix="keep one spelling of each feature")


def load_source(corpus: Corpus, source: str, cache_dir: Path, filler: CacheFiller | None = None,
                frame_size: tuple[int, int] | None = None) -> SourceData:
    """Read every cache file of ``source`` and concatenate its frames in pair order.

    With a ``filler``, a missing cache file is computed with libvmaf and a corrupt or stale
    one recomputed; without, either is an error that says how to fill the cache. A file the
    gate wrote is stale when its ``made_by`` record differs from this run (``frame_size``,
    the clips, the filler's extractor).
    """
    import numpy as np

    pairs = corpus.pairs.get(source, ())
    if not pairs:
        raise LosoInputError(
            corpus.data_root / "dis",
            f"source {source} has no distorted clips (expected dis/{source}_<quality>_<height>_<kbps>.yuv)",
        )
    # Asked only of files the gate wrote: the extractor's version costs a process start.
    expected = (functools.cache(lambda: filler.extraction(source)) if filler is not None
                else (lambda: made_by.Extraction(*frame_size)) if frame_size is not None else None)
    digest = hashlib.sha256()
    feature_parts, score_parts, counts, files = [], [], [], []
    dropped: dict[str, dict[str, int]] = {}
    file_sha256: dict[str, str] = {}
    names: tuple[str, ...] | None = None
    first = Path()
    for pair in pairs:
        path = pair.cache_path(cache_dir)
        raw, frames = _read_cached_pair(pair, path, cache_dir, filler, expected)
        file_digest = hashlib.sha256(raw)
        digest.update(f"{source}/{path.name}\0".encode())
        digest.update(file_digest.digest())
        file_sha256[f"{source}/{path.name}"] = file_digest.hexdigest()
        features = frames.features
        if names is None:
            names, first = frames.feature_names, path
        elif frames.feature_names != names:
            features = _same_features(features, frames.feature_names, names, path, first)
        if frames.dropped:
            dropped[pair.dis_path.stem] = frames.dropped
        feature_parts.append(features)
        score_parts.append(frames.scores)
        counts.append(len(frames.scores))
        files.append(path)
    assert names is not None
    return SourceData(
        source=source,
        features=np.concatenate(feature_parts),
        scores=np.concatenate(score_parts),
        feature_names=names,
        pair_frames=tuple(counts),
        cache_files=tuple(files),
        fingerprint=digest.hexdigest(),
        file_sha256=file_sha256,
        dropped=dropped,
    )


class SourceStore:
    """Reads each source's cache at most once per process, whatever number of items need it.

    Failures are remembered too, so every item that needs a broken source reports the same
    error without re-reading the file.
    """

    def __init__(self, loader: Callable[[str], SourceData]) -> None:
        self._loader = loader
        self._done: dict[str, SourceData | LosoInputError] = {}

    def get(self, source: str) -> SourceData:
        if source not in self._done:
            try:
                self._done[source] = self._loader(source)
            except LosoInputError as exc:
                self._done[source] = exc
        result = self._done[source]
        if isinstance(result, LosoInputError):
            raise result
        return result
