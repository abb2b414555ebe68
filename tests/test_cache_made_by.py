"""A cache file records how the gate made it; one made differently from this run is never
reused (issue 8, items 7 and 13). Real libvmaf on the small clip corpus of test_extract.

Tests that start from a cache the gate filled take the ``warm`` fixture (``conftest.py``): one
cold run of the gate fills it for the session, each test gets its own copy."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from clips import ffmpeg_exe
from loso_helpers import read_only
from cold_cache import ARCH, SMALL_FRAMES, Env, all_passed, assert_matches_libvmaf, assert_schema, fold_ids, load_cache

pytestmark = pytest.mark.usefixtures("no_ambient_cache_or_vmaf")

# 48x64 frames have the bytes of 64x48 ones: the size check passes, the pixels are read wrong.
SWAPPED = "48x64"


def own_corpus(env: Env, pytester: pytest.Pytester) -> Path:
    """A copy of the clips this test may change."""
    env.data_root = pytester.path / "corpus"
    shutil.copytree(env.built.corpus.root, env.data_root)
    return env.data_root


def test_a_file_made_with_another_frame_size_is_recomputed_not_reused(pytester, small, warm):
    env = warm
    env.cache = pytester.path / "cold"  # its own cold cache; ``warm`` is here for the session's cold run's report
    wrong = env.run(frame_size=SWAPPED)
    assert wrong.extraction["pairs_computed"] == small.n_pairs, wrong.output
    victim = small.cache_paths(env.cache, "Life")[0]
    made = load_cache(victim)["made_by"]
    assert made["frame_size"] == SWAPPED and made["pixel_format"] == "yuv420p"
    assert made["extractor"].startswith("ffmpeg: ffmpeg version")
    pair = next(p for p in small.corpus.pairs if p.stem == victim.stem)
    for key, clip in (("ref", pair.ref), ("dis", pair.dis)):
        assert made[key]["name"] == clip.name and made[key]["size"] == clip.stat().st_size

    run = env.run()  # the right size: every file made with the wrong one is recomputed
    all_passed(run, small.corpus.sources)
    assert sorted(run.extraction["stale_recomputed"]) == sorted(map(str, small.cache_paths(env.cache)))
    assert run.extraction["pairs_read_from_cache"] == 0
    assert f"{victim}: made differently from what this run would make: made with frame size {SWAPPED}, " \
           f"this run reads {small.frame_size}" in run.output
    assert "replaced by a recomputation with libvmaf" in run.output
    for path in small.cache_paths(env.cache):
        payload = load_cache(path)
        assert_schema(payload, SMALL_FRAMES)
        assert_matches_libvmaf(payload, small.expected[path.stem])
    # the numbers are those of a cold run with the right size (the session's, which filled ``warm``)
    assert env.cold_report["archs"][ARCH]["per_fold"] == run.report["archs"][ARCH]["per_fold"]

    again = env.run()  # now made as this run makes them: read, not recomputed
    all_passed(again, small.corpus.sources)
    assert again.extraction["pairs_computed"] == 0 and again.extraction["stale_recomputed"] == []


def test_without_an_extractor_a_stale_file_is_an_error_that_says_why(pytester, small):
    env = Env(pytester, small)
    all_passed(env.run(frame_size=SWAPPED), small.corpus.sources)
    before = {p: p.read_bytes() for p in small.cache_paths(env.cache)}
    run = env.run("--loso-extractor", "none")
    assert run.ret == 1, run.output
    assert run.outcomes == {n: "FAILED" for n in fold_ids(small.corpus.sources)}, run.output
    first = small.cache_paths(env.cache, "Life")[0]
    for text in (run.failure_text(f"loso::fold[{ARCH}-Life]"), run.report_failure(f"loso::fold[{ARCH}-Life]")):
        assert f"{first}: made differently from what this run would make: made with frame size {SWAPPED}, " \
               f"this run reads {small.frame_size}" in text, text
        assert "fix: let the gate recompute it" in text and "--loso-frame-size" in text
    assert "Traceback" not in run.output
    assert {p: p.read_bytes() for p in small.cache_paths(env.cache)} == before  # nothing changed


def test_a_changed_clip_is_recomputed_and_a_touched_one_is_not(pytester, warm, small):
    env = warm  # a cache the gate filled from clips of the same names, sizes, mtimes and bytes as the copies
    own_corpus(env, pytester)
    dis = sorted((env.data_root / "dis").glob("Mandelbrot_*.yuv"))
    touched, changed = dis[0], dis[1]
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))  # a fresh checkout
    # another encode of the same size: the frames of a different source
    changed.write_bytes(next((env.data_root / "dis").glob("Life_*_48_*.yuv")).read_bytes())

    run = env.run()
    all_passed(run, small.corpus.sources)
    changed_cache = env.cache / "Mandelbrot" / f"{changed.stem}.json"
    assert run.extraction["stale_recomputed"] == [str(changed_cache)], run.output
    assert f"{changed.name} has other content than the clip it was made from (sha256 differs)" in run.output
    assert run.extraction["pairs_computed"] == 1
    made = load_cache(changed_cache)["made_by"]["dis"]
    assert made["sha256"] != load_cache(env.cache / "Mandelbrot" / f"{touched.stem}.json")["made_by"]["dis"]["sha256"]

    frame = 64 * 48 * 3 // 2
    for clip in [*dis, env.data_root / "ref" / "Mandelbrot_24fps.yuv"]:  # one more frame in every clip
        with clip.open("ab") as handle:
            handle.write(clip.read_bytes()[:frame])
    run = env.run()
    all_passed(run, small.corpus.sources)
    assert run.extraction["stale_recomputed"] == sorted(map(str, small.cache_paths(env.cache, "Mandelbrot")))
    assert f"{dis[2].name} is {dis[2].stat().st_size} bytes, it was made from {dis[2].stat().st_size - frame} " \
           "bytes" in run.output
    assert all(load_cache(p)["features"]["n_frames"] == SMALL_FRAMES + 1
               for p in small.cache_paths(env.cache, "Mandelbrot"))


def _other_ffmpeg(root: Path) -> Path:
    """The real ffmpeg, announcing another version (as an upgraded imageio-ffmpeg wheel would)."""
    wrapper = root / "ffmpeg_other_version"
    wrapper.write_text('#!/bin/sh\nif [ "$1" = "-version" ]; then echo "ffmpeg version 0.0-other"; exit 0; fi\n'
                       f"exec '{ffmpeg_exe()}' \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


def test_files_made_by_another_extractor_version_are_recomputed(pytester, warm, small):
    env = warm
    run = env.run(f"--loso-ffmpeg={_other_ffmpeg(pytester.path)}")
    all_passed(run, small.corpus.sources)
    assert len(run.extraction["stale_recomputed"]) == small.n_pairs
    assert "this run computes with 'ffmpeg: ffmpeg version 0.0-other'" in run.output
    assert all(load_cache(p)["made_by"]["extractor"] == "ffmpeg: ffmpeg version 0.0-other"
               for p in small.cache_paths(env.cache))


def test_a_file_without_a_record_is_read_as_it_is(pytester, warm, small):
    """The training pipeline's files carry no record: read, whatever this run's options."""
    env = warm
    for path in small.cache_paths(env.cache):
        payload = load_cache(path)
        del payload["made_by"]
        path.write_text(json.dumps(payload))
    before = {p: p.read_bytes() for p in small.cache_paths(env.cache)}
    run = env.run(f"--loso-ffmpeg={_other_ffmpeg(pytester.path)}")
    all_passed(run, small.corpus.sources)
    assert run.extraction["pairs_computed"] == 0
    assert {p: p.read_bytes() for p in small.cache_paths(env.cache)} == before


def test_recompute_forces_the_files_the_gate_wrote_and_keeps_the_others(warm, small):
    env = warm
    theirs = small.cache_paths(env.cache, "TestCard")[0]
    payload = load_cache(theirs)
    del payload["made_by"]
    theirs.write_text(json.dumps(payload))
    kept = theirs.read_bytes()

    run = env.run("--loso-recompute")
    all_passed(run, small.corpus.sources)
    ours = sorted(set(map(str, small.cache_paths(env.cache))) - {str(theirs)})
    assert run.extraction["forced_recomputed"] == ours
    assert run.extraction["kept_on_recompute"] == [str(theirs)]
    assert theirs.read_bytes() == kept
    assert f"--loso-recompute keeps 1 cache files the gate did not write (no made_by record), e.g. {theirs}" \
        in run.output
    assert f"computing 0 missing cache files and recomputing {len(ours)}" in run.output
    assert run.report["run_provenance"]["options"]["recompute"] is True

    # only what the selected tests read
    run = env.run("--loso-recompute", "-k", "Life")
    assert run.ret == 0, run.output
    assert f"computing 0 missing cache files and recomputing {len(small.cache_paths(env.cache, 'Life'))} of 1 " \
           "sources" in run.output


def test_recompute_leaves_another_tools_file_byte_for_byte_and_fails_its_source(warm, small):
    """A file that parses but names another tool's schema is that tool's data: not even
    --loso-recompute replaces it; only the tests that need it fail, naming the schema."""
    env = warm
    theirs = small.cache_paths(env.cache, "TestCard")[0]
    theirs.write_text(json.dumps({"schema": "vmaf-tune/3", "features": {"feature_names": [], "per_frame": []},
                                  "scores": {"per_frame": []}}))
    kept = theirs.read_bytes()
    broken = small.cache_paths(env.cache, "Life")[0]  # this schema, no record, no frames: corrupt
    broken.write_text(json.dumps({"features": {"feature_names": [], "per_frame": []}, "scores": {"per_frame": []}}))

    run = env.run("--loso-recompute")
    assert run.ret == 1, run.output
    assert {n for n, o in run.outcomes.items() if o == "FAILED"} == {f"loso::fold[{ARCH}-TestCard]"}, run.output
    assert theirs.read_bytes() == kept
    assert run.extraction["kept_on_recompute"] == [str(theirs)]
    assert run.extraction["corrupt_recomputed"] == [str(broken)]  # recomputed for being corrupt, not forced
    assert sorted(run.extraction["forced_recomputed"]) == sorted(
        str(p) for p in small.cache_paths(env.cache) if p not in (theirs, broken))
    assert run.extraction["pairs_computed"] == small.n_pairs - 1
    assert run.extraction["pairs_read_from_cache"] == 0  # TestCard's source failed: its files were not read
    assert f"{theirs}: not a feature-cache file of this schema: it holds an object with keys schema, features, " \
           "scores, which names its own schema (schema 'vmaf-tune/3')" in run.output


@pytest.mark.parametrize("extra, says", [
    (["--loso-extractor", "none"], "--loso-recompute needs an extractor, and --loso-extractor none gives none"),
])
def test_recompute_without_an_extractor_is_a_usage_error(pytester, small, extra, says):
    env = Env(pytester, small)
    run = env.run("--loso-recompute", *extra)
    assert run.ret == 4, run.output
    assert says in run.stderr, run.stderr


# -- item 13: what the cache holds, and a cache that cannot be written ------------------------------




def test_a_read_only_cache_with_a_missing_file_fails_that_source_clearly(warm, small):
    env = warm
    missing = small.cache_paths(env.cache, "Mandelbrot")[0]
    missing.unlink()
    with read_only(missing.parent):
        run = env.run()
    assert run.ret == 1, run.output
    assert run.outcomes == {f"loso::fold[{ARCH}-Life]": "PASSED", f"loso::fold[{ARCH}-Mandelbrot]": "FAILED",
                            f"loso::fold[{ARCH}-TestCard]": "PASSED"}, run.output
    for text in (run.failure_text(f"loso::fold[{ARCH}-Mandelbrot]"),
                 run.report_failure(f"loso::fold[{ARCH}-Mandelbrot]")):
        assert f"{missing}: cannot write the cache file:" in text, text
        assert f"fix: make {env.cache} writable, or point --loso-cache at a writable folder" in text
    assert "Traceback" not in run.output and "INTERNALERROR" not in run.output


@pytest.mark.parametrize("kind", ["fifo", "link-to-a-device", "broken-link"])
def test_an_entry_that_is_not_a_file_is_neither_read_nor_replaced_by_libvmaf(warm, small, kind):
    """With clips libvmaf can read, a FIFO or link where a cache file belongs was counted as missing
    and replaced; it is not the gate's to replace: that source fails saying what is there."""
    env = warm
    victim = small.cache_paths(env.cache, "Mandelbrot")[0]
    victim.unlink()
    target = {"fifo": None, "link-to-a-device": Path("/dev/zero"), "broken-link": victim.with_name("gone.json")}[kind]
    os.mkfifo(victim) if target is None else victim.symlink_to(target)
    # reading a FIFO or /dev/zero would hang: their own process, so the timeout would say; a broken link cannot
    run = env.run() if kind == "broken-link" else env.run_subprocess()
    assert run.outcomes == {f"loso::fold[{ARCH}-Life]": "PASSED", f"loso::fold[{ARCH}-Mandelbrot]": "FAILED",
                            f"loso::fold[{ARCH}-TestCard]": "PASSED"}, run.output
    there = {"fifo": "a FIFO", "link-to-a-device": "a device", "broken-link": f"a broken link (to {target})"}[kind]
    assert f"{victim}: is {there}, not a regular file; refusing to read or replace it" \
        in run.failure_text(f"loso::fold[{ARCH}-Mandelbrot]")
    assert run.extraction["pairs_computed"] == 0 and run.extraction["corrupt_recomputed"] == []
    assert victim.is_fifo() if target is None else os.readlink(victim) == str(target)
    assert "Traceback" not in run.output


@pytest.mark.parametrize("edit, says", [
    (lambda p: p["features"].update(per_frame=[], n_frames=0), "holds no frames"),
    (lambda p: p["scores"].update(per_frame=[]), "holds no frames"),
    (lambda p: p["scores"].update(per_frame=[True] * len(p["scores"]["per_frame"])),
     "scores.per_frame holds booleans, not numbers"),
    (lambda p: p["scores"]["per_frame"].__setitem__(0, False), "scores.per_frame holds booleans among its numbers"),
    (lambda p: p["features"]["per_frame"][3].__setitem__(2, True),
     "features.per_frame holds booleans among its numbers"),
    (lambda p: p["scores"]["per_frame"].__setitem__(0, "91.5"), "scores.per_frame holds strings, not numbers"),
    (lambda p: p["scores"]["per_frame"].__setitem__(0, None),
     "scores.per_frame holds values that are not numbers, not numbers"),
], ids=["no-feature-frames", "no-score-frames", "boolean-scores", "a-boolean-score", "a-boolean-feature",
        "a-string-score", "a-null-score"])
def test_cache_values_that_are_not_numbers_are_refused_and_recomputed(warm, small, edit, says):
    env = warm
    victim = small.cache_paths(env.cache, "TestCard")[1]
    payload = load_cache(victim)
    del payload["made_by"]  # as another tool would write it: replaced only because it is unusable
    edit(payload)
    victim.write_text(json.dumps(payload))

    refused = env.run("--loso-extractor", "none")
    assert refused.outcomes[f"loso::fold[{ARCH}-TestCard]"] == "FAILED", refused.output
    assert f"{victim}: {says}" in refused.failure_text(f"loso::fold[{ARCH}-TestCard]")

    run = env.run()  # with an extractor, recomputed like any corrupt file
    all_passed(run, small.corpus.sources)
    assert run.extraction["corrupt_recomputed"] == [str(victim)]
    assert_matches_libvmaf(load_cache(victim), small.expected[victim.stem])
    np.testing.assert_array_equal(np.isfinite(load_cache(victim)["scores"]["per_frame"]), True)
