"""Shared fixtures: the session's synthetic corpus, folds and baseline, and a per-test copy of it;
for the cold-cache tests, the session's real clips (``small``, ``large``) and a cache libvmaf filled once.

Test modules never import each other: what several share is here (fixtures) or in a helper
module (``loso_helpers``: the template's layout, running the gate, reference numbers;
``cold_cache``: the clip corpora's; ``compare_helpers``: accepting and comparing; ``clips``:
making clips and an independent libvmaf run). ``loso_testing`` (repository root) trains and
exports the models; the root ``conftest.py`` puts the root on ``sys.path``.

The heavy modules are imported here, in the outer process, on purpose: ``pytester.runpytest``
(in process) removes the modules an inner run imported when it ends, and onnx's C extension
aborts the interpreter when it is imported a second time ("refusing to add duplicate key").
"""

from __future__ import annotations

import gc
import importlib
import pkgutil
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx  # noqa: F401
import onnxruntime  # noqa: F401
import pytest
import scipy.stats  # noqa: F401

import pytest_loso

try:  # the vmaf extra: kept here so its once-per-process check of the bundled ffmpeg (a `-version`
    import imageio_ffmpeg  # noqa: F401  run, ~12 ms) is not redone by every in-process gate run
except ImportError:
    pass

# The plugin's own modules too, once: an inner run would otherwise import (and assertion-rewrite)
# every module the plugin loads lazily afresh, and drop it again when it ends.
for _module in pkgutil.walk_packages(pytest_loso.__path__, "pytest_loso."):
    if ".example" not in _module.name:
        importlib.import_module(_module.name)

# Every in-process run ends in pytest's gc.collect() (twice, at unconfigure), which walks every
# object of this process: numpy, scipy, onnx and pytest's own are never garbage, so they are
# moved out of the collector's sight once (~25 ms saved per run, over 400 runs).
gc.freeze()
# And the young generation is collected every 20,000 allocations, not 700: an in-process run allocates
# a great many short-lived objects (pytest's config, hooks, reports) and frees most of them by
# reference counting; each run still ends in pytest's own full collection (~3% of the suite's time).
gc.set_threshold(20_000, 50, 100)

from clips import independent_libvmaf, make_corpus
from cold_cache import (LARGE_FRAMES, LARGE_H, LARGE_LADDER, LARGE_SOURCES, LARGE_W, SMALL_FRAMES, SMALL_H,
                        SMALL_LADDER, SMALL_SOURCES, SMALL_W, ClipSet, Env, _export_folds, all_passed)
from loso_helpers import (ARCHS, BASELINE_TAG, ENSEMBLE_MEMBERS, FRAMES, N_SOURCES, PAIRS_PER_SOURCE, SOURCES, STEPS,
                          SWEEP_SEEDS, Built, GateEnv, Run, all_ids, sweep_folder)
from loso_testing.training import Regressor
from shared_runs import SharedRuns
from loso_testing.training import export_onnx, synthetic_corpus, train, train_folds


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("loso_template")
    _, _, truth = synthetic_corpus(root, N_SOURCES, pairs_per_source=PAIRS_PER_SOURCE, frames=FRAMES)
    folds = {arch: train_folds(root / "runs" / f"loso_{arch}", truth, arch, steps=STEPS) for arch in ARCHS}
    x = np.concatenate([x for s in SOURCES for x, _ in truth[s]])
    y = np.concatenate([y for s in SOURCES for _, y in truth[s]])
    baseline = train(x, y, "mlp_small", steps=STEPS, seed=1)
    export_onnx(baseline, root / "base" / f"{BASELINE_TAG}.onnx")
    return Built(root, truth, folds, baseline)


@pytest.fixture
def gate(pytester: pytest.Pytester, built: Built) -> GateEnv:
    return GateEnv(pytester, built)


@pytest.fixture(scope="session")
def ensemble_members(tmp_path_factory: pytest.TempPathFactory, built: Built) -> Path:
    """``member_seed<N>.onnx``: ENSEMBLE_MEMBERS mlp_small models on every source (seeds 20, 21, ...),
    trained once for the session; a test copies what it needs into its tree."""
    x = np.concatenate([x for s in SOURCES for x, _ in built.truth[s]])
    y = np.concatenate([y for s in SOURCES for _, y in built.truth[s]])
    folder = tmp_path_factory.mktemp("ensemble") / "ens"
    for seed in range(ENSEMBLE_MEMBERS):
        export_onnx(train(x, y, "mlp_small", steps=STEPS, seed=20 + seed), folder / f"member_seed{seed}.onnx")
    return folder


@pytest.fixture(scope="session")
def seed_sweep(tmp_path_factory: pytest.TempPathFactory, built: Built) -> tuple[Path, dict[int, dict[str, Regressor]]]:
    """``loso_mlp_small/seed<N>/fold_<Source>/mlp_small_final.onnx`` for SWEEP_SEEDS (the last spelled
    ``seed_<N>``), trained once for the session on the template's corpus (training seed N + 10)."""
    sweep = tmp_path_factory.mktemp("seed_sweep") / "sweep"
    models = {}
    for seed in SWEEP_SEEDS:
        folder = sweep / "loso_mlp_small" / sweep_folder(seed)
        models[seed] = train_folds(folder, built.truth, "mlp_small", steps=STEPS, seed=seed + 10)
    return sweep, models


@dataclass(frozen=True)
class CleanRun:
    """The untouched template's default run (``GateEnv.run()``, no options) and the tree it ran in."""

    env: GateEnv
    run: Run


_SESSION_RUNS = SharedRuns()  # runs that tests of several modules read


@pytest.fixture
def clean(pytester: pytest.Pytester, built: Built, tmp_path_factory: pytest.TempPathFactory) -> CleanRun:
    """:class:`CleanRun`, made once in a copy of its own (no test's ``gate``, which its test may break)
    and read by every test that asks. Read it: never run in ``env`` or change its files."""
    def make() -> CleanRun:
        env = GateEnv(pytester, built, root=tmp_path_factory.mktemp("clean_run"))
        run = env.run()
        assert run.result.ret == 0, run.output
        assert run.outcomes == {nodeid: "PASSED" for nodeid in all_ids()}, run.output
        assert run.report is not None
        return CleanRun(env, run)

    return _SESSION_RUNS.get("clean", make)


# -- the cold-cache tests: real clips and libvmaf (test_extract, test_cache_made_by, test_gate_selection_cache)


@pytest.fixture(scope="session")
def small(tmp_path_factory: pytest.TempPathFactory) -> ClipSet:
    """3 sources x 3 rungs of 64x48, 12 frames; every pair scored independently by libvmaf."""
    root = tmp_path_factory.mktemp("extract_small")
    corpus = make_corpus(root / "corpus", SMALL_SOURCES, SMALL_W, SMALL_H, SMALL_FRAMES, SMALL_LADDER)
    built = ClipSet(corpus, root / "folds")
    with ThreadPoolExecutor(max_workers=2) as pool:  # each a separate ffmpeg: two at a time on two cores
        results = pool.map(lambda pair: independent_libvmaf(pair.ref, pair.dis, SMALL_W, SMALL_H), corpus.pairs)
        built.expected.update(zip((pair.stem for pair in corpus.pairs), results))
    data = {}
    for source in corpus.sources:
        results = [built.expected[p.stem] for p in corpus.pairs if p.source == source]
        data[source] = (np.concatenate([r.features for r in results]), np.concatenate([r.scores for r in results]))
    _export_folds(built.loso_dir, corpus.sources, data)
    return built


@pytest.fixture(scope="session")
def large(tmp_path_factory: pytest.TempPathFactory, small: ClipSet) -> ClipSet:
    """2 sources x 2 rungs of 320x240, 40 frames: libvmaf takes long enough to be interrupted."""
    root = tmp_path_factory.mktemp("extract_large")
    corpus = make_corpus(root / "corpus", LARGE_SOURCES, LARGE_W, LARGE_H, LARGE_FRAMES, LARGE_LADDER)
    built = ClipSet(corpus, root / "folds")
    data = {}
    for source in small.corpus.sources:  # any real features will do: the point is extraction
        results = [small.expected[p.stem] for p in small.corpus.pairs if p.source == source]
        data[source] = (np.concatenate([r.features for r in results]), np.concatenate([r.scores for r in results]))
    _export_folds(built.loso_dir, corpus.sources, data)
    return built


@pytest.fixture
def no_ambient_cache_or_vmaf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs must not pick up the machine's $VMAF_BIN (auto would prefer it) or shared cache."""
    monkeypatch.delenv("VMAF_BIN", raising=False)
    monkeypatch.delenv("VMAF_TINY_AI_CACHE", raising=False)
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)



@pytest.fixture(scope="session")
def _small_warm_cache(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What ``warm``'s cold run left: its cache files (``root``) and its report (``report``)."""
    return {"root": tmp_path_factory.mktemp("extract_small_warm_cache") / "cache", "report": None}


@pytest.fixture
def warm(pytester: pytest.Pytester, small: ClipSet, no_ambient_cache_or_vmaf: None,
         _small_warm_cache: dict[str, Any]) -> Env:
    """An :class:`Env` over ``small`` whose cache the gate has filled with libvmaf.

    The first test to ask runs the gate on a cold cache (every fold must pass) and keeps what it
    wrote; the others start from a copy of those files, byte for byte and with their mtimes, as
    that same run would have left them in their own folder (the clips and the options are the same).
    That cold run's report is ``cold_report``: the numbers any cold run over ``small`` must give.
    """
    env = Env(pytester, small)
    kept = _small_warm_cache["root"]
    if not kept.exists():
        cold = env.run()
        all_passed(cold, small.corpus.sources)
        assert sorted(env.cache.rglob("*.json")) == sorted(small.cache_paths(env.cache))
        assert cold.extraction["pairs_computed"] == small.n_pairs, cold.output
        shutil.copytree(env.cache, kept)
        _small_warm_cache["report"] = cold.report
    else:
        shutil.copytree(kept, env.cache)
    env.cold_report = _small_warm_cache["report"]
    return env
