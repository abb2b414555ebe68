"""Real clips for the cold-cache tests and the extraction benchmark, and an independent libvmaf run.

Clips are made the way ``scripts/build_example.py`` makes the example corpus: each source is
a clip from one of ffmpeg's synthetic generators (fixed seeds where random), written as raw
yuv420p; each rung of the ladder downscales it, encodes it with single-threaded libx264,
decodes it and scales it back to the source size, so every distorted clip is a real encode.

:func:`independent_libvmaf` scores a pair with ffmpeg's libvmaf filter through a command of
its own (not :class:`pytest_loso.extract.Extractor`) and parses libvmaf's JSON log itself,
so the tests can check the cache the plugin writes against a second run of libvmaf.
Nothing here imports ``pytest_loso``.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

FPS = 24

# name -> lavfi generator; "{size}" and "{fps}" are filled in.
GENERATORS = {
    "TestCard": "testsrc2=size={size}:rate={fps}",
    "Mandelbrot": "mandelbrot=size={size}:rate={fps}",
    "Life": "life=size={size}:rate={fps}:seed=7:ratio=0.3:mold=10",
    "Cells": "cellauto=size={size}:rate={fps}:seed=3:rule=110:random_fill_ratio=0.5",
    "Gradients": "gradients=size={size}:rate={fps}:seed=5:speed=0.05",
}

# The features of libvmaf's vmaf_v0.6.1 model, as libvmaf names them in its JSON log.
LIBVMAF_FEATURES = (
    "integer_adm2",
    "integer_vif_scale0",
    "integer_vif_scale1",
    "integer_vif_scale2",
    "integer_vif_scale3",
    "integer_motion2",
)


def ffmpeg_exe() -> Path:
    """The ffmpeg with libvmaf and libx264 inside the imageio-ffmpeg wheel."""
    import imageio_ffmpeg

    return Path(imageio_ffmpeg.get_ffmpeg_exe())


def _ffmpeg(ffmpeg: Path, *args: str) -> None:
    subprocess.run(
        [str(ffmpeg), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        capture_output=True,
    )


def _raw(width: int, height: int) -> list[str]:
    return ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}"]


@dataclass(frozen=True)
class ClipPair:
    source: str
    ref: Path
    dis: Path

    @property
    def stem(self) -> str:
        return self.dis.stem


@dataclass
class ClipCorpus:
    """``root/ref/<Source>_24fps.yuv`` and ``root/dis/<Source>_<crf>_<height>_<kbps>.yuv``."""

    root: Path
    width: int
    height: int
    frames: int
    pairs: list[ClipPair] = field(default_factory=list)

    @property
    def sources(self) -> list[str]:
        return sorted({p.source for p in self.pairs})

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * 3 // 2


def make_source(
    ffmpeg: Path,
    root: Path,
    source: str,
    generator: str,
    width: int,
    height: int,
    frames: int,
    ladder: list[tuple[int, int]],
) -> list[ClipPair]:
    """One reference clip from ``generator`` and one distorted clip per ``(encode height, crf)`` rung."""
    (root / "ref").mkdir(parents=True, exist_ok=True)
    (root / "dis").mkdir(parents=True, exist_ok=True)
    raw = _raw(width, height)
    ref = root / "ref" / f"{source}_{FPS}fps.yuv"
    lavfi = generator.format(size=f"{width}x{height}", fps=FPS)
    _ffmpeg(ffmpeg, "-f", "lavfi", "-i", lavfi, "-frames:v", str(frames), *raw, str(ref))
    pairs = []
    with tempfile.TemporaryDirectory(prefix=f"clips-{source}-") as work:
        for rung_height, crf in ladder:
            rung_width = width * rung_height // height // 2 * 2
            encoded = Path(work) / f"{crf}_{rung_height}.h264"
            _ffmpeg(
                ffmpeg, *raw, "-r", str(FPS), "-i", str(ref),
                "-vf", f"scale={rung_width}:{rung_height}:flags=bicubic",
                "-c:v", "libx264", "-threads", "1", "-preset", "veryfast", "-crf", str(crf),
                "-f", "h264", str(encoded),
            )
            kbps = max(1, round(encoded.stat().st_size * 8 * FPS / frames / 1000))
            dis = root / "dis" / f"{source}_{crf}_{rung_height}_{kbps}.yuv"
            _ffmpeg(ffmpeg, "-i", str(encoded), "-vf", f"scale={width}:{height}:flags=bicubic", *raw, str(dis))
            pairs.append(ClipPair(source, ref, dis))
    expected = frames * width * height * 3 // 2
    for path in [ref, *(p.dis for p in pairs)]:
        size = path.stat().st_size
        assert size == expected, f"{path}: {size} bytes, expected {frames} frames of {width}x{height} ({expected})"
    return pairs


def make_corpus(
    root: Path,
    sources: list[str],
    width: int,
    height: int,
    frames: int,
    ladder: list[tuple[int, int]],
    *,
    jobs: int = 2,
    ffmpeg: Path | None = None,
) -> ClipCorpus:
    """Real clips of ``sources`` (keys of :data:`GENERATORS`), ``jobs`` sources generated at a time."""
    ffmpeg = ffmpeg or ffmpeg_exe()
    corpus = ClipCorpus(root, width, height, frames)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [
            pool.submit(make_source, ffmpeg, root, s, GENERATORS[s], width, height, frames, ladder) for s in sources
        ]
        for future in futures:
            corpus.pairs.extend(future.result())
    corpus.pairs.sort(key=lambda p: (p.source, p.dis.name))
    return corpus


@dataclass(frozen=True)
class LibvmafResult:
    features: list[list[float]]  # per frame, in LIBVMAF_FEATURES order
    scores: list[float]  # per-frame VMAF
    pooled: float  # libvmaf's pooled mean VMAF


def independent_libvmaf(
    ref: Path, dis: Path, width: int, height: int, *, ffmpeg: Path | None = None, threads: int = 2
) -> LibvmafResult:
    """Score ``(ref, dis)`` with ffmpeg's libvmaf filter (vmaf_v0.6.1), a command written here, not the plugin's."""
    ffmpeg = ffmpeg or ffmpeg_exe()
    size = f"{width}x{height}"
    with tempfile.TemporaryDirectory(prefix="independent-vmaf-") as tmp:
        log = Path(tmp) / "log.json"
        raw = ["-video_size", size, "-pixel_format", "yuv420p", "-framerate", str(FPS), "-f", "rawvideo"]
        graph = (
            "[0:v]setpts=PTS-STARTPTS[distorted];[1:v]setpts=PTS-STARTPTS[reference];"
            f"[distorted][reference]libvmaf=model=version=vmaf_v0.6.1:log_fmt=json:log_path={log}:n_threads={threads}"
        )
        subprocess.run(
            [str(ffmpeg), "-nostdin", "-hide_banner", "-loglevel", "error",
             *raw, "-i", str(dis), *raw, "-i", str(ref), "-filter_complex", graph, "-f", "null", "-"],
            check=True,
            capture_output=True,
        )
        document = json.loads(log.read_text())
    frames = sorted(document["frames"], key=lambda f: f["frameNum"])
    return LibvmafResult(
        features=[[float(f["metrics"][name]) for name in LIBVMAF_FEATURES] for f in frames],
        scores=[float(f["metrics"]["vmaf"]) for f in frames],
        pooled=float(document["pooled_metrics"]["vmaf"]["mean"]),
    )
