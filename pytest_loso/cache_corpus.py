"""The YUV + cache corpus: which sources and pairs a data root holds, and each source's cached
features and scores (computed with libvmaf when missing, when a filler is configured).

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
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from . import made_by
from .cache_files import ForeignCacheFile, Pair, PairFrames, read_capped, read_pair
from .errors import LosoInputError, data_warning, what_is_at
from .features import canonical, select
from .frames import SourceData
from .records import ExtractionRecord
from .settings import GateOptions

if TYPE_CHECKING:
    import numpy as np

    from .extract import CacheFiller

_DIS_RE = re.compile(r"^(?P<source>[A-Za-z0-9]+)_(?P<quality>\d+)_(?P<height>\d+)_(?P<kbps>\d+)\.yuv$")
_REF_RE = re.compile(r"^(?P<source>[A-Za-z0-9]+)_(?P<fps>\d+)fps\.yuv$")


@dataclass(frozen=True)
class DataRoot:
    """What ``<data-root>`` holds: sources (by reference file) and their pairs."""

    data_root: Path
    refs: dict[str, Path]
    pairs: dict[str, tuple[Pair, ...]]
    orphans: tuple[Path, ...] = ()  # distorted clips whose source has no reference
    unnamed: tuple[Path, ...] = ()  # files in ref/ or dis/ outside the naming contract: not read

    @property
    def sources(self) -> list[str]:
        return sorted(self.refs)

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


def discover(data_root: Path) -> DataRoot:
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
    return DataRoot(data_root, refs, {s: tuple(p) for s, p in pairs.items()}, tuple(orphans), tuple(unnamed))


def _fill_hint(cache_dir: Path) -> str:
    return (
        f"let the gate compute it with libvmaf (pip install imageio-ffmpeg filelock, or --loso-vmaf-bin / "
        f"--loso-ffmpeg, and not --loso-extractor=none), or fill {cache_dir} with the training pipeline's "
        "feature extraction, or point --loso-cache / $VMAF_TINY_AI_CACHE at a filled cache"
    )


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
        raw = read_capped(path)
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
    raw = read_capped(path)
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


def load_source(corpus: DataRoot, source: str, cache_dir: Path, filler: CacheFiller | None = None,
                frame_size: tuple[int, int] | None = None, slices: tuple[str, ...] = ()) -> SourceData:
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
        digest.update(f"{source}/{path.name}\0".encode("utf-8", "surrogatepass"))
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
        clip_names=tuple(pair.dis_path.name for pair in pairs),
        slice_values={column: _name_field(pairs, counts, column) for column in slices},
    )


def _name_field(pairs: tuple[Pair, ...], counts: list[int], column: str) -> np.ndarray:
    """A field of the distorted file names (``quality``, ``height``, ``kbps``: the text in the name, as
    ``Cells_24_48_43.yuv`` says it) for every frame of the pairs."""
    import numpy as np

    texts = [_DIS_RE.match(pair.dis_path.name)[column] for pair in pairs]  # type: ignore[index]
    return np.repeat(np.array(texts, dtype=object), counts)


class CacheCorpus:
    """The corpus kind of ``--data-root``: sources listed from file names, each read from the feature
    cache (and filled with libvmaf where a pair's file is missing, when an extractor is available)."""

    columns: tuple[str, ...] = ()  # no per-frame metadata (encoder, cq...): a codec-aware model needs a table

    def __init__(self, options: GateOptions) -> None:
        assert options.data_root is not None
        self.data_root = options.data_root
        self.options = options

    @cached_property
    def listing(self) -> DataRoot:  # an error is not cached: every caller gets it raised afresh
        return discover(self.data_root)

    @property
    def sources(self) -> list[str]:
        return self.listing.sources

    def describe(self) -> str:
        return "data root"

    def warnings(self) -> list[str]:
        return self.listing.warnings()

    def missing_source(self, source: str) -> str:
        return f"the data root (no {self.data_root}/ref/{source}_<fps>fps.yuv)"

    def no_sources(self) -> LosoInputError:
        return LosoInputError(self.data_root / "ref", "no sources: no <Source>_<fps>fps.yuv here")

    def load(self, source: str) -> SourceData:
        return load_source(self.listing, source, self.options.cache_dir, self.filler,
                           self.options.frame_size_of(source), self.options.slices)

    @cached_property
    def filler(self) -> CacheFiller | None:
        """Fills missing cache files with libvmaf, when an extractor is configured or available."""
        from .extract import CacheFiller, resolve_extractor

        options = self.options
        extractor = resolve_extractor(options.extractor, options.vmaf_bin, options.ffmpeg)
        return CacheFiller(extractor, options.cache_dir, options.frame_size_of) if extractor else None

    def prefill(self, sources: set[str] | None, progress: Callable[[str], None] | None) -> None:
        """Compute the missing cache files of ``sources`` (default: every source) up front, ``jobs``
        libvmaf runs at a time."""
        if self.filler is None:
            return
        try:
            listing = self.listing
        except LosoInputError:
            return  # collection reports it (a failed "loso" collector), not an INTERNALERROR here
        pairs = [pair for source in listing.sources if sources is None or source in sources
                 for pair in listing.pairs[source]]
        self.filler.fill(pairs, self.options.jobs, progress, recompute=self.options.recompute)

    def extraction(self) -> ExtractionRecord:
        """What this process computed with libvmaf, for the report."""
        if self.filler is None:
            return ExtractionRecord(extractor=None, computed=[], recomputed={})
        return {
            "extractor": {"kind": self.filler.extractor.kind, "path": str(self.filler.extractor.binary)},
            "computed": list(self.filler.computed),
            "recomputed": dict(self.filler.recomputed),
            "kept_on_recompute": list(self.filler.kept),
        }

    def provenance(self) -> None:
        return None  # the cache files read are in the report's cache_fingerprint

