"""Benchmark the LOSO gate end to end: wall time and peak memory of a real ``pytest`` run.

For each corpus size (default 9, 100 and 1,000 sources, 8 pairs x 150 frames = 1,200
frames per source) the script writes a synthetic corpus, feature cache, one
``mlp_small`` fold model per source and two baselines, then runs the gate as a separate
process, exactly as a user would::

    python -m pytest -q -p no:cacheprovider --loso-dir=... --data-root=... --loso-cache=...
        --loso-baseline=... --loso-baseline=... --loso-report=...

and prints a table of wall time (best / median over ``--repeat`` runs), peak resident
memory and seconds per source, the 1,000-vs-100 per-source ratio (linearity), and the
targets (9 sources + 2 baselines < 1.5 s; 1,000 sources < 30 s). With pytest-xdist
installed the largest corpus is also timed with ``-n 2``; ``--profile`` adds a cProfile
of the in-process gate on the largest corpus.

It is a measurement, not a test: it exits 0 whether or not the targets are met, and 1
only when the gate itself fails (pytest exits non-zero), after printing its output tail.

Isolation: pytest runs from an empty folder holding an empty ``pytest.ini`` (so no ini
file, conftest or test file of whatever folder ``--workdir`` is in is picked up, and the
corpus itself is not walked for tests), with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1`` and the
plugin loaded explicitly by ``-p pytest_loso.plugin`` (``-p xdist`` for the ``-n`` run),
and ``PYTEST_ADDOPTS`` removed, so unrelated plugins installed in the environment cost
nothing. ``--autoload`` measures with every installed plugin instead, as a user's plain
``pytest`` would.

Measurement: wall time is ``time.perf_counter()`` around the whole child process (Python
start-up, imports, collection, scoring, report writing). Peak memory is the child's own
``ru_maxrss`` from ``os.wait4`` on that one child, so earlier runs never pollute it (unlike
``getrusage(RUSAGE_CHILDREN)`` in this process, which is a maximum over every child
so far). Under xdist it is the largest single process (controller or a worker), not
their sum. The child is started by a small launcher process (see ``_LAUNCHER``): a child
of this process would start its ru_maxrss at this process's size.

Side by side with the team's script (``--script PATH``): the evaluation script the gate
replaces, ``ai/scripts/eval_loso_mlp_small.py`` of lusoris/vmaf, is not part of this
project (public code is for reading); get it and the ``ai/`` package it imports from a
clone::

    git clone https://github.com/lusoris/vmaf /tmp/vmaf      # or any checkout of it
    git -C /tmp/vmaf show HEAD:ai/scripts/eval_loso_mlp_small.py > /tmp/eval_loso_mlp_small.py
    python benchmarks/bench_gate.py --sizes 9 --script /tmp/eval_loso_mlp_small.py --script-fork /tmp/vmaf

(``--script-fork`` is the folder holding ``ai/``, put on the script's ``PYTHONPATH``; it
defaults to the script's own clone when ``--script`` points into one). The script
hard-codes its nine Netflix sources, so the comparison corpus carries their names
(``<workdir>/netflix9``); both run on it alternately ``--script-repeat`` times, and the
medians, their ratio (target: gate <= 0.8x the script), both peak memories and whether
the per-fold numbers are identical are printed. ``--script-sizes 9,1000`` also runs the
script once on the 1,000-source corpus, its ``CLIPS`` list replaced by those sources (the
peak-memory comparison; the script rescans the corpus per fold, so this takes minutes).
Without ``--script`` the comparison is skipped, and the output says so.

Usage::

    /tmp/venv/bin/python benchmarks/bench_gate.py [--sizes 9,100,1000] [--repeat 3]
        [--workdir DIR] [--keep] [--profile] [--autoload]
        [--script PATH [--script-fork DIR] [--script-sizes 9,1000] [--script-repeat 7]]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: loso_testing (not shipped)

from loso_testing.training import export_onnx, synthetic_corpus, synthetic_source, train  # noqa: E402

TARGETS = {9: 1.5, 1000: 30.0}  # sources -> wall-time budget in seconds (fold items + 2 baselines)
ARCH = "mlp_small"
FRAME_BYTES_1080P = 1920 * 1080 * 3 // 2
# The nine sources ``eval_loso_mlp_small.py`` hard-codes (its ``CLIPS``): the side-by-side corpus uses them.
SCRIPT_SOURCES = ["BigBuckBunny", "BirdsInCage", "CrowdRun", "ElFuente1", "ElFuente2", "FoxBird",
                  "OldTownCross", "Seeking", "Tennis"]
SCRIPT_TARGET = 0.8  # gate wall time / script wall time on the nine sources
TAIL_LINES = 40


@dataclass
class Run:
    wall: float  # seconds
    peak_mb: float
    cpu: float  # user + system seconds of the child and every process it waited for (xdist workers)
    returncode: int
    log: Path
    passed: int = 0
    failed: int = 0


@dataclass
class SizeResult:
    sources: int
    frames: int
    runs: list[Run] = field(default_factory=list)
    generate_s: float = 0.0

    @property
    def items(self) -> int:
        return self.runs[-1].passed + self.runs[-1].failed

    @property
    def best(self) -> float:
        return min(r.wall for r in self.runs)

    @property
    def median(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    @property
    def peak_mb(self) -> float:
        return max(r.peak_mb for r in self.runs)


# --------------------------------------------------------------------------- generation


def train_models(pairs: int, frames: int) -> tuple[object, object]:
    """ONE small ``mlp_small`` (and a linear model for the second baseline), not one per fold.

    Training 1,000 real LOSO models would take far longer than the gate; the gate's cost
    does not depend on the weights (same graph, same sizes, same bytes to hash), so every
    fold gets this model with its weights perturbed slightly (see :func:`write_folds`).
    It is fitted on a subsample of the first 9 sources. 300 Adam steps, not 50: at 50
    steps the model's RMSE (~21) breaks the gate's default ``max_rmse`` of 20, so the run
    would measure the failure path and exit non-zero.
    """
    data = [p for i in range(9) for p in synthetic_source(i, pairs, frames)]
    x = np.concatenate([p[0] for p in data])[::3]
    y = np.concatenate([p[1] for p in data])[::3]
    return train(x, y, ARCH, steps=300), train(x, y, "linear")


def write_folds(folds: Path, sources: list[str], model: object, scratch: Path) -> None:
    """``fold_<Source>/mlp_small_final.onnx`` + ``.onnx.data`` for every source, fast.

    The model is exported once; each fold gets a byte copy of the ``.onnx`` (its
    external-data location names ``mlp_small_final.onnx.data``, the same in every fold)
    and a ``.data`` blob whose float32 weights are scaled by ``1 + 1e-3 * N(0, 1)``, so
    every fold file has its own hash, as real folds do, at the cost of a numpy multiply.
    """
    import onnx

    base = export_onnx(model, scratch / f"{ARCH}_final.onnx")  # type: ignore[arg-type]
    onnx_bytes = base.read_bytes()
    blob = np.frombuffer((scratch / f"{ARCH}_final.onnx.data").read_bytes(), dtype=np.uint8)
    regions = []  # (offset, length) in bytes of every float32 tensor in the blob
    for tensor in onnx.load(str(base), load_external_data=False).graph.initializer:
        entry = {e.key: e.value for e in tensor.external_data}
        regions.append((int(entry.get("offset", 0)), int(entry["length"])))
    for index, source in enumerate(sources):
        fold = folds / f"fold_{source}"
        fold.mkdir(parents=True, exist_ok=True)
        (fold / f"{ARCH}_final.onnx").write_bytes(onnx_bytes)
        data = blob.copy()
        rng = np.random.default_rng([7, index])
        for offset, length in regions:
            weights = data[offset : offset + length].view(np.float32)
            weights *= (1 + 1e-3 * rng.standard_normal(weights.size)).astype(np.float32)
        (fold / f"{ARCH}_final.onnx.data").write_bytes(data.tobytes())


def generate(root: Path, n_sources: int, pairs: int, frames: int, models: tuple[object, object],
             names: list[str] | None = None) -> float:
    """Write corpus, cache, folds and baselines under ``root`` (skipped when already there).

    ``names`` gives the sources' names (default ``Src0000``...; the team's script needs its
    own nine). Every YUV is a sparse file the size of one 1920x1080 yuv420p frame: the
    gate reads only names, and the script's loader (``probe_yuv_dims``) takes that size
    for the corpus default instead of calling ffprobe; no disk blocks are used.
    """
    stamp = {"sources": n_sources, "pairs": pairs, "frames": frames, "arch": ARCH, "version": 2,
             "names": names}
    marker = root / "complete.json"
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return 0.0
    if root.exists():
        shutil.rmtree(root)
    start = time.perf_counter()
    # The library's own writer: json.dumps of lists, one file per pair.
    synthetic_corpus(root, n_sources, pairs_per_source=pairs, frames=frames, names=names)
    for yuv in (root / "corpus").glob("*/*.yuv"):
        os.truncate(yuv, FRAME_BYTES_1080P)
    sources = names or [f"Src{i:04d}" for i in range(n_sources)]
    write_folds(root / "folds", sources, models[0], root / "scratch")
    export_onnx(models[0], root / "baselines" / "mlp_ref.onnx")  # type: ignore[arg-type]
    export_onnx(models[1], root / "baselines" / "linear_ref.onnx")  # type: ignore[arg-type]
    run_dir = root / "run"
    run_dir.mkdir()
    (run_dir / "pytest.ini").write_text("[pytest]\n")  # rootdir here: no outer ini/conftest
    marker.write_text(json.dumps(stamp))
    return time.perf_counter() - start


# --------------------------------------------------------------------------- running


def child_env(autoload: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_PLUGINS", None)
    if not autoload:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    else:
        env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    return env


def pytest_args(root: Path, autoload: bool, xdist: int = 0, gate: bool = True) -> list[str]:
    args = ["-q", "-p", "no:cacheprovider"]
    if not autoload:
        args += ["-p", "pytest_loso.plugin"]
        if xdist:
            args += ["-p", "xdist"]
    if xdist:
        args += ["-n", str(xdist)]
    if gate:
        baselines = sorted((root / "baselines").glob("*.onnx"))
        args += [
            f"--loso-dir={root / 'folds'}",
            f"--data-root={root / 'corpus'}",
            f"--loso-cache={root / 'cache'}",
            *[f"--loso-baseline={b}" for b in baselines],
            f"--loso-report={root / 'report'}",
        ]
    return args


# The measured command is started by this small launcher, not by the benchmark itself: on
# Linux a child's ru_maxrss starts at its parent's resident size (exec records the old address
# space's high-water mark, and fork/vfork hand the child the parent's), so a benchmark holding
# a table's columns (bench_table.py) or a trained model would inflate every figure it measured.
# A fresh Python that imports only what it needs here is ~12 MB, below any measured process.
_LAUNCHER = """
import json, os, subprocess, sys, time
result, log, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(log, "wb") as out:
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
with open(result, "w") as file:
    json.dump({"wall": wall, "maxrss": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime,
               "returncode": os.waitstatus_to_exitcode(status)}, file)
"""


def measure(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> Run:
    """Run ``cmd`` in a fresh child of a small launcher: wall time around it, peak RSS and CPU
    seconds (its own and those of every process it waited for) from ``wait4`` on that child."""
    result = log.with_suffix(".rusage.json")
    subprocess.run([sys.executable, "-c", _LAUNCHER, str(result), str(log), *cmd], cwd=cwd, env=env, check=True)
    usage = json.loads(result.read_text())
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    run = Run(usage["wall"], usage["maxrss"] * scale / 2**20, usage["cpu"], usage["returncode"], log)
    text = log.read_text(errors="replace")
    for count, word in re.findall(r"(\d+) (passed|failed|errors?)\b", text[-4000:]):
        if word == "passed":
            run.passed = int(count)
        else:
            run.failed += int(count)
    return run


def fail(run: Run, what: str) -> None:
    lines = run.log.read_text(errors="replace").splitlines()
    print(f"\nthe gate FAILED ({what}: pytest exit {run.returncode}); last {TAIL_LINES} lines of {run.log}:")
    for line in lines[-TAIL_LINES:]:
        print("  | " + line)
    sys.exit(1)


def measured(cmd: list[str], cwd: Path, env: dict[str, str], log: Path, what: str) -> Run:
    """``measure``, and stop the benchmark with the log's tail when the command failed."""
    run = measure(cmd, cwd, env, log)
    if run.returncode != 0:
        fail(run, what)
    return run


def profile(root: Path, env: dict[str, str], autoload: bool, out: Path) -> None:
    """cProfile of the gate in one process (imports, collection, scoring, report): top 25."""
    import pstats

    cmd = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "pytest", *pytest_args(root, autoload)]
    run = measured(cmd, root / "run", env, root / "profile.log", "profiled run")
    print(f"\ncProfile of the in-process gate, {root.name} ({run.wall:.2f} s under the profiler): {out}")
    stats = pstats.Stats(str(out))
    stats.sort_stats("cumulative").print_stats(25)
    stats.sort_stats("tottime").print_stats(15)


# --------------------------------------------------------------------------- the team's script


SCRIPT_NAME = "eval_loso_mlp_small.py"


def find_fork(script: Path, fork: Path | None) -> Path:
    """The folder holding the fork's ``ai/`` package, which the script imports ``ai.train.dataset`` from."""
    candidates = [fork] if fork else [script.resolve().parents[2]] if len(script.resolve().parents) > 2 else []
    for folder in candidates:
        if (folder / "ai" / "train" / "dataset.py").is_file():
            return folder.resolve()
    where = f"{fork}" if fork else f"{candidates[0] if candidates else script.parent} (the script's clone)"
    sys.exit(f"bench_gate.py: {where} has no ai/train/dataset.py, which {SCRIPT_NAME} imports; give the root of "
             "a lusoris/vmaf checkout with --script-fork DIR (see the module docstring)")


def script_command(script: Path, fork: Path, root: Path, sources: list[str]) -> tuple[list[str], dict[str, str]]:
    """Command and environment that run the team's script on the corpus under ``root``.

    The script puts ``Path(__file__).parents[2]`` first on ``sys.path``, so it runs as a
    copy at ``<root>/script/ai/scripts/`` (that folder has no ``ai/__init__.py``, so the
    fork's package, put on ``PYTHONPATH``, is the one imported), with ``$VMAF_TINY_AI_CACHE``
    at the corpus's cache. Its nine hard-coded ``CLIPS`` are replaced by ``sources`` when
    these differ (the only change; the output says so): the same work, per source, as the gate.
    """
    text = script.read_text()
    if sources != SCRIPT_SOURCES:
        text, count = re.subn(r"^CLIPS = \[.*?^\]", f"CLIPS = {sources!r}", text, count=1, flags=re.M | re.S)
        if count != 1:
            sys.exit(f"bench_gate.py: no 'CLIPS = [...]' list in {script} to point at the {len(sources)} sources")
    copy = root / "script" / "ai" / "scripts" / SCRIPT_NAME
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(text)
    env = child_env(autoload=False)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(fork), env.get("PYTHONPATH")]))
    env["VMAF_TINY_AI_CACHE"] = str(root / "cache")
    cmd = [sys.executable, str(copy), "--data-root", str(root / "corpus"), "--loso-dir", str(root / "folds"),
           "--mlp-small-baseline", str(root / "baselines" / "mlp_ref.onnx"),
           "--mlp-medium-baseline", str(root / "baselines" / "linear_ref.onnx"),
           "--out", str(root / "script_out")]
    return cmd, env


def same_numbers(root: Path) -> str:
    """Whether the gate's report and the script's JSON hold the same per-fold figures."""
    script = json.loads((root / "script_out" / "loso_mlp_small_eval.json").read_text())
    gate = json.loads((root / "report" / "loso_eval.json").read_text())
    ours = gate.get("loso_per_fold", {})
    keys = ("n", "plcc", "srocc", "rmse")
    differ = [clip for clip, m in script["loso_per_fold"].items()
              if any(ours.get(clip, {}).get(k) != m[k] for k in keys)]
    if differ:
        return f"per-fold figures DIFFER for {len(differ)} of {len(script['loso_per_fold'])} folds ({differ[0]}, ...)"
    return f"per-fold n, PLCC, SROCC, RMSE identical for all {len(script['loso_per_fold'])} folds"


@dataclass
class SideBySide:
    sources: int
    gate: list[Run]
    script: list[Run]
    numbers: str

    @property
    def ratio(self) -> float:
        return statistics.median(r.wall for r in self.gate) / statistics.median(r.wall for r in self.script)


def side_by_side(root: Path, sources: list[str], script: Path, fork: Path, repeat: int, env: dict[str, str],
                 autoload: bool) -> SideBySide:
    """Gate and script alternately on the same corpus, ``repeat`` times each (a noisy machine
    slows both alike), then their per-fold numbers compared."""
    script_cmd, script_env = script_command(script, fork, root, sources)
    gate_cmd = [sys.executable, "-m", "pytest", *pytest_args(root, autoload)]
    result = SideBySide(len(sources), [], [], "")
    for i in range(repeat):
        gate = measured(gate_cmd, root / "run", env, root / f"side_gate{i}.log",
                        f"gate beside the script, {len(sources)} sources")
        ran = measured(script_cmd, root / "run", script_env, root / f"side_script{i}.log",
                       f"{SCRIPT_NAME}, {len(sources)} sources")
        result.gate.append(gate)
        result.script.append(ran)
    result.numbers = same_numbers(root)
    return result


def print_side_by_side(results: list[SideBySide]) -> None:
    print(f"\nside by side with the team's {SCRIPT_NAME} (same corpus, 2 baselines, runs alternated):")
    header = f"{'sources':>7} {'runs':>4} {'gate median s':>13} {'script median s':>15} {'ratio':>6} " \
             f"{'gate peak MB':>12} {'script peak MB':>14}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.sources:>7} {len(r.gate):>4} {statistics.median(x.wall for x in r.gate):>13.3f} "
              f"{statistics.median(x.wall for x in r.script):>15.3f} {r.ratio:>6.2f} "
              f"{max(x.peak_mb for x in r.gate):>12.1f} {max(x.peak_mb for x in r.script):>14.1f}")
    for r in results:
        print(f"  {r.sources} sources: {r.numbers}")
        print(f"    gate   {', '.join(f'{x.wall:.2f}' for x in r.gate)} s")
        print(f"    script {', '.join(f'{x.wall:.2f}' for x in r.script)} s")
    print("targets:")
    for r in results:
        if r.sources == len(SCRIPT_SOURCES):
            verdict = "MET" if r.ratio <= SCRIPT_TARGET else "NOT MET"
            print(f"  {r.sources} sources: gate wall time <= {SCRIPT_TARGET}x the script's: x{r.ratio:.2f} -> {verdict}")
        else:
            gate_peak, script_peak = max(x.peak_mb for x in r.gate), max(x.peak_mb for x in r.script)
            verdict = "MET" if gate_peak <= script_peak else "NOT MET"
            print(f"  {r.sources} sources: gate peak memory <= the script's: {gate_peak:.0f} vs {script_peak:.0f} MB "
                  f"-> {verdict}")


# --------------------------------------------------------------------------- main


def parse_repeat(text: str | None, sizes: list[int]) -> dict[int, int]:
    """``3`` (every size) or ``9:3,100:1``; default 3 below 100 sources, else 1."""
    repeat = {n: 3 if n < 100 else 1 for n in sizes}
    if text:
        if ":" not in text:
            return {n: int(text) for n in sizes}
        for part in text.split(","):
            size, count = part.split(":")
            repeat[int(size)] = int(count)
    return repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="9,100,1000", help="corpus sizes in sources (default 9,100,1000)")
    parser.add_argument("--repeat", default=None, help="runs per size: N, or SIZE:N,... (default 3 for <100, else 1)")
    parser.add_argument("--pairs", type=int, default=8, help="pairs per source (default 8)")
    parser.add_argument("--frames", type=int, default=150, help="frames per pair (default 150)")
    parser.add_argument("--workdir", type=Path, default=None, help="where corpora go (kept; reused when complete)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--no-xdist", action="store_true", help="skip the -n 2 run")
    parser.add_argument("--xdist-repeat", type=int, default=1,
                        help="serial / -n 2 run pairs, alternated, on the largest corpus (default 1)")
    parser.add_argument("--profile", action="store_true", help="cProfile the gate on the largest corpus")
    parser.add_argument("--autoload", action="store_true", help="let every installed pytest plugin load")
    parser.add_argument("--bootstrap", type=int, default=0,
                        help="also run the largest corpus with --loso-bootstrap=N and print the added time")
    parser.add_argument("--script", type=Path, default=None,
                        help=f"the team's {SCRIPT_NAME}: run it side by side with the gate (see the docstring)")
    parser.add_argument("--script-fork", type=Path, default=None,
                        help="root of a lusoris/vmaf checkout holding ai/ (default: the script's own clone)")
    parser.add_argument("--script-sizes", default="9",
                        help="corpus sizes for the side-by-side runs (default 9: the script's own nine sources)")
    parser.add_argument("--script-repeat", type=int, default=7,
                        help="alternated gate/script runs on the nine sources (default 7; 1 at other sizes)")
    args = parser.parse_args()

    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    repeat = parse_repeat(args.repeat, sizes)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="loso-bench-"))
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = child_env(args.autoload)
    try:
        run_all(args, sizes, repeat, workdir, env)
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"\ncorpora kept in {workdir}")


def run_all(args: argparse.Namespace, sizes: list[int], repeat: dict[int, int], workdir: Path,
            env: dict[str, str]) -> None:
    import platform

    import pytest

    print(f"pytest-loso gate benchmark: python {platform.python_version()}, pytest {pytest.__version__}, "
          f"{os.cpu_count()} CPUs, {platform.platform()}")
    print(f"workdir {workdir}; {args.pairs} pairs x {args.frames} frames per source; "
          f"plugins: {'autoloaded' if args.autoload else 'autoload off, -p pytest_loso.plugin'}")

    start = time.perf_counter()
    models = train_models(args.pairs, args.frames)
    print(f"trained one {ARCH} + one linear model in {time.perf_counter() - start:.2f} s")

    # Fixed cost: pytest start-up with the plugin loaded and the gate off (exit 5: nothing collected).
    floor_root = workdir / "floor"
    (floor_root / "run").mkdir(parents=True, exist_ok=True)
    (floor_root / "run" / "pytest.ini").write_text("[pytest]\n")
    floor_cmd = [sys.executable, "-m", "pytest", *pytest_args(floor_root, args.autoload, gate=False)]
    floor = min(
        (measure(floor_cmd, floor_root / "run", env, floor_root / f"floor{i}.log") for i in range(3)),
        key=lambda r: r.wall,
    )

    results: dict[int, SizeResult] = {}
    for n in sizes:
        root = workdir / f"n{n}"
        generated = generate(root, n, args.pairs, args.frames, models)
        result = SizeResult(n, n * args.pairs * args.frames, generate_s=generated)
        cmd = [sys.executable, "-m", "pytest", *pytest_args(root, args.autoload)]
        for i in range(repeat[n]):
            run = measured(cmd, root / "run", env, root / f"run{i}.log", f"{n} sources, run {i + 1}")
            result.runs.append(run)
        results[n] = result
        note = f"generated in {generated:.1f} s" if generated else "corpus reused"
        print(f"  {n:>5} sources: {', '.join(f'{r.wall:.2f}' for r in result.runs)} s  ({note})")

    xdist_pairs: list[tuple[Run, Run]] = []  # (serial, -n 2) on the largest corpus, alternated
    largest = sizes[-1] if sizes else None
    if largest and not args.no_xdist:
        if importlib.util.find_spec("xdist") is None:
            print("pytest-xdist not installed: no -n 2 run")
        else:
            root = workdir / f"n{largest}"
            serial_cmd = [sys.executable, "-m", "pytest", *pytest_args(root, args.autoload)]
            xdist_cmd = [sys.executable, "-m", "pytest", *pytest_args(root, args.autoload, xdist=2)]
            for i in range(args.xdist_repeat):
                serial = measured(serial_cmd, root / "run", env, root / f"run_serial{i}.log",
                                  f"{largest} sources beside -n 2")
                xdist_run = measured(xdist_cmd, root / "run", env, root / f"run_xdist{i}.log",
                                     f"{largest} sources with -n 2")
                xdist_pairs.append((serial, xdist_run))

    bootstrap_run = None
    if largest and args.bootstrap:
        root = workdir / f"n{largest}"
        cmd = [sys.executable, "-m", "pytest", *pytest_args(root, args.autoload), f"--loso-bootstrap={args.bootstrap}"]
        bootstrap_run = measured(cmd, root / "run", env, root / "run_bootstrap.log",
                                 f"{largest} sources with --loso-bootstrap={args.bootstrap}")

    # ------------------------------------------------------------------ report
    print()
    header = f"{'sources':>7} {'frames':>10} {'items':>6} {'wall best s':>11} {'median s':>9} " \
             f"{'peak MB':>8} {'s/source':>9} {'net s/source':>12}"
    print(header)
    print("-" * len(header))
    print(f"{'0':>7} {'-':>10} {'0':>6} {floor.wall:>11.3f} {'':>9} {floor.peak_mb:>8.1f} {'':>9} {'':>12}"
          "   pytest start-up, plugin loaded, gate off")
    for n, r in results.items():
        net = (r.best - floor.wall) / n
        print(f"{n:>7} {r.frames:>10,} {r.items:>6} {r.best:>11.3f} {r.median:>9.3f} {r.peak_mb:>8.1f} "
              f"{r.best / n:>9.4f} {net:>12.4f}   ({len(r.runs)} run{'s' if len(r.runs) > 1 else ''})")
    if xdist_pairs:
        n = largest
        serial_median = statistics.median(s.wall for s, _ in xdist_pairs)
        xdist_median = statistics.median(x.wall for _, x in xdist_pairs)
        for label, runs in (("serial", [s for s, _ in xdist_pairs]), ("-n 2", [x for _, x in xdist_pairs])):
            wall = statistics.median(r.wall for r in runs)
            print(f"{n:>7} {results[n].frames:>10,} {runs[0].passed + runs[0].failed:>6} {min(r.wall for r in runs):>11.3f} "
                  f"{wall:>9.3f} {max(r.peak_mb for r in runs):>8.1f} {wall / n:>9.4f} "
                  f"{(wall - floor.wall) / n:>12.4f}   {label}, alternated x{len(runs)}, "
                  f"CPU {statistics.median(r.cpu for r in runs):.1f} s (all processes)")
        print(f"{'':>7} -n 2 vs serial: x{serial_median / xdist_median:.2f} speed-up (medians; peak = largest single "
              f"process; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    if bootstrap_run is not None:
        n, plain = largest, results[largest].best
        print(f"{n:>7} {results[n].frames:>10,} {bootstrap_run.passed + bootstrap_run.failed:>6} "
              f"{bootstrap_run.wall:>11.3f} {'':>9} {bootstrap_run.peak_mb:>8.1f} {bootstrap_run.wall / n:>9.4f} "
              f"{(bootstrap_run.wall - floor.wall) / n:>12.4f}   --loso-bootstrap={args.bootstrap}: adds "
              f"{bootstrap_run.wall - plain:.2f} s = x{(bootstrap_run.wall - plain) / plain:.2f} of the plain run "
              f"(target: at most x2)")
    print("net s/source = (best wall - start-up floor) / sources")

    if 100 in results and 1000 in results:
        raw = (results[1000].best / 1000) / (results[100].best / 100)
        net = ((results[1000].best - floor.wall) / 1000) / ((results[100].best - floor.wall) / 100)
        marginal = (results[1000].best - results[100].best) / 900
        print(f"\nlinearity, time per source 1000 vs 100: x{raw:.2f} raw, x{net:.2f} net of start-up "
              f"(1.00 = linear); marginal cost 100->1000: {marginal * 1000:.1f} ms/source")

    print("\ntargets:")
    for n, budget in TARGETS.items():
        if n in results:
            best = results[n].best
            verdict = "MET" if best < budget else "NOT MET"
            print(f"  {n:>5} sources + 2 baselines < {budget:g} s: best {best:.2f} s, "
                  f"median {results[n].median:.2f} s -> {verdict}")
        else:
            print(f"  {n:>5} sources + 2 baselines < {budget:g} s: not measured (--sizes)")

    if args.script is None:
        print(f"\nside-by-side comparison with the team's {SCRIPT_NAME} skipped: give --script PATH")
    else:
        fork = find_fork(args.script, args.script_fork)
        compared = []
        for n in sorted({int(s) for s in args.script_sizes.split(",") if s.strip()}):
            names = SCRIPT_SOURCES if n == len(SCRIPT_SOURCES) else None
            root = workdir / ("netflix9" if names else f"n{n}")
            generate(root, n, args.pairs, args.frames, models, names)
            sources = names or [f"Src{i:04d}" for i in range(n)]
            compared.append(side_by_side(root, sources, args.script, fork, args.script_repeat if names else 1, env,
                                         args.autoload))
        print_side_by_side(compared)

    if args.profile and largest:
        profile(workdir / f"n{largest}", env, args.autoload, workdir / f"gate_n{largest}.prof")


if __name__ == "__main__":
    main()
