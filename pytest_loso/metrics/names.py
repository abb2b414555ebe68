"""What the metrics are called, how they are shown, and which way is better."""

from __future__ import annotations

import math

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


def distinct_digits(metric: str, *values: float) -> int:
    """Decimals enough to tell ``values`` apart (at least :func:`digits`): a failure must never read
    ``PLCC 0.9950 is below the minimum 0.9950``."""
    n = digits(metric)
    finite = [v for v in values if math.isfinite(v)]
    while n < 17 and len({f"{v:.{n}f}" for v in finite}) < len(set(finite)):
        n += 1
    return n


HIGHER_IS_BETTER = {"plcc": True, "srocc": True, "krcc": True, "rmse": False,
                    "plcc_logistic": True, "rmse_logistic": False}


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: undefined numbers are written as null."""
    return None if value is None or not math.isfinite(value) else value
