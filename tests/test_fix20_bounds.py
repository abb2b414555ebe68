"""Issue 20 item 9: bounds no figure can meet are usage errors at start; failure sentences show
enough digits to tell the value from its bound."""

from __future__ import annotations

import pytest

from loso_helpers import GateEnv
from shared_runs import template_gate  # noqa: F401  (a fixture: these runs stop before reading anything)
from pytest_loso.compare import Change
from pytest_loso.errors import LosoUsageError
from pytest_loso.settings import Bounds, check_bound_range, parse_source_overrides
from pytest_loso.thresholds import Violation


@pytest.mark.parametrize("key, value", [
    ("min_plcc", 90.0), ("min_plcc", 1.5), ("min_srocc", -1.5), ("max_rmse", -1.0),
    ("min_mean_plcc", 95.0), ("max_mean_rmse", -0.1), ("min_seed_mean_plcc", 1.01), ("max_seed_spread", -0.01),
    ("max_seed_spread", 3.0),
])
def test_an_impossible_bound_is_a_usage_error(key: str, value: float):
    with pytest.raises(LosoUsageError, match="can never be met"):
        check_bound_range(key, value, f"--loso-{key.replace('_', '-')}")


@pytest.mark.parametrize("key, value", [("min_plcc", 0.9), ("min_plcc", -1.0), ("min_plcc", 1.0), ("max_rmse", 0.0),
                                        ("max_mean_rmse", 12.0), ("max_seed_spread", 0.005)])
def test_a_possible_bound_is_kept(key: str, value: float):
    assert check_bound_range(key, value, "x") == value


def test_an_impossible_per_source_bound_is_a_usage_error():
    with pytest.raises(LosoUsageError, match="FoxBird.*min_plcc.*can never be met"):
        parse_source_overrides(["FoxBird: min_plcc=92"], Bounds(0.75, 0.7, 20.0))
    with pytest.raises(LosoUsageError, match="can never be met"):
        parse_source_overrides(["FoxBird: max_rmse=-3"], Bounds(0.75, 0.7, 20.0))


@pytest.mark.parametrize("option", ["--loso-min-plcc=90", "--loso-min-plcc=1.5", "--loso-max-rmse=-1",
                                    "--loso-min-mean-plcc=85", "--loso-max-seed-spread=-0.1"])
def test_the_gate_stops_at_start_on_an_impossible_bound(template_gate: GateEnv, option: str):
    run = template_gate.run(option)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR, run.output
    assert "can never be met" in run.output
    assert run.report is None


def test_a_violation_shows_the_digits_that_differ():
    text = Violation("plcc", 0.994993, 0.995, "min").sentence()
    assert text == "PLCC 0.99499 is below the minimum 0.99500"
    assert Violation("rmse", 12.0004, 12.0, "max").sentence() == "RMSE 12.0004 is above the maximum 12.0000"
    assert Violation("plcc", 0.8123, 0.85, "min").sentence() == "PLCC 0.8123 is below the minimum 0.8500"  # unchanged


def test_a_change_shows_the_digits_that_differ():
    change = Change("plcc", 0.99500, 0.994993, 0.0, "REGRESSED", "drop beyond the allowance")
    before, after = change.sentence().split(" (")[0].removeprefix("PLCC ").split(" -> ")
    assert before != after
    wider = Change("plcc", 0.99, 0.98499999, 0.005, "REGRESSED", "drop beyond the allowance")
    assert "-0.00500001" in wider.sentence()
    assert Change("plcc", 0.9, 0.8, 0.005, "REGRESSED").sentence().startswith("PLCC 0.9000 -> 0.8000 (-0.1000")
