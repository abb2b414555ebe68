"""Applying thresholds: per-fold bounds (with per-source overrides) and aggregate bounds."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace

from .metrics import digits, label

# Defaults catch a broken model, not a slightly worse one: a team sets its own bar in ini.
DEFAULTS = {
    "min_plcc": 0.75,
    "min_srocc": 0.70,
    "max_rmse": 20.0,
    "min_mean_plcc": 0.85,
    "max_mean_rmse": 12.0,
    # Over seeds (ADR-0303 uses 0.95 and 0.005): off unless a team sets its promotion rule.
    "min_seed_mean_plcc": None,
    "max_seed_spread": None,
}


@dataclass(frozen=True)
class Bounds:
    """Bounds on one scored set of frames; ``None`` disables a bound."""

    min_plcc: float | None = None
    min_srocc: float | None = None
    max_rmse: float | None = None


@dataclass(frozen=True)
class Violation:
    metric: str  # key in the metrics dict, e.g. "plcc" or "mean_rmse"
    value: float
    bound: float
    kind: str  # "min" or "max"

    def sentence(self) -> str:
        relation = "below the minimum" if self.kind == "min" else "above the maximum"
        n = digits(self.metric)
        if not math.isfinite(self.value):
            return f"{label(self.metric)} is undefined ({self.value}), so the bound {self.bound:.{n}f} cannot hold"
        return f"{label(self.metric)} {self.value:.{n}f} is {relation} {self.bound:.{n}f}"


@dataclass(frozen=True)
class Thresholds:
    fold: Bounds
    per_source: dict[str, Bounds] = field(default_factory=dict)
    min_mean_plcc: float | None = None
    max_mean_rmse: float | None = None
    min_seed_mean_plcc: float | None = None  # every seed's mean PLCC over folds
    max_seed_spread: float | None = None  # max - min of the per-seed mean PLCC

    def for_source(self, source: str) -> Bounds:
        return self.per_source.get(source, self.fold)

    @property
    def seed_mean_plcc_bound(self) -> float | None:
        """Every seed's minimum mean PLCC: ``min_seed_mean_plcc``, by default ``min_mean_plcc``."""
        return self.min_mean_plcc if self.min_seed_mean_plcc is None else self.min_seed_mean_plcc

    def to_json(self) -> dict:
        return {
            "fold": asdict(self.fold),
            "per_source": {s: asdict(b) for s, b in sorted(self.per_source.items())},
            "aggregate": {"min_mean_plcc": self.min_mean_plcc, "max_mean_rmse": self.max_mean_rmse},
            "seeds": {"min_seed_mean_plcc": self.min_seed_mean_plcc, "max_seed_spread": self.max_seed_spread},
            "baselines": "fold bounds, applied to the all-sources concatenation",
        }


def parse_bound(text: str | float | None, name: str) -> float | None:
    """A bound from the command line or ini: a number, or ``none``/``off`` to disable it."""
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):  # a TOML number
        text = repr(float(text))
    if text.strip().lower() in ("", "none", "off"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value):  # every comparison with NaN is false: the bound would pass everything
        raise ValueError(f"{name}: {text!r} is not a number (use e.g. 0.9, or 'none' to disable)")
    return value


_OVERRIDE_RE = re.compile(r"^\s*(?P<source>[A-Za-z0-9]+)\s*:(?P<rest>.*)$")


def parse_source_overrides(lines: list[str], base: Bounds) -> dict[str, Bounds]:
    """Parse ``FoxBird: min_plcc=0.92 max_rmse=18`` lines into per-source bounds over ``base``."""
    overrides: dict[str, Bounds] = {}
    keys = set(asdict(base))
    for line in lines:
        if not line.strip():
            continue
        match = _OVERRIDE_RE.match(line)
        if not match:
            raise ValueError(f"loso_source_thresholds: {line!r} is not 'Source: key=value ...'")
        bounds = overrides.get(match["source"], base)
        for token in match["rest"].replace(",", " ").split():
            key, _, value = token.partition("=")
            if key not in keys:
                raise ValueError(f"loso_source_thresholds: {key!r} in {line!r}; known keys: {', '.join(sorted(keys))}")
            bounds = replace(bounds, **{key: parse_bound(value, key)})
        overrides[match["source"]] = bounds
    return overrides


def _check(values: dict, bounds: dict[str, float | None]) -> list[Violation]:
    violations = []
    for key, bound in bounds.items():
        if bound is None:
            continue
        kind, metric = key.split("_", 1)
        value = values.get(metric)
        if value is None and metric in values:
            value = math.nan  # undefined (e.g. the mean of folds that had none): never a pass
        if value is None:
            continue
        if not math.isfinite(value) or (kind == "min" and value < bound) or (kind == "max" and value > bound):
            violations.append(Violation(metric, value, bound, kind))
    return violations


def check(metrics: dict[str, float], bounds: Bounds) -> list[Violation]:
    """The bounds ``metrics`` (one fold, or one baseline's concatenation) breaks."""
    return _check(metrics, asdict(bounds))


def check_aggregate(aggregate: dict, thresholds: Thresholds) -> list[Violation]:
    """The aggregate bounds one architecture's fold mean breaks."""
    return _check(
        aggregate, {"min_mean_plcc": thresholds.min_mean_plcc, "max_mean_rmse": thresholds.max_mean_rmse}
    )


def for_seed(thresholds: Thresholds) -> Thresholds:
    """The aggregate bounds of one seed's run: its mean PLCC is held to every seed's minimum."""
    return replace(thresholds, min_mean_plcc=thresholds.seed_mean_plcc_bound)


def check_seeds(summary: dict, thresholds: Thresholds) -> list[Violation]:
    """The promotion rule across seeds (ADR-0303): the mean of the per-seed means, and the
    spread of the per-seed mean PLCC (every seed's own mean is its ``aggregate[...]`` test)."""
    return check_aggregate(summary, thresholds) + _check(summary, {"max_spread_plcc": thresholds.max_seed_spread})
