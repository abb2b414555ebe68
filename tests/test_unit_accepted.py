"""Unit tests of reading the accepted report (``accepted.load_accepted``) from files in tmp_path."""

from __future__ import annotations

import json

import pytest

from pytest_loso.accepted import accepted_metrics, load_accepted
from pytest_loso.errors import LosoInputError

FIX = "re-create it with --loso-accept on main, or restore the file"
FOLD = {"n": 10, "plcc": 0.9, "srocc": 0.8, "rmse": 5.0}


def write(tmp_path, content):
    path = tmp_path / "accepted.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def load_error(path):
    with pytest.raises(LosoInputError) as info:
        load_accepted(path)
    return info.value


def test_missing_file(tmp_path):
    error = load_error(tmp_path / "nope.json")
    assert str(error) == f"{tmp_path / 'nope.json'}: no accepted report here\n  fix: create it with --loso-accept on main"


def test_not_json(tmp_path):
    path = write(tmp_path, "not json")
    error = load_error(path)
    assert error.path == path
    assert error.problem == "not a readable JSON report (Expecting value: line 1 column 1 (char 0))"
    assert error.fix == "re-download the accepted report"


def test_deeply_nested_json(tmp_path):
    path = write(tmp_path, "[" * 200_000 + "]" * 200_000)
    error = load_error(path)
    assert (error.problem, error.fix) == ("not a readable JSON report (nested too deeply)",
                                          "re-download the accepted report")


def test_not_utf8(tmp_path):
    path = tmp_path / "accepted.json"
    path.write_bytes(b'{"archs": "\xff"}')
    assert load_error(path).problem.startswith("not a readable JSON report ('utf-8' codec can't decode byte 0xff")


@pytest.mark.parametrize("content", [[], "\"a string\"", 3, None, {"baselines": {}}, {}])
def test_not_a_report(tmp_path, content):
    error = load_error(write(tmp_path, content))
    assert str(error) == f"{tmp_path / 'accepted.json'}: not a pytest-loso report (no 'archs' / 'baselines')"
    assert error.fix is None


def test_the_gates_report_is_read_as_it_is(tmp_path):
    report = {"archs": {"mlp_small": {"per_fold": {"A": FOLD, "B": {"n": 3, "error": "x", "plcc": None}},
                                      "aggregate": {"mean_plcc": 0.9, "mean_rmse": None, "n_folds": 2}}},
              "baselines": {"v1": {"all_clips_concat": FOLD}}, "seeds": None, "ensembles": None,
              "run_provenance": {"cache_fingerprint": None, "options": {"archs": []}}}
    assert load_accepted(write(tmp_path, report)) == report


def test_a_report_without_baselines_gets_an_empty_block(tmp_path):
    """The 3-arch script's report has no baselines."""
    report = {"archs": {"linear": {"per_fold": {"A": FOLD}, "aggregate": None}}}
    assert load_accepted(write(tmp_path, report)) == {**report, "baselines": {}}


def test_the_evaluation_scripts_shape_is_converted(tmp_path):
    script = {"loso_per_fold": {"A": FOLD, "B": FOLD},
              "loso_aggregate": {"mean_plcc": 0.9, "std_plcc": 0.0},
              "generated": "then"}
    loaded = load_accepted(write(tmp_path, script))
    assert loaded["archs"] == {"mlp_small": {"per_fold": {"A": FOLD, "B": FOLD},
                                             "aggregate": {"mean_plcc": 0.9, "std_plcc": 0.0, "n_folds": 2}}}
    assert loaded["baselines"] == {}
    assert loaded["loso_per_fold"] == script["loso_per_fold"]  # the script's keys are kept
    assert loaded["generated"] == "then"


@pytest.mark.parametrize("aggregate", [None, {}])
def test_the_evaluation_scripts_shape_without_aggregate(tmp_path, aggregate):
    loaded = load_accepted(write(tmp_path, {"loso_per_fold": {"A": FOLD}, "loso_aggregate": aggregate}))
    assert loaded["archs"] == {"mlp_small": {"per_fold": {"A": FOLD}, "aggregate": None}}


def test_the_evaluation_scripts_aggregate_keeps_its_fold_count(tmp_path):
    loaded = load_accepted(write(tmp_path, {"loso_per_fold": {"A": FOLD}, "loso_aggregate": {"n_folds": 9}}))
    assert loaded["archs"]["mlp_small"]["aggregate"] == {"n_folds": 9}


@pytest.mark.parametrize(
    ("content", "where", "shown"),
    [
        ('{"archs": {"a": {"per_fold": {"A": {"plcc": NaN}}}}}', "archs.a.per_fold.A.plcc", "nan"),
        ('{"archs": {"a": {"per_fold": {"A": {"rmse": Infinity}}}}}', "archs.a.per_fold.A.rmse", "inf"),
        ('{"archs": {"a": {"per_fold": {"A": {"srocc": "0.9"}}}}}', "archs.a.per_fold.A.srocc", "'0.9'"),
        ('{"archs": {"a": {"per_fold": {"A": {"n": true}}}}}', "archs.a.per_fold.A.n", "True"),
        ('{"archs": {"a": {"per_fold": {}, "aggregate": {"mean_plcc": -Infinity}}}}', "archs.a.aggregate.mean_plcc",
         "-inf"),
        ('{"archs": {"a": {"per_fold": {}}}, "baselines": {"v": {"all_clips_concat": {"krcc": NaN}}}}',
         "baselines.v.all_clips_concat.krcc", "nan"),
        ('{"archs": {}, "seeds": {"a": {"mean_plcc": NaN}}}', "seeds.a.mean_plcc", "nan"),
        ('{"loso_per_fold": {"A": {"plcc": NaN}}}', "archs.mlp_small.per_fold.A.plcc", "nan"),
    ],
)
def test_a_non_finite_metric_is_refused_naming_its_key(tmp_path, content, where, shown):
    error = load_error(write(tmp_path, content))
    assert error.problem == f"{where} should be a finite number or null, not {shown}"
    assert error.fix == FIX


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"loso_per_fold": [1, 2]}, "loso_per_fold should be an object of source -> metrics, not list"),
        ({"archs": []}, "archs should be an object, not list"),
        ({"archs": {"a": 1}}, "archs.a should be an object, not 1"),
        ({"archs": {"a": {}}}, "archs.a.per_fold should be an object, not None"),
        ({"archs": {"a": {"per_fold": {"A": "x" * 100}}}}, f"archs.a.per_fold.A should be an object of metrics, "
                                                           f"not {repr('x' * 100)[:60]}"),
        ({"archs": {}, "baselines": {"v": {}}}, "baselines.v.all_clips_concat should be an object of metrics, not None"),
        ({"archs": {}, "ensembles": []}, "ensembles should be an object, not list"),
        ({"archs": {}, "run_provenance": "x"}, "run_provenance should be an object, not 'x'"),
        ({"archs": {}, "run_provenance": {"options": 3}}, "run_provenance.options should be an object, not 3"),
    ],
)
def test_a_malformed_part_is_refused_naming_its_key(tmp_path, content, problem):
    error = load_error(write(tmp_path, content))
    assert error.problem == problem
    assert error.fix == FIX


def test_non_metric_keys_are_not_checked(tmp_path):
    report = {"archs": {"a": {"per_fold": {"A": {**FOLD, "error": "x", "ci": {"plcc": [0, 1]}, "foo": "NaN"}},
                              "aggregate": {"mean_plcc": 0.9, "std_plcc": "whatever", "plcc": "not a mean_ key"}}}}
    assert load_accepted(write(tmp_path, report))["archs"] == report["archs"]


def test_accepted_metrics():
    report = {"archs": {"a": {"per_fold": {"A": FOLD, "B": {"n": 1, "error": "x"}}}},
              "baselines": {"v": {"all_clips_concat": FOLD}}, "ensembles": {"e": {"all_clips_concat": {}}}}
    assert accepted_metrics(report, "fold", "a", "a-A", "A") == FOLD
    assert accepted_metrics(report, "fold", "a", "a-B", "B") is None  # failed then: no metrics
    assert accepted_metrics(report, "fold", "z", "z-A", "A") is None
    assert accepted_metrics(report, "baseline", None, "v", None) == FOLD
    assert accepted_metrics(report, "baseline", None, "w", None) is None
    assert accepted_metrics(report, "ensemble", None, "e", None) is None
