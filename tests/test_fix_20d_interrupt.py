"""Issue 20 item 10: Ctrl-C during a cold fill ends with one clear line saying how far the fill got
and that a rerun resumes, not with a KeyboardInterrupt at a line of threading.py.

Ctrl-C (SIGINT to the process group) is asserted on the run of
``test_extract.py::test_ctrl_c_stops_extraction_without_computing_the_remaining_pairs``, the same
interruption: one run asserts both. SIGTERM to the process group, which the gate turns into an
interruption of its own (Python's default would end the process without a word), is here."""

from __future__ import annotations

import os
import signal

import pytest

pytest.importorskip("imageio_ffmpeg", reason="the cold-cache tests need the vmaf extra: pip install -e '.[vmaf]'")

from cold_cache import Env, assert_interrupted_cleanly  # noqa: E402


def test_an_interrupted_fill_says_how_many_pairs_are_cached_and_that_a_rerun_resumes(pytester, large):
    env = Env(pytester, large)
    process, seen = env.popen_until_cached("--loso-jobs", "1", tag="interrupted")
    os.killpg(process.pid, signal.SIGTERM)
    run = env.finish(process, timeout=60)
    assert_interrupted_cleanly(run, len(list(env.cache.rglob("*.json"))), large.n_pairs)
