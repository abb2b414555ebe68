"""Provenance: what a report was made from (git, versions, how the cache was filled)."""

from __future__ import annotations

import functools
import platform
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def git_state(cwd: Path) -> dict | None:
    """The commit checked out at ``cwd`` and whether tracked files differ from it; ``None`` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def versions() -> dict[str, str | None]:
    """Python's version and the installed versions of the packages a run's numbers depend on."""
    return dict(_versions())


@functools.cache  # what is installed does not change while a process runs (metadata lookups cost ~10 ms)
def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("pytest-loso", "pytest", "numpy", "scipy", "onnx", "onnxruntime"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def extraction_provenance(extractor: dict | None, computed: set, recomputed: dict, read: set[str],
                           kept: list[str]) -> dict:
    """Which libvmaf filled the cache, and how many pairs it computed versus read as they were
    (``read``: every cache file the scored sources were read from)."""
    from ..extract import Extractor

    done = computed | set(recomputed)
    described = None
    if extractor is not None:
        described = dict(extractor, version=Extractor(extractor["kind"], Path(extractor["path"])).version())
    return {
        "extractor": described,
        "pairs_computed": len(done),
        "pairs_read_from_cache": len(read - done),
        "corrupt_recomputed": sorted(p for p, why in recomputed.items() if why == "corrupt"),
        # made differently from this run (another frame size, clip or extractor), or --loso-recompute
        "stale_recomputed": sorted(p for p, why in recomputed.items() if why == "stale"),
        "forced_recomputed": sorted(p for p, why in recomputed.items() if why == "forced"),
        "kept_on_recompute": sorted(kept),  # --loso-recompute left them: another tool wrote them
    }


def iso_time(timestamp: float) -> str:
    """A POSIX timestamp as local ISO 8601 with its UTC offset."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))
