"""--loso-slice COLUMN: every fold, baseline and aggregate also per value of a per-frame column, and
--loso-slice-threshold: slice[<run>-<column>=<value>] tests on a slice's mean over folds.

Every number is checked against an independent computation: the fold models run with onnxruntime
on the cache files' frames (not through the plugin), then scipy.stats.pearsonr / spearmanr and a
numpy RMSE on the frames of each slice value.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from loso_helpers import ARCHS, SOURCES, parse_outcomes
from pytest_loso.errors import LosoUsageError
from pytest_loso.settings import SliceBounds, parse_slice_thresholds, parse_slices
from held_out_helpers import _cache_frames, _onnx_predict, table_rows, write
from shared_runs import SharedRuns, template_gate  # noqa: F401 (a fixture: runs that only read the template)

ARCH = ARCHS[0]


def _encoder(source: str, stem: str, frame: int) -> str:
    """A made-up encoder per clip: rungs 0-1 libx264, 2 libsvtav1, 3 nvenc; but in the first source
    only one frame of rung 3 is nvenc (the rest libsvtav1), too few for a correlation."""
    rung = int(stem.split("_")[1])
    if rung < 2:
        return "libx264"
    if rung == 3 and (source != SOURCES[0] or frame == 0):
        return "nvenc"
    return "libsvtav1"


def _frames(gate, source: str, model) -> list[dict]:
    """Every frame of ``source``: its clip fields, made-up encoder, target and ``model``'s prediction."""
    found = []
    for stem, features, vmaf in _cache_frames(gate, source):
        pred = _onnx_predict(model, features)
        _, quality, height, kbps = stem.split("_")
        for i, (p, y) in enumerate(zip(pred, vmaf)):
            found.append({"quality": quality, "height": height, "kbps": kbps, "encoder": _encoder(source, stem, i),
                          "pred": np.float32(p), "target": np.float32(y)})
    return found


def _expected(frames: list[dict], column: str, value: str) -> dict:
    picked = [f for f in frames if f[column] == value]
    pred = np.array([f["pred"] for f in picked], dtype=np.float32)
    target = np.array([f["target"] for f in picked], dtype=np.float32)
    if len(picked) < 2:
        return {"n": len(picked)}
    return {"n": len(picked), "plcc": float(pearsonr(pred, target).statistic),
            "srocc": float(spearmanr(pred, target).statistic),
            "rmse": float(np.sqrt(np.mean((pred.astype(np.float64) - target) ** 2)))}


def _close(found: dict, expected: dict) -> None:
    assert found["n"] == expected["n"]
    for metric in ("plcc", "srocc", "rmse"):
        assert found[metric] == pytest.approx(expected[metric], rel=1e-5, abs=1e-6), metric


def _table(gate):
    rows = table_rows(gate)
    for row in rows:
        row["encoder"] = _encoder(row["source"], row["dis_basename"], row["frame_index"])
    return write(gate.root / "frames.jsonl", rows)


def _table_run(gate, *extra, subprocess: bool = False):
    table = _table(gate)
    return gate.run("-p", "no:cacheprovider", "-rA", f"--loso-table={table}", f"--loso-dir={gate.runs}",
                    f"--loso-report={gate.report_dir}", *extra, plain=True, subprocess=subprocess)


_SHARED = SharedRuns()
# The table sliced by encoder with two slice bounds (libx264's fails, nvenc's holds) and a versus of the
# fold models' runs: the xdist test's serial run, which the leave-out test reads too.
_SLICED_TABLE = ("--loso-slice=encoder", "--loso-slice-threshold=encoder=libx264: min_mean_plcc=0.99",
                 "--loso-slice-threshold=encoder=nvenc: min_mean_plcc=0",
                 f"--loso-versus={ARCHS[0]}={ARCHS[1]}", "--loso-bootstrap=100")


def _sliced_table_run(gate):
    """:data:`_SLICED_TABLE`'s serial run, made once (in the first asking test's folder)."""
    return _SHARED.get("sliced_table", lambda: _table_run(gate, *_SLICED_TABLE))


def test_slices_of_a_cache_corpus_match_an_independent_computation(template_gate):
    gate = template_gate
    run = gate.run("--loso-extractor=none", "--loso-slice=quality", "--loso-slice=kbps")
    assert set(run.outcomes.values()) == {"PASSED"}, run.output
    slices = run.report["slices"]
    assert list(slices) == ["quality", "kbps"]
    # kbps in numeric order, not as text ("1000" before "500")
    assert list(slices["kbps"]) == sorted(slices["kbps"], key=int)
    for arch in ARCHS:
        frames = {s: _frames(gate, s, gate.fold_path(arch, s)) for s in SOURCES}
        for column in ("quality", "kbps"):
            values = sorted({f[column] for s in SOURCES for f in frames[s]}, key=int)
            assert list(slices[column]) == values
            for value in values:
                block = slices[column][value]["runs"][arch]
                for source in SOURCES:
                    _close(block["per_fold"][source], _expected(frames[source], column, value))
                for metric in ("plcc", "srocc", "rmse"):
                    assert block[f"mean_{metric}"] == pytest.approx(
                        np.mean([_expected(frames[s], column, value)[metric] for s in SOURCES]), rel=1e-5)
                assert block["n_folds"] == len(SOURCES) and block["left_out"] == {}
    # a baseline on all sources concatenated
    everything = [f for s in SOURCES for f in _frames(gate, s, gate.baseline)]
    for value, block in slices["quality"].items():
        _close(block["baselines"]["vmaf_tiny_v1"], _expected(everything, "quality", value))
    # the compact table: runs x values, mean PLCC / RMSE
    first = next(iter(slices["quality"]))
    mean = slices["quality"][first]["runs"][ARCH]
    assert "## Slices by quality" in run.markdown
    assert f"| {ARCH} | {mean['mean_plcc']:.4f} / {mean['mean_rmse']:.3f} |" in run.markdown


def test_slices_of_a_table_column_leave_out_a_fold_with_one_frame_and_say_so(template_gate):
    gate = template_gate
    run = _sliced_table_run(gate)  # the encoder slices, with nvenc's bound (and others: see _SLICED_TABLE)
    assert run.outcomes[f"loso::slice[{ARCH}-encoder=nvenc]"] == "PASSED", run.output
    slices = run.report["slices"]["encoder"]
    assert list(slices) == ["libsvtav1", "libx264", "nvenc"]
    frames = {s: _frames(gate, s, gate.fold_path(ARCH, s)) for s in SOURCES}
    for value, block in slices.items():
        for source in SOURCES:
            expected = _expected(frames[source], "encoder", value)
            if expected["n"] >= 2:
                _close(block["runs"][ARCH]["per_fold"][source], expected)
    nvenc = slices["nvenc"]["runs"][ARCH]
    assert nvenc["per_fold"][SOURCES[0]]["n"] == 1 and nvenc["per_fold"][SOURCES[0]]["plcc"] is None
    assert nvenc["left_out"] == {SOURCES[0]: "1 frame, fewer than 2"}
    assert nvenc["n_folds"] == 2
    assert nvenc["mean_plcc"] == pytest.approx(
        np.mean([_expected(frames[s], "encoder", "nvenc")["plcc"] for s in SOURCES[1:]]), rel=1e-5)
    assert f"{SOURCES[0]} (1 frame, fewer than 2)" in nvenc["check"]["message"]
    assert f"- {ARCH}, encoder=nvenc: {SOURCES[0]} left out of the mean (1 frame, fewer than 2)" in run.markdown
    # libx264 in every fold: none left out
    assert slices["libx264"]["runs"][ARCH]["left_out"] == {}


def test_a_threshold_passes_and_fails_for_the_right_reason(template_gate):
    gate = template_gate
    frames = {s: _frames(gate, s, gate.fold_path(ARCH, s)) for s in SOURCES}
    plcc = float(np.mean([_expected(frames[s], "encoder", "libx264")["plcc"] for s in SOURCES]))
    rmse = float(np.mean([_expected(frames[s], "encoder", "libx264")["rmse"] for s in SOURCES]))
    test = f"loso::slice[{ARCH}-encoder=libx264]"

    run = _table_run(gate, f"--loso-slice-threshold=encoder=libx264: min_mean_plcc={plcc - 1e-3} "
                     f"max_mean_rmse={rmse + 1e-2}", f"--loso-arch={ARCH}")
    assert run.outcomes[test] == "PASSED", run.output
    assert run.report["slices"]["encoder"]["libx264"]["runs"][ARCH]["check"]["outcome"] == "passed"
    assert "(ok)" in run.markdown

    run = _table_run(gate, f"--loso-slice-threshold=encoder=libx264: min_mean_plcc={plcc + 1e-3}",
                     f"--loso-arch={ARCH}")
    assert run.outcomes[test] == "FAILED"
    text = run.failure_text(test)
    assert f"{ARCH} on encoder=libx264: mean PLCC {plcc:.4f} is below the minimum {plcc + 1e-3:.4f}" in text
    assert f"over {len(SOURCES)} folds" in text and "RMSE" not in text
    assert any(f["test"] == f"slice[{ARCH}-encoder=libx264]" for f in run.report["failures"])
    assert "(FAILED)" in run.markdown

    run = _table_run(gate, f"--loso-slice-threshold=encoder=libx264: max_mean_rmse={rmse - 1e-2}",
                     f"--loso-arch={ARCH}")
    text = run.failure_text(test)
    assert f"mean RMSE {rmse:.3f} is above the maximum" in text and "PLCC" not in text
    # the other folds, aggregates and slices are not touched
    assert run.outcomes[f"loso::aggregate[{ARCH}]"] == "PASSED"


def test_a_value_no_fold_has_fails_naming_the_values(template_gate):
    gate = template_gate
    run = _table_run(gate, "--loso-slice-threshold=encoder=x264: min_mean_plcc=0.5", f"--loso-arch={ARCH}")
    test = f"loso::slice[{ARCH}-encoder=x264]"
    assert run.outcomes[test] == "FAILED"
    assert "no fold has frames with encoder=x264" in run.failure_text(test)
    assert "libsvtav1, libx264, nvenc" in run.failure_text(test)


def test_without_bounds_slices_are_reported_not_judged(template_gate, clean):
    gate = template_gate
    run = gate.run("--loso-extractor=none", "--loso-slice=height")
    assert not [t for t in run.outcomes if "slice[" in t]
    assert "check" not in next(iter(run.report["slices"]["height"].values()))["runs"][ARCH]
    plain = clean.run  # the template's run without --loso-slice
    assert "slices" not in plain.report and "## Slices" not in plain.markdown  # a report without keeps its shape


def test_a_column_that_does_not_exist_is_a_clear_error(template_gate):
    gate = template_gate
    run = _table_run(gate, "--loso-slice=codec")
    assert run.result.ret != 0 and "the gate cannot make its tests" in run.output
    assert "--loso-slice names column 'codec', which the table lacks" in run.output
    assert "INTERNALERROR" not in run.output and "Traceback" not in run.output
    run = gate.run("--loso-extractor=none", "--loso-slice=encoder")
    assert run.result.ret == 4
    assert "column 'encoder' is not a field of a YUV + cache corpus" in run.output
    assert "quality, height, kbps" in run.output


def test_slices_and_a_versus_of_fold_models_under_xdist_are_the_serial_ones(template_gate):
    gate = template_gate
    """Slices and a paired A/B test (versus[...], of the fold models' runs) judged on the controller from
    what two workers scored, as serially; both in one pair of runs (each xdist run starts two processes)."""
    versus = f"loso::versus[{ARCHS[0]}-{ARCHS[1]}]"
    serial = _sliced_table_run(gate)
    parallel = _table_run(gate, *_SLICED_TABLE, "-n", "2")
    assert versus in serial.outcomes, serial.output
    assert parallel.outcomes[versus] == serial.outcomes[versus]
    assert parallel.report["versus"] == serial.report["versus"]
    tests = [t for t in serial.outcomes if t.startswith("loso::slice[")]
    assert len(tests) == 2 * len(ARCHS)
    assert {t: parallel.outcomes.get(t) for t in tests} == {t: serial.outcomes[t] for t in tests}, parallel.output
    assert "FAILED" in {serial.outcomes[t] for t in tests}  # the 0.99 bound fails somewhere
    assert parallel.report["slices"] == serial.report["slices"]
    assert parallel.report["failures"] == serial.report["failures"]


def test_ini_lines(template_gate):
    gate = template_gate
    (gate.root / "pytest.ini").write_text(
        "[pytest]\nloso_slice =\n    quality\nloso_slice_threshold =\n    height=360: min_mean_plcc=0\n")
    run = gate.run("--loso-extractor=none")
    assert list(run.report["slices"]) == ["quality", "height"], run.output
    assert run.outcomes[f"loso::slice[{ARCH}-height=360]"] == "PASSED"
    assert json.dumps(run.report["run_provenance"]["options"]["slice_thresholds"]) == json.dumps(
        [{"column": "height", "value": "360", "min_mean_plcc": 0.0}])


# -- parsing (pure) --------------------------------------------------------------------------------

def test_parse_slice_thresholds():
    assert parse_slice_thresholds(["encoder=libx264: min_mean_plcc=0.95 max_mean_rmse=8", "",
                                   "preset=p4:7: min_mean_srocc=0.9", "encoder=libx264: max_mean_rmse=none"]) == (
        SliceBounds("encoder", "libx264", (("min_mean_plcc", 0.95),)),
        SliceBounds("preset", "p4:7", (("min_mean_srocc", 0.9),)))


@pytest.mark.parametrize("line, words", [
    ("encoder: min_mean_plcc=0.9", "is not 'COLUMN=VALUE: key=number ...'"),
    ("encoder=libx264 min_mean_plcc=0.9", "is not 'COLUMN=VALUE: key=number ...'"),
    ("encoder=: min_mean_plcc=0.9", "is not 'COLUMN=VALUE: key=number ...'"),
    ("encoder=libx264:", "names no bound"),
    ("encoder=libx264: min_plcc=0.9", "'min_plcc=0.9'"),
    ("encoder=libx264: min_mean_plcc=high", "'high' is not a number"),
    ("encoder=libx264: min_mean_plcc=", "'min_mean_plcc=' in"),  # not read as "off": the bound would be gone
])
def test_a_bad_threshold_line_is_a_usage_error_naming_the_option(line, words):
    with pytest.raises(LosoUsageError) as raised:
        parse_slice_thresholds([line])
    assert "--loso-slice-threshold" in str(raised.value) and words in str(raised.value)


def test_parse_slices():
    assert parse_slices(["encoder", " preset ", "encoder", ""]) == ("encoder", "preset")
    with pytest.raises(LosoUsageError, match="--loso-slice"):
        parse_slices(["encoder=libx264"])


def test_an_ensemble_slice_and_the_step_summary(template_gate, monkeypatch):
    gate = template_gate
    summary = gate.root / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    members = f"{gate.runs}/loso_{ARCH}/fold_*/{ARCH}_final.onnx"
    run = gate.run("--loso-extractor=none", "--loso-slice=quality", f"--loso-ensemble=fr={members}",
                   "--loso-slice-threshold=quality=00: min_mean_plcc=0.99")
    assert run.outcomes["loso::ensemble[fr]"] == "PASSED", run.output
    paths = [gate.fold_path(ARCH, s) for s in SOURCES]
    everything = []
    for source in SOURCES:  # the members' mean, frame by frame, as the ensemble's prediction
        per_member = [_frames(gate, source, path) for path in paths]
        for frame, *others in zip(*per_member):
            mu = np.stack([np.float32(f["pred"]) for f in (frame, *others)]).mean(axis=0)
            everything.append(dict(frame, pred=np.float32(mu)))
    for value, block in run.report["slices"]["quality"].items():
        _close(block["ensembles"]["fr"], _expected(everything, "quality", value))
    text = summary.read_text()
    assert "## Slices by quality" in text and "| ensemble fr (all sources) |" in text
    assert f"| {ARCH} |" in text and ("(FAILED)" in text or "(ok)" in text)
    assert f"| {SOURCES[0]} |" not in text.split("## Slices by quality")[1].split("##")[0]  # not one row per fold


def test_the_documented_example_on_the_bundled_corpus(pytester):
    """docs/held_out.md's slice example, as written."""
    run = pytester.runpytest("-p", "no:cacheprovider", "-rA", "--loso-example", "--loso-extractor=none",
                             "--loso-slice=quality", "--loso-slice-threshold=height=48: min_mean_plcc=0.99",
                             f"--loso-report={pytester.path / 'report'}")
    report = json.loads((pytester.path / "report" / "loso_eval.json").read_text())
    outcomes = parse_outcomes(run)
    assert outcomes["loso::aggregate[mlp_small]"] == "PASSED"
    assert outcomes["loso::slice[linear-height=48]"] == outcomes["loso::slice[mlp_small-height=48]"] == "FAILED"
    runs = report["slices"]["height"]["48"]["runs"]
    assert round(runs["mlp_small"]["mean_plcc"], 4) == 0.9386 and runs["mlp_small"]["n_folds"] == 4
    assert round(runs["linear"]["mean_plcc"], 4) == 0.8787
    assert list(report["slices"]) == ["quality", "height"]


def test_held_out_predictions_give_the_fold_models_slices(template_gate):
    gate = template_gate
    from held_out_helpers import predictions_args, trainer_rows

    onnx_run = gate.run("--loso-extractor=none", "--loso-slice=quality", baseline=False)
    predictions = write(gate.root / "held_out.jsonl", trainer_rows(gate))
    run = gate.run(*predictions_args(gate, predictions), "--loso-slice=quality", plain=True)
    assert run.outcomes == onnx_run.outcomes, run.output
    assert run.report["slices"] == onnx_run.report["slices"]
