"""The cold cache: the gate fills missing or corrupt cache files with real libvmaf.

Everything is real: clips from ffmpeg's generators encoded on a small libx264 ladder
(``clips.py``), the libvmaf inside the imageio-ffmpeg wheel, pytest runs through
``pytester`` (in process, as a subprocess) or as pytest processes of their own
(``subprocess.Popen``: the runs that are killed or interrupted, and one of two concurrent sessions).
The features and scores the gate writes are compared with a second libvmaf run done here
with a command of the test's own (``clips.independent_libvmaf``).

The session's clips and their independent libvmaf numbers are the ``small`` and ``large``
fixtures of ``conftest.py``; ``cold_cache.py`` has the helpers.

The only non-plugin program in the loop is a pass-through wrapper around ffmpeg
(``counting_ffmpeg``) that logs each libvmaf command line before ``exec``-ing the real
ffmpeg, so the concurrency tests can count libvmaf runs per pair across processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("imageio_ffmpeg", reason="the cold-cache tests need the vmaf extra: pip install -e '.[vmaf]'")
pytest.importorskip("filelock", reason="the cold-cache tests need the vmaf extra: pip install -e '.[vmaf]'")

from clips import ffmpeg_exe, independent_libvmaf, make_source  # noqa: E402
from cold_cache import (  # noqa: E402
    ARCH,
    LARGE_FRAMES,
    LARGE_H,
    LARGE_W,
    SMALL_FRAMES,
    SMALL_H,
    SMALL_LADDER,
    SMALL_W,
    ClipSet,
    Env,
    all_passed,
    assert_all_whole,
    assert_interrupted_cleanly,
    assert_matches_libvmaf,
    assert_schema,
    fold_ids,
    load_cache,
)


# Captured before the fixture below removes it: test_vmaf_cli_backend uses it explicitly.
VMAF_BIN = os.environ.get("VMAF_BIN")

pytestmark = pytest.mark.usefixtures("no_ambient_cache_or_vmaf")


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


def test_corrupt_cache_file_is_recomputed_and_reported(warm, small):
    env = warm  # a cache the gate filled
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
    process, seen = env.popen_until_cached("--loso-jobs", "1", tag="killed")
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
    process, seen = env.popen_until_cached("--loso-jobs", "1", tag="interrupted")
    os.killpg(process.pid, signal.SIGINT)
    interrupted = env.finish(process, timeout=60)
    assert interrupted.ret == 2, interrupted.output  # pytest's "interrupted"
    assert "loso: interrupted: " in interrupted.stdout and "a rerun resumes" in interrupted.stdout, interrupted.output
    after = sorted(env.cache.rglob("*.json"))
    # at most the pair libvmaf was finishing when the signal came; ffmpeg's partial log on
    # SIGINT (exit 255) must not become a cache file either
    assert len(after) <= len(seen) + 1 < large.n_pairs, (len(seen), len(after))
    assert_all_whole(after, LARGE_FRAMES)
    # issue 20 item 10 (test_fix_20d_interrupt has SIGTERM): one line says how far it got, no traceback
    assert_interrupted_cleanly(interrupted, len(after), large.n_pairs)

    rerun = env.run()
    all_passed(rerun, large.corpus.sources)
    assert rerun.extraction["pairs_computed"] == large.n_pairs - len(after)
    assert_all_whole(large.cache_paths(env.cache), LARGE_FRAMES)


# -- 5. concurrency --------------------------------------------------------------------------------


def _calls_per_pair(log: Path, built: ClipSet) -> dict[str, int]:
    lines = log.read_text().splitlines() if log.exists() else []
    return {p.stem: sum(f" -i {p.dis} " in line for line in lines) for p in built.corpus.pairs}


def test_two_concurrent_sessions_compute_each_pair_once(pytester, large):
    """A second session (in this process) starts while a first one (its own process) is filling the
    cache, one pair at a time: the first has written one file and is computing the next, which the
    second must wait for rather than compute again; the pairs after it are shared out between them."""
    env = Env(pytester, large)
    wrapper, log = env.counting_ffmpeg()
    first, _ = env.popen_until_cached(f"--loso-ffmpeg={wrapper}", "--loso-jobs", "1", tag="a")
    second = env.run(f"--loso-ffmpeg={wrapper}", report_dir=env.root / "report_b")
    runs = [env.finish(first), second]
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
    run = env.run("-n", "2", f"--loso-ffmpeg={wrapper}")  # the controller in this process, two worker processes
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


def _wait_for(condition, what: str, timeout: float = 60, detail=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} after {timeout} s{detail()}"
        time.sleep(0.01)


def _process_lines(pids: list[int]) -> str:
    """``pid ppid state`` of each process, as /proc says (for a failure message)."""
    lines = []
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            lines.append(f"\n  pid {pid}: state {fields[0]}, parent {fields[1]}")
        except OSError:
            lines.append(f"\n  pid {pid}: gone")
    return "".join(lines)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_whose_parent_died_before_it_asked_to_die_with_it_kills_itself():
    """The window between fork and PR_SET_PDEATHSIG: a parent that died in it sends no signal, so the
    child checks its parent is still the one that forked it (here: told another pid, it must die)."""
    code = "import os; from pytest_loso.extract import _die_with_parent; _die_with_parent({}); print('ran on')"
    alive = subprocess.run([sys.executable, "-c", code.format("os.getppid()")], capture_output=True, text=True)
    assert (alive.returncode, alive.stdout) == (0, "ran on\n"), alive.stderr
    orphan = subprocess.run([sys.executable, "-c", code.format(1)], capture_output=True, text=True)
    assert orphan.returncode == -signal.SIGKILL and "ran on" not in orphan.stdout, (orphan.returncode, orphan.stderr)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_libvmaf_dies_with_the_gate_and_no_temporary_folder_outlives_it(pytester, large, sig):
    env = Env(pytester, large)
    # passes of about a second each: one that outlived the gate would still be running at the check below
    process = env.popen(f"--loso-ffmpeg={env.slow_ffmpeg()}", "--loso-jobs", "2", tag=f"signal{int(sig)}")
    _wait_for(lambda: len(_libvmaf_processes(large.corpus.root)) >= 1 or process.poll() is not None,
              "no libvmaf running")
    assert process.poll() is None, env.finish(process).output
    os.kill(process.pid, sig)  # pytest alone, not its process group: its children must follow by themselves
    started = time.monotonic()
    stopped = env.finish(process, timeout=60)
    assert time.monotonic() - started < 10, "the gate waited for the running pairs"
    _wait_for(lambda: not _libvmaf_processes(large.corpus.root), "libvmaf still running", timeout=0.5,
              detail=lambda: _process_lines(_libvmaf_processes(large.corpus.root)))
    # libvmaf logs to a pipe: no temporary file or folder is made, so none can be left by a killed run
    assert not list(Path(tempfile.gettempdir()).glob(f"loso-vmaf-{process.pid}-*")) and not list(env.cache.rglob("*.tmp"))
    if sig == signal.SIGTERM:
        assert stopped.ret != 0  # stopped like Ctrl-C
    else:
        assert stopped.ret == -signal.SIGKILL
    rerun = env.run()  # and the next run finishes the cache
    all_passed(rerun, large.corpus.sources)
