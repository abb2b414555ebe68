"""Computing metrics: PLCC, SROCC and RMSE of predictions against VMAF, and their fold aggregate.

The formulas are the evaluation script's, on the same float32 arrays, so the numbers
agree to the last digit: ``pearsonr(pred, y).statistic``, ``spearmanr(pred, y).statistic``
and ``sqrt(mean((pred - y) ** 2))``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from .errors import LosoInputError

if TYPE_CHECKING:
    import numpy as np

METRICS = ("plcc", "srocc", "rmse")


def score(pred: np.ndarray, target: np.ndarray, *, model_path: Path, target_desc: str) -> dict[str, float]:
    """``{"n", "plcc", "srocc", "rmse"}`` of ``pred`` against ``target``.

    Raises :class:`LosoInputError` where a metric would be undefined (NaN predictions, a
    constant prediction or target) rather than reporting NaN as if it were a score.
    """
    import numpy as np
    from scipy.stats import pearsonr, spearmanr

    if pred.shape != target.shape:
        raise LosoInputError(
            model_path, f"model returned {pred.shape[0]} predictions for {target.shape[0]} frames of {target_desc}"
        )
    nonfinite = int(np.count_nonzero(~np.isfinite(pred)))
    if nonfinite:
        raise LosoInputError(
            model_path, f"model predicted NaN or inf for {nonfinite} of {pred.size} frames of {target_desc}"
        )
    if pred.size < 3:
        raise LosoInputError(model_path, f"only {pred.size} frames of {target_desc}; PLCC needs at least 3")
    if pred.min() == pred.max():
        raise LosoInputError(
            model_path,
            f"model predicts the constant {float(pred[0]):.4f} for all {pred.size} frames of {target_desc}; "
            "PLCC and SROCC are undefined",
        )
    if target.min() == target.max():
        raise LosoInputError(
            model_path, f"VMAF target of {target_desc} is constant over {target.size} frames; PLCC is undefined"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate inputs were refused above
        return {
            "n": int(target.size),
            "plcc": float(pearsonr(pred, target).statistic),
            "srocc": float(spearmanr(pred, target).statistic),
            "rmse": float(np.sqrt(((pred - target) ** 2).mean())),
        }


def aggregate(per_fold: Iterable[dict[str, float]]) -> dict[str, float | int | None] | None:
    """Mean and sample standard deviation (ddof=1) of each metric over folds.

    ``std_*`` is ``None`` for a single fold: one value has no sample spread.
    """
    import numpy as np

    folds = list(per_fold)
    if not folds:
        return None
    result: dict[str, float | int | None] = {}
    for name in METRICS:
        result[f"mean_{name}"] = float(np.mean([m[name] for m in folds]))
    for name in METRICS:
        result[f"std_{name}"] = float(np.std([m[name] for m in folds], ddof=1)) if len(folds) > 1 else None
    result["n_folds"] = len(folds)
    return result


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: undefined numbers are written as null."""
    return None if value is None or not math.isfinite(value) else value
