"""One item's metrics: PLCC, SROCC (average or ordinal ranks), KRCC and RMSE, and the logistic fit.

PLCC, SROCC and KRCC without ``scipy.stats``: importing it costs ~0.6 s, more than a
plain gate run spends scoring, so it is imported only for the logistic metrics.
Each function repeats scipy.stats' own arithmetic (same dtype, same operations in the
same order), so the results equal pearsonr/spearmanr/kendalltau bit for bit
(tests/test_correlations.py holds them to that on varied data).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LosoInputError

if TYPE_CHECKING:
    import numpy as np


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """``scipy.stats.pearsonr(x, y).statistic``: centred, max-scaled norms, clipped dot product."""
    import numpy as np

    dtype = np.result_type(x, y)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.dtype(np.float64)
    x = np.asarray(x, dtype=dtype)
    y = np.asarray(y, dtype=dtype)
    if x.size < 2 or (x == x[0]).all() or (y == y[0]).all():
        return math.nan
    xm = x - x.mean()
    ym = y - y.mean()
    xmax = np.abs(xm).max()
    ymax = np.abs(ym).max()
    with np.errstate(invalid="ignore", divide="ignore"):
        normxm = xmax * np.linalg.norm(xm / xmax, ord=2, axis=-1)  # reduce, as scipy: not dot()
        normym = ymax * np.linalg.norm(ym / ymax, ord=2, axis=-1)
        r = np.vecdot(xm / normxm, ym / normym)
    r = np.clip(r, -1.0, 1.0)
    return float(np.round(r)) if x.size == 2 else float(r)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """``scipy.stats.rankdata(x)`` (method "average"), as float64: tied values share their mean rank."""
    import numpy as np

    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]
    # 1-based ranks starts+1 .. ends share (starts + 1 + ends) / 2: exact in float64
    mean_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """``scipy.stats.spearmanr(x, y).statistic``: ``np.corrcoef`` of the average ranks, as scipy lays them out."""
    import numpy as np

    x = np.asarray(x)
    y = np.asarray(y)
    if x.size < 2 or (x == x[0]).all() or (y == y[0]).all():
        return math.nan
    ranked = np.column_stack((average_ranks(x), average_ranks(y)))
    return float(np.corrcoef(ranked, rowvar=False)[1, 0])


def ordinal_spearman(x: np.ndarray, y: np.ndarray) -> float:
    """SROCC as the team's newer harnesses compute it (``ai/scripts/eval_loso_vmaf_tiny_v3.py``
    ``_metrics``): ranks ``argsort(argsort(v))`` in float64, ties not averaged, then ``np.corrcoef``.
    On tied frames (VMAF 100) it differs from :func:`spearman`; kept to reproduce their numbers."""
    import numpy as np

    rank_x = np.argsort(np.argsort(np.asarray(x, dtype=np.float64)))
    rank_y = np.argsort(np.argsort(np.asarray(y, dtype=np.float64)))
    return float(np.corrcoef(rank_x, rank_y)[0, 1])


SROCC_RANKS = {"average": spearman, "ordinal": ordinal_spearman}


def _inversions(y: np.ndarray) -> int:
    """Pairs ``i < j`` with ``y[i] > y[j]`` (integer ``y`` in ``1..n``), by a bottom-up merge sort.

    At each level the right half of every block pair counts the left-half values above it
    (``searchsorted`` on keys offset per block pair), then each pair is merged by one sort.
    """
    import numpy as np

    n = y.size
    span = n + 1
    y = y.astype(np.int64)
    position = np.arange(n)
    count = 0
    width = 1
    while width < n:
        block = position // (2 * width)
        right = (position % (2 * width)) >= width
        keys = block * span + y
        left_keys = keys[~right]  # sorted: blocks ascend, each half was sorted a level below
        count += int((np.searchsorted(left_keys, (block[right] + 1) * span, side="left")
                      - np.searchsorted(left_keys, keys[right], side="right")).sum())
        # stable (timsort): keys are runs of two sorted halves, which it merges in linear time,
        # ~2.5x faster than the default introsort at 1.2M frames; the sorted integers are the same
        y = np.sort(keys, kind="stable") - block * span
        width *= 2
    return count


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """``scipy.stats.kendalltau(x, y).statistic`` (tau-b): same dense ranks, tie counts and formula."""
    import numpy as np

    x = np.asarray(x)
    y = np.asarray(y)
    size = x.size
    if size < 2:
        return math.nan
    perm = np.argsort(y)
    x, y = x[perm], y[perm]
    y = np.r_[True, y[1:] != y[:-1]].cumsum(dtype=np.intp)
    perm = np.argsort(x, kind="mergesort")
    x, y = x[perm], y[perm]
    x = np.r_[True, x[1:] != x[:-1]].cumsum(dtype=np.intp)
    dis = _inversions(y)  # discordant pairs: x ascends, ties in x ordered by y

    obs = np.r_[True, (x[1:] != x[:-1]) | (y[1:] != y[:-1]), True]
    cnt = np.diff(np.nonzero(obs)[0]).astype("int64", copy=False)
    ntie = int((cnt * (cnt - 1) // 2).sum())

    def tied_pairs(ranks: np.ndarray) -> int:
        counts = np.bincount(ranks).astype("int64", copy=False)
        counts = counts[counts > 1]
        return int((counts * (counts - 1) // 2).sum())

    xtie, ytie = tied_pairs(x), tied_pairs(y)
    tot = (size * (size - 1)) // 2
    if xtie == tot or ytie == tot:
        return math.nan
    con_minus_dis = tot - xtie - ytie + ntie - 2 * dis
    tau = con_minus_dis / np.sqrt(tot - xtie) / np.sqrt(tot - ytie)
    return float(np.minimum(1.0, max(-1.0, tau)))


def score(
    pred: np.ndarray, target: np.ndarray, *, model_path: Path, target_desc: str, krcc: bool = True,
    srocc_ranks: str = "average",
) -> dict[str, float]:
    """``{"n", "plcc", "srocc", "rmse"}`` of ``pred`` against ``target``, and ``"krcc"`` unless told not to.

    ``srocc_ranks`` is ``average`` (``scipy.stats.spearmanr``) or ``ordinal`` (:func:`ordinal_spearman`).

    Raises :class:`LosoInputError` where a metric would be undefined (NaN predictions, a
    constant prediction or target) rather than reporting NaN as if it were a score.
    """
    import numpy as np

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
            "plcc": pearson(pred, target),
            "srocc": SROCC_RANKS[srocc_ranks](pred, target),
            "rmse": float(np.sqrt(((pred - target) ** 2).mean())),
        }
        if krcc:
            metrics["krcc"] = kendall_tau_b(pred, target)
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
