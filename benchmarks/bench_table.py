"""Benchmark ``--loso-table``: the gate on a per-frame table, next to the YUV + cache corpus.

Builds bench_gate.py's synthetic corpus (default 1,000 sources x 8 pairs x 150 frames),
exports its cache into one JSONL and one parquet table (one row per frame: ``src``,
``dis_basename``, ``frame_index``, ``vmaf``, the six features), and runs the gate as a
separate process on each of the three corpora, printing wall time and peak memory
(measured as bench_gate.py measures them). A measurement, not a test: exits 1 only when
the gate itself fails.

Usage::

    python benchmarks/bench_table.py [--sources 1000] [--pairs 8] [--frames 150] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_gate import child_env, generate, measured, pytest_args, train_models  # noqa: E402


def export_tables(root: Path, sources: int) -> tuple[Path, Path | None]:
    """The cache as ``frames.jsonl`` (and ``frames.parquet`` when pyarrow is installed)."""
    jsonl = root / "frames.jsonl"
    columns: dict[str, list] = {}
    with open(jsonl, "w") as out:
        for index in range(sources):
            source = f"Src{index:04d}"
            for path in sorted((root / "cache" / source).glob("*.json")):
                payload = json.loads(path.read_text())
                names = payload["features"]["feature_names"]
                for i, (features, vmaf) in enumerate(zip(payload["features"]["per_frame"],
                                                         payload["scores"]["per_frame"])):
                    row = {"src": f"{source}_24fps", "dis_basename": path.stem, "frame_index": i, "vmaf": vmaf}
                    row.update(zip(names, features))
                    out.write(json.dumps(row) + "\n")
                    for key, value in row.items():
                        columns.setdefault(key, []).append(value)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return jsonl, None
    parquet = root / "frames.parquet"
    pq.write_table(pa.table(columns), parquet)
    return jsonl, parquet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "loso_bench_table")
    args = parser.parse_args()
    root = args.workdir / f"n{args.sources}"
    generate(root, args.sources, args.pairs, args.frames, train_models(args.pairs, args.frames))
    jsonl, parquet = root / "frames.jsonl", root / "frames.parquet"
    if not jsonl.is_file():
        jsonl, parquet = export_tables(root, args.sources)
    env = child_env(autoload=False)
    base = pytest_args(root, autoload=False)
    cache_only = [a for a in base if not a.startswith(("--data-root=", "--loso-cache="))]
    corpora = [("YUV + cache", base), ("JSONL table", [*cache_only, f"--loso-table={jsonl}"])]
    if parquet is not None and parquet.is_file():
        corpora.append(("parquet table", [*cache_only, f"--loso-table={parquet}"]))
    frames = args.sources * args.pairs * args.frames
    print(f"{args.sources} sources, {frames:,} frames, 2 baselines")
    print(f"{'corpus':<15} {'size':>10} {'wall':>8} {'peak':>9} {'items':>6}")
    for name, gate_args in corpora:
        run = measured([sys.executable, "-m", "pytest", *gate_args], root / "run", env, root / f"{name[:5]}.log", name)
        size = {"JSONL table": jsonl, "parquet table": parquet}.get(name)
        size_text = f"{size.stat().st_size / 2**20:.0f} MB" if size else "-"
        print(f"{name:<15} {size_text:>10} {run.wall:>7.1f}s {run.peak_mb:>6.0f} MB {run.passed + run.failed:>6}")


if __name__ == "__main__":
    main()
