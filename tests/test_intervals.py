"""Bootstrap intervals on realistic simulated clips: they cover their estimate and the known truth.

Clips carry clip-level random effects (a clip's content shifts its VMAF, a model's bias on a
clip shifts its predictions), which is why the plugin resamples clips rather than frames; with
the effects' variances known, the population PLCC is known, so coverage can be counted.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from pytest_loso.metrics import bootstrap_intervals

CONTENT_SD, FRAME_SD, CLIP_BIAS_SD, NOISE_SD = 10.0, 3.0, 3.0, 3.0
# var(y) = content + frame; pred = y + clip bias + noise, so corr(pred, y) = sqrt(var y / var pred)
TRUE_PLCC = float(np.sqrt((CONTENT_SD**2 + FRAME_SD**2)
                          / (CONTENT_SD**2 + FRAME_SD**2 + CLIP_BIAS_SD**2 + NOISE_SD**2)))


def simulated_corpus(rng: np.random.Generator, clips: int, frames: int, *, saturated: float = 0.0):
    """float32 (pred, vmaf, clip_frames) of ``clips`` clips of ``frames`` frames; ``saturated`` frames tie at 100."""
    content = np.repeat(rng.normal(50, CONTENT_SD, clips), frames)
    vmaf = content + rng.normal(0, FRAME_SD, clips * frames)
    pred = vmaf + np.repeat(rng.normal(0, CLIP_BIAS_SD, clips), frames) + rng.normal(0, NOISE_SD, clips * frames)
    if saturated:
        cap = np.quantile(vmaf, 1.0 - saturated)
        vmaf = np.minimum(vmaf, cap) * (100.0 / cap)  # libvmaf saturates: many frames tie at exactly 100
    return pred.astype(np.float32), vmaf.astype(np.float32), (frames,) * clips


def test_95_percent_intervals_cover_the_true_plcc_95_percent_of_the_time():
    rng = np.random.default_rng(2026)
    covered, methods = 0, set()
    for corpus in range(400):
        pred, vmaf, clip_frames = simulated_corpus(rng, clips=80, frames=2)
        intervals, method = bootstrap_intervals(pred, vmaf, clip_frames, n_resamples=400, seed=corpus)
        low, high = intervals["plcc"]
        covered += low <= TRUE_PLCC <= high
        methods.add(method["plcc"])
    assert methods == {"BCa"}
    assert 0.93 <= covered / 400 <= 0.97, covered / 400


@pytest.mark.parametrize("seed", range(12))
def test_every_interval_covers_its_estimate_with_tied_vmaf_100_frames(seed):
    rng = np.random.default_rng(seed)
    pred, vmaf, clip_frames = simulated_corpus(rng, clips=24, frames=40, saturated=0.3)
    assert np.count_nonzero(vmaf == vmaf.max()) > len(vmaf) // 5
    estimate = {"plcc": pearsonr(pred, vmaf).statistic, "srocc": spearmanr(pred, vmaf).statistic,
                "rmse": float(np.sqrt(np.mean((pred.astype(np.float64) - vmaf) ** 2)))}
    intervals, methods = bootstrap_intervals(pred, vmaf, clip_frames, n_resamples=1000, seed=seed)
    for name, value in estimate.items():
        low, high = intervals[name]
        assert low < value < high, (name, low, value, high)
        assert methods[name] == "BCa", name


def test_many_clips_use_a_grouped_jackknife_and_still_cover():
    from pytest_loso.metrics.intervals import JACKKNIFE_GROUPS

    rng = np.random.default_rng(5)
    pred, vmaf, clip_frames = simulated_corpus(rng, clips=JACKKNIFE_GROUPS + 50, frames=3, saturated=0.2)
    intervals, methods = bootstrap_intervals(pred, vmaf, clip_frames, n_resamples=300, seed=1)
    assert methods == dict.fromkeys(("plcc", "srocc", "rmse"), f"BCa (jackknife over {JACKKNIFE_GROUPS} groups of clips)")
    assert intervals["plcc"][0] < pearsonr(pred, vmaf).statistic < intervals["plcc"][1]
    assert intervals["srocc"][0] < spearmanr(pred, vmaf).statistic < intervals["srocc"][1]


def test_the_bca_quantile_is_scipys_bit_for_bit():
    """BCa's bounds are read off the bootstrap distribution as ``scipy.stats.quantile`` does (whose
    per-call cost the gate avoids): equal bit for bit, ties, NaN rows and the extreme levels included."""
    from scipy.stats import quantile

    from pytest_loso.metrics.intervals import quantile_linear

    rng = np.random.default_rng(7)
    for resamples in (1, 2, 7, 1000):
        rows = rng.normal(size=(5, resamples))
        rows[1] = np.round(rows[1])  # ties
        rows[2, 0] = np.nan  # a degenerate resample: the row's quantiles are NaN
        levels = rng.uniform(0, 1, (5, 2))
        levels[3] = [0.0, 1.0]
        levels[4] = [0.025, 0.975]
        expected = quantile(rows, levels, axis=-1)
        assert np.array_equal(quantile_linear(rows, levels), expected, equal_nan=True), resamples
