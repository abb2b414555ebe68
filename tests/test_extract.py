"""The cold cache: the gate fills missing or corrupt cache files with real libvmaf.

Everything is real: clips from ffmpeg's generators encoded on a small libx264 ladder
(``clips.py``), the libvmaf inside the imageio-ffmpeg wheel, pytest runs through
``pytester`` (in process, as a subprocess, or two at once with ``subprocess.Popen``).
The features and scores the gate writes are compared with a second libvmaf run done here
with a command of the test's own (``clips.independent_libvmaf``).

The only non-plugin program in the loop is a pass-through wrapper around ffmpeg
(``counting_ffmpeg``) that logs each libvmaf command line before ``exec``-ing the real
ffmpeg, so the concurrency tests can count libvmaf runs per pair across processes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("imageio_ffmpeg", reason="the cold-cache tests need the vmaf extra: pip install -e '.[vmaf]'")
pytest.importorskip("filelock", reason="the cold-cache tests need the vmaf extra: pip install -e '.[vmaf]'")

from clips import ClipCorpus, LibvmafResult, ffmpeg_exe, independent_libvmaf, make_corpus, make_source  # noqa: E402
from loso_helpers import failure_section  # noqa: E402

from loso_testing.training import export_onnx, train  # noqa: E402

# Captured before the autouse fixture removes it: test_vmaf_cli_backend uses it explicitly.
VMAF_BIN = os.environ.get("VMAF_BIN")

FEATURE_NAMES = ["adm2", "vif_scale0", "vif_scale1", "vif_scale2", "vif_scale3", "motion2"]
ARCH = "mlp_small"
LOOSE = [
    "--loso-min-plcc", "none", "--loso-min-srocc", "none", "--loso-max-rmse", "none",
    "--loso-min-mean-plcc", "none", "--loso-max-mean-rmse", "none",
]

SMALL_SOURCES = ["Life", "Mandelbrot", "TestCard"]
SMALL_W, SMALL_H, SMALL_FRAMES = 64, 48, 12
SMALL_LADDER = [(48, 24), (32, 32), (24, 40)]  # (encode height, x264 CRF)

# Big enough that one libvmaf pass takes ~0.3 s, so a run can be killed in the middle.
LARGE_SOURCES = ["Cells", "TestCard"]
LARGE_W, LARGE_H, LARGE_FRAMES = 640, 480, 40
LARGE_LADDER = [(480, 24), (360, 30), (240, 36)]

_OUTCOME_RE = re.compile(r"^(PASSED|FAILED|SKIPPED|ERROR) (?!\[\d+\])(\S+)")  # "SKIPPED [n] ..." names no test


# -- the session's clips, independent libvmaf numbers and fold models ---------------------------


@dataclass
class Built:
    corpus: ClipCorpus
    loso_dir: Path
    expected: dict[str, LibvmafResult] = field(default_factory=dict)  # dis stem -> independent libvmaf

    @property
    def frame_size(self) -> str:
        return f"{self.corpus.width}x{self.corpus.height}"

    @property
    def n_pairs(self) -> int:
        return len(self.corpus.pairs)

    def cache_paths(self, cache: Path, source: str | None = None) -> list[Path]:
        return [cache / p.source / f"{p.stem}.json" for p in self.corpus.pairs if source in (None, p.source)]


def _export_folds(loso_dir: Path, sources: list[str], data: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """A tiny mlp_small per held-out source, trained on the other sources' libvmaf features."""
    for held_out in sources:
        others = [s for s in data if s != held_out] or list(data)
        x = np.concatenate([data[s][0] for s in others])
        y = np.concatenate([data[s][1] for s in others])
        export_onnx(train(x, y, ARCH, steps=100, seed=0), loso_dir / f"fold_{held_out}" / f"{ARCH}_final.onnx")


@pytest.fixture(scope="session")
def small(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """3 sources x 3 rungs of 64x48, 12 frames; every pair scored independently by libvmaf."""
    root = tmp_path_factory.mktemp("extract_small")
    corpus = make_corpus(root / "corpus", SMALL_SOURCES, SMALL_W, SMALL_H, SMALL_FRAMES, SMALL_LADDER)
    built = Built(corpus, root / "folds")
    for pair in corpus.pairs:
        built.expected[pair.stem] = independent_libvmaf(pair.ref, pair.dis, SMALL_W, SMALL_H)
    data = {}
    for source in corpus.sources:
        results = [built.expected[p.stem] for p in corpus.pairs if p.source == source]
        data[source] = (np.concatenate([r.features for r in results]), np.concatenate([r.scores for r in results]))
    _export_folds(built.loso_dir, corpus.sources, data)
    return built


@pytest.fixture(scope="session")
def large(tmp_path_factory: pytest.TempPathFactory, small: Built) -> Built:
    """2 sources x 3 rungs of 640x480, 40 frames: libvmaf takes long enough to be interrupted."""
    root = tmp_path_factory.mktemp("extract_large")
    corpus = make_corpus(root / "corpus", LARGE_SOURCES, LARGE_W, LARGE_H, LARGE_FRAMES, LARGE_LADDER)
    built = Built(corpus, root / "folds")
    data = {}
    for source in small.corpus.sources:  # any real features will do: the point is extraction
        results = [small.expected[p.stem] for p in small.corpus.pairs if p.source == source]
        data[source] = (np.concatenate([r.features for r in results]), np.concatenate([r.scores for r in results]))
    _export_folds(built.loso_dir, corpus.sources, data)
    return built


@pytest.fixture(autouse=True)
def _no_ambient_cache_or_vmaf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs must not pick up the machine's $VMAF_BIN (auto would prefer it) or shared cache."""
    monkeypatch.delenv("VMAF_BIN", raising=False)
    monkeypatch.delenv("VMAF_TINY_AI_CACHE", raising=False)
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)


# -- running the gate ---------------------------------------------------------------------------


@dataclass
class GateRun:
    ret: int
    stdout: str
    stderr: str
    report: dict | None

    @property
    def output(self) -> str:
        return f"{self.stdout}\n{self.stderr}"

    @property
    def outcomes(self) -> dict[str, str]:
        """Outcomes of the scoring tests (the aggregate tests are the subject of test_thresholds)."""
        found = {}
        for line in self.stdout.splitlines():
            match = _OUTCOME_RE.match(line)
            if match and "::aggregate[" not in match[2]:
                found[match[2]] = match[1]
        return found

    @property
    def extraction(self) -> dict:
        assert self.report is not None, self.output
        return self.report["run_provenance"]["extraction"]

    def failure_text(self, nodeid: str) -> str:
        return failure_section(self.stdout.splitlines(), nodeid)

    def report_failure(self, nodeid: str) -> str:
        assert self.report is not None, self.output
        test = nodeid.split("::")[-1]
        messages = [f["message"] for f in self.report["failures"] if f["test"] == test]
        assert len(messages) == 1, (test, self.report["failures"])
        return messages[0]


class Env:
    """A test's own cache and report folders (in ``pytester.path``) over a session corpus."""

    def __init__(self, pytester: pytest.Pytester, built: Built, ini: str = "") -> None:
        self.pytester = pytester
        self.built = built
        self.root = pytester.path
        self.cache = self.root / "cache"
        self.report_dir = self.root / "report"
        self.data_root = built.corpus.root
        self.loso_dir = built.loso_dir
        # Own rootdir and ini: no ini, conftest or test file of an outer folder is picked up.
        (self.root / "pytest.ini").write_text("[pytest]\n" + ini)

    def args(self, *extra: str, report_dir: Path | None = None, frame_size: str | None = None) -> list[str]:
        return [
            "-p", "no:cacheprovider",
            "-rA",
            f"--loso-dir={self.loso_dir}",
            f"--data-root={self.data_root}",
            f"--loso-cache={self.cache}",
            f"--loso-report={report_dir or self.report_dir}",
            f"--loso-frame-size={frame_size or self.built.frame_size}",
            *LOOSE,
            *extra,
        ]

    @staticmethod
    def _report(report_dir: Path) -> dict | None:
        path = report_dir / "loso_eval.json"
        return json.loads(path.read_text()) if path.exists() else None

    def _clear_report(self, report_dir: Path) -> None:
        (report_dir / "loso_eval.json").unlink(missing_ok=True)

    def run(self, *extra: str, frame_size: str | None = None) -> GateRun:
        """In process, through pytester."""
        self._clear_report(self.report_dir)
        result = self.pytester.runpytest(*self.args(*extra, frame_size=frame_size))
        return GateRun(int(result.ret), result.stdout.str(), result.stderr.str(), self._report(self.report_dir))

    def run_subprocess(self, *extra: str) -> GateRun:
        self._clear_report(self.report_dir)
        result = self.pytester.runpytest_subprocess(*self.args(*extra), timeout=300)
        return GateRun(int(result.ret), result.stdout.str(), result.stderr.str(), self._report(self.report_dir))

    def popen(self, *extra: str, report_dir: Path | None = None, tag: str = "run") -> subprocess.Popen:
        """A separate ``python -m pytest`` process, in its own process group (so it can be killed whole)."""
        report_dir = report_dir or self.report_dir
        self._clear_report(report_dir)
        out = open(self.root / f"{tag}.stdout", "w")  # noqa: SIM115  # closed by finish()
        err = open(self.root / f"{tag}.stderr", "w")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", *self.args(*extra, report_dir=report_dir)],
            cwd=self.root, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        process.loso_files = (out, err, report_dir, tag)  # type: ignore[attr-defined]
        return process

    def finish(self, process: subprocess.Popen, timeout: float = 300) -> GateRun:
        try:
            ret = process.wait(timeout=timeout)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        out, err, report_dir, tag = process.loso_files  # type: ignore[attr-defined]
        out.close()
        err.close()
        stdout = (self.root / f"{tag}.stdout").read_text()
        stderr = (self.root / f"{tag}.stderr").read_text()
        return GateRun(ret, stdout, stderr, self._report(report_dir))

    def counting_ffmpeg(self) -> tuple[Path, Path]:
        """A wrapper that appends each libvmaf command line to a log, then execs the real ffmpeg."""
        log = self.root / "libvmaf_calls.log"
        wrapper = self.root / "ffmpeg_logged"
        wrapper.write_text(
            "#!/bin/sh\n"
            f"case \"$*\" in *libvmaf*) printf '%s\\n' \"$*\" >> '{log}' ;; esac\n"
            f"exec '{ffmpeg_exe()}' \"$@\"\n"
        )
        wrapper.chmod(0o755)
        return wrapper, log


def fold_ids(sources: list[str]) -> list[str]:
    return [f"loso::fold[{ARCH}-{s}]" for s in sources]


def all_passed(run: GateRun, sources: list[str]) -> None:
    assert run.ret == 0, run.output
    assert run.outcomes == {nodeid: "PASSED" for nodeid in fold_ids(sources)}, run.output


def load_cache(path: Path) -> dict:
    return json.loads(path.read_text())


def assert_schema(payload: dict, frames: int) -> None:
    # The training pipeline's schema, plus how the gate made the file (which it never reads).
    assert set(payload) == {"features", "scores", "made_by"}
    assert set(payload["made_by"]) == {"tool", "extractor", "frame_size", "pixel_format", "ref", "dis"}
    assert set(payload["features"]) == {"feature_names", "per_frame", "n_frames"}
    assert set(payload["scores"]) == {"per_frame", "pooled"}
    assert payload["features"]["feature_names"] == FEATURE_NAMES
    assert payload["features"]["n_frames"] == frames
    assert len(payload["features"]["per_frame"]) == frames
    assert all(len(row) == len(FEATURE_NAMES) for row in payload["features"]["per_frame"])
    assert len(payload["scores"]["per_frame"]) == frames
    assert isinstance(payload["scores"]["pooled"], float)


def assert_matches_libvmaf(payload: dict, expected: LibvmafResult, tol: float = 1e-6) -> None:
    np.testing.assert_allclose(payload["features"]["per_frame"], expected.features, rtol=0, atol=tol)
    np.testing.assert_allclose(payload["scores"]["per_frame"], expected.scores, rtol=0, atol=tol)
    assert payload["scores"]["pooled"] == pytest.approx(expected.pooled, abs=tol)


def assert_all_whole(paths: list[Path], frames: int) -> None:
    for path in paths:
        try:
            payload = load_cache(path)
        except ValueError as exc:
            raise AssertionError(f"{path} is not whole JSON ({exc}): {path.read_bytes()[-80:]!r}") from None
        assert_schema(payload, frames)


# -- 1. cold cache end to end --------------------------------------------------------------------


def test_cold_cache_fills_every_pair_with_libvmaf_and_a_second_run_reads_it(pytester, small):
    env = Env(pytester, small)
    assert not env.cache.exists()

    run = env.run()  # default --loso-extractor auto: the imageio-ffmpeg libvmaf
    all_passed(run, small.corpus.sources)
    assert f"loso: computing {small.n_pairs} missing cache files of 3 sources with ffmpeg" in run.stdout

    written = sorted(env.cache.rglob("*.json"))
    assert written == sorted(small.cache_paths(env.cache))
    for pair in small.corpus.pairs:
        payload = load_cache(env.cache / pair.source / f"{pair.stem}.json")
        assert_schema(payload, SMALL_FRAMES)
        assert_matches_libvmaf(payload, small.expected[pair.stem])
    # the pairs are not mixed up: each rung's VMAF falls with the CRF, per source
    for source in small.corpus.sources:
        pooled = [small.expected[p.stem].pooled for p in small.corpus.pairs if p.source == source]
        assert pooled == sorted(pooled, reverse=True) and pooled[0] - pooled[-1] > 20, (source, pooled)

    # the gate scored the frames it extracted
    for source in small.corpus.sources:
        assert run.report["loso_per_fold"][source]["n"] == len(SMALL_LADDER) * SMALL_FRAMES
        assert "error" not in run.report["loso_per_fold"][source]
    extraction = run.extraction
    assert extraction["pairs_computed"] == small.n_pairs
    assert extraction["pairs_read_from_cache"] == 0
    assert extraction["corrupt_recomputed"] == []
    assert extraction["extractor"]["kind"] == "ffmpeg"
    assert extraction["extractor"]["path"] == str(ffmpeg_exe())
    assert extraction["extractor"]["version"].startswith("ffmpeg version ")
    assert run.report["run_provenance"]["cache_fingerprint"]["files"] == small.n_pairs

    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in written}
    again = env.run()
    all_passed(again, small.corpus.sources)
    assert "missing cache files" not in again.stdout
    assert again.extraction["pairs_computed"] == 0
    assert again.extraction["pairs_read_from_cache"] == small.n_pairs
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(env.cache.rglob("*.json"))} == before
    fingerprint = again.report["run_provenance"]["cache_fingerprint"]["sha256"]
    assert fingerprint == run.report["run_provenance"]["cache_fingerprint"]["sha256"]


# -- 2. frame sizes -------------------------------------------------------------------------------


def test_wrong_frame_size_fails_that_source_and_per_source_sizes_rescue_the_others(pytester, small):
    # 64x46 frames are 4416 bytes; a 12-frame 64x48 clip (55296 bytes) is 12.52 of them.
    env = Env(pytester, small, ini="loso_frame_sizes =\n    Life: 64x48\n    Mandelbrot: 64x48\n")
    run = env.run(frame_size="64x46")
    assert run.ret == 1, run.output
    bad = "TestCard"
    assert run.outcomes == {
        f"loso::fold[{ARCH}-Life]": "PASSED",
        f"loso::fold[{ARCH}-Mandelbrot]": "PASSED",
        f"loso::fold[{ARCH}-{bad}]": "FAILED",
    }, run.output
    size = SMALL_W * SMALL_H * 3 // 2 * SMALL_FRAMES
    assert size == 55296
    files = [str(p) for pair in small.corpus.pairs if pair.source == bad for p in (pair.ref, pair.dis)]
    for text in (run.failure_text(f"loso::fold[{ARCH}-{bad}]"), run.report_failure(f"loso::fold[{ARCH}-{bad}]")):
        assert any(f in text for f in files), text
        assert f"size {size} bytes is not a whole number of 64x46 yuv420p frames (4416 bytes each)" in text
        assert "--loso-frame-size" in text and "loso_frame_sizes" in text
        assert "Traceback" not in text
    assert "INTERNALERROR" not in run.output
    # the sources with the right size were extracted, the other not
    assert sorted(env.cache.rglob("*.json")) == sorted(
        small.cache_paths(env.cache, "Life") + small.cache_paths(env.cache, "Mandelbrot")
    )
    for path in small.cache_paths(env.cache, "Life"):
        assert_matches_libvmaf(load_cache(path), small.expected[path.stem])
    assert run.extraction["pairs_computed"] == 6
    assert run.report["run_provenance"]["options"]["frame_sizes"] == {"Life": "64x48", "Mandelbrot": "64x48"}


# -- 3. corrupt cache entry ----------------------------------------------------------------------


def test_corrupt_cache_file_is_recomputed_and_reported(pytester, small):
    env = Env(pytester, small)
    all_passed(env.run(), small.corpus.sources)
    victim = small.cache_paths(env.cache, "Mandelbrot")[1]
    good = victim.read_bytes()
    victim.write_bytes(good[: len(good) // 2])  # a half-written file, as a killed copy leaves it

    run = env.run()
    all_passed(run, small.corpus.sources)
    payload = load_cache(victim)
    assert_schema(payload, SMALL_FRAMES)
    assert_matches_libvmaf(payload, small.expected[victim.stem])
    assert run.extraction["corrupt_recomputed"] == [str(victim)]
    # said in the terminal too, with the file and the reason (not only in the report's provenance)
    assert f"{victim}: corrupt cache file, not valid JSON" in run.output, run.output
    assert "replaced by a recomputation with libvmaf" in run.output
    assert run.extraction["pairs_computed"] == 1
    assert run.extraction["pairs_read_from_cache"] == small.n_pairs - 1

    # valid JSON in this schema, but no frames (a pipeline stopped before writing them): recomputed
    victim.write_text('{"features": {"feature_names": ["adm2"], "per_frame": []}, "scores": {"per_frame": []}}')
    run = env.run()
    all_passed(run, small.corpus.sources)
    assert_matches_libvmaf(load_cache(victim), small.expected[victim.stem])
    assert run.extraction["corrupt_recomputed"] == [str(victim)]

    # valid JSON laid out otherwise is another tool's file: never replaced (test_bad_input has the cases)
    theirs = b'{"features": {"feature_names": ["adm2"]}, "scores": 3}'
    victim.write_bytes(theirs)
    run = env.run()
    assert run.ret == 1 and victim.read_bytes() == theirs
    assert run.extraction["corrupt_recomputed"] == []

    # but a file the gate wrote (its made_by record says so) is its own, however broken: recomputed
    victim.unlink()
    all_passed(env.run(), small.corpus.sources)
    ours = load_cache(victim)
    ours["features"]["per_frame"] = None
    victim.write_text(json.dumps(ours))
    run = env.run()
    all_passed(run, small.corpus.sources)
    assert run.extraction["corrupt_recomputed"] == [str(victim)]
    assert f"{victim}: corrupt cache file: it holds an object with keys features, scores, made_by: " \
           "features.per_frame is a JSON null, not an array" in run.output
    assert_matches_libvmaf(load_cache(victim), small.expected[victim.stem])


# -- 4. killed extraction -------------------------------------------------------------------------


def test_killed_extraction_leaves_only_whole_cache_files_and_a_rerun_finishes(pytester, large):
    env = Env(pytester, large)
    process = env.popen("--loso-jobs", "1", tag="killed")
    deadline = time.monotonic() + 120
    while not list(env.cache.rglob("*.json")):
        assert process.poll() is None, f"the gate ended before it wrote a cache file: {env.finish(process).output}"
        assert time.monotonic() < deadline, "no cache file after 120 s"
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)  # the pytest process and the libvmaf it is running
    killed = env.finish(process)
    assert killed.ret == -signal.SIGKILL
    assert killed.report is None

    survivors = sorted(env.cache.rglob("*.json"))
    assert 1 <= len(survivors) < large.n_pairs, "the kill did not land during extraction"
    assert set(survivors) <= set(large.cache_paths(env.cache))
    assert_all_whole(survivors, LARGE_FRAMES)

    rerun = env.run("--loso-jobs", "2")
    all_passed(rerun, large.corpus.sources)
    assert sorted(env.cache.rglob("*.json")) == sorted(large.cache_paths(env.cache))
    assert_all_whole(large.cache_paths(env.cache), LARGE_FRAMES)
    assert rerun.extraction["pairs_computed"] == large.n_pairs - len(survivors)
    assert rerun.extraction["pairs_read_from_cache"] == len(survivors)
    # what survived the kill is what libvmaf computes for that pair
    pair = next(p for p in large.corpus.pairs if p.stem == survivors[0].stem)
    assert_matches_libvmaf(load_cache(survivors[0]), independent_libvmaf(pair.ref, pair.dis, LARGE_W, LARGE_H))


def test_ctrl_c_stops_extraction_without_computing_the_remaining_pairs(pytester, large):
    """SIGINT to the process group, as a terminal's Ctrl-C: the queued pairs are dropped, not computed first."""
    env = Env(pytester, large)
    process = env.popen("--loso-jobs", "1", tag="interrupted")
    deadline = time.monotonic() + 120
    while not (seen := list(env.cache.rglob("*.json"))):
        assert process.poll() is None, f"the gate ended before it wrote a cache file: {env.finish(process).output}"
        assert time.monotonic() < deadline, "no cache file after 120 s"
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGINT)
    interrupted = env.finish(process, timeout=60)
    assert interrupted.ret == 2, interrupted.output  # pytest's "interrupted"
    assert "KeyboardInterrupt" in interrupted.stdout
    after = sorted(env.cache.rglob("*.json"))
    # at most the pair libvmaf was finishing when the signal came; ffmpeg's partial log on
    # SIGINT (exit 255) must not become a cache file either
    assert len(after) <= len(seen) + 1 < large.n_pairs, (len(seen), len(after))
    assert_all_whole(after, LARGE_FRAMES)

    rerun = env.run()
    all_passed(rerun, large.corpus.sources)
    assert rerun.extraction["pairs_computed"] == large.n_pairs - len(after)
    assert_all_whole(large.cache_paths(env.cache), LARGE_FRAMES)


# -- 5. concurrency --------------------------------------------------------------------------------


def _calls_per_pair(log: Path, built: Built) -> dict[str, int]:
    lines = log.read_text().splitlines() if log.exists() else []
    return {p.stem: sum(f" -i {p.dis} " in line for line in lines) for p in built.corpus.pairs}


def test_two_concurrent_sessions_compute_each_pair_once(pytester, large):
    env = Env(pytester, large)
    wrapper, log = env.counting_ffmpeg()
    first = env.popen(f"--loso-ffmpeg={wrapper}", report_dir=env.root / "report_a", tag="a")
    second = env.popen(f"--loso-ffmpeg={wrapper}", report_dir=env.root / "report_b", tag="b")
    runs = [env.finish(first), env.finish(second)]
    for run in runs:
        all_passed(run, large.corpus.sources)
    computed = [run.extraction["pairs_computed"] for run in runs]
    assert sum(computed) == large.n_pairs, computed
    for run, own in zip(runs, computed):
        assert run.extraction["pairs_read_from_cache"] == large.n_pairs - own
    assert _calls_per_pair(log, large) == {p.stem: 1 for p in large.corpus.pairs}
    assert sorted(env.cache.rglob("*.json")) == sorted(large.cache_paths(env.cache))
    assert_all_whole(large.cache_paths(env.cache), LARGE_FRAMES)


def test_xdist_fills_cold_cache_once_before_workers_start(pytester, small):
    pytest.importorskip("xdist")
    env = Env(pytester, small)
    wrapper, log = env.counting_ffmpeg()
    run = env.run_subprocess("-n", "2", f"--loso-ffmpeg={wrapper}")
    all_passed(run, small.corpus.sources)
    # by the controller, in pytest_sessionstart: workers find a warm cache
    assert f"loso: computing {small.n_pairs} missing cache files of 3 sources with ffmpeg ({wrapper})" in run.stdout
    assert run.extraction["pairs_computed"] == small.n_pairs
    assert run.extraction["pairs_read_from_cache"] == 0
    assert _calls_per_pair(log, small) == {p.stem: 1 for p in small.corpus.pairs}
    for pair in small.corpus.pairs:
        assert_matches_libvmaf(load_cache(env.cache / pair.source / f"{pair.stem}.json"), small.expected[pair.stem])


# -- 6. missing binary ---------------------------------------------------------------------------


def test_missing_vmaf_binary_fails_items_with_the_command_and_warm_cache_needs_none(pytester, small):
    env = Env(pytester, small)
    missing = ["--loso-extractor", "vmaf", "--loso-vmaf-bin", "/nonexistent/vmaf"]
    run = env.run(*missing)
    assert run.ret == 1, run.output
    assert run.outcomes == {nodeid: "FAILED" for nodeid in fold_ids(small.corpus.sources)}, run.output
    assert "INTERNALERROR" not in run.output and "Traceback" not in run.output
    for source in small.corpus.sources:
        nodeid = f"loso::fold[{ARCH}-{source}]"
        first = next(p for p in small.corpus.pairs if p.source == source)
        for text in (run.failure_text(nodeid), run.report_failure(nodeid)):
            assert "cannot run libvmaf" in text, text
            assert f"command: /nonexistent/vmaf -r {first.ref} -d {first.dis} -w 64 -h 48" in text, text
            assert "--loso-vmaf-bin" in text  # the fix names the option
    assert not list(env.cache.rglob("*.json"))
    assert run.extraction["extractor"]["kind"] == "vmaf"
    assert run.extraction["extractor"]["path"] == "/nonexistent/vmaf"
    assert run.extraction["pairs_computed"] == 0

    all_passed(env.run("--loso-extractor", "ffmpeg"), small.corpus.sources)  # warm the cache
    warm = env.run(*missing)
    all_passed(warm, small.corpus.sources)
    assert warm.extraction["pairs_computed"] == 0
    assert warm.extraction["pairs_read_from_cache"] == small.n_pairs


# -- 7. clips libvmaf rejects ---------------------------------------------------------------------


def test_pairs_libvmaf_rejects_fail_with_its_error_and_the_command(pytester, small):
    """Two real refusals beside the good sources, each sized right by ``loso_frame_sizes``:

    * ``Tiny``, 16x16 clips: libvmaf's integer ADM crashes on frames this small
      (Netflix/vmaf#1035, #1098) -- ffmpeg dies of SIGSEGV and prints nothing;
    * ``Huge``, one 2064800x2 frame (a sparse file): ffmpeg refuses the picture size
      before libvmaf starts, and says so.
    """
    env = Env(pytester, small, ini="loso_frame_sizes =\n    Tiny: 16x16\n    Huge: 2064800x2\n")
    data_root, loso_dir = env.root / "corpus", env.root / "folds"
    for sub in ("ref", "dis"):
        (data_root / sub).mkdir(parents=True)
        for path in sorted((small.corpus.root / sub).iterdir()):
            (data_root / sub / path.name).symlink_to(path)
    loso_dir.mkdir()
    for fold in sorted(small.loso_dir.iterdir()):
        (loso_dir / fold.name).symlink_to(fold, target_is_directory=True)
    for extra in ("Tiny", "Huge"):
        shutil.copytree(small.loso_dir / "fold_TestCard", loso_dir / f"fold_{extra}")
    (tiny,) = make_source(ffmpeg_exe(), data_root, "Tiny", "testsrc2=size={size}:rate={fps}", 16, 16, 12, [(16, 30)])
    huge_ref, huge_dis = data_root / "ref" / "Huge_24fps.yuv", data_root / "dis" / "Huge_30_2_1.yuv"
    for path in (huge_ref, huge_dis):
        with open(path, "wb") as handle:
            handle.truncate(2064800 * 2 * 3 // 2)  # one whole frame
    env.data_root, env.loso_dir = data_root, loso_dir

    run = env.run()
    assert run.ret == 1, run.output
    sources = sorted(small.corpus.sources + ["Tiny", "Huge"])
    assert run.outcomes == {
        nodeid: "FAILED" if "Tiny" in nodeid or "Huge" in nodeid else "PASSED" for nodeid in fold_ids(sources)
    }, run.output
    assert "INTERNALERROR" not in run.output

    tiny_id, huge_id = f"loso::fold[{ARCH}-Tiny]", f"loso::fold[{ARCH}-Huge]"
    for text in (run.failure_text(tiny_id), run.report_failure(tiny_id)):
        assert f"{tiny.dis}: libvmaf failed" in text, text
        assert "libvmaf failed (exit -11, killed by SIGSEGV)" in text, text  # it crashed without a word
        assert f"-s 16x16 -i {tiny.dis}" in text and f"-i {tiny.ref}" in text and "libvmaf=" in text, text
        assert "Traceback" not in text
    for text in (run.failure_text(huge_id), run.report_failure(huge_id)):
        assert f"{huge_dis}: libvmaf failed (exit " in text, text
        assert "Picture size 2064800x2 is invalid" in text, text  # ffmpeg's own words
        assert f"-s 2064800x2 -i {huge_dis}" in text and "libvmaf=" in text, text
    assert sorted(env.cache.rglob("*.json")) == sorted(small.cache_paths(env.cache))
    assert run.extraction["pairs_computed"] == small.n_pairs


# -- 8. no extractor ---------------------------------------------------------------------------------


def test_extractor_none_with_cold_cache_says_how_to_fill_it(pytester, small):
    env = Env(pytester, small)
    run = env.run("--loso-extractor", "none")
    assert run.ret == 1, run.output
    assert run.outcomes == {nodeid: "FAILED" for nodeid in fold_ids(small.corpus.sources)}, run.output
    assert "missing cache files" not in run.stdout
    for source in small.corpus.sources:
        nodeid = f"loso::fold[{ARCH}-{source}]"
        first = next(p for p in small.corpus.pairs if p.source == source)
        for text in (run.failure_text(nodeid), run.report_failure(nodeid)):
            assert f"{env.cache / source / first.stem}.json: no cached features for {first.dis.name}" in text, text
            assert "fix: let the gate compute it with libvmaf" in text
            assert "not --loso-extractor=none" in text and str(env.cache) in text and "--loso-cache" in text
            assert "Traceback" not in text
    assert not list(env.cache.rglob("*.json"))
    assert run.extraction["extractor"] is None
    assert run.extraction["pairs_computed"] == 0


# -- 9. libvmaf's own CLI ---------------------------------------------------------------------------


def test_vmaf_cli_backend(pytester, small):
    if not VMAF_BIN:
        pytest.skip("$VMAF_BIN is not set: no libvmaf 'vmaf' CLI to test (the ffmpeg backend is tested above)")
    if not (Path(VMAF_BIN).is_file() and os.access(VMAF_BIN, os.X_OK)):
        pytest.skip(f"$VMAF_BIN={VMAF_BIN} is not an executable file")
    env = Env(pytester, small)
    run = env.run("--loso-extractor", "vmaf", f"--loso-vmaf-bin={VMAF_BIN}")
    all_passed(run, small.corpus.sources)
    assert run.extraction["extractor"]["kind"] == "vmaf"
    assert run.extraction["extractor"]["path"] == str(Path(VMAF_BIN))
    assert run.extraction["extractor"]["version"]
    assert run.extraction["pairs_computed"] == small.n_pairs
    for pair in small.corpus.pairs:
        payload = load_cache(env.cache / pair.source / f"{pair.stem}.json")
        assert_schema(payload, SMALL_FRAMES)
        # another build of libvmaf than the wheel's: same model, numbers to printing precision
        assert_matches_libvmaf(payload, small.expected[pair.stem], tol=1e-4)


def test_distorted_clip_shorter_than_its_reference_is_refused(pytester, small):
    # ffmpeg's libvmaf filter would repeat the last distorted frame and score it silently.
    env = Env(pytester, small)
    env.data_root = pytester.path / "corpus"
    shutil.copytree(small.corpus.root, env.data_root)
    victim = sorted((env.data_root / "dis").glob("TestCard_*.yuv"))[0]
    frame = SMALL_W * SMALL_H * 3 // 2
    victim.write_bytes(victim.read_bytes()[: frame * (SMALL_FRAMES - 2)])
    run = env.run()
    assert run.outcomes[f"loso::fold[{ARCH}-TestCard]"] == "FAILED", run.output
    assert run.outcomes[f"loso::fold[{ARCH}-Life]"] == "PASSED", run.output
    text = run.failure_text(f"loso::fold[{ARCH}-TestCard]")
    assert f"{victim}: {SMALL_FRAMES - 2} frames of {SMALL_W}x{SMALL_H}, but its reference" in text
    assert f"has {SMALL_FRAMES}" in text and "Traceback" not in text
    assert not (env.cache / "TestCard" / f"{victim.stem}.json").exists()


def test_bundled_example_gated_from_an_empty_cache_reproduces_the_committed_cache(pytester):
    from pytest_loso.options import EXAMPLE_DIR

    cache = pytester.path / "cold-cache"
    result = pytester.runpytest("-p", "no:cacheprovider", "--loso-example", f"--loso-cache={cache}",
                                f"--loso-report={pytester.path / 'report'}")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["loso: computing 12 missing cache files of 4 sources with ffmpeg*"])
    committed = sorted(p.relative_to(EXAMPLE_DIR / "cache") for p in (EXAMPLE_DIR / "cache").rglob("*.json"))
    assert sorted(p.relative_to(cache) for p in cache.rglob("*.json")) == committed
    for name in committed:  # deterministic x264 ladder and libvmaf: the committed numbers again
        fresh, kept = load_cache(cache / name), load_cache(EXAMPLE_DIR / "cache" / name)
        assert fresh["features"]["feature_names"] == kept["features"]["feature_names"]
        # exact with the imageio-ffmpeg build the example was made with; a newer libvmaf may move digits
        np.testing.assert_allclose(fresh["features"]["per_frame"], kept["features"]["per_frame"], atol=1e-4)
        np.testing.assert_allclose(fresh["scores"]["per_frame"], kept["scores"]["per_frame"], atol=1e-3)


def test_a_colon_in_the_temporary_folder_does_not_matter(pytester, small, monkeypatch):
    import tempfile

    odd = pytester.path / "tmp:with:colons"
    odd.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(odd))
    env = Env(pytester, small)
    run = env.run()
    all_passed(run, small.corpus.sources)
    assert run.extraction["pairs_computed"] == len(small.corpus.pairs)


# -- libvmaf tied to the pytest process -------------------------------------------------------------


def _libvmaf_processes(corpus: Path) -> list[int]:
    """Pids of the ffmpeg/libvmaf runs on clips of ``corpus`` (not the pytest naming it as --data-root)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes()
            if str(corpus).encode() in text and b"libvmaf=" in text:
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def _wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} after {timeout} s"
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_libvmaf_dies_with_the_gate_and_no_temporary_folder_outlives_it(pytester, large, sig):
    env = Env(pytester, large)
    process = env.popen("--loso-jobs", "2", tag=f"signal{int(sig)}")
    _wait_for(lambda: len(_libvmaf_processes(large.corpus.root)) >= 1 or process.poll() is not None,
              "no libvmaf running")
    assert process.poll() is None, env.finish(process).output
    os.kill(process.pid, sig)  # pytest alone, not its process group: its children must follow by themselves
    started = time.monotonic()
    stopped = env.finish(process, timeout=60)
    assert time.monotonic() - started < 10, "the gate waited for the running pairs"
    _wait_for(lambda: not _libvmaf_processes(large.corpus.root), "libvmaf still running", timeout=2)
    # libvmaf logs to a pipe: no temporary file or folder is made, so none can be left by a killed run
    assert not list(Path(tempfile.gettempdir()).glob(f"loso-vmaf-{process.pid}-*")) and not list(env.cache.rglob("*.tmp"))
    if sig == signal.SIGTERM:
        assert stopped.ret != 0  # stopped like Ctrl-C
    else:
        assert stopped.ret == -signal.SIGKILL
    rerun = env.run()  # and the next run finishes the cache
    all_passed(rerun, large.corpus.sources)
