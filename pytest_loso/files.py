"""Files the gate writes and the digests it records: a leaf.

Writes are atomic, a temporary file in the same folder then a rename: readers (and a run
killed half-way) see the old file or the new one, never a part.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from .errors import TEXT_ERRORS


def _write_temporary(path: Path, text: str | bytes) -> str:
    """``text`` in a new temporary file beside ``path``; its name (removed again when writing fails)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # named by the file it was for, not by its temporary
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private; a shared cache or report must be readable
        if isinstance(text, bytes):
            with os.fdopen(fd, "wb") as binary:
                binary.write(text)
        else:
            with os.fdopen(fd, "w", encoding="utf-8", errors=TEXT_ERRORS) as handle:  # see TEXT_ERRORS
                handle.write(text)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    return tmp


def write_atomically(path: Path, text: str | bytes) -> None:
    write_together([(path, text)])


def write_together(files: list[tuple[Path, str | bytes]]) -> None:
    """Write every file or none: all temporaries first (where a full disk fails, leaving nothing),
    then the renames, which need no space. For a report and its predictions file, which must match.
    An ``OSError`` names the file it was for, not its temporary."""
    written: list[tuple[str, Path]] = []
    try:
        for path, text in files:
            written.append((_write_temporary(path, text), path))
        for tmp, path in written:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in written:
            Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: Path) -> str:
    """The file's sha256, read a MiB at a time; ``OSError`` when it cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_or_none(path: Path) -> str | None:
    """The file's sha256; ``None`` when it is not a regular file (a FIFO would never end) or unreadable."""
    try:
        return file_sha256(path) if path.is_file() else None
    except OSError:
        return None
