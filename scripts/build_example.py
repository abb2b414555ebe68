#!/usr/bin/env python3
"""Rebuild the example corpus bundled in ``pytest_loso/example/``.

Real pixels, real encodes, real libvmaf: each source is a clip from one of ffmpeg's
synthetic video generators (moving, textured content), encoded with libx264 on a small
ladder (downscale, encode, decode, upscale back), and every (reference, distorted) pair
is scored by libvmaf through ``pytest_loso.extract`` (the code the gate uses). Fold
models are then trained with numpy on the cached features and exported with
``onnx.helper``; the baseline is exported under its training name and renamed, so it
carries the renamed-external-data defect the gate must survive.

Deterministic: single-threaded x264, fixed generator seeds and training seeds. Needs the
``vmaf`` extra (``pip install -e '.[vmaf]'``). Run ``python scripts/build_example.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: loso_testing (not shipped)

from loso_testing.training import export_onnx, train  # noqa: E402
from pytest_loso.cache_corpus import discover, load_source  # noqa: E402
from pytest_loso.extract import resolve_extractor, write_cache  # noqa: E402
from pytest_loso.settings import EXAMPLE_DIR, EXAMPLE_FRAME_SIZE  # noqa: E402

(WIDTH, HEIGHT), FPS, FRAMES = EXAMPLE_FRAME_SIZE, 24, 20
SOURCES = {  # name -> lavfi generator (fixed seeds where the generator is random)
    "Mandelbrot": f"mandelbrot=size={WIDTH}x{HEIGHT}:rate={FPS}",
    "Life": f"life=size={WIDTH}x{HEIGHT}:rate={FPS}:seed=7:ratio=0.3:mold=10",
    "TestCard": f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}",
    "Cells": f"cellauto=size={WIDTH}x{HEIGHT}:rate={FPS}:seed=3:rule=110:random_fill_ratio=0.5",
}
LADDER = [(48, 24), (32, 32), (24, 40)]  # (encode height, x264 CRF)
ARCHS = ("mlp_small", "linear")
BASELINE_HELD_OUT = "TestCard"  # the baseline is a single-split model validated on this source


def ffmpeg_run(ffmpeg: Path, *args: str) -> None:
    subprocess.run([str(ffmpeg), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def make_clips(ffmpeg: Path, corpus: Path, work: Path) -> None:
    raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{WIDTH}x{HEIGHT}"]
    for source, generator in SOURCES.items():
        ref = corpus / "ref" / f"{source}_{FPS}fps.yuv"
        ffmpeg_run(ffmpeg, "-f", "lavfi", "-i", generator, "-frames:v", str(FRAMES), *raw, str(ref))
        for height, crf in LADDER:
            width = WIDTH * height // HEIGHT // 2 * 2
            encoded = work / f"{source}_{crf}.h264"
            ffmpeg_run(ffmpeg, *raw, "-r", str(FPS), "-i", str(ref), "-vf", f"scale={width}:{height}:flags=bicubic",
                       "-c:v", "libx264", "-threads", "1", "-crf", str(crf), "-f", "h264", str(encoded))
            kbps = round(encoded.stat().st_size * 8 * FPS / FRAMES / 1000)
            dis = corpus / "dis" / f"{source}_{crf}_{height}_{kbps}.yuv"
            ffmpeg_run(ffmpeg, "-i", str(encoded), "-vf", f"scale={WIDTH}:{HEIGHT}:flags=bicubic", *raw, str(dis))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=EXAMPLE_DIR)
    args = parser.parse_args()
    out: Path = args.out
    extractor = resolve_extractor("ffmpeg")  # the ffmpeg with libvmaf inside the imageio-ffmpeg wheel
    ffmpeg = extractor.binary
    shutil.rmtree(out, ignore_errors=True)
    corpus, cache, folds, baselines, work = (out / n for n in ("corpus", "cache", "folds", "baselines", ".work"))
    for folder in (corpus / "ref", corpus / "dis", work):
        folder.mkdir(parents=True)
    make_clips(ffmpeg, corpus, work)
    shutil.rmtree(work)

    found = discover(corpus)
    for pairs in found.pairs.values():
        for pair in pairs:
            write_cache(pair.cache_path(cache), extractor.run(pair.ref_path, pair.dis_path, WIDTH, HEIGHT))
            print(f"libvmaf: {pair.dis_path.name}")
    data = {source: load_source(found, source, cache) for source in found.sources}

    def pooled(sources: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return (np.concatenate([data[s].features for s in sources]), np.concatenate([data[s].scores for s in sources]))

    for held_out in found.sources:
        x, y = pooled([s for s in found.sources if s != held_out])
        for arch in ARCHS:
            export_onnx(train(x, y, arch, steps=1500, seed=1), folds / f"fold_{held_out}" / f"{arch}_final.onnx")
    x, y = pooled([s for s in found.sources if s != BASELINE_HELD_OUT])
    trained_as = export_onnx(train(x, y, "mlp_small", steps=1500, seed=2), baselines / "mlp_small_final.onnx")
    # Rename after export without touching the model: its external-data location still
    # names mlp_small_final.onnx.data, as in the team's shipped vmaf_tiny_v1.onnx.
    trained_as.with_name(trained_as.name + ".data").rename(baselines / "vmaf_tiny_example.onnx.data")
    trained_as.rename(baselines / "vmaf_tiny_example.onnx")
    (out / "README.md").write_text(
        "# Example corpus\n\nBuilt by `scripts/build_example.py`; do not edit by hand. "
        f"{len(SOURCES)} sources, {WIDTH}x{HEIGHT} yuv420p, {FRAMES} frames each, "
        f"x264 ladder {LADDER} (encode height, CRF), libvmaf vmaf_v0.6.1 features and scores.\n"
    )
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(json.dumps({"sources": found.sources, "bytes": size}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
