"""Filling the feature cache with real libvmaf: one pass per (reference, distorted) pair.

A single libvmaf run with the built-in ``vmaf_v0.6.1`` model yields both the six
features the tiny models consume (libvmaf names them ``integer_adm2``,
``integer_vif_scale0..3``, ``integer_motion2``) and the per-frame VMAF target. The
backend here is an ffmpeg built with the ``libvmaf`` filter; by default the one inside
the ``imageio-ffmpeg`` wheel (``pip install pytest-loso[vmaf]``).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from .atomic import write_atomically
from .corpus import FEATURE_NAMES
from .errors import LosoInputError

LIBVMAF_NAMES = {name: f"integer_{name}" for name in FEATURE_NAMES}


def find_ffmpeg(explicit: Path | None = None) -> Path:
    """``explicit``, else the ffmpeg binary shipped in the ``imageio-ffmpeg`` wheel."""
    if explicit is not None:
        if not explicit.is_file():
            raise LosoInputError(explicit, "ffmpeg binary not found", "give the path of an ffmpeg built with libvmaf")
        return explicit
    try:
        import imageio_ffmpeg
    except ImportError:
        raise LosoInputError(
            Path("imageio-ffmpeg"),
            "no ffmpeg with libvmaf available",
            "pip install 'pytest-loso[vmaf]' (bundles an ffmpeg with libvmaf), or pass --loso-ffmpeg PATH",
        ) from None
    return Path(imageio_ffmpeg.get_ffmpeg_exe())


def frame_count(path: Path, width: int, height: int) -> int:
    """Frames in a raw yuv420p 8-bit file; a size that is not a whole number of frames is an error."""
    frame_bytes = width * height * 3 // 2
    size = path.stat().st_size
    if size == 0 or size % frame_bytes:
        raise LosoInputError(
            path,
            f"size {size} bytes is not a whole number of {width}x{height} yuv420p frames ({frame_bytes} bytes each)",
            "give the clip's real frame size with --loso-frame-size WxH (or a per-source override in ini)",
        )
    return size // frame_bytes


def libvmaf_payload(log: dict, source_desc: str) -> dict:
    """Turn a libvmaf JSON log into the cache schema the training scripts write."""
    rows, scores = [], []
    for frame in log.get("frames", []):
        metrics = frame.get("metrics", {})
        try:
            rows.append([float(metrics[LIBVMAF_NAMES[name]]) for name in FEATURE_NAMES])
            scores.append(float(metrics["vmaf"]))
        except KeyError as exc:
            raise LosoInputError(Path(source_desc), f"libvmaf output lacks {exc} for frame {frame.get('frameNum')}")
    pooled = log.get("pooled_metrics", {}).get("vmaf", {}).get("mean")
    return {
        "features": {"feature_names": list(FEATURE_NAMES), "per_frame": rows, "n_frames": len(rows)},
        "scores": {"per_frame": scores, "pooled": float(pooled) if pooled is not None else sum(scores) / len(scores)},
    }


def ffmpeg_command(ffmpeg: Path, ref: Path, dis: Path, width: int, height: int, log_path: Path) -> list[str]:
    raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}"]
    # libvmaf's first input is the distorted clip, the second the reference.
    graph = f"[0:v][1:v]libvmaf=model=version=vmaf_v0.6.1:log_fmt=json:log_path={log_path}:n_threads=1"
    return [str(ffmpeg), "-nostdin", "-hide_banner", "-loglevel", "error",
            *raw, "-i", str(dis), *raw, "-i", str(ref), "-lavfi", graph, "-f", "null", "-"]


def extract_pair(ref: Path, dis: Path, width: int, height: int, *, ffmpeg: Path) -> dict:
    """Run libvmaf once on ``(ref, dis)`` and return the cache payload."""
    frame_count(ref, width, height)
    frame_count(dis, width, height)
    with tempfile.TemporaryDirectory(prefix="loso-vmaf-") as tmp:
        log_path = Path(tmp) / "vmaf.json"
        command = ffmpeg_command(ffmpeg, ref, dis, width, height, log_path)
        try:
            run = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise LosoInputError(ffmpeg, f"cannot run ffmpeg: {exc}") from None
        if run.returncode != 0 or not log_path.is_file():
            raise LosoInputError(
                dis,
                f"libvmaf failed (exit {run.returncode}): {run.stderr.strip()[-2000:]}\n  command: {' '.join(command)}",
            )
        return libvmaf_payload(json.loads(log_path.read_text()), str(dis))


def write_cache(path: Path, payload: dict) -> None:
    """Write one pair's cache file atomically: it is whole or absent, whatever kills the run."""
    write_atomically(path, json.dumps(payload))
