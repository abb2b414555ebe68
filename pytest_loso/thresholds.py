"""Holding metrics to bounds: per fold (with per-source overrides), per aggregate, across seeds.

Each bound is a small rule (:class:`Bound`) whose ``judge`` says how a figure breaks it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal

from .metrics.names import distinct_digits, label
from .settings import Bounds, SliceBounds, Thresholds


@dataclass(frozen=True)
class Violation:
    metric: str  # key in the metrics dict, e.g. "plcc" or "mean_rmse"
    value: float
    bound: float
    kind: Literal["min", "max"]

    def sentence(self) -> str:
        relation = "below the minimum" if self.kind == "min" else "above the maximum"
        n = distinct_digits(self.metric, self.value, self.bound)
        if not math.isfinite(self.value):
            return f"{label(self.metric)} is undefined ({self.value}), so the bound {self.bound:.{n}f} cannot hold"
        return f"{label(self.metric)} {self.value:.{n}f} is {relation} {self.bound:.{n}f}"


@dataclass(frozen=True)
class Bound:
    """One bound as a rule: ``metric`` at least (``min``) or at most (``max``) ``limit``."""

    metric: str
    limit: float
    kind: Literal["min", "max"]

    def judge(self, values: Mapping[str, float | None]) -> Violation | None:
        """The violation, when ``values`` break this bound; a metric ``values`` lack is not judged."""
        value = values.get(self.metric)
        if value is None and self.metric in values:
            value = math.nan  # undefined (e.g. the mean of folds that had none): never a pass
        if value is None:
            return None
        if not math.isfinite(value) or (self.kind == "min" and value < self.limit) or \
                (self.kind == "max" and value > self.limit):
            return Violation(self.metric, value, self.limit, self.kind)
        return None


def rules(bounds: Mapping[str, float | None]) -> list[Bound]:
    """``{"min_plcc": 0.9, "max_rmse": None}`` as rules (a ``None`` bound is off)."""
    found = []
    for key, limit in bounds.items():
        if limit is not None:
            kind, metric = key.split("_", 1)
            found.append(Bound(metric, limit, "min" if kind == "min" else "max"))
    return found


def _check(values: Mapping, bounds: Mapping[str, float | None]) -> list[Violation]:
    return [v for rule in rules(bounds) if (v := rule.judge(values)) is not None]


def check(metrics: dict[str, float], bounds: Bounds) -> list[Violation]:
    """The bounds ``metrics`` (one fold, or one baseline's concatenation) breaks."""
    return _check(metrics, asdict(bounds))


def check_aggregate(aggregate: dict, thresholds: Thresholds) -> list[Violation]:
    """The aggregate bounds one architecture's fold mean breaks."""
    return _check(
        aggregate, {"min_mean_plcc": thresholds.min_mean_plcc, "max_mean_rmse": thresholds.max_mean_rmse}
    )


def check_seeds(summary: dict, thresholds: Thresholds) -> list[Violation]:
    """The promotion rule across seeds (ADR-0303): the mean of the per-seed means, and the
    spread of the per-seed mean PLCC (every seed's own mean is its ``aggregate[...]`` test)."""
    return check_aggregate(summary, thresholds) + _check(summary, {"max_spread_plcc": thresholds.max_seed_spread})


def check_slice(mean: dict, bounds: SliceBounds) -> list[Violation]:
    """The bounds a slice's mean over folds (``mean_plcc``, ``mean_srocc``, ``mean_rmse``) breaks."""
    return _check(mean, dict(bounds.bounds))
