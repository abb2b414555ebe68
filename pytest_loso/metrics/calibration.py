"""How well an ensemble's spread is calibrated: coverage and width of μ ± zσ at nominal levels.

Per frame μ is the members' mean and σ their sample std; at a nominal level ``p`` (percent) the
interval is μ ± zσ with the Gaussian ``z = norm.ppf(0.5 + p/200)`` (1.645 at 90%, 1.960 at 95%).
A calibrated spread holds the VMAF target in about ``p`` percent of frames; the team's conformal
layer calls a calibration stale when coverage falls more than 5 points below nominal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def calibration(mu: np.ndarray, sigma: np.ndarray, target: np.ndarray, levels: tuple[str, ...]
                ) -> dict[str, dict[str, float]]:
    """``{level: {"z", "coverage", "mean_width"}}``: the share of frames whose target lies in μ ± zσ,
    and the mean width 2zσ of that interval (in VMAF points)."""
    import numpy as np
    from scipy.stats import norm

    mu, sigma, target = (np.asarray(a, dtype=np.float64) for a in (mu, sigma, target))
    found = {}
    for level in sorted(levels, key=float):
        z = float(norm.ppf(0.5 + float(level) / 200))
        found[level] = {"z": z, "coverage": float(np.mean(np.abs(target - mu) <= z * sigma)),
                        "mean_width": float(np.mean(2 * z * sigma))}
    return found


def worst_sources(per_source: dict[str, dict]) -> dict[str, dict]:
    """Per level, the source whose coverage is lowest: ``{level: {"source", "coverage"}}``."""
    worst: dict[str, dict] = {}
    for source, row in sorted(per_source.items()):
        for level, figures in (row.get("calibration") or {}).items():
            if level not in worst or figures["coverage"] < worst[level]["coverage"]:
                worst[level] = {"source": source, "coverage": figures["coverage"]}
    return worst
