"""Reading the corpus: which sources and pairs exist, and their cached features and scores.

Layout (the team's existing data contract)::

    <data-root>/ref/<Source>_<fps>fps.yuv
    <data-root>/dis/<Source>_<quality>_<height>_<kbps>.yuv
    <cache>/<Source>/<dis-stem>.json    # {"features": {...}, "scores": {...}}

Pairs are taken in sorted distorted-file-name order and their frames concatenated in
that order, exactly as the hand-run evaluation script did, so the numbers match.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LosoInputError, data_warning
from .features import FEATURE_NAMES  # noqa: F401  (re-exported: the extractor and training use it)

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
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)  # dis stem -> frame counts
    # Per-frame metadata a codec-aware model needs (e.g. "encoder", "cq", "preset"), when the
    # corpus has it: a per-frame table does, a YUV + cache corpus does not.
    columns: dict[str, np.ndarray] = field(default_factory=dict)


def _fill_hint(cache_dir: Path) -> str:
    return (
        f"let the gate compute it with libvmaf (pip install 'pytest-loso[vmaf]', or --loso-vmaf-bin / "
        f"--loso-ffmpeg, and not --loso-extractor=none), or fill {cache_dir} with the training pipeline's "
        "feature extraction, or point --loso-cache / $VMAF_TINY_AI_CACHE at a filled cache"
    )


def _read_payload(path: Path, raw: bytes) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    import numpy as np

    try:
        payload = json.loads(raw)
        names = tuple(payload["features"]["feature_names"])
        features = payload["features"]["per_frame"]
        scores = payload["scores"]["per_frame"]
    except json.JSONDecodeError as exc:
        raise LosoInputError(
            path,
            f"corrupt cache file, not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            "delete it and recompute this pair's features",
        ) from None
    except (KeyError, TypeError) as exc:
        raise LosoInputError(
            path,
            f"cache file lacks {exc} of the schema "
            '{"features": {"feature_names", "per_frame", "n_frames"}, "scores": {"per_frame", "pooled"}}',
            "delete it and recompute this pair's features",
        ) from None
    try:
        # Same conversion as the training dataset: JSON floats straight to float32.
        feature_array = np.asarray(features, dtype=np.float32)
        score_array = np.asarray(scores, dtype=np.float32)
        if feature_array.size == 0:
            feature_array = feature_array.reshape(0, len(names))
    except (TypeError, ValueError) as exc:
        raise LosoInputError(path, f"per-frame values are not a numeric table ({exc})", "recompute this pair") from None
    if feature_array.shape[1:] != (len(names),) or score_array.ndim != 1:
        raise LosoInputError(
            path,
            f"features have shape {feature_array.shape} for {len(names)} feature names, scores {score_array.shape}",
            "recompute this pair",
        )
    return feature_array, score_array, names


def read_pair(path: Path, raw: bytes) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], dict[str, int] | None]:
    """One cache file's aligned frames: ``(features, scores, feature_names, dropped)``.

    The first min(n) frames are kept when features and scores differ in length
    (``dropped`` then says by how much). Any refusal here (bad JSON, bad schema, values
    that are not finite) marks the file corrupt: a configured extractor recomputes it.
    """
    import numpy as np

    features, scores, names = _read_payload(path, raw)
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
    return features, scores, names, dropped


def load_source(corpus: Corpus, source: str, cache_dir: Path, filler: CacheFiller | None = None) -> SourceData:
    """Read every cache file of ``source`` and concatenate its frames in pair order.

    With a ``filler``, a missing cache file is computed with libvmaf and a corrupt one
    recomputed; without, either is an error that says how to fill the cache.
    """
    import numpy as np

    pairs = corpus.pairs.get(source, ())
    if not pairs:
        raise LosoInputError(
            corpus.data_root / "dis",
            f"source {source} has no distorted clips (expected dis/{source}_<quality>_<height>_<kbps>.yuv)",
        )
    digest = hashlib.sha256()
    feature_parts, score_parts, counts, files = [], [], [], []
    dropped: dict[str, dict[str, int]] = {}
    names: tuple[str, ...] | None = None
    for pair in pairs:
        path = pair.cache_path(cache_dir)
        if filler is not None and not path.is_file():
            filler.ensure(pair)
        try:
            raw = path.read_bytes()
            features, scores, file_names, mismatch = read_pair(path, raw)
        except FileNotFoundError:
            raise LosoInputError(
                path, f"no cached features for {pair.dis_path.name}", _fill_hint(cache_dir)
            ) from None
        except LosoInputError as corrupt:
            if filler is None:
                raise
            try:
                filler.ensure(pair, replace_corrupt=True)
            except LosoInputError as failed:
                raise LosoInputError(
                    path, f"{corrupt.problem}; recomputing it failed:\n  {failed}", corrupt.fix
                ) from None
            # the terminal says what was replaced, not only the report's provenance
            data_warning(f"{path}: {corrupt.problem}; replaced by a recomputation with libvmaf")
            raw = path.read_bytes()
            features, scores, file_names, mismatch = read_pair(path, raw)
        digest.update(f"{source}/{path.name}\0".encode())
        digest.update(hashlib.sha256(raw).digest())
        if names is None:
            names = file_names
        elif file_names != names:
            raise LosoInputError(
                path,
                f"feature_names {list(file_names)} differ from {list(names)} in the source's other cache files",
                "recompute the cache so every file of a source has the same features in the same order",
            )
        if mismatch:
            dropped[pair.dis_path.stem] = mismatch
        feature_parts.append(features)
        score_parts.append(scores)
        counts.append(len(scores))
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
