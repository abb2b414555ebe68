"""Issue 20 item 10: Ctrl-C during a cold fill ends with one clear line saying how far the fill got
and that a rerun resumes, not with a KeyboardInterrupt at a line of threading.py."""

from __future__ import annotations

import os
import re
import signal

import pytest

pytest.importorskip("imageio_ffmpeg", reason="the cold-cache tests need the vmaf extra: pip install -e '.[vmaf]'")

from cold_cache import Env  # noqa: E402


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_fill_says_how_many_pairs_are_cached_and_that_a_rerun_resumes(pytester, large, sig):
    env = Env(pytester, large)
    process, seen = env.popen_until_cached("--loso-jobs", "1", tag="interrupted")
    os.killpg(process.pid, sig)
    run = env.finish(process, timeout=60)
    assert run.ret == 2, run.output  # pytest's "interrupted"
    cached = len(list(env.cache.rglob("*.json")))
    assert 0 < cached < large.n_pairs
    line = f"loso: interrupted: {cached} of {large.n_pairs} pairs cached; a rerun resumes"
    assert line in run.output, run.output
    assert "threading.py" not in run.output and "Traceback" not in run.output, run.output
    assert not re.search(r"^\S+\.py:\d+: KeyboardInterrupt", run.output, re.MULTILINE), run.output
