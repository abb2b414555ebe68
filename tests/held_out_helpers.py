"""Helpers of the held-out predictions tests: what a trainer writes (its fold models' predictions on
the corpus, one row per frame, shuffled) and the gate's arguments to read it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from loso_helpers import ARCHS, SOURCES


def _cache_frames(gate, source: str) -> list[tuple[str, list[dict], list[float]]]:
    """``(stem, per-frame features, per-frame vmaf)`` of each cache file of ``source``, sorted by name."""
    found = []
    for stem in gate.stems(source):
        payload = json.loads((gate.cache_dir / source / f"{stem}.json").read_text())
        names = payload["features"]["feature_names"]
        found.append((stem, [dict(zip(names, f)) for f in payload["features"]["per_frame"]],
                      payload["scores"]["per_frame"]))
    return found


def _onnx_predict(path: Path, features: list[dict]) -> np.ndarray:
    import onnxruntime as ort

    from pytest_loso.features import FEATURE_NAMES

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.array([[f[name] for name in FEATURE_NAMES] for f in features], dtype=np.float32)
    return session.run(None, {session.get_inputs()[0].name: x})[0].reshape(-1)


def trainer_rows(gate, archs=ARCHS, *, clip_name=lambda stem: f"{stem}.yuv", run_of=lambda a: a,
                 seed: int | None = None) -> list[dict]:
    """What a trainer writes: every fold's held-out predictions, one row per frame, rows shuffled."""
    rows = []
    for arch in archs:
        for source in SOURCES:
            for stem, features, _ in _cache_frames(gate, source):
                pred = _onnx_predict(gate.fold_path(arch, source), features)
                for i, p in enumerate(pred):
                    row = {"run": run_of(arch), "src": f"{source}_24fps", "dis_basename": clip_name(stem),
                           "frame_index": i, "prediction": float(p)}
                    if seed is not None:
                        row["seed"] = seed
                    rows.append(row)
    random.Random(1).shuffle(rows)
    return rows


def write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def predictions_args(gate, *paths: Path, corpus: tuple[str, ...] | None = None) -> list[str]:
    corpus = corpus or (f"--data-root={gate.data_root}", f"--loso-cache={gate.cache_dir}", "--loso-extractor=none")
    return ["-p", "no:cacheprovider", "-rA", *corpus, f"--loso-report={gate.report_dir}",
            *(f"--loso-predictions={p}" for p in paths)]


def table_rows(gate) -> list[dict]:
    """The cache corpus as a per-frame table (the cache files' floats unchanged), rows shuffled."""
    rows = []
    for source in SOURCES:
        for stem, features, vmaf in _cache_frames(gate, source):
            for i, (f, v) in enumerate(zip(features, vmaf)):
                rows.append({"source": source, "dis_basename": stem, "frame_index": i, "vmaf": v, **f})
    random.Random(2).shuffle(rows)
    return rows
