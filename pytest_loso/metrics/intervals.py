"""Bootstrap intervals: BCa over clips with named fallbacks, the paired difference, and the mean over folds."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .clip_statistic import ClipStatistic
from .names import METRICS

if TYPE_CHECKING:
    import numpy as np

CI_METHOD = "BCa"  # bias-corrected and accelerated: covers the estimate where resampling biases a metric
# Fewer clips than this per source: the bootstrap's resampling distribution is too coarse for a
# trustworthy interval (with 8 clips BCa misses its own SROCC estimate in most folds). Said once.
FEW_CLIPS = 10
JACKKNIFE_GROUPS = 100  # BCa's acceleration from at most this many leave-one-out statistics (a group each beyond)


def _bca(estimate: np.ndarray, distribution: np.ndarray, jackknife: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """95% BCa bounds per row, as ``scipy.stats.bootstrap(method="BCa")`` computes them (Efron & Tibshirani 14.3).

    ``distribution`` (metrics, resamples) is the bootstrap distribution, ``jackknife``
    (metrics, groups) the leave-one-out statistics. NaN where BCa is undefined.
    """
    import numpy as np
    from scipy.special import ndtr, ndtri

    column = estimate[:, None]
    below = (np.count_nonzero(distribution < column, axis=-1) + np.count_nonzero(distribution <= column, axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        z0 = ndtri(below / (2 * distribution.shape[-1]))
        groups = jackknife.shape[-1]
        u = (groups - 1) * (jackknife.mean(axis=-1, keepdims=True) - jackknife)
        accel = (u**3).sum(-1) / groups**3 / 6 / ((u**2).sum(-1) / groups**2) ** 1.5
        z_alpha = float(ndtri(0.025))
        bounds = [ndtr(z0 + (z0 + z) / (1 - accel * (z0 + z))) for z in (z_alpha, -z_alpha)]
    levels = np.stack(bounds, axis=-1)
    finite = np.isfinite(levels).all(axis=-1)
    ci = np.full((len(estimate), 2), np.nan)
    if finite.any():
        ci[finite] = quantile_linear(distribution[finite], levels[finite])
    return ci[:, 0], ci[:, 1]


def quantile_linear(rows: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``scipy.stats.quantile(rows, levels, axis=-1)`` (method "linear", NaN propagating), bit for bit:
    its Hyndman-Fan arithmetic on a sorted copy, without its per-call validation (~1 ms a call, a
    1,000-fold run's second, and the import of ``scipy.stats`` a bootstrap run needs nothing else from).
    ``tests/test_intervals.py`` holds the two equal."""
    import numpy as np

    y = np.sort(rows, axis=-1)
    n = float(y.shape[-1])
    jg = levels * n + (1 - levels)
    jp1 = jg // 1
    j = jp1 - 1
    g = jg % 1
    g[j < 0] = 0
    j, jp1 = np.clip(j, 0.0, n - 1).astype(np.int64), np.clip(jp1, 0.0, n - 1).astype(np.int64)
    result = (1 - g) * np.take_along_axis(y, j, axis=-1) + g * np.take_along_axis(y, jp1, axis=-1)
    result[np.isnan(rows).any(axis=-1)] = np.nan
    return result


def _covering_interval(estimate: float, bca: tuple[float, float], percentile: tuple[float, float],
                       bca_name: str = CI_METHOD) -> tuple[list[float], str]:
    """The BCa interval, else the percentile one, else that extended to the estimate; and which it is.

    BCa is undefined for a degenerate jackknife (e.g. a perfect predictor), and with very few
    clips its discrete resampling distribution can leave the estimate outside; an interval
    that excludes its own estimate is never reported.
    """
    low, high = bca
    if math.isfinite(low) and math.isfinite(high) and low <= estimate <= high:
        return [low, high], bca_name
    reason = "BCa undefined" if not (math.isfinite(low) and math.isfinite(high)) else "BCa excludes the estimate"
    low, high = percentile
    if low <= estimate <= high:
        return [low, high], f"percentile ({reason})"
    return [min(low, estimate), max(high, estimate)], f"percentile extended to the estimate ({reason}; few clips)"


def hold_estimates(intervals: dict[str, list[float] | None], estimates: dict) -> dict[str, list[float] | None]:
    """``intervals`` widened, where needed, to hold the reported ``estimates`` themselves.

    The bootstrap's own estimate of SROCC can differ from the reported one (``scipy.stats.spearmanr``)
    in the last bit; an interval must contain the number printed beside it, so the bound becomes
    that very number.
    """
    held: dict[str, list[float] | None] = {}
    for name, interval in intervals.items():
        value = estimates.get(name)
        if interval is None or not isinstance(value, (int, float)) or not math.isfinite(value):
            held[name] = interval
        else:
            held[name] = [min(interval[0], float(value)), max(interval[1], float(value))]
    return held


@dataclass
class Bootstrap:
    """One statistic's bootstrap: its estimate, resampled values and covering 95% intervals (with their method)."""

    estimate: np.ndarray  # (3,) plcc, srocc, rmse
    distribution: np.ndarray  # (3, resamples)
    jackknife: np.ndarray  # (3, groups)
    intervals: dict[str, list[float] | None]
    methods: dict[str, str]
    bca_name: str = CI_METHOD

    def minus(self, accepted: Bootstrap) -> Bootstrap:
        """The paired bootstrap of ``self − accepted``: both drawn with one seed over the same clips, so
        resample j of each is the same multiset of clips (one counts matrix applied to both models'
        predictions), and the differences are the bootstrap distribution of the difference."""
        estimate = self.estimate - accepted.estimate
        distribution = self.distribution - accepted.distribution
        jackknife = self.jackknife - accepted.jackknife
        intervals, methods = covering_intervals(estimate, distribution, jackknife, self.bca_name)
        return Bootstrap(estimate, distribution, jackknife, intervals, methods, self.bca_name)


def bootstrap(statistic: ClipStatistic, *, n_resamples: int, seed: int) -> Bootstrap:
    """Resample ``statistic``'s clips with replacement; BCa intervals with named fallbacks.

    The resamples are the draws ``scipy.stats.bootstrap`` makes (``rng.integers(0, clips,
    (resamples, clips))`` in one batch, ``rng = default_rng(seed)``), taken directly: its
    per-call machinery costs more than a fold's whole statistic. ``tests/test_compare.py``
    holds the intervals equal to ``scipy.stats.bootstrap`` on explicitly concatenated frames.
    The same ``seed`` and clip count draw the same resamples (see :meth:`Bootstrap.minus`).
    """
    import numpy as np

    clips = np.random.default_rng(seed).integers(0, statistic.n_clips, (n_resamples, statistic.n_clips))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a perfect predictor's distribution is degenerate; handled below
        distribution = statistic(clips)
        estimate = statistic.of_counts(np.ones((1, statistic.n_clips)))[:, 0]
        jackknife = statistic.jackknife(JACKKNIFE_GROUPS)
    bca_name = CI_METHOD if statistic.n_clips <= JACKKNIFE_GROUPS else \
        f"{CI_METHOD} (jackknife over {JACKKNIFE_GROUPS} groups of clips)"
    intervals, methods = covering_intervals(estimate, distribution, jackknife, bca_name)
    return Bootstrap(estimate, distribution, jackknife, intervals, methods, bca_name)


def covering_intervals(estimate: np.ndarray, distribution: np.ndarray, jackknife: np.ndarray,
                       bca_name: str = CI_METHOD) -> tuple[dict[str, list[float] | None], dict[str, str]]:
    """Per metric (rows of ``METRICS``), the BCa interval of ``distribution`` or its named fallback
    (``None`` for none: callers drop the interval of a metric it does not hold for, e.g. ordinal SROCC)."""
    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        low, high = _bca(estimate, distribution, jackknife)
        fallback_low, fallback_high = np.percentile(distribution, [2.5, 97.5], axis=-1)
    intervals: dict[str, list[float] | None] = {}
    methods: dict[str, str] = {}
    for i, name in enumerate(METRICS):
        intervals[name], methods[name] = _covering_interval(
            float(estimate[i]), (float(low[i]), float(high[i])), (float(fallback_low[i]), float(fallback_high[i])),
            bca_name)
    return intervals, methods


def bootstrap_intervals(
    pred: np.ndarray, target: np.ndarray, pair_frames: tuple[int, ...], *, n_resamples: int, seed: int
) -> tuple[dict[str, list[float] | None], dict[str, str]]:
    """95% intervals of PLCC, SROCC and RMSE by ``scipy.stats.bootstrap`` over the source's *pairs*, and their method.

    Frames of one clip are strongly correlated, so clips (not frames) are resampled: a
    resample is a multiset of pairs, its metric that of their concatenated frames
    (:class:`ClipStatistic`). Resampling clips duplicates frames, which ties ranks and biases
    SROCC downward, so a percentile interval can miss its own estimate: the intervals are BCa,
    which corrects that bias. Where BCa is undefined or misses the estimate anyway (see
    :func:`_covering_interval`), the percentile interval of the same resamples is used and named. Seeded: the
    same inputs give the same intervals. ``None`` intervals with < 2 pairs.
    """
    if len(pair_frames) < 2 or n_resamples <= 0:
        return {name: None for name in METRICS}, {}
    result = bootstrap(ClipStatistic(pred, target, pair_frames), n_resamples=n_resamples, seed=seed)
    return result.intervals, result.methods


def two_stage_intervals(estimates: np.ndarray, distributions: np.ndarray, *, seed: int
                        ) -> tuple[dict[str, list[float] | None], dict[str, str]]:
    """95% intervals of the mean over folds: resample the folds' sources, then clips within each.

    ``estimates`` (folds, 3) are the folds' metrics, ``distributions`` (folds, 3, resamples)
    their own clip bootstraps. A two-stage resample draws the folds with replacement and, for
    each drawn fold, one of its clip resamples at random (a draw of that source's clips), and
    takes the mean. BCa's acceleration comes from leaving out one fold at a time.
    """
    import numpy as np

    folds, _, resamples = distributions.shape
    rng = np.random.default_rng([seed, folds])
    chosen = rng.integers(0, folds, (resamples, folds))
    draws = rng.integers(0, resamples, (resamples, folds))
    distribution = distributions[chosen, :, draws].mean(axis=1).T  # (3, resamples)
    estimate = estimates.mean(axis=0)
    jackknife = ((estimates.sum(axis=0) - estimates) / max(folds - 1, 1)).T  # (3, folds)
    return covering_intervals(estimate, distribution, jackknife, f"{CI_METHOD} (two-stage: sources, then clips)")


def mean_distribution(distributions: list[bytes]) -> np.ndarray:
    """The mean, draw by draw, of resampled metrics of runs that drew the same clips for each resample
    (same bootstrap seed, same clips): each is float64 bytes of ``(metrics, resamples)``."""
    import numpy as np

    return np.mean([np.frombuffer(d, dtype=np.float64).reshape(len(METRICS), -1) for d in distributions], axis=0)


def fold_mean_intervals(estimates: list[list[list[float]]], distributions: list[list[bytes]], *, seed: int
                        ) -> tuple[dict[str, list[float] | None], dict[str, str]]:
    """95% intervals of the mean over folds of the mean over runs (one run, or one per seed).

    ``estimates[fold][run]`` are a fold's metrics (in ``METRICS`` order) in each run, and
    ``distributions[fold][run]`` its clip bootstrap there; per fold the runs are averaged (their
    draws too: :func:`mean_distribution`), then :func:`two_stage_intervals` over folds.
    """
    import numpy as np

    means = np.array([[np.mean([run[i] for run in runs]) for i in range(len(METRICS))] for runs in estimates])
    return two_stage_intervals(means, np.stack([mean_distribution(d) for d in distributions]), seed=seed)
