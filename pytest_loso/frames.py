"""One source's frames, as every corpus kind gives them, and reading each source once per process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LosoInputError

if TYPE_CHECKING:
    import numpy as np


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
    # Each frame's place, for joining predictions written elsewhere (held_out.py): each pair's clip
    # name (a table's dis_basename, a YUV + cache corpus's distorted file name; None: a table
    # without dis_basename), and each frame's frame_index (None: its position in its clip).
    clip_names: tuple[str, ...] | None = None
    frame_indices: np.ndarray | None = None
    # Each --loso-slice column's value of every frame, as text (matched as --loso-where matches): a
    # table's column, or a field of a YUV + cache corpus's distorted file name (quality, height, kbps).
    slice_values: dict[str, np.ndarray] = field(default_factory=dict)

    def frame_keys(self) -> list[tuple[str, int]] | None:
        """``(clip name, frame_index)`` of every frame, in order (``None``: the clips have no names)."""
        if self.clip_names is None:
            return None
        keys = []
        start = 0
        for clip, count in zip(self.clip_names, self.pair_frames):
            if self.frame_indices is None:
                keys += [(clip, i) for i in range(count)]
            else:
                keys += [(clip, int(i)) for i in self.frame_indices[start:start + count]]
            start += count
        return keys

    @property
    def names_file(self) -> Path:
        """The file that names the features: the source's first cache file (the others are
        matched to it by name), or the table."""
        return self.cache_files[0] if self.cache_files else Path(self.source)


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
