"""Shared fixtures: the session's synthetic corpus, folds and baseline, and a per-test copy of it.

The heavy modules are imported here, in the outer process, on purpose: ``pytester.runpytest``
(in process) removes the modules an inner run imported when it ends, and onnx's C extension
aborts the interpreter when it is imported a second time ("refusing to add duplicate key").
"""

from __future__ import annotations

import importlib
import pkgutil

import numpy as np
import onnx  # noqa: F401
import onnxruntime  # noqa: F401
import pytest
import scipy.stats  # noqa: F401

import pytest_loso

# The plugin's own modules too, once: an inner run would otherwise import (and assertion-rewrite)
# every module the plugin loads lazily afresh, and drop it again when it ends.
for _module in pkgutil.walk_packages(pytest_loso.__path__, "pytest_loso."):
    if ".example" not in _module.name:
        importlib.import_module(_module.name)

from loso_helpers import ARCHS, BASELINE_TAG, FRAMES, N_SOURCES, PAIRS_PER_SOURCE, SOURCES, STEPS, Built, GateEnv
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


