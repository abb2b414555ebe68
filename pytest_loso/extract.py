"""Filling the feature cache with real libvmaf: one pass per (reference, distorted) pair.

A single libvmaf run with the built-in ``vmaf_v0.6.1`` model yields both the six
features the tiny models consume (libvmaf names them ``integer_adm2``,
``integer_vif_scale0..3``, ``integer_motion2``) and the per-frame VMAF target. Two
backends: libvmaf's own command-line tool (``$VMAF_BIN`` / ``--loso-vmaf-bin``), or an
ffmpeg with the ``libvmaf`` filter, by default the one inside the ``imageio-ffmpeg`` wheel
(``pip install imageio-ffmpeg filelock``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from types import FrameType

from . import made_by
from .files import write_atomically
from .cache_files import ForeignCacheFile, Pair, read_pair
from .errors import FillInterrupted, LosoInputError, what_is_at
from .features import FEATURE_NAMES

LIBVMAF_NAMES = {name: f"integer_{name}" for name in FEATURE_NAMES}


def frame_count(path: Path, width: int, height: int) -> int:
    """Frames in a raw yuv420p 8-bit file; a size that is not a whole number of frames is an error."""
    frame_bytes = width * height * 3 // 2
    size = path.stat().st_size
    if size == 0:
        raise LosoInputError(path, "the clip is empty (0 bytes)", "copy the complete clip")
    if size % frame_bytes:
        raise LosoInputError(
            path,
            f"size {size} bytes is not a whole number of {width}x{height} yuv420p frames ({frame_bytes} bytes each)",
            "give the clip's real frame size with --loso-frame-size WxH (or a per-source line in loso_frame_sizes); "
            "if that is its size, the clip is truncated: copy the complete clip",
        )
    return size // frame_bytes


def libvmaf_payload(log: dict, dis: Path) -> dict:
    """Turn a libvmaf JSON log into the cache schema the training scripts write."""
    rows, scores = [], []
    for frame in log.get("frames", []):
        metrics = frame.get("metrics", {})
        try:
            rows.append([float(metrics[LIBVMAF_NAMES[name]]) for name in FEATURE_NAMES])
            scores.append(float(metrics["vmaf"]))
        except KeyError as exc:
            raise LosoInputError(dis, f"libvmaf output lacks {exc} for frame {frame.get('frameNum')}") from None
    if not scores:
        raise LosoInputError(dis, "libvmaf scored no frames")
    pooled = log.get("pooled_metrics", {}).get("vmaf", {}).get("mean")
    return {
        "features": {"feature_names": list(FEATURE_NAMES), "per_frame": rows, "n_frames": len(rows)},
        "scores": {"per_frame": scores, "pooled": float(pooled) if pooled is not None else sum(scores) / len(scores)},
    }


# libvmaf writes its JSON log to our pipe: no temporary file, so nothing can outlive a killed run,
# and no path in the ffmpeg filter graph (where a ':' would split the options).
LOG_TO_PIPE = Path("/dev/stdout")
_RUNNING: set[subprocess.Popen] = set()  # libvmaf processes of this pytest process, killed when it stops
_RUNNING_LOCK = threading.Lock()


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: SIGKILL it when the thread that started it ends (Linux's
    PR_SET_PDEATHSIG), so a pytest killed with SIGKILL leaves no libvmaf running.

    ``parent`` is the pid that forked: a parent that died between the fork and this call sends
    no signal, and the child, already orphaned, kills itself instead of running on its own.
    """
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)


def _load_prctl() -> Callable[[int, int], int] | None:
    # Looked up once, before any fork: the child may only make the call.
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def kill_running() -> None:
    """Kill every libvmaf process this pytest process started and is still waiting for."""
    with _RUNNING_LOCK:
        for process in list(_RUNNING):
            if process.poll() is None:
                process.kill()


_VERSIONS: dict[tuple, str | None] = {}  # (kind, binary, its stat) -> the version line, asked once per process


def _version_line(kind: str, binary: Path) -> str | None:
    """The binary's first version line (``None``: it cannot run), asked once per process for each
    file as it is: the same binary replaced (another mtime, size or inode) is asked again."""
    try:
        stat = binary.stat()
        key: tuple = (kind, str(binary), stat.st_mtime_ns, stat.st_size, stat.st_ino)
    except OSError:
        key = (kind, str(binary))  # not there: asked each time (it may appear)
    else:
        if key in _VERSIONS:
            return _VERSIONS[key]
    flag = "--version" if kind == "vmaf" else "-version"
    try:
        run = subprocess.run([str(binary), flag], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (run.stdout or run.stderr).strip()
    line = text.splitlines()[0] if text else ""
    if len(key) > 2:
        _VERSIONS[key] = line
    return line


@dataclass(frozen=True)
class Extractor:
    """A libvmaf backend: ``kind`` "ffmpeg" (the libvmaf filter) or "vmaf" (libvmaf's own CLI)."""

    kind: str
    binary: Path
    # libvmaf's own threads per pass. One: parallelism comes from --loso-jobs passes at once
    # (default: one per CPU), which benchmarks/bench_extract.py measured faster than one pass
    # with n_threads=2 on the same pairs (2 cores: 0.49 vs 0.40 pairs/s; caches byte-identical).
    threads: int = 1

    def command(self, ref: Path, dis: Path, width: int, height: int, log_path: Path) -> list[str]:
        if self.kind == "vmaf":
            return [str(self.binary), "-r", str(ref), "-d", str(dis), "-w", str(width), "-h", str(height),
                    "-p", "420", "-b", "8", "--threads", str(self.threads), "--json", "-o", str(log_path),
                    "-m", "version=vmaf_v0.6.1"]
        raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}"]
        # libvmaf's first input is the distorted clip, the second the reference.
        graph = (f"[0:v][1:v]libvmaf=model=version=vmaf_v0.6.1:log_fmt=json:log_path={log_path}"
                 f":n_threads={self.threads}")
        return [str(self.binary), "-nostdin", "-hide_banner", "-loglevel", "error",
                *raw, "-i", str(dis), *raw, "-i", str(ref), "-lavfi", graph, "-f", "null", "-"]

    @cached_property
    def identity(self) -> str | None:
        """What a cache file records as its extractor: the kind and the version line (asked once);
        ``None`` when the binary cannot run (it makes nothing, so a file it did not make is kept)."""
        version = self._version_line()
        return None if version is None else f"{self.kind}: {version}"

    def _version_line(self) -> str | None:
        return _version_line(self.kind, self.binary)

    def version(self) -> str:
        line = self._version_line()
        return "unavailable" if line is None else line

    def run(self, ref: Path, dis: Path, width: int, height: int) -> dict:
        """One libvmaf pass on ``(ref, dis)``: the cache payload, features and VMAF together."""
        ref_frames, dis_frames = frame_count(ref, width, height), frame_count(dis, width, height)
        if ref_frames != dis_frames:  # ffmpeg would repeat the last frame and score it silently
            raise LosoInputError(
                dis,
                f"{dis_frames} frames of {width}x{height}, but its reference {ref.name} has {ref_frames}",
                "re-decode the distorted clip to the reference's frame count, or check the frame size",
            )
        command = self.command(Path(os.path.abspath(ref)), Path(os.path.abspath(dis)), width, height, LOG_TO_PIPE)
        try:
            run = _run_tied(command)
        except OSError as exc:
            raise LosoInputError(
                dis,
                f"cannot run libvmaf: {exc}\n  command: {' '.join(command)}",
                "pip install imageio-ffmpeg filelock, or give --loso-ffmpeg PATH or --loso-vmaf-bin PATH ($VMAF_BIN)",
            ) from None
        if run.returncode != 0:
            raise LosoInputError(
                dis,
                f"libvmaf failed ({_exit_status(run.returncode)}): {run.stderr.strip()[-2000:]}"
                f"\n  command: {' '.join(command)}",
            )
        try:
            log = json.loads(run.stdout)
        except ValueError as exc:
            raise LosoInputError(
                dis, f"libvmaf wrote an unreadable log ({exc})\n  command: {' '.join(command)}"
            ) from None
        return libvmaf_payload(log, dis)


def _run_tied(command: list[str]) -> subprocess.CompletedProcess:
    """``subprocess.run``, with the child registered (Ctrl-C and SIGTERM kill it) and dying with us.

    ``preexec_fn`` is documented as unsafe with threads (the pool's); it only makes one
    already looked-up libc call, so the child takes no lock between fork and exec.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                               preexec_fn=partial(_die_with_parent, os.getpid()) if _PRCTL else None)
    with _RUNNING_LOCK:
        _RUNNING.add(process)
    try:
        stdout, stderr = process.communicate()
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(process)
        if process.poll() is None:
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _exit_status(returncode: int) -> str:
    """``exit N``, naming the signal when the process died of one (a crash prints nothing else)."""
    if returncode >= 0:
        return f"exit {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"exit {returncode}, killed by {name}"


def resolve_extractor(kind: str, vmaf_bin: Path | None = None, ffmpeg: Path | None = None) -> Extractor | None:
    """The backend to fill a cold cache with, or ``None`` (kind "none", or nothing available).

    "auto" prefers libvmaf's CLI when one is given ($VMAF_BIN or --loso-vmaf-bin), then an
    explicit ffmpeg, then the ffmpeg inside the imageio-ffmpeg wheel.
    """
    if vmaf_bin is None and os.environ.get("VMAF_BIN"):
        vmaf_bin = Path(os.environ["VMAF_BIN"])
    if kind == "none":
        return None
    if kind == "vmaf" or (kind == "auto" and vmaf_bin is not None):
        return Extractor("vmaf", vmaf_bin or Path("vmaf"))
    if ffmpeg is not None:
        return Extractor("ffmpeg", ffmpeg)
    try:
        import imageio_ffmpeg
    except ImportError:
        # An explicit "ffmpeg" takes it from PATH (a missing one fails with the command line).
        return Extractor("ffmpeg", Path("ffmpeg")) if kind == "ffmpeg" else None
    return Extractor("ffmpeg", Path(imageio_ffmpeg.get_ffmpeg_exe()))


def write_cache(path: Path, payload: dict) -> None:
    """Write one pair's cache file atomically: it is whole or absent, whatever kills the run."""
    write_atomically(path, json.dumps(payload))


def cache_record(path: Path) -> tuple[bool, object]:
    """``(keep, made_by)``: whether the file is to be left as it is (the gate would accept its data,
    the same checks as reading it, or it is another tool's file, which is never replaced), and
    its ``made_by`` record (``None``: not written by the gate)."""
    try:
        return True, read_pair(path, path.read_bytes()).made_by
    except ForeignCacheFile:
        return True, None
    except (OSError, LosoInputError):
        return False, None


def _terminate_as_interrupt() -> Callable[[int, FrameType | None], object] | int | None:
    """While libvmaf runs, SIGTERM stops the fill like Ctrl-C (children killed, queued pairs
    dropped); returns the previous handler, or None when this is not the main thread (or the
    previous handler was not installed from Python: it cannot be put back)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    return signal.signal(signal.SIGTERM, interrupt)


class CacheFiller:
    """Computes missing (or corrupt) cache files, each exactly once across processes.

    A lock file per cache entry (``<stem>.json.lock``) makes concurrent pytest processes and
    xdist workers wait for the one computing it and then read its result; the write itself
    is atomic, so a killed run leaves a whole cache file or none.
    """

    def __init__(self, extractor: Extractor, cache_dir: Path, frame_size: Callable[[str], tuple[int, int]]) -> None:
        self.extractor = extractor
        self.cache_dir = cache_dir
        self.frame_size = frame_size
        self.computed: list[str] = []
        self.recomputed: dict[str, str] = {}  # file -> why it was replaced (corrupt, stale, forced), for the report
        self.kept: list[str] = []  # files --loso-recompute left because another tool wrote them
        self._failed: dict[Path, LosoInputError] = {}

    def extraction(self, source: str) -> made_by.Extraction:
        """How this run makes ``source``'s cache files: what a file's ``made_by`` must say."""
        return made_by.Extraction(*self.frame_size(source), extractor=self.extractor.identity)

    def _usable(self, pair: Pair, path: Path) -> bool:
        keep, record = cache_record(path)
        return keep and (record is None or not made_by.differences(
            record, pair.ref_path, pair.dis_path, self.extraction(pair.source)))

    def ensure(self, pair: Pair, *, replace: str | None = None, force: bool = False) -> bool:
        """Make ``pair``'s cache file exist (``replace``, the reason: and be usable, i.e. parse and, when
        the gate wrote it, be made as this run makes it; ``force``: be computed now); True when computed here."""
        try:
            from filelock import FileLock
        except ImportError:
            raise LosoInputError(
                Path("filelock"), "filling the cache needs the filelock package", "pip install filelock"
            ) from None
        path = pair.cache_path(self.cache_dir)
        if path in self._failed:
            raise self._failed[path]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = Path(str(path) + ".lock")
            try:
                with FileLock(str(lock)):
                    # present, or another process computed or repaired it while we waited
                    if not force and path.is_file() and (not replace or self._usable(pair, path)):
                        return False
                    self._compute(pair, path)
            finally:
                # no empty .lock left beside every cache file (nor in a CI's cache). A process that was
                # waiting on it re-checks the cache file once it holds its lock: at worst a pair is
                # computed twice, never half-written (the write is atomic).
                lock.unlink(missing_ok=True)
        except OSError as exc:  # e.g. a read-only cache: neither the lock nor the file can be created
            self._failed[path] = LosoInputError(
                path, f"cannot write the cache file: {exc.strerror or exc} ({getattr(exc, 'filename', None) or path})",
                f"make {self.cache_dir} writable, or point --loso-cache at a writable folder "
                "(or fill this cache where it can be written)")
            raise self._failed[path] from None
        if replace or force:
            self.recomputed[str(path)] = replace or "forced"
        else:
            self.computed.append(str(path))
        return True

    def _compute(self, pair: Pair, path: Path) -> None:
        width, height = self.frame_size(pair.source)
        try:
            payload = self.extractor.run(pair.ref_path, pair.dis_path, width, height)
        except LosoInputError as exc:
            self._failed[path] = exc
            raise
        payload[made_by.KEY] = made_by.record(pair.ref_path, pair.dis_path, self.extraction(pair.source))
        write_cache(path, payload)

    def _to_recompute(self, pairs: list[Pair], progress: Callable[[str], None] | None) -> dict[Pair, str | None]:
        """``--loso-recompute``: the present files the gate wrote (reason ``None``: forced), or that
        cannot be used ("corrupt"); another tool's files (no ``made_by`` record) are kept, and said so."""
        chosen: dict[Pair, str | None] = {}
        kept = []
        for pair in pairs:
            path = pair.cache_path(self.cache_dir)
            if path.is_file():
                keep, record = cache_record(path)
                if not keep:
                    chosen[pair] = "corrupt"
                elif record is not None:
                    chosen[pair] = None
                else:
                    kept.append(pair)
        if kept:
            self.kept = [str(p.cache_path(self.cache_dir)) for p in kept]
            if progress:
                progress(f"loso: --loso-recompute keeps {len(kept)} cache files the gate did not write (no "
                         f"{made_by.KEY} record), e.g. {self.kept[0]}: delete them to recompute them")
        return chosen

    def fill(self, pairs: list[Pair], jobs: int, progress: Callable[[str], None] | None = None,
             recompute: bool = False) -> int:
        """Compute the pairs whose cache file is missing (``recompute``: also those the gate wrote),
        ``jobs`` at a time; returns how many failed.

        Failures are remembered: the tests that need such a pair fail with libvmaf's message.
        """
        # a folder, FIFO or link where a file belongs is not missing: its test says so, and it stays
        missing = [p for p in pairs if not p.cache_path(self.cache_dir).is_file()
                   and what_is_at(p.cache_path(self.cache_dir)) is None]
        again = self._to_recompute(pairs, progress) if recompute else {}
        if not missing and not again:
            return 0
        started, done, failed = time.monotonic(), 0, 0
        todo = missing + list(again)
        left = Counter(p.source for p in todo)
        if progress:
            recomputing = f" and recomputing {len(again)}" if again else ""
            progress(f"loso: computing {len(missing)} missing cache files{recomputing} of {len(left)} sources "
                     f"with {self.extractor.kind} ({self.extractor.binary}), {jobs} at a time")
        pool = ThreadPoolExecutor(max_workers=max(1, jobs))
        previous = _terminate_as_interrupt()
        try:
            futures = {pool.submit(self.ensure, pair, replace=again.get(pair), force=pair in again): pair
                       for pair in todo}
            for future in as_completed(futures):
                source = futures[future].source
                done += 1
                failed += future.exception() is not None
                left[source] -= 1
                if progress and not left[source]:  # a line per source, as each completes
                    elapsed = time.monotonic() - started
                    eta = elapsed / done * (len(todo) - done)
                    progress(f"loso: libvmaf {done}/{len(todo)} pairs ({source} done), {failed} failed, "
                             f"elapsed {elapsed:.1f}s, ETA {eta:.1f}s")
        except BaseException as exc:
            kill_running()  # Ctrl-C or SIGTERM: the running pairs stop now, not when libvmaf finishes
            if not isinstance(exc, KeyboardInterrupt) or isinstance(exc, FillInterrupted):
                raise
            interrupted = True
        else:
            interrupted = False
        finally:
            # On Ctrl-C (or any error) drop the queued pairs: a plain ``with`` would wait for
            # every one of them, running libvmaf on the whole corpus before the run stops.
            pool.shutdown(wait=True, cancel_futures=True)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        if interrupted:  # counted once the pool stopped: a pair finishing meanwhile was written whole
            cached = sum(p.cache_path(self.cache_dir).is_file() for p in pairs)
            raise FillInterrupted(f"loso: interrupted: {cached} of {len(pairs)} pairs cached; a rerun resumes")
        return failed
