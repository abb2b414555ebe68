"""The cold-cache tests' helpers: the clip corpora's layout, running the gate on them, checking cache files.

Shared by ``test_extract``, ``test_cache_made_by`` and ``test_gate_selection_cache``; the session
fixtures that build the clips (``small``, ``large``) and the warm cache are in ``conftest.py``.
Real clips from ``clips.py``, the libvmaf inside the imageio-ffmpeg wheel, pytest runs through
``pytester`` (in process, as a subprocess, or as separate ``python -m pytest`` processes).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from clips import ClipCorpus, LibvmafResult, ffmpeg_exe
from loso_helpers import failure_section, outcomes_of, runpytest_in_process
from loso_testing.training import export_onnx, train

FEATURE_NAMES = ["adm2", "vif_scale0", "vif_scale1", "vif_scale2", "vif_scale3", "motion2"]
ARCH = "mlp_small"
LOOSE = [
    "--loso-min-plcc", "none", "--loso-min-srocc", "none", "--loso-max-rmse", "none",
    "--loso-min-mean-plcc", "none", "--loso-max-mean-rmse", "none",
]

SMALL_SOURCES = ["Life", "Mandelbrot", "TestCard"]
SMALL_W, SMALL_H, SMALL_FRAMES = 64, 48, 12
SMALL_LADDER = [(48, 24), (32, 32), (24, 40)]  # (encode height, x264 CRF)

# Sized for the interruption tests: their signal must land while the gate fills the cache one pair
# at a time. One libvmaf pass takes ~0.1 s here (idle), so once the first cache file appears the
# signal has 0.2-0.3 s of passes left to land in; from that file to the signal took at most 16 ms in
# 30 runs at load 5 on 2 cores. 4 pairs: room for "at most one more pair" after Ctrl-C, cheap reruns.
LARGE_SOURCES = ["Cells", "TestCard"]
LARGE_W, LARGE_H, LARGE_FRAMES = 320, 240, 40
LARGE_LADDER = [(240, 24), (120, 36)]



# ``python -m pytest`` with SIGINT raising KeyboardInterrupt whatever the parent ignored.
_PYTEST_WITH_CTRL_C = (
    "import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.exit(pytest.console_main())"
)


@dataclass
class ClipSet:
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
        return {nodeid: outcome for nodeid, outcome in outcomes_of(self.stdout.splitlines()).items()
                if "::aggregate[" not in nodeid}

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

    def __init__(self, pytester: pytest.Pytester, built: ClipSet, ini: str = "") -> None:
        self.pytester = pytester
        self.built = built
        self.root = pytester.path
        self.cache = self.root / "cache"
        self.report_dir = self.root / "report"
        self.data_root = built.corpus.root
        self.loso_dir = built.loso_dir
        self.cold_report: dict | None = None  # ``warm`` only: the report of the cold run that filled its cache
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

    def run(self, *extra: str, frame_size: str | None = None, report_dir: Path | None = None) -> GateRun:
        """In process, through pytester."""
        report_dir = report_dir or self.report_dir
        self._clear_report(report_dir)
        result = runpytest_in_process(self.pytester, *self.args(*extra, report_dir=report_dir, frame_size=frame_size))
        return GateRun(int(result.ret), result.stdout.str(), result.stderr.str(), self._report(report_dir))

    def run_subprocess(self, *extra: str) -> GateRun:
        self._clear_report(self.report_dir)
        result = self.pytester.runpytest_subprocess(*self.args(*extra), timeout=300)
        return GateRun(int(result.ret), result.stdout.str(), result.stderr.str(), self._report(self.report_dir))

    def popen(self, *extra: str, report_dir: Path | None = None, tag: str = "run") -> subprocess.Popen:
        """A separate pytest process, in its own process group (so it can be killed whole), that takes
        Ctrl-C as pytest started from a terminal does.

        A process started in the background by a non-interactive shell (``pytest ... &``) ignores
        SIGINT, and its children inherit that: the suite run that way would see a gate that cannot
        be interrupted. The child restores Python's own SIGINT handler first, then runs pytest.
        """
        report_dir = report_dir or self.report_dir
        self._clear_report(report_dir)
        out = open(self.root / f"{tag}.stdout", "w")  # noqa: SIM115  # closed by finish()
        err = open(self.root / f"{tag}.stderr", "w")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-c", _PYTEST_WITH_CTRL_C, *self.args(*extra, report_dir=report_dir)],
            cwd=self.root, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        process.loso_files = (out, err, report_dir, tag)  # type: ignore[attr-defined]
        return process

    def popen_until_cached(self, *extra: str, tag: str) -> tuple[subprocess.Popen, list[Path]]:
        """:meth:`popen`, returned once the gate has written its first cache file (with the files seen then)."""
        process = self.popen(*extra, tag=tag)
        deadline = time.monotonic() + 120
        while not (seen := list(self.cache.rglob("*.json"))):
            assert process.poll() is None, f"the gate ended before it wrote a cache file: {self.finish(process).output}"
            assert time.monotonic() < deadline, "no cache file after 120 s"
            time.sleep(0.005)
        return process, seen

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

    def slow_ffmpeg(self) -> Path:
        """A wrapper that execs the real ffmpeg reading each input at its frame rate (``-re``): a libvmaf
        pass over ``large`` then lasts about a second, long enough for a pass that outlived the gate
        to be seen running after it."""
        wrapper = self.root / "ffmpeg_slow"
        wrapper.write_text(
            "#!/bin/sh\n"
            "n=$#\n"
            'for arg in "$@"; do\n'
            '  [ "$arg" = "-i" ] && set -- "$@" -re\n'
            '  set -- "$@" "$arg"\n'
            "done\n"
            'shift "$n"\n'
            f"exec '{ffmpeg_exe()}' \"$@\"\n"
        )
        wrapper.chmod(0o755)
        return wrapper

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


def assert_interrupted_cleanly(run: GateRun, cached: int, n_pairs: int) -> None:
    """Issue 20 item 10: a fill stopped by a signal ends with pytest's "interrupted" and one line saying
    how far it got and that a rerun resumes, not with a KeyboardInterrupt at a line of threading.py."""
    assert run.ret == 2, run.output  # pytest's "interrupted"
    assert 0 < cached < n_pairs, (cached, n_pairs)
    line = f"loso: interrupted: {cached} of {n_pairs} pairs cached; a rerun resumes"
    assert line in run.output, run.output
    assert "threading.py" not in run.output and "Traceback" not in run.output, run.output
    assert not re.search(r"^\S+\.py:\d+: KeyboardInterrupt", run.output, re.MULTILINE), run.output


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
