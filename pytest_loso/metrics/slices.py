"""Metrics per slice: PLCC, SROCC and RMSE on the frames of each value of a per-frame column, and a
slice's mean over folds (``--loso-slice``).

A fold's slice is the frames of its held-out source with that value; the mean over folds leaves
out a fold where the slice has fewer than 2 frames (no correlation) or an undefined metric (a
constant target or prediction there), and says which and why.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

from .correlations import SROCC_RANKS, pearson
from .names import METRICS, finite_or_none

if TYPE_CHECKING:
    import numpy as np

MIN_SLICE_FRAMES = 2


def value_order(value: str) -> tuple[int, float, str]:
    """Slice values in order: numbers by value (``500`` before ``1000``), then other texts by name."""
    try:
        number = float(value)
    except ValueError:
        return (1, 0.0, value)
    return (0, number, value) if math.isfinite(number) else (1, 0.0, value)


def by_value(pred: np.ndarray, target: np.ndarray, values: np.ndarray, *, srocc_ranks: str = "average"
             ) -> dict[str, dict]:
    """``{value: {"n", "plcc", "srocc", "rmse"}}`` over the frames of each value (numbers by value);
    a metric that is undefined there (fewer than 2 frames, a constant) is ``None``."""
    import numpy as np

    # one pass to group the frames (a mask per value would be frames x values comparisons), each
    # value's frames kept in their order, so the sums are those of a mask
    names, inverse = np.unique(np.asarray(values, dtype=object), return_inverse=True)
    order = np.argsort(inverse.reshape(-1), kind="stable")
    ends = np.cumsum(np.bincount(inverse.reshape(-1), minlength=len(names)))
    groups = {str(name): order[end - count:end]
              for name, end, count in zip(names, ends, np.diff(np.r_[0, ends]))}
    found: dict[str, dict] = {}
    for value in sorted(groups, key=value_order):
        p, t = pred[groups[value]], target[groups[value]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found[value] = {
                "n": int(t.size),
                "plcc": finite_or_none(pearson(p, t)),
                "srocc": finite_or_none(SROCC_RANKS[srocc_ranks](p, t)) if t.size >= MIN_SLICE_FRAMES else None,
                "rmse": finite_or_none(float(np.sqrt(((p - t) ** 2).mean()))) if t.size else None,
            }
    return found


def left_out(entry: dict) -> str | None:
    """Why a fold's slice ``entry`` is left out of the slice's mean over folds (``None``: it counts)."""
    if entry["n"] < MIN_SLICE_FRAMES:
        return f"{entry['n']} frame{'s' if entry['n'] != 1 else ''}, fewer than {MIN_SLICE_FRAMES}"
    undefined = [name for name in METRICS if entry.get(name) is None or not math.isfinite(entry[name])]
    if undefined:
        return f"{', '.join(undefined).upper()} undefined (a constant target or prediction on its {entry['n']} frames)"
    return None


def slice_mean(per_fold: dict[str, dict]) -> dict:
    """A slice's mean over the folds that have it: ``mean_<metric>``, ``n_folds``, ``n`` (its frames over
    the folds counted), and ``left_out`` ``{source: why}`` for the folds not counted."""
    import numpy as np

    counted = {source: e for source, e in per_fold.items() if left_out(e) is None}
    block: dict = {f"mean_{name}": (float(np.mean([e[name] for e in counted.values()])) if counted else None)
                   for name in METRICS}
    block["n_folds"] = len(counted)
    block["n"] = int(sum(e["n"] for e in counted.values()))
    block["left_out"] = {source: why for source, e in per_fold.items() if (why := left_out(e)) is not None}
    return block
