"""Computing metrics: PLCC, SROCC and RMSE of predictions against VMAF, their intervals and fold aggregates.

- :mod:`.correlations`: one item's metrics (``score``) and the optional logistic fit.
- :mod:`.clip_statistic`: the same metrics of any multiset of clips, for resampling.
- :mod:`.intervals`: bootstrap intervals (BCa, named fallbacks), paired and two-stage.
- :mod:`.aggregate`: mean ± std over folds, and the figures across seeds.
- :mod:`.names`: what each metric is called and shown as, and which way is better.

The formulas are the evaluation script's, on the same float32 arrays, so the numbers
agree to the last digit: ``pearsonr(pred, y).statistic``, ``spearmanr(pred, y).statistic``
and ``sqrt(mean((pred - y) ** 2))``. Nothing here imports numpy or scipy at import time.
"""

from __future__ import annotations

from .aggregate import across_seeds, aggregate
from .clip_statistic import ClipStatistic
from .correlations import logistic_metrics, score
from .intervals import (
           CI_METHOD,
           FEW_CLIPS,
           Bootstrap,
           bootstrap,
           bootstrap_intervals,
           fold_mean_intervals,
           hold_estimates,
           two_stage_intervals,
)
from .names import HIGHER_IS_BETTER, LABELS, METRICS, digits, finite_or_none, label

__all__ = ["CI_METHOD", "FEW_CLIPS", "hold_estimates", "HIGHER_IS_BETTER", "LABELS", "METRICS", "Bootstrap", "ClipStatistic", "across_seeds",
           "aggregate", "bootstrap", "bootstrap_intervals", "digits", "finite_or_none", "label", "logistic_metrics",
           "fold_mean_intervals", "score", "two_stage_intervals"]
