"""metrics' own PLCC/SROCC/KRCC equal scipy.stats' bit for bit (plain runs do not import scipy.stats)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import kendalltau, pearsonr, rankdata, spearmanr

from pytest_loso.metrics.correlations import average_ranks, kendall_tau_b, pearson, spearman


def _cases():
    rng = np.random.default_rng(20261203)
    vmaf = rng.uniform(20, 100, 500).astype(np.float32)
    yield "float32 VMAF-like", vmaf + rng.normal(0, 5, 500).astype(np.float32), vmaf
    yield "float64", rng.normal(size=300), rng.normal(size=300)
    yield "mixed float32/float64", rng.normal(size=200).astype(np.float32), rng.normal(size=200)
    yield "many ties", rng.integers(0, 5, 400).astype(np.float32), rng.integers(0, 7, 400).astype(np.float32)
    yield "integers", rng.integers(0, 50, 100), rng.integers(0, 50, 100)
    yield "ties in one input", np.round(vmaf, 0), vmaf
    yield "n=2", np.array([1.0, 3.0], np.float32), np.array([5.0, 2.0], np.float32)
    yield "n=3", np.array([1.0, 2.0, 2.5]), np.array([0.3, 0.1, 0.9])
    yield "perfect", np.arange(50, dtype=np.float32), 2 * np.arange(50, dtype=np.float32) + 1
    yield "reversed", np.arange(64.0), -np.arange(64.0)
    yield "constant x", np.full(20, 3.0, np.float32), rng.normal(size=20).astype(np.float32)
    yield "constant y", rng.normal(size=20), np.zeros(20)
    yield "nearly constant", 1e6 + rng.normal(0, 1e-9, 100), rng.normal(size=100)
    big_y = rng.uniform(0, 100, 120_000).astype(np.float32)
    yield "large n", big_y + rng.normal(0, 8, big_y.size).astype(np.float32), big_y
    yield "large n, ties", np.round(big_y / 4).astype(np.float32), np.round(big_y)


CASES = list(_cases())


def _same(ours: float, theirs) -> bool:
    theirs = float(theirs)
    return (math.isnan(ours) and math.isnan(theirs)) or ours == theirs


@pytest.mark.parametrize(("x", "y"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_equal_to_scipy_stats_bit_for_bit(x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant input, and returns NaN as we do
        expected = (pearsonr(x, y).statistic, spearmanr(x, y).statistic, kendalltau(x, y).statistic)
    got = (pearson(x, y), spearman(x, y), kendall_tau_b(x, y))
    assert [_same(g, e) for g, e in zip(got, expected)] == [True, True, True], (got, expected)
    assert np.array_equal(average_ranks(x), rankdata(x))

