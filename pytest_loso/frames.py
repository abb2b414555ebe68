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
