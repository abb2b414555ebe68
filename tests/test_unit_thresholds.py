"""Unit tests of the bounds (``thresholds.py``): ``Bound.judge``, ``rules``, ``check``,
``check_aggregate``, ``check_seeds`` and ``Violation.sentence``."""

from __future__ import annotations

import math

import pytest

from pytest_loso.settings import Bounds, Thresholds
from pytest_loso.thresholds import Bound, Violation, check, check_aggregate, check_seeds, rules


@pytest.mark.parametrize(
    ("bound", "values", "violated"),
    [
        (Bound("plcc", 0.8, "min"), {"plcc": 0.79}, True),
        (Bound("plcc", 0.8, "min"), {"plcc": 0.8}, False),  # at the bound: holds
        (Bound("plcc", 0.8, "min"), {"plcc": 0.81}, False),
        (Bound("rmse", 20.0, "max"), {"rmse": 20.0}, False),
        (Bound("rmse", 20.0, "max"), {"rmse": 20.001}, True),
        (Bound("rmse", 20.0, "max"), {"rmse": -1.0}, False),
        (Bound("plcc", 0.8, "min"), {"srocc": 0.1}, False),  # a metric the values lack is not judged
        (Bound("plcc", 0.8, "min"), {}, False),
        (Bound("plcc", 0.8, "min"), {"plcc": math.inf}, True),  # not finite: never a pass
        (Bound("rmse", 20.0, "max"), {"rmse": -math.inf}, True),
        (Bound("rmse", 20.0, "max"), {"rmse": math.nan}, True),
    ],
)
def test_bound_judge(bound, values, violated):
    violation = bound.judge(values)
    if violated:
        assert violation == Violation(bound.metric, values[bound.metric], bound.limit, bound.kind)
    else:
        assert violation is None


@pytest.mark.parametrize("kind", ["min", "max"])
def test_bound_judge_present_but_none_is_undefined(kind):
    violation = Bound("mean_plcc", 0.85, kind).judge({"mean_plcc": None})
    assert violation is not None
    assert (violation.metric, violation.bound, violation.kind) == ("mean_plcc", 0.85, kind)
    assert math.isnan(violation.value)
    assert violation.sentence() == "mean PLCC is undefined (nan), so the bound 0.8500 cannot hold"


@pytest.mark.parametrize(
    ("violation", "sentence"),
    [
        (Violation("plcc", 0.74321, 0.75, "min"), "PLCC 0.7432 is below the minimum 0.7500"),
        (Violation("srocc", 0.6, 0.7, "min"), "SROCC 0.6000 is below the minimum 0.7000"),
        (Violation("rmse", 20.12345, 20.0, "max"), "RMSE 20.123 is above the maximum 20.000"),
        (Violation("mean_rmse", 12.5, 12.0, "max"), "mean RMSE 12.500 is above the maximum 12.000"),
        (Violation("mean_plcc", 0.84449, 0.85, "min"), "mean PLCC 0.8445 is below the minimum 0.8500"),
        (Violation("spread_plcc", 0.0123, 0.005, "max"),
         "spread of the seeds' mean PLCC 0.0123 is above the maximum 0.0050"),
        (Violation("rmse", math.inf, 20.0, "max"), "RMSE is undefined (inf), so the bound 20.000 cannot hold"),
        (Violation("plcc", math.nan, 0.75, "min"), "PLCC is undefined (nan), so the bound 0.7500 cannot hold"),
    ],
)
def test_violation_sentence(violation, sentence):
    assert violation.sentence() == sentence


def test_rules():
    assert rules({"min_plcc": 0.9, "max_rmse": None, "min_mean_plcc": 0.85, "max_spread_plcc": 0.005}) == [
        Bound("plcc", 0.9, "min"), Bound("mean_plcc", 0.85, "min"), Bound("spread_plcc", 0.005, "max")]
    assert rules({"min_plcc": None, "min_srocc": None, "max_rmse": None}) == []
    assert rules({"min_plcc": 0.0}) == [Bound("plcc", 0.0, "min")]  # 0 is a bound, not "off"


@pytest.mark.parametrize(
    ("metrics", "bounds", "expected"),
    [
        ({"plcc": 0.9, "srocc": 0.8, "rmse": 5.0}, Bounds(0.75, 0.7, 20.0), []),
        ({"plcc": 0.7, "srocc": 0.8, "rmse": 25.0}, Bounds(0.75, 0.7, 20.0),
         [Violation("plcc", 0.7, 0.75, "min"), Violation("rmse", 25.0, 20.0, "max")]),
        ({"plcc": 0.7, "srocc": 0.1, "rmse": 25.0}, Bounds(None, None, None), []),  # every bound off
        ({"plcc": 0.7, "srocc": 0.1, "rmse": 25.0}, Bounds(min_srocc=0.2),
         [Violation("srocc", 0.1, 0.2, "min")]),
        ({"n": 1, "error": "no frames"}, Bounds(0.75, 0.7, 20.0), []),  # nothing scored: nothing judged
    ],
)
def test_check(metrics, bounds, expected):
    assert check(metrics, bounds) == expected


def test_check_undefined_metric():
    found = check({"plcc": None, "srocc": 0.9, "rmse": 1.0}, Bounds(0.75, 0.7, 20.0))
    assert [(v.metric, v.kind) for v in found] == [("plcc", "min")]
    assert found[0].sentence() == "PLCC is undefined (nan), so the bound 0.7500 cannot hold"


THRESHOLDS = Thresholds(fold=Bounds(0.75, 0.7, 20.0), min_mean_plcc=0.85, max_mean_rmse=12.0,
                        min_seed_mean_plcc=0.95, max_seed_spread=0.005)


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [
        ({"mean_plcc": 0.9, "mean_rmse": 5.0, "plcc": 0.1, "rmse": 99.0}, []),  # only the mean_ keys
        ({"mean_plcc": 0.84, "mean_rmse": 12.5},
         [Violation("mean_plcc", 0.84, 0.85, "min"), Violation("mean_rmse", 12.5, 12.0, "max")]),
        ({"mean_plcc": 0.9}, []),
    ],
)
def test_check_aggregate(aggregate, expected):
    assert check_aggregate(aggregate, THRESHOLDS) == expected


def test_check_aggregate_bounds_off():
    off = Thresholds(fold=Bounds(), min_mean_plcc=None, max_mean_rmse=None)
    assert check_aggregate({"mean_plcc": 0.0, "mean_rmse": 100.0}, off) == []


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ({"mean_plcc": 0.96, "mean_rmse": 5.0, "spread_plcc": 0.005}, []),  # spread at the maximum
        ({"mean_plcc": 0.96, "mean_rmse": 5.0, "spread_plcc": 0.006},
         [Violation("spread_plcc", 0.006, 0.005, "max")]),
        # the mean over seeds is held to min_mean_plcc (each seed's own mean to min_seed_mean_plcc)
        ({"mean_plcc": 0.9, "mean_rmse": 5.0, "spread_plcc": 0.0}, []),
        ({"mean_plcc": 0.8, "mean_rmse": 13.0, "spread_plcc": 0.01},
         [Violation("mean_plcc", 0.8, 0.85, "min"), Violation("mean_rmse", 13.0, 12.0, "max"),
          Violation("spread_plcc", 0.01, 0.005, "max")]),
    ],
)
def test_check_seeds(summary, expected):
    assert check_seeds(summary, THRESHOLDS) == expected


def test_check_seeds_spread_off_by_default():
    thresholds = Thresholds(fold=Bounds(), min_mean_plcc=0.85, max_mean_rmse=12.0)
    assert check_seeds({"mean_plcc": 0.9, "mean_rmse": 5.0, "spread_plcc": 0.5}, thresholds) == []
