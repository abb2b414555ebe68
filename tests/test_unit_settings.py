"""Unit tests of the settings' parsers and values (``settings.py``) and of the id vocabulary (``ids.py``)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from pytest_loso import ids
from pytest_loso.errors import LosoUsageError
from pytest_loso.settings import (
    Allowance,
    Bounds,
    Ensemble,
    GateOptions,
    Thresholds,
    parse_bound,
    parse_ensemble,
    parse_frame_size,
    parse_frame_sizes,
    parse_max_drop,
    parse_source_overrides,
    parse_where,
)

# -- parse_bound ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.9", 0.9), (" 0.9 ", 0.9), ("1e-3", 0.001), ("20", 20.0), ("-1", -1.0),
        (0.9, 0.9), (1, 1.0), (0, 0.0),  # TOML numbers
        (None, None), ("", None), ("   ", None), ("none", None), ("None", None), ("OFF", None), (" off ", None),
    ],
)
def test_parse_bound(text, value):
    parsed = parse_bound(text, "--loso-min-plcc")
    assert parsed == value
    assert parsed is None or type(parsed) is float


@pytest.mark.parametrize(
    ("text", "shown"),
    [("nan", "'nan'"), ("NaN", "'NaN'"), (math.nan, "'nan'"), ("abc", "'abc'"), ("0.9x", "'0.9x'"),
     ("0,9", "'0,9'"), ("disabled", "'disabled'"), (True, "'True'")],
)
def test_parse_bound_refuses_non_numbers(text, shown):
    with pytest.raises(LosoUsageError) as info:
        parse_bound(text, "loso_min_plcc")
    assert str(info.value) == f"loso_min_plcc: {shown} is not a number (use e.g. 0.9, or 'none' to disable)"


# -- parse_source_overrides -------------------------------------------------------------------------

BASE = Bounds(0.75, 0.7, 20.0)


def test_parse_source_overrides():
    lines = ["FoxBird: min_plcc=0.92 max_rmse=18", "", "   ", "Cells:min_srocc=off,max_rmse=none",
             "  Life : min_plcc=0.8", "FoxBird: min_srocc=0.5"]
    assert parse_source_overrides(lines, BASE) == {
        "FoxBird": Bounds(0.92, 0.5, 18.0),  # a second line for a source adds to the first
        "Cells": Bounds(0.75, None, None),
        "Life": Bounds(0.8, 0.7, 20.0),
    }
    assert parse_source_overrides([], BASE) == {}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("FoxBird min_plcc=0.9", "--loso-source-threshold / loso_source_thresholds: 'FoxBird min_plcc=0.9' is not 'Source: key=value ...'"),
        (": min_plcc=0.9", "--loso-source-threshold / loso_source_thresholds: ': min_plcc=0.9' is not 'Source: key=value ...'"),
        ("A: min_krcc=0.5", "--loso-source-threshold / loso_source_thresholds: 'min_krcc' in 'A: min_krcc=0.5'; "
                            "known keys: max_rmse, min_plcc, min_srocc"),
        ("A: plcc=0.5", "--loso-source-threshold / loso_source_thresholds: 'plcc' in 'A: plcc=0.5'; known keys: max_rmse, min_plcc, min_srocc"),
        ("A: min_plcc=high", "--loso-source-threshold / loso_source_thresholds A min_plcc: 'high' is not a number "
                             "(use e.g. 0.9, or 'none' to disable)"),
        # a bound without its value would read as "off": the bound silently gone
        ("A: min_plcc", "--loso-source-threshold / loso_source_thresholds: 'min_plcc' in 'A: min_plcc' has no value: write min_plcc=<number>, "
                        "or min_plcc=none to turn the bound off for A"),
        ("A: max_rmse=", "--loso-source-threshold / loso_source_thresholds: 'max_rmse=' in 'A: max_rmse=' has no value: write max_rmse=<number>, "
                         "or max_rmse=none to turn the bound off for A"),
        ("Empty:", "--loso-source-threshold / loso_source_thresholds: 'Empty:' names no bound (keys: max_rmse, min_plcc, min_srocc)"),
    ],
)
def test_parse_source_overrides_refuses(line, message):
    with pytest.raises(LosoUsageError) as info:
        parse_source_overrides([line], BASE)
    assert str(info.value) == message


# -- parse_max_drop -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "allowances"),
    [
        ("plcc=0.005,srocc=0.005,rmse=0.5",
         {"plcc": Allowance(0.005), "srocc": Allowance(0.005), "rmse": Allowance(0.5)}),
        ("rmse=5%", {"rmse": Allowance(None, 0.05)}),
        ("rmse=0.5,rmse=5%", {"rmse": Allowance(0.5, 0.05)}),  # both: the larger applies
        ("rmse=5% rmse=0.5", {"rmse": Allowance(0.5, 0.05)}),
        (" plcc=1e-3 ,, krcc=0 ", {"plcc": Allowance(0.001), "krcc": Allowance(0.0)}),
        ("plcc=0.1,plcc=0.2", {"plcc": Allowance(0.2)}),  # the last absolute one wins
        ("plcc_logistic=0.01", {"plcc_logistic": Allowance(0.01)}),
        ("", {}),
        ("  ", {}),
    ],
)
def test_parse_max_drop(text, allowances):
    assert parse_max_drop(text) == allowances


@pytest.mark.parametrize(
    "token",
    ["plcc", "plcc=", "plcc=-0.1", "foo=0.1", "PLCC=0.1", "plcc=nan", "plcc=inf", "plcc=1e999", "plcc=1..2",
     "plcc=0.1%%", "plcc=%", "mean_plcc=0.1", "plcc:0.1"],
)
def test_parse_max_drop_refuses(token):
    with pytest.raises(LosoUsageError) as info:
        parse_max_drop(f"srocc=0.005,{token}")
    assert str(info.value) == (
        f"--loso-max-drop: {token!r} is not metric=number or metric=number% with a finite number >= 0 "
        "(metrics: plcc, srocc, krcc, rmse, plcc_logistic, rmse_logistic)")


# -- frame sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "size"), [("1920x1080", (1920, 1080)), (" 64 x 48 ", (64, 48)), ("2x2", (2, 2))])
def test_parse_frame_size(text, size):
    assert parse_frame_size(text, "--loso-frame-size") == size


@pytest.mark.parametrize("text", ["63x48", "64x47", "0x48", "64x0", "64X48", "64*48", "64x48x2", "x48", "", "-64x48"])
def test_parse_frame_size_refuses(text):
    with pytest.raises(LosoUsageError) as info:
        parse_frame_size(text, "--loso-frame-size")
    assert str(info.value) == f"--loso-frame-size: {text!r} is not an even frame size WxH such as 1920x1080"


def test_parse_frame_sizes():
    assert parse_frame_sizes(["Cells: 64x48", "", "Life:32x32", " Fox Bird : 1920x1080"]) == {
        "Cells": (64, 48), "Life": (32, 32), "Fox Bird": (1920, 1080)}
    assert parse_frame_sizes([]) == {}


def test_parse_frame_sizes_refuses():
    with pytest.raises(LosoUsageError) as info:
        parse_frame_sizes(["Cells 64x48"])
    assert str(info.value) == "loso_frame_sizes: 'Cells 64x48' is not 'Source: WxH'"
    with pytest.raises(LosoUsageError) as info:
        parse_frame_sizes(["Cells: 63x48"])
    # the size is shown as it was cut from the line (here with its leading space)
    assert re.fullmatch(r"loso_frame_sizes \(Cells\): ' ?63x48' is not an even frame size WxH such as 1920x1080",
                        str(info.value))


# -- parse_where / parse_ensemble -------------------------------------------------------------------


def test_parse_where():
    assert parse_where(["corpus=netflix", "cq=30", "corpus=other", " cq = 40 ", "a=b=c", "empty="]) == {
        "corpus": ("netflix", "other"), "cq": ("30", "40"), "a": ("b=c",), "empty": ("",)}
    assert parse_where([]) == {}


@pytest.mark.parametrize("item", ["corpus", "=netflix", " =x", ""])
def test_parse_where_refuses(item):
    with pytest.raises(LosoUsageError) as info:
        parse_where([item])
    assert str(info.value) == f"--loso-where {item!r}: expected COLUMN=VALUE, e.g. corpus=netflix"


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [("fr_v2=model/*.onnx", ("fr_v2", "model/*.onnx")), (" a.b-c = x=y.onnx ", ("a.b-c", "x=y.onnx"))],
)
def test_parse_ensemble(spec, parsed):
    assert parse_ensemble(spec) == parsed


@pytest.mark.parametrize("spec", ["model/*.onnx", "bad name=x.onnx", "name=", "name=  ", "=x.onnx", "a/b=x.onnx"])
def test_parse_ensemble_refuses(spec):
    with pytest.raises(LosoUsageError) as info:
        parse_ensemble(spec)
    assert str(info.value) == (f"--loso-ensemble / loso_ensemble: {spec!r} is not NAME=GLOB "
                               "(e.g. fr_v2=model/tiny/fr_regressor_v2_ensemble_v1_seed*.onnx)")


# -- Thresholds / GateOptions ----------------------------------------------------------------------


def test_thresholds_for_source():
    fox = Bounds(0.9, None, 18.0)
    thresholds = Thresholds(fold=BASE, per_source={"FoxBird": fox})
    assert thresholds.for_source("FoxBird") is fox
    assert thresholds.for_source("Cells") is BASE
    assert thresholds.for_source("foxbird") is BASE  # names are case-sensitive


@pytest.mark.parametrize(
    ("min_mean", "min_seed", "bound"), [(0.85, None, 0.85), (0.85, 0.95, 0.95), (None, None, None), (None, 0.9, 0.9)]
)
def test_seed_mean_plcc_bound_and_for_seed(min_mean, min_seed, bound):
    thresholds = Thresholds(fold=BASE, min_mean_plcc=min_mean, max_mean_rmse=12.0, min_seed_mean_plcc=min_seed,
                            max_seed_spread=0.005)
    assert thresholds.seed_mean_plcc_bound == bound
    seed = thresholds.for_seed()
    assert seed == Thresholds(fold=BASE, min_mean_plcc=bound, max_mean_rmse=12.0, min_seed_mean_plcc=min_seed,
                              max_seed_spread=0.005)
    assert thresholds.min_mean_plcc == min_mean  # frozen: for_seed is a copy


def test_thresholds_to_json():
    thresholds = Thresholds(fold=BASE, per_source={"Z": Bounds(0.9), "A": Bounds(None, 0.5, None)},
                            min_mean_plcc=0.85, max_mean_rmse=None, max_seed_spread=0.005)
    assert thresholds.to_json() == {
        "fold": {"min_plcc": 0.75, "min_srocc": 0.7, "max_rmse": 20.0},
        "per_source": {"A": {"min_plcc": None, "min_srocc": 0.5, "max_rmse": None},
                       "Z": {"min_plcc": 0.9, "min_srocc": None, "max_rmse": None}},
        "aggregate": {"min_mean_plcc": 0.85, "max_mean_rmse": None},
        "seeds": {"min_seed_mean_plcc": None, "max_seed_spread": 0.005},
        "baselines": "fold bounds, applied to the all-sources concatenation",
    }
    assert list(thresholds.to_json()["per_source"]) == ["A", "Z"]


def test_gate_options_to_json_and_helpers():
    options = GateOptions(
        loso_dirs=(Path("runs/a"), Path("runs/b")), data_root=None, cache_dir=Path("cache"),
        baselines=(Path("base/v1.onnx"),), archs=("mlp_small",), report_dir=Path("out"),
        thresholds=Thresholds(fold=BASE),
        ensembles=(Ensemble("fr", "m/*.onnx", (Path("m/1.onnx"), Path("m/2.onnx"))),),
        frame_size=(64, 48), frame_sizes={"Life": (32, 32), "Cells": (40, 24)},
        max_drop={"rmse": Allowance(0.5, 0.05)}, compare=Path("acc.json"), bootstrap=200, bootstrap_seed=7,
        where={"cq": ("30", "40")},
    )
    assert options.to_json() == {
        "loso_dirs": ["runs/a", "runs/b"], "data_root": None, "table": None, "target": "vmaf",
        "where": {"cq": ["30", "40"]}, "cache_dir": "cache", "baselines": [str(Path("base/v1.onnx"))],
        "ensembles": {"fr": {"glob": "m/*.onnx", "members": [str(Path("m/1.onnx")), str(Path("m/2.onnx"))]}},
        "archs": ["mlp_small"], "report_dir": "out", "example": False, "extractor": "auto", "vmaf_bin": None,
        "ffmpeg": None, "frame_size": "64x48", "frame_sizes": {"Cells": "40x24", "Life": "32x32"}, "jobs": 1,
        "recompute": False, "compare": "acc.json", "compare_mode": "bound",
        "max_drop": {"rmse": {"absolute": 0.5, "relative": 0.05}}, "accept": False,
        "bootstrap": {"resamples": 200, "seed": 7}, "logistic": False, "srocc_ranks": "average",
        # issue 19: what ships beside the fp32 regressors
        "min_coverage": {}, "registry": None, "quantized": {}, "quant_batch": 1, "max_quant_drop": {},
        "quant_per_source": False,
    }
    assert options.frame_size_of("Life") == (32, 32)
    assert options.frame_size_of("Mandelbrot") == (64, 48)
    assert options.accepting is False
    from dataclasses import replace
    assert replace(options, accept=True).accepting is True
    assert replace(options, accept=True, compare=None).accepting is False


# -- ids ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("arch", "seed", "name"), [("mlp_small", None, "mlp_small"), ("mlp_small", 1, "mlp_small-seed1"),
                                                    ("a", 0, "a-seed0")])
def test_run_name(arch, seed, name):
    assert ids.run_name(arch, seed) == name


@pytest.mark.parametrize(
    ("kind", "label"),
    [("fold", "mlp_small-FoxBird"), ("baseline", "vmaf_tiny_v1"), ("aggregate", "mlp_small-seed2"),
     ("seeds", "mlp_small"), ("ensemble", "fr_v2")],
)
def test_test_name_round_trip(kind, label):
    name = ids.test_name(kind, label)
    assert name == f"{kind}[{label}]"
    assert ids.parse_test_name(name) == (kind, label)


def test_parse_test_name_with_brackets_in_label():
    assert ids.parse_test_name("baseline[v[1]]") == ("baseline", "v[1]")
    assert ids.node_id("fold[a-S]") == "loso::fold[a-S]"


def test_aggregate_tests():
    runs = [("mlp_small", 2), ("linear", None), ("mlp_small", 1), ("mlp_small", 1), ("cnn", 1)]
    assert ids.aggregate_tests(runs) == [
        "aggregate[cnn-seed1]", "aggregate[linear]", "aggregate[mlp_small-seed1]", "aggregate[mlp_small-seed2]",
        "seeds[cnn]", "seeds[mlp_small]"]
    assert ids.aggregate_tests([]) == []
    assert ids.aggregate_tests(iter([("a", None)])) == ["aggregate[a]"]


@pytest.mark.parametrize(
    ("names", "primary"),
    [(["linear", "mlp_small", "cnn"], "mlp_small"), (["linear", "cnn"], "cnn"), ([], None),
     ({"zeta": 1, "alpha": 2}, "alpha"), (["mlp_small-seed1", "mlp_small2"], "mlp_small-seed1")],
)
def test_primary_arch(names, primary):
    assert ids.primary_arch(names) == primary


def test_report_paths_and_files(tmp_path):
    assert ids.report_paths(tmp_path, partial=False) == {"json": tmp_path / "loso_eval.json",
                                                         "markdown": tmp_path / "loso_eval.md"}
    assert ids.report_paths(tmp_path, partial=True) == {"json": tmp_path / "loso_eval.partial.json",
                                                        "markdown": tmp_path / "loso_eval.partial.md"}
    assert ids.predictions_path(tmp_path / "loso_eval.json") == tmp_path / "loso_eval.predictions.npz"
    assert ids.predictions_path(tmp_path / "loso_eval.partial.json") == tmp_path / "loso_eval.partial.predictions.npz"
    assert ids.predictions_path(Path("acc/accepted.json")) == Path("acc/accepted.predictions.npz")
    assert ids.report_files(tmp_path) == [
        tmp_path / name for name in ("loso_eval.json", "loso_eval.md", "loso_eval.predictions.npz",
                                     "loso_eval.partial.json", "loso_eval.partial.md",
                                     "loso_eval.partial.predictions.npz")]
    assert not any(p.exists() for p in ids.report_files(tmp_path))  # names only, nothing written
