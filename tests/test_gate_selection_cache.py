"""A cold cache is filled only for the gate tests that will run (after -k, -m, --deselect),
and not at all when the gate is not selected (issue 8, item 2). Real libvmaf."""

from __future__ import annotations

import pytest

from cold_cache import Env

pytestmark = pytest.mark.usefixtures("no_ambient_cache_or_vmaf")


def test_a_cold_cache_is_filled_only_for_the_selected_gate_tests(pytester, small):
    env = Env(pytester, small)
    first, second, third = small.corpus.sources
    run = env.run("-k", second)
    assert run.ret == 0, run.output
    assert sorted(env.cache.rglob("*.json")) == sorted(small.cache_paths(env.cache, second))
    assert f"computing {len(small.cache_paths(env.cache, second))} missing cache files of 1 sources" in run.stdout

    run = env.run("--deselect", f"loso::fold[mlp_small-{first}]", "-m", "loso")
    assert run.ret == 0, run.output
    assert sorted(env.cache.rglob("*.json")) == sorted(small.cache_paths(env.cache, second)
                                                       + small.cache_paths(env.cache, third))


def test_naming_another_test_fills_no_cache(pytester, small):
    env = Env(pytester, small)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    run = env.run("test_plain.py::test_plain")
    assert run.ret == 0, run.output
    assert "1 passed" in run.stdout and "loso::" not in run.stdout
    assert not env.cache.exists() and run.report is None
