"""Bad input: each problem is a failing item that names the file, never a crash.

Every other item still passes, and the report is still written and lists the failure.
Cache problems are checked with ``--loso-extractor=none`` (no libvmaf to recompute them):
that is the gate on a CI runner with a pre-filled cache.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from loso_helpers import (
    ARCHS,
    BASELINE_ID,
    SOURCES,
    Run,
    all_ids,
    assert_exact,
    install_open_recorder,
    rewrite_location,
    script_metrics,
)
from pytest_loso.features import FEATURE_NAMES
from loso_testing.training import Regressor, cache_payload, export_onnx, train, write_cache

NO_EXTRACTOR = "--loso-extractor=none"


def assert_isolated_failure(run: Run, failing: set[str], *, names: str | Path, says: str | None = None) -> None:
    """Exactly ``failing`` failed, each message names ``names``; the rest passed; report written."""
    output = run.output
    assert "INTERNALERROR" not in output
    assert "Traceback" not in output, output
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED, output
    failed = {nodeid for nodeid, outcome in run.outcomes.items() if outcome == "FAILED"}
    assert failed == failing, output
    others = {nodeid: outcome for nodeid, outcome in run.outcomes.items() if nodeid not in failing}
    assert others and set(others.values()) == {"PASSED"}, output
    for nodeid in failing:
        text = run.failure_text(nodeid)
        assert text.startswith("could not be scored: "), text  # under a header that names the test already
        assert f"FAILED {nodeid} - could not be scored: " in output  # the short summary does not repeat it
        assert str(names) in text, text
        if says:
            assert says in text, text
    assert run.report is not None, "report not written"
    listed = {f["test"]: f["message"] for f in run.report["failures"]}
    assert set(listed) == {nodeid.removeprefix("loso::") for nodeid in failing}
    for message in listed.values():
        assert str(names) in message
        if says:
            assert says in message
    assert run.markdown is not None and "## Failures" in run.markdown
    for test in listed:
        assert f"- **{test}**: " in run.markdown


def _md(gate) -> str:
    return (gate.report_dir / "loso_eval.md").read_text()


# -- options: usage errors before anything runs ----------------------------------------------


def test_cache_that_is_a_file_is_a_usage_error(gate):
    cache_file = gate.root / "cache_is_a_file"
    cache_file.write_text("not a folder")
    args = [a for a in gate.args() if not a.startswith("--loso-cache=")] + [f"--loso-cache={cache_file}"]
    run = gate.run(*args, plain=True)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--loso-cache {cache_file}: is not a folder" in run.output
    assert "Traceback" not in run.output
    assert run.report is None


@pytest.mark.parametrize("which", ["--data-root", "--loso-dir"])
def test_missing_folder_is_a_usage_error(gate, which):
    missing = gate.root / "no_such_folder"
    args = [a for a in gate.args() if not a.startswith(which + "=")] + [f"{which}={missing}"]
    run = gate.run(*args, plain=True)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{which} {missing}: folder not found" in run.output
    assert "Traceback" not in run.output
    assert run.report is None


def test_data_root_not_given_is_a_usage_error(gate):
    args = [a for a in gate.args() if not a.startswith("--data-root=")]
    run = gate.run(*args, plain=True)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--data-root is not" in run.output


def test_missing_baseline_file_is_a_usage_error(gate):
    missing = gate.root / "base" / "nope.onnx"
    run = gate.run(f"--loso-baseline={missing}")
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert str(missing) in run.output and "file not found" in run.output
    # the usage error itself, naming the option (not an item's "model file not found")
    assert f"--loso-baseline {missing}: file not found" in run.output, run.output
    assert "Traceback" not in run.output
    assert not run.outcomes and run.report is None


# -- fold models: missing, extra ----------------------------------------------------------------


def test_source_without_fold_model_fails_not_skips(gate):
    shutil.rmtree(gate.fold_path("mlp_small", "Src0001").parent)
    run = gate.run()
    assert "SKIPPED" not in run.outcomes.values()
    assert_isolated_failure(
        run, {"loso::fold[mlp_small-Src0001]"}, names="fold_Src0001/mlp_small_final.onnx", says="has no fold model"
    )
    # the failed fold is in the report, and the aggregate is over the folds that were scored
    per_fold = run.report["archs"]["mlp_small"]["per_fold"]
    assert "error" in per_fold["Src0001"] and "plcc" not in per_fold["Src0001"]
    assert run.report["archs"]["mlp_small"]["aggregate"]["n_folds"] == 2
    assert re.search(r"^\| Src0001 \|(?: — \|)+ FAILED \|$", _md(gate), re.M)


def test_missing_fold_message_names_where_the_sweep_keeps_folds(gate):
    """In a sweep layout the expected path is inside the architecture's run folder."""
    shutil.rmtree(gate.fold_path("mlp_small", "Src0001").parent)
    run = gate.run()
    assert str(gate.fold_path("mlp_small", "Src0001")) in run.failure_text("loso::fold[mlp_small-Src0001]")


def test_fold_for_a_source_not_in_the_data_root(gate):
    extra = gate.runs / "loso_mlp_small" / "fold_Src0009"
    shutil.copytree(gate.fold_path("mlp_small", "Src0000").parent, extra)
    model = extra / "mlp_small_final.onnx"
    run = gate.run()
    # the aggregate of mlp_small is not judged without that fold, and says so (a skip lists no node id)
    assert set(run.outcomes) == set(all_ids()) - {"loso::aggregate[mlp_small]"} | {"loso::fold[mlp_small-Src0009]"}
    assert run.report["aggregate_checks"]["mlp_small"]["outcome"] == "skipped"
    assert_isolated_failure(run, {"loso::fold[mlp_small-Src0009]"}, names=model, says="not in the data root")
    assert run.report["archs"]["mlp_small"]["aggregate"]["n_folds"] == 3


@pytest.mark.parametrize("spelled", ["stem", "NAME="])
def test_two_baselines_with_one_name_are_a_usage_error(gate, spelled):
    """Two tests with one node id could not be told apart (-k, --deselect, JUnit, xdist)."""
    other = gate.root / "other" / gate.baseline.name
    shutil.copytree(gate.baseline.parent, other.parent)
    given = [f"--loso-baseline={other}", f"--loso-baseline={gate.baseline}"] if spelled == "stem" else \
        [f"--loso-baseline=a={other}", f"--loso-baseline=a={gate.baseline}"]
    run = gate.run(*given, baseline=False)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    name = BASELINE_ID.removeprefix("loso::baseline[")[:-1] if spelled == "stem" else "a"
    assert f"--loso-baseline: two baselines are named {name} ({other} and {gate.baseline}); name each with " \
           "NAME=PATH" in run.result.stderr.str()


# -- model files: unreadable, wrong shape, degenerate output -----------------------------------


def _cut_in_half(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def test_truncated_onnx(gate):
    model = gate.fold_path("mlp_small", "Src0001")
    _cut_in_half(model)
    assert_isolated_failure(
        gate.run(), {"loso::fold[mlp_small-Src0001]"}, names=model, says="not an ONNX model, or truncated"
    )


def test_truncated_onnx_without_external_data(gate, built):
    model = gate.fold_path("linear", "Src0000")
    model.with_name(model.name + ".data").unlink()
    export_onnx(built.folds["linear"]["Src0000"], model, external_data=False)
    _cut_in_half(model)
    assert_isolated_failure(
        gate.run(), {"loso::fold[linear-Src0000]"}, names=model, says="not an ONNX model, or truncated"
    )


def test_truncated_external_data(gate):
    model = gate.fold_path("mlp_small", "Src0002")
    data = model.with_name(model.name + ".data")
    _cut_in_half(data)
    assert_isolated_failure(gate.run(), {"loso::fold[mlp_small-Src0002]"}, names=data, says="truncated")


def test_missing_external_data(gate):
    model = gate.fold_path("mlp_small", "Src0002")
    model.with_name(model.name + ".data").unlink()
    assert_isolated_failure(
        gate.run(), {"loso::fold[mlp_small-Src0002]"}, names=model, says="external data file"
    )


def test_text_file_instead_of_onnx(gate):
    model = gate.fold_path("linear", "Src0001")
    model.write_text("this is not an ONNX model\n")
    assert_isolated_failure(gate.run(), {"loso::fold[linear-Src0001]"}, names=model, says="not an ONNX model")


def test_empty_onnx_file(gate):
    model = gate.fold_path("linear", "Src0001")
    model.write_bytes(b"")
    assert_isolated_failure(
        gate.run(), {"loso::fold[linear-Src0001]"}, names=model, says="not an ONNX model, or truncated (no graph)"
    )


def test_text_file_as_baseline(gate):
    gate.baseline.write_text("garbage")
    run = gate.run()
    assert_isolated_failure(run, {BASELINE_ID}, names=gate.baseline, says="not an ONNX model")
    assert run.report["baselines"]["vmaf_tiny_v1"]["all_clips_concat"]["error"]


def test_model_with_five_inputs(gate, built):
    x = np.concatenate([p[0] for s in ("Src0000", "Src0002") for p in built.truth[s]])
    y = np.concatenate([p[1] for s in ("Src0000", "Src0002") for p in built.truth[s]])
    model = gate.fold_path("mlp_small", "Src0001")
    export_onnx(train(x[:, :5], y, "mlp_small", steps=50), model)
    assert_isolated_failure(
        gate.run(),
        {"loso::fold[mlp_small-Src0001]"},
        names=model,
        says="model input is [batch, 5] but the feature cache has 6 features per frame",
    )


def test_constant_model(gate):
    model = gate.fold_path("linear", "Src0002")
    export_onnx(Regressor([(np.zeros((6, 1)), np.array([50.0]))]), model)
    assert_isolated_failure(
        gate.run(), {"loso::fold[linear-Src0002]"}, names=model, says="model predicts the constant 50.0000"
    )


def test_all_zero_mlp(gate, built):
    model = gate.fold_path("mlp_small", "Src0000")
    layers = [(np.zeros_like(w), np.zeros_like(b)) for w, b in built.folds["mlp_small"]["Src0000"].layers]
    export_onnx(Regressor(layers), model)
    assert_isolated_failure(gate.run(), {"loso::fold[mlp_small-Src0000]"}, names=model, says="constant")


def test_nan_model(gate, built):
    model = gate.fold_path("mlp_small", "Src0000")
    layers = list(built.folds["mlp_small"]["Src0000"].layers)
    w, b = layers[-1]
    layers[-1] = (w, np.full_like(b, np.nan))
    export_onnx(Regressor(layers), model)
    run = gate.run()
    assert_isolated_failure(run, {"loso::fold[mlp_small-Src0000]"}, names=model, says="predicted NaN or inf")
    json.loads((gate.report_dir / "loso_eval.json").read_text(), parse_constant=pytest.fail)


def test_nan_baseline_is_reported_per_clip(gate, built):
    layers = list(built.baseline.layers)
    w, b = layers[-1]
    layers[-1] = (w, np.full_like(b, np.nan))
    export_onnx(Regressor(layers), gate.baseline)
    run = gate.run()
    assert_isolated_failure(run, {BASELINE_ID}, names=gate.baseline, says="NaN")
    per_clip = run.report["baselines"]["vmaf_tiny_v1"]["per_clip"]
    assert sorted(per_clip) == list(SOURCES)
    assert all("predicted NaN" in entry["error"] for entry in per_clip.values())


# -- external data outside the model's folder ------------------------------------------------


def _atime_works(folder: Path) -> bool:
    probe = folder / "atime_probe"
    probe.write_bytes(b"x")
    os.utime(probe, (0, probe.stat().st_mtime))
    probe.read_bytes()
    works = probe.stat().st_atime != 0
    probe.unlink()
    return works


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink_location", "symlink_sibling"])
def test_external_data_outside_the_folder_is_never_opened(gate, how):
    model = gate.fold_path("mlp_small", "Src0001")
    folder = model.parent
    sibling = model.with_name(model.name + ".data")
    outside_dir = gate.root / "outside"
    outside_dir.mkdir()
    if how == "dotdot":
        outside = (folder / "../../evil.bin").resolve()
        rewrite_location(model, "../../evil.bin")
    elif how == "absolute":
        outside = outside_dir / "evil.bin"
        rewrite_location(model, str(outside))
    elif how == "symlink_location":
        outside = outside_dir / "evil.bin"
        (folder / "weights.bin").symlink_to(outside)
        rewrite_location(model, "weights.bin")
    else:
        outside = outside_dir / "evil.bin"
    # the outside file holds the model's real weights: only the rule can make the item fail
    shutil.move(sibling, outside)
    if how == "symlink_sibling":
        sibling.symlink_to(outside)
    assert not folder.resolve() in outside.resolve().parents
    atime_checked = _atime_works(gate.root)
    os.utime(outside, (0, outside.stat().st_mtime))
    opened = install_open_recorder(gate.pytester)

    run = gate.run()
    assert_isolated_failure(run, {"loso::fold[mlp_small-Src0001]"}, names=folder, says="refusing to read it")
    text = run.failure_text("loso::fold[mlp_small-Src0001]")
    assert "outside" in text
    paths = json.loads(opened.read_text())
    assert str(model.resolve()) in paths  # the recorder sees the gate's reads
    assert str(outside.resolve()) not in paths
    if atime_checked:
        assert outside.stat().st_atime == 0, "the outside file was read"


def test_external_data_renamed_inside_the_folder_is_fine(gate):
    """Control for the test above: the same weights, under another name inside the folder, load."""
    model = gate.fold_path("mlp_small", "Src0001")
    sibling = model.with_name(model.name + ".data")
    expected = script_metrics(model, *gate.xy("Src0001"))
    sibling.rename(model.parent / "weights.bin")
    rewrite_location(model, "weights.bin")
    run = gate.run()
    assert run.result.ret == 0, run.output
    assert_exact(run.report["archs"]["mlp_small"]["per_fold"]["Src0001"], expected)


# -- the feature cache -------------------------------------------------------------------------


def _cache_failure(gate, run: Run, path: Path, says: str) -> None:
    failing = {f"loso::fold[{arch}-Src0001]" for arch in ARCHS} | {BASELINE_ID}
    assert_isolated_failure(run, failing, names=path, says=says)
    per_clip = run.report["baselines"]["vmaf_tiny_v1"]["per_clip"]
    assert says in per_clip["Src0001"]["error"]
    assert "plcc" in per_clip["Src0000"] and "plcc" in per_clip["Src0002"]
    assert "cannot score on all sources; 1 failed" in run.failure_text(BASELINE_ID)


def test_corrupt_json_cache(gate):
    path = gate.cache_file("Src0001", 1)
    path.write_text('{"features": {"feature_names": [}')
    _cache_failure(gate, gate.run(NO_EXTRACTOR), path, "corrupt cache file, not valid JSON")


def test_truncated_json_cache(gate):
    path = gate.cache_file("Src0001", 3)
    _cut_in_half(path)
    _cache_failure(gate, gate.run(NO_EXTRACTOR), path, "corrupt cache file, not valid JSON")


def test_cache_with_wrong_schema(gate):
    path = gate.cache_file("Src0001", 0)
    path.write_text(json.dumps({"features": {"per_frame": [[0.0] * 6]}, "scores": {"per_frame": [1.0]}}))
    _cache_failure(gate, gate.run(NO_EXTRACTOR), path, "features.feature_names is missing")


def test_missing_cache_file_says_how_to_fill_it(gate):
    path = gate.cache_file("Src0001", 2)
    path.unlink()
    run = gate.run(NO_EXTRACTOR)
    _cache_failure(gate, run, path, "no cached features for")
    text = run.failure_text("loso::fold[linear-Src0001]")
    assert "fix:" in text and "fill" in text and str(gate.cache_dir) in text
    assert "--loso-cache" in text


@pytest.mark.parametrize("where", ["features", "scores", "huge score"])
def test_nan_in_cache(gate, where):
    source, index = "Src0001", 2
    x, y = (a.copy() for a in gate.truth[source][index])
    if where == "features":
        x[5, 3] = np.nan
    elif where == "scores":
        y[7] = np.nan
    path = gate.cache_file(source, index)
    payload = cache_payload(x, y)
    if where == "huge score":  # valid JSON, but no float32: it would become inf and pass every bound
        payload["scores"]["per_frame"][7] = 1e39
    write_cache(path, payload)
    _cache_failure(gate, gate.run(NO_EXTRACTOR), path, "1 of 30 frames have NaN or infinite features or scores")


def test_cache_files_of_a_source_in_another_feature_order_are_matched_by_name(gate):
    before = gate.run(NO_EXTRACTOR)
    source, index = "Src0001", 3
    x, y = gate.truth[source][index]
    order = [0, 1, 2, 3, 5, 4]
    names = ("adm2", "vif_scale0", "vif_scale1", "vif_scale2", "motion2", "integer_vif_scale3")
    write_cache(gate.cache_file(source, index), cache_payload(x[:, order], y, names))
    after = gate.run(NO_EXTRACTOR)
    assert set(after.outcomes.values()) == {"PASSED"}, after.output
    for arch in ARCHS:
        assert after.report["archs"][arch]["per_fold"] == before.report["archs"][arch]["per_fold"]


def test_a_cache_file_lacking_a_feature_is_the_one_named(gate):
    """The first file of the source lacks motion2: the message names it, not a complete file."""
    source = "Src0001"
    x, y = gate.truth[source][0]
    first = gate.cache_file(source, 0)
    write_cache(first, cache_payload(x[:, :5], y, ("adm2", "vif_scale0", "vif_scale1", "vif_scale2", "vif_scale3")))
    second = gate.cache_file(source, 1)
    run = gate.run(NO_EXTRACTOR)
    _cache_failure(gate, run, second, f"are not those of {first.name}, the source's first cache file")
    assert f"{second.name} has motion2" in run.failure_text("loso::fold[linear-Src0001]")


def test_a_first_cache_file_holding_a_feature_twice_is_the_one_named(gate):
    source = "Src0001"
    x, y = gate.truth[source][0]
    first = gate.cache_file(source, 0)
    write_cache(first, cache_payload(np.c_[x, x[:, 0]], y, (*FEATURE_NAMES, "integer_adm2")))
    run = gate.run(NO_EXTRACTOR)
    _cache_failure(gate, run, gate.cache_file(source, 1), f"{first.name} lists a feature twice")


@pytest.mark.parametrize("where", ["cache", "table"])
def test_a_feature_held_twice_is_an_error_not_a_silent_choice(gate, where):
    """adm2 and libvmaf's integer_adm2 are one feature: with both, which one to score is not clear."""
    names = ("adm2", "vif_scale0", "vif_scale1", "vif_scale2", "vif_scale3", "motion2", "integer_adm2")
    source = "Src0002"
    if where == "cache":
        for index in range(len(gate.stems(source))):
            x, y = gate.truth[source][index]
            write_cache(gate.cache_file(source, index), cache_payload(np.c_[x, x[:, 0] * 0.5], y, names))
        run = gate.run(NO_EXTRACTOR)
        assert_isolated_failure(run, {f"loso::fold[{a}-{source}]" for a in ARCHS} | {BASELINE_ID},
                                names=gate.cache_file(source, 0),  # the file that names the features
                                says="the same feature is held more than once: adm2 and integer_adm2")
        return
    table = gate.root / "frames.jsonl"
    rows = []
    for s in SOURCES:
        for index in range(len(gate.stems(s))):
            x, y = gate.truth[s][index]
            rows += [{"src": s, "dis_basename": gate.stems(s)[index], "frame_index": i, "vmaf": float(y[i]),
                      **dict(zip(names, map(float, [*x[i], x[i, 0] * 0.5])))} for i in range(len(y))]
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = gate.pytester.runpytest("-p", "no:cacheprovider", f"--loso-dir={gate.runs}", f"--loso-table={table}",
                                     f"--loso-report={gate.report_dir}")
    assert result.ret != 0
    text = result.stdout.str()
    assert f"{table}: the same feature is held more than once: adm2 and integer_adm2" in text, text
    assert "keep one spelling of each feature" in text


def test_source_without_distorted_clips(gate):
    for clip in (gate.data_root / "dis").glob("Src0001_*.yuv"):
        clip.unlink()
    run = gate.run(NO_EXTRACTOR)
    _cache_failure(gate, run, gate.data_root / "dis", "source Src0001 has no distorted clips")


def test_report_is_written_and_lists_every_failure_when_many_things_break(gate):
    gate.fold_path("linear", "Src0000").write_text("nope")
    gate.cache_file("Src0002", 0).write_text("{")
    run = gate.run(NO_EXTRACTOR)
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    tests = sorted(f["test"] for f in run.report["failures"])
    assert tests == sorted(
        ["fold[linear-Src0000]", "fold[linear-Src0002]", "fold[mlp_small-Src0002]", "baseline[vmaf_tiny_v1]"]
    )
    assert {n for n, o in run.outcomes.items() if o == "PASSED"} == {
        "loso::fold[linear-Src0001]", "loso::fold[mlp_small-Src0000]", "loso::fold[mlp_small-Src0001]",
    }
    md = _md(gate)
    assert "## Failures" in md
    for test in tests:
        assert f"**{test}**" in md


# -- problems found when planning the items (collection) ------------------------------------


def _collection_failure(gate, run: Run, names: Path | str, says: str) -> None:
    """The gate cannot make its items: a collection error naming the file, and a report that says so."""
    output = run.output
    # "Interrupted: 1 error during collection" (xdist says TESTS_FAILED for the same)
    assert run.result.ret in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.TESTS_FAILED), output
    assert "INTERNALERROR" not in output
    assert "Traceback" not in output and "gate.py" not in output and "items.py" not in output, output
    assert f"{names}: {says}" in output
    assert run.report is not None, "report not written"
    assert [f["test"] for f in run.report["failures"]] == ["loso"]
    assert f"{names}: {says}" in run.report["failures"][0]["message"]
    # kept apart from the whole run's report, which it must not replace (issue 20 item 8)
    assert not (gate.report_dir / "loso_eval.json").exists()
    assert "## Failures" in (gate.report_dir / "loso_eval.partial.md").read_text()


@pytest.mark.parametrize("extractor", ["auto", "none"])
def test_data_root_without_ref_folder(gate, extractor):
    shutil.rmtree(gate.data_root / "ref")
    run = gate.run(f"--loso-extractor={extractor}")
    _collection_failure(gate, run, gate.data_root / "ref", "folder not found")


def test_loso_dir_without_models(gate):
    empty = gate.root / "empty_runs"
    empty.mkdir()
    args = [a for a in gate.args() if not a.startswith("--loso-dir=")] + [f"--loso-dir={empty}"]
    run = gate.run(*args, plain=True)
    _collection_failure(gate, run, empty, "no fold models found")


def test_unknown_arch(gate):
    run = gate.run("--loso-arch", "transformer")
    _collection_failure(gate, run, gate.runs, "no fold models for --loso-arch transformer (found: linear, mlp_small)")


def test_collection_failure_under_xdist(gate):
    shutil.rmtree(gate.data_root / "ref")
    run = gate.run("-n", "2")
    _collection_failure(gate, run, gate.data_root / "ref", "folder not found")


def test_same_fold_offered_by_two_loso_dirs(gate):
    other = gate.root / "runs_copy"
    shutil.copytree(gate.runs / "loso_linear", other / "loso_linear")
    run = gate.run(f"--loso-dir={other}")
    failing = {f"loso::fold[linear-{s}]" for s in SOURCES}
    assert {n for n, o in run.outcomes.items() if o == "FAILED"} == failing
    for source in SOURCES:
        text = run.failure_text(f"loso::fold[linear-{source}]")
        assert f"two fold models for linear on {source}" in text
        assert str(gate.fold_path("linear", source)) in text
        assert str(other / "loso_linear" / f"fold_{source}" / "linear_final.onnx") in text
    assert {n for n, o in run.outcomes.items() if o == "PASSED"} == set(all_ids()) - failing - {
        "loso::aggregate[linear]"}  # skipped: none of its folds could be scored


def test_model_with_two_outputs_per_frame(gate, built):
    model = gate.fold_path("linear", "Src0001")
    w, b = built.folds["linear"]["Src0001"].layers[0]
    export_onnx(Regressor([(np.hstack([w, w]), np.concatenate([b, b]))]), model)
    assert_isolated_failure(
        gate.run(), {"loso::fold[linear-Src0001]"}, names=model, says="model returned 240 predictions for 120 frames"
    )


def test_constant_vmaf_target(gate):
    source = "Src0001"
    for index in range(4):
        x, y = gate.truth[source][index]
        write_cache(gate.cache_file(source, index), cache_payload(x, np.full_like(y, 100.0)))
    run = gate.run(NO_EXTRACTOR)
    failing = {f"loso::fold[{arch}-{source}]" for arch in ARCHS} | {BASELINE_ID}
    # the baseline needs every source scored, as with any other source it cannot score
    assert {n for n, o in run.outcomes.items() if o == "FAILED"} == failing
    for nodeid in failing:
        assert "VMAF target of source Src0001 is constant over 120 frames" in run.failure_text(nodeid)
    assert "cannot score on all sources; 1 failed" in run.failure_text(BASELINE_ID)
    assert "constant" in run.report["baselines"]["vmaf_tiny_v1"]["per_clip"][source]["error"]


def test_corrupt_cache_whose_recompute_fails_names_both(gate):
    # The placeholder YUVs are empty, so libvmaf cannot recompute the corrupt entry.
    path = gate.cache_file("Src0001", 1)
    path.write_text('{"features": {"feature_names": [}')
    run = gate.run("--loso-extractor=ffmpeg")
    text = run.failure_text("loso::fold[mlp_small-Src0001]")
    assert f"{path}: corrupt cache file, not valid JSON" in text
    assert "recomputing it failed" in text and "Src0001_01_" in text and "the clip is empty (0 bytes)" in text
    assert run.outcomes["loso::fold[mlp_small-Src0000]"] == "PASSED"
    assert path.read_text() == '{"features": {"feature_names": [}'  # nothing half-written over it


def test_distorted_clips_without_reference_are_warned_about(gate):
    (gate.data_root / "dis" / "Ghost_01_360_500.yuv").touch()
    run = gate.run(NO_EXTRACTOR)
    assert run.result.ret == 0, run.output
    assert "distorted clips of Ghost have no reference" in run.output
    assert any("Ghost" in w and "1 clips left out" in w for w in run.report["warnings"])
    assert "Ghost" in run.markdown


def test_per_source_threshold_for_an_unknown_source_is_warned_about(gate):
    run = gate.run(NO_EXTRACTOR, "--loso-source-threshold", "FoxBrid: min_plcc=0.99")
    assert run.result.ret == 0, run.output
    assert "per-source thresholds name FoxBrid, which the data root does not hold" in run.output
    assert any("FoxBrid" in w for w in run.report["warnings"])


def test_empty_ref_folder_with_a_baseline(gate):
    for ref in (gate.data_root / "ref").iterdir():
        ref.unlink()
    run = gate.run(NO_EXTRACTOR)
    assert "INTERNALERROR" not in run.output and "Traceback" not in run.output, run.output
    assert run.outcomes[BASELINE_ID] == "FAILED"
    assert f"{gate.data_root / 'ref'}: no sources" in run.failure_text(BASELINE_ID)
    assert run.report is not None


def test_baseline_that_is_a_folder_is_a_usage_error(gate):
    folder = gate.root / "base" / "not_a_model.onnx"
    folder.mkdir()
    result = gate.pytester.runpytest(*gate.args(f"--loso-baseline={folder}"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--loso-baseline {folder}: file not found (or not a file)" in result.stderr.str()


@pytest.mark.parametrize("ini, says", [
    ("loso_jobs = two", "--loso-jobs / loso_jobs: 'two' is not a whole number"),
    ("loso_jobs = 0", "--loso-jobs / loso_jobs: 0 is below 1"),
    ("loso_bootstrap = -5", "--loso-bootstrap / loso_bootstrap: -5 is below 0"),
    ("loso_extractor = nonee", "loso_extractor = 'nonee': choose one of auto, ffmpeg, vmaf, none"),
    ("loso_compare_mode = Noise", "loso_compare_mode = 'Noise': choose one of bound, noise"),
])
def test_bad_ini_values_are_usage_errors(gate, ini, says):
    gate.pytester.makeini(f"[pytest]\n{ini}\n")
    result = gate.pytester.runpytest(*gate.args())
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    assert says in result.stderr.str()


def test_gate_runs_without_the_terminal_plugin(gate):
    args = [a for a in gate.args() if a != "-rA"]  # -rA belongs to the terminal plugin
    run = gate.run("-p", "no:terminal", *args, plain=True)
    assert run.result.ret == 0, run.output
    assert "INTERNALERROR" not in run.output
    assert run.report is not None and not run.report["failures"]


def test_accept_force_alone_is_a_usage_error(gate):
    result = gate.pytester.runpytest(*gate.args("--loso-accept-force"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--loso-accept-force only qualifies --loso-accept: give both" in result.stderr.str()


# -- another tool's cache, and cache entries that are not files ----------------------------------------


FOREIGN_CACHE_FILES = {  # another tool's file: what it holds, and how the failure describes it
    # the fork's full-feature cache
    "full-feature": ({"feature_names": ["adm2"], "per_frame": [[0.9]], "teacher_per_frame": [90.0]},
                     "an object with keys feature_names, per_frame, teacher_per_frame: features is missing"),
    # this cache's top-level keys, in another layout
    "flat": ({"features": [[0.9, 0.5]], "scores": [80.0]},
             "an object with keys features, scores: features is a JSON array, not an object"),
    # a tool that names its schema, even with this cache's layout (and no frames)
    "named": ({"schema": "tool-x/2", "features": {"feature_names": [], "per_frame": []}, "scores": {"per_frame": []}},
              "an object with keys schema, features, scores, which names its own schema (schema 'tool-x/2')"),
    "names-not-text": ({"features": {"feature_names": [1, 2], "per_frame": [[0.9, 0.5]]}, "scores": {"per_frame": [80.0]}},
                       "features.feature_names holds values that are not names"),
}


@pytest.mark.parametrize("kind", FOREIGN_CACHE_FILES)
def test_a_cache_file_in_another_schema_is_an_error_and_left_byte_for_byte(gate, kind):
    payload, described = FOREIGN_CACHE_FILES[kind]
    victim = gate.cache_file("Src0001", 1)
    victim.write_text(json.dumps(payload))
    before = victim.read_bytes()
    for extractor in ("--loso-extractor=none", "--loso-extractor=auto"):  # never replaced, even with libvmaf at hand
        run = gate.run(extractor)
        assert_isolated_failure(run, {f"loso::fold[{a}-Src0001]" for a in ARCHS} | {BASELINE_ID}, names=victim,
                                says=f"{victim}: not a feature-cache file of this schema: it holds ")
        assert described in run.failure_text("loso::fold[mlp_small-Src0001]")
        assert "recomput" not in run.output.replace("recompute it", "")  # no libvmaf run, no warning of one
        assert victim.read_bytes() == before


@pytest.mark.parametrize("content", [b"\xff\xfe not utf-8", b"[" * 200_000, b'{"features": ' + b"9" * 5000 + b"}"],
                         ids=["invalid-utf8", "deep", "huge-int"])
def test_unparseable_cache_files_are_clean_errors(gate, content):
    victim = gate.cache_file("Src0002", 0)
    victim.write_bytes(content)
    run = gate.run(NO_EXTRACTOR)
    assert_isolated_failure(run, {f"loso::fold[{a}-Src0002]" for a in ARCHS} | {BASELINE_ID},
                            names=victim, says="corrupt cache file")


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_cache_entry_that_is_not_a_file_is_neither_read_nor_replaced(gate, kind):
    import os

    victim = gate.cache_file("Src0000", 2)
    victim.unlink()
    victim.mkdir() if kind == "folder" else os.mkfifo(victim)
    # a FIFO read would hang: its own process, so the timeout would say; a folder cannot hang
    run = gate.run("--loso-extractor=auto", subprocess=kind == "fifo")
    assert_isolated_failure(run, {f"loso::fold[{a}-Src0000]" for a in ARCHS} | {BASELINE_ID},
                            names=victim, says=f"is a {kind if kind == 'folder' else 'FIFO'}, not a regular file")
    assert victim.is_dir() if kind == "folder" else victim.is_fifo()


@pytest.mark.parametrize("where", ["model", "external data"])
def test_a_fifo_as_model_is_refused_not_read(gate, where):
    import os

    model = gate.fold_path("mlp_small", "Src0001")
    victim = model if where == "model" else model.with_name(model.name + ".data")
    victim.unlink()
    os.mkfifo(victim)
    run = gate.run(subprocess=True)  # reading a FIFO would hang until the timeout
    # named as what it is (the external data's FIFO was "not found")
    assert_isolated_failure(run, {"loso::fold[mlp_small-Src0001]"}, names=victim, says="is a FIFO, not a regular file")


def test_a_broken_link_as_external_data_is_named_as_one(gate):
    model = gate.fold_path("mlp_small", "Src0001")
    data = model.with_name(model.name + ".data")
    data.unlink()
    moved = data.with_name("weights-moved-away.bin")
    data.symlink_to(moved)
    assert_isolated_failure(gate.run(), {"loso::fold[mlp_small-Src0001]"}, names=data,
                            says=f"the external data file is a broken link (to {moved})")


def test_a_huge_external_data_file_is_read_only_as_far_as_the_model_needs(gate):
    data = gate.fold_path("linear", "Src0000").with_name("linear_final.onnx.data")
    needed = data.stat().st_size
    with open(data, "r+b") as handle:
        handle.truncate(3 * 1024**3)  # 3 GB, sparse: the tensors still sit at its start
    install_open_recorder(gate.pytester)
    run = gate.run("-k", "linear-Src0000")
    assert run.result.ret == 0, run.output
    assert run.report["archs"]["linear"]["per_fold"]["Src0000"]["plcc"] > 0.9
    import hashlib

    with open(data, "rb") as handle:
        assert run.report["run_provenance"]["models"][str(gate.fold_path("linear", "Src0000"))]["data_sha256"] == \
            hashlib.sha256(handle.read(needed)).hexdigest()


@pytest.mark.parametrize("takes_numbers, says", [
    (False, "loso_jobs: expects a string; write the value in quotes, as a TOML string (pytest "),
    (True, "loso_jobs: expects a string; write the value in quotes, as a TOML string"),
])
def test_a_toml_value_pytest_refuses_is_a_usage_error_naming_the_key(monkeypatch, takes_numbers, says):
    """pytest before 9.2 raises TypeError for a TOML number in a plugin's ini key (this venv has 9.2,
    so the old pytest's refusal is played here): a usage error with the quoting hint, not an INTERNALERROR."""
    from pytest_loso import options

    class Config:
        @staticmethod
        def getini(key):
            raise TypeError("expects a string")

    monkeypatch.setattr(options, "PYTEST_TAKES_TOML_NUMBERS", takes_numbers)
    with pytest.raises(pytest.UsageError) as info:
        options._ini(Config(), "loso_jobs")
    assert str(info.value).startswith(says)
    assert ("takes plugins' values as text; 9.2 and later take numbers" in str(info.value)) is not takes_numbers
