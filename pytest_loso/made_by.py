"""How a cache file was made, so a file made differently from what this run would make is
never reused.

Every cache file the gate writes carries a ``made_by`` record beside ``features`` and
``scores`` (the training pipeline reads only those two keys): the frame size and pixel
format the YUVs were read with, the extractor and its version, and each YUV's size, mtime
and sha256. Reading a file back, the record is held against this run; any difference (a
wrong ``--loso-frame-size``, a re-encoded clip, another libvmaf) makes the file stale.
Files without a record were written by another tool and are read as they are.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from . import __version__

PIXEL_FORMAT = "yuv420p"  # the only format the gate reads (8-bit), see extract.frame_count
KEY = "made_by"


@dataclass(frozen=True)
class Extraction:
    """What this run makes a cache file with: the frame size and, when known, the extractor."""

    width: int
    height: int
    extractor: str | None = None  # "<kind> <version line>"; None: no extractor in this run


_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process


def _file_digest(path: Path, stat: os.stat_result) -> str:
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        with path.open("rb") as handle:
            _DIGESTS[key] = hashlib.file_digest(handle, "sha256").hexdigest()
    return _DIGESTS[key]


def _clip(path: Path) -> dict:
    stat = path.stat()
    return {"name": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "sha256": _file_digest(path, stat)}


def record(ref: Path, dis: Path, extraction: Extraction) -> dict:
    """The ``made_by`` record of a cache file computed now from ``ref`` and ``dis``."""
    return {
        "tool": f"pytest-loso {__version__}",
        "extractor": extraction.extractor,
        "frame_size": f"{extraction.width}x{extraction.height}",
        "pixel_format": PIXEL_FORMAT,
        "ref": _clip(ref),
        "dis": _clip(dis),
    }


def _clip_differs(recorded: object, path: Path) -> str | None:
    if not isinstance(recorded, dict):
        return "its record of the clip is unreadable"
    try:
        stat = path.stat()
    except OSError as exc:
        return f"{path.name} cannot be read ({exc.strerror or exc})"
    if recorded.get("size") != stat.st_size:
        return f"{path.name} is {stat.st_size} bytes, it was made from {recorded.get('size')} bytes"
    if recorded.get("mtime_ns") == stat.st_mtime_ns:
        return None
    # Same size, another mtime (a fresh checkout or a restored CI cache): the bytes decide.
    if recorded.get("sha256") != _file_digest(path, stat):
        return f"{path.name} has other content than the clip it was made from (sha256 differs)"
    return None


def differences(made_by: object, ref: Path, dis: Path, extraction: Extraction) -> list[str]:
    """Why a file with this record is not what this run would make (empty: it is)."""
    if not isinstance(made_by, dict):
        return [f"its {KEY} record is not an object"]
    found = []
    size = f"{extraction.width}x{extraction.height}"
    if made_by.get("frame_size") != size:
        found.append(f"made with frame size {made_by.get('frame_size')}, this run reads {size}")
    if made_by.get("pixel_format") != PIXEL_FORMAT:
        found.append(f"made from {made_by.get('pixel_format')}, this run reads {PIXEL_FORMAT}")
    if extraction.extractor is not None and made_by.get("extractor") != extraction.extractor:
        found.append(f"made by {made_by.get('extractor')!r}, this run computes with {extraction.extractor!r}")
    for key, path in (("ref", ref), ("dis", dis)):
        why = _clip_differs(made_by.get(key), path)
        if why:
            found.append(why)
    return found
