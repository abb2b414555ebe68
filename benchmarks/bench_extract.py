"""Benchmark the cold-cache fill: libvmaf passes per second with 1 and with N at a time,
and one pass at a time with libvmaf's own threads (``n_threads``) on the same pairs.

Builds a small real corpus in a temporary folder (default 4 sources x 4 rungs of
1280x720, 48 frames: ffmpeg lavfi generators encoded on a libx264 ladder, see
``tests/clips.py``), then times ``CacheFiller(extractor, cache, ...).fill(pairs, jobs)``,
the call ``pytest_sessionstart`` makes, on a fresh empty cache for each ``jobs`` value
(default 1 and 2), then with one pass at a time and libvmaf's ``n_threads`` (ffmpeg's
libvmaf filter option, ``--threads`` of the vmaf tool) set to each ``--threads`` value
(default 2), and prints pairs/s, frames/s and the speed-up over ``jobs=1``
(target: >= 1.8x with 2 jobs on 2 cores; the faster of processes and threads is the
gate's default: ``Extractor.threads`` and ``--loso-jobs``). The clips are large enough that libvmaf,
not process start-up, is the cost; the script prints ffmpeg's start-up time to show it.

Wall time is ``time.perf_counter()`` around ``fill``; the best and the median over
``--repeat`` fills are shown, the speed-up is taken from the best (least disturbed) ones.
Other load on the machine skews a speed-up, so the script also prints the CPU seconds the
libvmaf processes used (``RUSAGE_CHILDREN``), the cores they kept busy (CPU / wall) and the
load average before and after: with jobs=2 on an idle 2-core machine ~2 cores are busy.

It checks what it times: every fill must compute every pair without a failure, and the
caches written with every configuration must be byte-identical. It is a measurement, not
a test: it exits 0 whether or not the target is met, and 1 only when a fill fails.

Usage::

    /tmp/venv/bin/python benchmarks/bench_extract.py [--sources 4] [--rungs 4] [--size 1280x720]
        [--frames 48] [--jobs 1,2] [--threads 2] [--repeat 1] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from clips import GENERATORS, make_corpus  # noqa: E402

from pytest_loso.cache_corpus import discover  # noqa: E402
from pytest_loso.extract import CacheFiller, resolve_extractor  # noqa: E402

CRFS = (23, 28, 33, 38, 43, 48)
HEIGHT_STEPS = (1.0, 0.75, 0.5, 1 / 3, 0.25, 0.2)  # fraction of the source height per rung


def ladder(height: int, rungs: int) -> list[tuple[int, int]]:
    if not 1 <= rungs <= len(CRFS):
        raise SystemExit(f"--rungs must be 1..{len(CRFS)}")
    return [(int(height * f) // 2 * 2, crf) for f, crf in zip(HEIGHT_STEPS[:rungs], CRFS)]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_fill(extractor, pairs, cache: Path, size: tuple[int, int], jobs: int, threads: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the libvmaf processes) of one fill of an empty cache,
    ``jobs`` passes at a time, each with ``threads`` libvmaf threads."""
    shutil.rmtree(cache, ignore_errors=True)
    filler = CacheFiller(dataclasses.replace(extractor, threads=threads), cache, lambda source: size)
    cpu = _children_cpu()
    started = time.perf_counter()
    failed = filler.fill(pairs, jobs)
    elapsed = time.perf_counter() - started
    cpu = _children_cpu() - cpu
    if failed or len(filler.computed) != len(pairs):
        raise RuntimeError(f"jobs={jobs}: {failed} pairs failed, {len(filler.computed)} of {len(pairs)} computed")
    return elapsed, cpu


def snapshot(cache: Path) -> dict[str, bytes]:
    return {str(p.relative_to(cache)): p.read_bytes() for p in sorted(cache.rglob("*.json"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=4, help=f"1..{len(GENERATORS)}")
    parser.add_argument("--rungs", type=int, default=4)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--jobs", default="1,2", help="comma-separated jobs values; the first is the baseline")
    parser.add_argument("--threads", default="2",
                        help="libvmaf n_threads values to time with one pass at a time (default 2; '' for none)")
    parser.add_argument("--repeat", type=int, default=1, help="fills per jobs value (median reported)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the corpus and caches")
    args = parser.parse_args()

    width, height = (int(v) for v in args.size.lower().split("x"))
    jobs_values = [int(j) for j in args.jobs.split(",")]
    # (passes at a time, libvmaf threads per pass): processes first, then libvmaf's own threads
    configs = [(j, 1) for j in jobs_values] + [(1, int(t)) for t in args.threads.split(",") if t.strip() and int(t) > 1]
    sources = sorted(GENERATORS)[: args.sources]
    if len(sources) < args.sources:
        raise SystemExit(f"--sources must be 1..{len(GENERATORS)}")
    extractor = resolve_extractor("ffmpeg")
    if extractor is None:
        raise SystemExit("needs imageio-ffmpeg: pip install -e '.[vmaf]'")

    if args.workdir is not None and not args.workdir.is_dir():  # mkdtemp's FileNotFoundError would be a traceback
        raise SystemExit(f"--workdir {args.workdir}: not a folder; create it first, or leave --workdir out "
                         "for the system's temporary folder")
    try:
        work = Path(tempfile.mkdtemp(prefix="bench_extract_", dir=args.workdir))
    except OSError as exc:
        raise SystemExit(f"--workdir {args.workdir}: cannot create a folder in it: {exc.strerror or exc}") from None
    try:
        started = time.perf_counter()
        make_corpus(work / "corpus", sources, width, height, args.frames, ladder(height, args.rungs),
                    jobs=os.cpu_count() or 1, ffmpeg=extractor.binary)
        corpus = discover(work / "corpus")
        pairs = [pair for source in corpus.sources for pair in corpus.pairs[source]]
        print(f"corpus: {len(corpus.sources)} sources x {args.rungs} rungs = {len(pairs)} pairs, "
              f"{width}x{height}, {args.frames} frames, built in {time.perf_counter() - started:.1f}s ({work})")
        print(f"extractor: {extractor.kind} {extractor.binary}\n  {extractor.version()}")
        startup = []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run([str(extractor.binary), "-version"], capture_output=True, check=True)
            startup.append(time.perf_counter() - t)
        print(f"ffmpeg start-up: {statistics.median(startup) * 1000:.0f} ms; cpus: {os.cpu_count()}")

        times: dict[tuple[int, int], list[tuple[float, float]]] = {c: [] for c in configs}
        caches: dict[tuple[int, int], dict[str, bytes]] = {}
        load_before = os.getloadavg()
        for _ in range(args.repeat):  # configurations interleaved: load drifts alike over all of them
            for jobs, threads in configs:
                cache = work / f"cache_jobs{jobs}_threads{threads}"
                times[jobs, threads].append(time_fill(extractor, pairs, cache, (width, height), jobs, threads))
                caches[jobs, threads] = snapshot(cache)
        load_after = os.getloadavg()
        first = caches[configs[0]]
        identical = all(c == first for c in caches.values())

        def best(config: tuple[int, int]) -> tuple[float, float]:
            return min(times[config])

        base = best(configs[0])[0]
        frames = len(pairs) * args.frames
        print(f"\n{'jobs':>4}  {'threads':>7}  {'best s':>7}  {'median s':>8}  {'pairs/s':>8}  {'frames/s':>9}  "
              f"{'s/pair':>7}  {'cpu s':>6}  {'cores':>5}  speed-up")
        for config in configs:
            wall, cpu = best(config)
            median = statistics.median(w for w, _ in times[config])
            print(f"{config[0]:>4}  {config[1]:>7}  {wall:7.2f}  {median:8.2f}  {len(pairs) / wall:8.2f}  "
                  f"{frames / wall:9.1f}  {wall / len(pairs):7.3f}  {cpu:6.1f}  {cpu / wall:5.2f}  {base / wall:6.2f}x")
        print(f"\nload average (1/5/15 min) before: {' '.join(f'{v:.2f}' for v in load_before)}, "
              f"after: {' '.join(f'{v:.2f}' for v in load_after)}")
        print(f"caches byte-identical across configurations: {identical}")
        if len(jobs_values) > 1:
            last = jobs_values[-1]
            speedup = base / best((last, 1))[0]
            verdict = "met" if speedup >= 1.8 else "NOT met"
            print(f"target: >= 1.8x with {last} jobs: {verdict} ({speedup:.2f}x)")
        threaded = [c for c in configs if c[1] > 1]
        for config in threaded:
            rival = (config[1], 1)  # as many passes at a time as the threads of one pass
            if rival in times:
                faster = "processes" if best(rival)[0] < best(config)[0] else "libvmaf threads"
                print(f"{rival[0]} passes at a time vs 1 pass with n_threads={config[1]}: "
                      f"{len(pairs) / best(rival)[0]:.2f} vs {len(pairs) / best(config)[0]:.2f} pairs/s "
                      f"-> {faster} faster (x{best(config)[0] / best(rival)[0]:.2f})")
        return 0 if identical else 1
    except RuntimeError as exc:
        print(f"fill failed: {exc}")
        return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
