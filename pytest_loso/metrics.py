"""Computing metrics: PLCC, SROCC and RMSE of predictions against VMAF, and their fold aggregate.

The formulas are the evaluation script's, on the same float32 arrays, so the numbers
agree to the last digit: ``pearsonr(pred, y).statistic``, ``spearmanr(pred, y).statistic``
and ``sqrt(mean((pred - y) ** 2))``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LosoInputError

if TYPE_CHECKING:
    import numpy as np

METRICS = ("plcc", "srocc", "rmse")
LABELS = {"plcc": "PLCC", "srocc": "SROCC", "krcc": "KRCC", "rmse": "RMSE",
          "plcc_logistic": "PLCC (logistic)", "rmse_logistic": "RMSE (logistic)",
          "spread_plcc": "spread of the seeds' mean PLCC"}


def label(metric: str) -> str:
    """``plcc`` -> ``PLCC``, ``mean_rmse`` -> ``mean RMSE``."""
    return "mean " + LABELS[metric[5:]] if metric.startswith("mean_") else LABELS[metric]


def digits(metric: str) -> int:
    """Decimals a metric is shown with: RMSE is on the 0-100 VMAF axis, correlations are not."""
    return 3 if "rmse" in metric else 4


BOOTSTRAP_BATCH_FRAMES = 100_000  # resamples x frames held at once: small enough to stay in cache
HIGHER_IS_BETTER = {"plcc": True, "srocc": True, "krcc": True, "rmse": False,
                    "plcc_logistic": True, "rmse_logistic": False}


def score(
    pred: np.ndarray, target: np.ndarray, *, model_path: Path, target_desc: str, krcc: bool = True
) -> dict[str, float]:
    """``{"n", "plcc", "srocc", "rmse"}`` of ``pred`` against ``target``, and ``"krcc"`` unless told not to.

    Raises :class:`LosoInputError` where a metric would be undefined (NaN predictions, a
    constant prediction or target) rather than reporting NaN as if it were a score.
    """
    import numpy as np
    from scipy.stats import kendalltau, pearsonr, spearmanr

    if pred.shape != target.shape:
        raise LosoInputError(
            model_path, f"model returned {pred.shape[0]} predictions for {target.shape[0]} frames of {target_desc}"
        )
    nonfinite = int(np.count_nonzero(~np.isfinite(pred)))
    if nonfinite:
        raise LosoInputError(
            model_path, f"model predicted NaN or inf for {nonfinite} of {pred.size} frames of {target_desc}",
            "check the model's weights (re-export it) and that its inputs are the features it was trained on",
        )
    if pred.size < 3:
        raise LosoInputError(model_path, f"only {pred.size} frames of {target_desc}; PLCC needs at least 3")
    if pred.min() == pred.max():
        raise LosoInputError(
            model_path,
            f"model predicts the constant {float(pred[0]):.4f} for all {pred.size} frames of {target_desc}; "
            "PLCC and SROCC are undefined",
            "the model is degenerate (e.g. every ReLU dead, or inputs on another scale than in training): "
            "retrain or re-export it",
        )
    if not np.isfinite(target).all():
        raise LosoInputError(model_path, f"VMAF target of {target_desc} holds NaN or infinite values")
    if target.min() == target.max():
        raise LosoInputError(
            model_path, f"VMAF target of {target_desc} is constant over {target.size} frames; PLCC is undefined"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate inputs were refused above
        metrics = {
            "n": int(target.size),
            "plcc": float(pearsonr(pred, target).statistic),
            "srocc": float(spearmanr(pred, target).statistic),
            "rmse": float(np.sqrt(((pred - target) ** 2).mean())),
        }
        if krcc:
            metrics["krcc"] = float(kendalltau(pred, target).statistic)
        return metrics


def logistic_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float | None]:
    """PLCC and RMSE after the 4-parameter logistic mapping used in video-quality papers (VQEG).

    ``f(x) = b2 + (b1 - b2) / (1 + exp(-(x - b3) / |b4|))`` is fitted by least squares
    (``scipy.optimize.curve_fit``) from predictions to targets, then PLCC and RMSE are
    taken of ``f(pred)`` against the targets. ``None`` when the fit does not converge.
    """
    import numpy as np
    from scipy.optimize import curve_fit
    from scipy.stats import pearsonr

    def logistic(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
        return b2 + (b1 - b2) / (1 + np.exp(-(x - b3) / abs(b4)))

    x, y = pred.astype(np.float64), target.astype(np.float64)
    start = [y.max(), y.min(), float(np.median(x)), max(float(x.std()), 1e-3)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = curve_fit(logistic, x, y, p0=start, maxfev=20000)
            mapped = logistic(x, *params)
            return {
                "plcc_logistic": float(pearsonr(mapped, y).statistic),
                "rmse_logistic": float(np.sqrt(((mapped - y) ** 2).mean())),
            }
    except (RuntimeError, ValueError):
        return {"plcc_logistic": None, "rmse_logistic": None}


def _weighted_corr(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``a`` and ``b`` with frame weights ``w`` (last axis), per row."""
    import numpy as np

    total = w.sum(axis=-1, keepdims=True)
    da = a - (w * a).sum(axis=-1, keepdims=True) / total
    db = b - (w * b).sum(axis=-1, keepdims=True) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w * da * db).sum(-1) / np.sqrt((w * da * da).sum(-1) * (w * db * db).sum(-1))


def _weighted_ranks(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average ranks of ``values`` in the sample where frame i occurs ``w[..., i]`` times.

    Equal to ``scipy.stats.rankdata`` of the explicitly repeated sample, ties included.
    """
    import numpy as np

    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    group_of = np.cumsum(np.r_[True, sorted_values[1:] != sorted_values[:-1]]) - 1
    group_weight = np.add.reduceat(w[..., order], starts, axis=-1)
    group_rank = np.cumsum(group_weight, axis=-1) - group_weight + (group_weight + 1) / 2
    ranks = np.empty_like(w, dtype=np.float64)
    ranks[..., order] = group_rank[..., group_of]
    return ranks


def bootstrap_intervals(
    pred: np.ndarray, target: np.ndarray, pair_frames: tuple[int, ...], *, n_resamples: int, seed: int
) -> dict[str, list[float] | None]:
    """95% intervals of PLCC, SROCC and RMSE by ``scipy.stats.bootstrap`` over the source's *pairs*.

    Frames of one clip are strongly correlated, so clips (not frames) are resampled: a
    resample is a multiset of pairs, its metric that of their concatenated frames. The
    statistic is computed for a whole batch of resamples at once as frame-weighted
    Pearson correlations (weight = how often the frame's pair was drawn), which equals
    ``pearsonr`` / ``spearmanr`` on the explicitly concatenated resample. Percentile
    intervals, seeded: the same inputs give the same intervals. ``None`` with < 2 pairs.
    """
    import numpy as np
    from scipy.stats import bootstrap

    n_pairs = len(pair_frames)
    if n_pairs < 2 or n_resamples <= 0:
        return {name: None for name in METRICS}
    pair_of_frame = np.repeat(np.arange(n_pairs), pair_frames)
    p, t = pred.astype(np.float64), target.astype(np.float64)

    def statistic(pairs: np.ndarray, axis: int = -1) -> np.ndarray:
        counts = (pairs[..., :, None] == np.arange(n_pairs)).sum(axis=-2)
        w = counts[..., pair_of_frame].astype(np.float64)
        plcc = _weighted_corr(p, t, w)
        srocc = _weighted_corr(_weighted_ranks(p, w), _weighted_ranks(t, w), w)
        rmse = np.sqrt((w * (p - t) ** 2).sum(-1) / w.sum(-1))
        return np.stack([plcc, srocc, rmse])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate (e.g. perfect) predictor has a zero-width interval
        result = bootstrap(
            (np.arange(n_pairs),), statistic, vectorized=True, n_resamples=n_resamples, confidence_level=0.95,
            method="percentile", rng=np.random.default_rng(seed), batch=max(1, BOOTSTRAP_BATCH_FRAMES // max(len(p), 1)),
        )
    low, high = result.confidence_interval
    return {name: [float(low[i]), float(high[i])] for i, name in enumerate(METRICS)}


def aggregate(per_fold: Iterable[dict[str, float]]) -> dict[str, float | int | None] | None:
    """Mean and sample standard deviation (ddof=1) of each metric over folds.

    ``std_*`` is ``None`` for a single fold: one value has no sample spread.
    """
    import numpy as np

    folds = list(per_fold)
    if not folds:
        return None
    # The script's six keys first, then KRCC and the logistic metrics where every fold has them.
    extras = [k for k in ("krcc", "plcc_logistic", "rmse_logistic") if all(m.get(k) is not None for m in folds)]
    result: dict[str, float | int | None] = {}
    for names in (METRICS, extras):
        for name in names:
            result[f"mean_{name}"] = float(np.mean([m[name] for m in folds]))
        for name in names:
            result[f"std_{name}"] = float(np.std([m[name] for m in folds], ddof=1)) if len(folds) > 1 else None
    result["n_folds"] = len(folds)
    return result


def across_seeds(per_seed: dict[int, dict[str, dict]]) -> dict:
    """A run repeated over seeds: ``{seed: {source: fold metrics}}`` -> the promotion figures.

    Per seed the mean over its folds (as :func:`aggregate`); across seeds the mean of the
    per-seed means, their sample std (ddof=1), their spread max - min and the lowest seed
    (as the team's ``ensemble_prod_gate.py`` does on PLCC); and for each fold its mean and
    std across seeds.
    """
    import numpy as np

    seeds = sorted(per_seed)
    means = {seed: aggregate(per_seed[seed].values()) for seed in seeds}
    summary: dict = {"seeds": seeds, "n_seeds": len(seeds), "per_seed": means}
    for name in METRICS:
        values = np.array([means[seed][f"mean_{name}"] for seed in seeds])
        summary[f"mean_{name}"] = float(np.mean(values))
        summary[f"std_{name}"] = float(np.std(values, ddof=1)) if len(seeds) > 1 else None
        summary[f"spread_{name}"] = float(values.max() - values.min())
    lowest = min(seeds, key=lambda seed: means[seed]["mean_plcc"])
    summary["lowest_seed"] = lowest
    summary["lowest_seed_mean_plcc"] = means[lowest]["mean_plcc"]
    sources = sorted({source for seed in seeds for source in per_seed[seed]})
    summary["per_fold"] = {}
    for source in sources:
        across = aggregate(per_seed[seed][source] for seed in seeds if source in per_seed[seed])
        assert across is not None
        across["n_seeds"] = across.pop("n_folds")
        summary["per_fold"][source] = across
    return summary


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: undefined numbers are written as null."""
    return None if value is None or not math.isfinite(value) else value
