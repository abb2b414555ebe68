"""Bad input: each problem is a failing item that names the file, never a crash.

Every other item still passes, and the report is still written and lists the failure.
Cache problems are checked with ``--loso-extractor=none`` (no libvmaf to recompute them):
that is the gate on a CI runner with a pre-filled cache.

Breakages that cannot interact share a run (a batch, see ``shared_runs``): each breaks a fold of
its own (a fold's test reads only its own model and its held-out source), or a source of its own
where no test asserts what the baseline says of the other sources, and a batch leaves some test
passing. Each test asserts its own breakage on that run as it would on a run of its own, and that
the tests that failed are exactly the batch's. Runs that stop the session (usage and collection
errors) and breakages whose tests assert on the rest of the run (an aggregate, the baseline's other
sources, every other test passing) keep a run of their own; runs that only read the template use
it in place (``template_gate``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from loso_helpers import (
    ARCHS,
    BASELINE_ID,
    SOURCES,
    Built,
    GateEnv,
    Run,
    all_ids,
    assert_exact,
    install_open_recorder,
    rewrite_location,
    script_metrics,
)
from pytest_loso.features import FEATURE_NAMES
from loso_testing.training import Regressor, cache_payload, export_onnx, train, write_cache
from shared_runs import Batch, Breakage, SharedRuns, template_gate  # noqa: F401  (template_gate: a fixture)

NO_EXTRACTOR = "--loso-extractor=none"

SHARED = SharedRuns()


def assert_isolated_failure(run: Run, failing: set[str], *, names: str | Path, says: str | None = None,
                            among: set[str] | None = None) -> None:
    """Exactly ``failing`` failed, each message names ``names``; the rest passed; report written.

    In a batch, ``among`` is every test the batch's breakages fail (``failing`` are this one's):
    this one's failed, with these messages, and no other test failed (a batch-mate's test checks
    that its own did), so a breakage that stops failing fails only its own test."""
    among = failing if among is None else among
    assert failing <= among
    output = run.output
    assert "INTERNALERROR" not in output
    assert "Traceback" not in output, output
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED, output
    failed = {nodeid for nodeid, outcome in run.outcomes.items() if outcome == "FAILED"}
    assert failing <= failed <= among, output  # its own tests failed, and no test no breakage can reach
    others = {nodeid: outcome for nodeid, outcome in run.outcomes.items() if nodeid not in among}
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
    assert set(listed) == {nodeid.removeprefix("loso::") for nodeid in failed}
    for test in (nodeid.removeprefix("loso::") for nodeid in failing):
        assert str(names) in listed[test]
        if says:
            assert says in listed[test]
    assert run.markdown is not None and "## Failures" in run.markdown
    for test in listed:
        assert f"- **{test}**: " in run.markdown


def assert_breakage(batch: Batch, name: str, says: str | None = None, *, run: str | None = None) -> Breakage:
    """:func:`assert_isolated_failure` of the breakage ``name`` on its batch's run (or its run ``run``)."""
    breakage = batch.breakages[name]
    assert_isolated_failure(batch.runs[run] if run else batch.run, breakage.failing, names=breakage.names, says=says,
                            among=batch.failing)
    return breakage


def _md(gate) -> str:
    return (gate.report_dir / "loso_eval.md").read_text()


def _fold(arch: str, source: str) -> str:
    return f"loso::fold[{arch}-{source}]"


def _source_tests(source: str) -> set[str]:
    """What a source the gate cannot read fails: its folds, and the baseline (scored on every source)."""
    return {_fold(arch, source) for arch in ARCHS} | {BASELINE_ID}


# -- options: usage errors before anything runs (the template is read in place) ------------------


def test_cache_that_is_a_file_is_a_usage_error(template_gate):
    gate = template_gate
    cache_file = gate.root / "cache_is_a_file"
    cache_file.write_text("not a folder")
    args = [a for a in gate.args() if not a.startswith("--loso-cache=")] + [f"--loso-cache={cache_file}"]
    run = gate.run(*args, plain=True)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--loso-cache {cache_file}: is not a folder" in run.output
    assert "Traceback" not in run.output
    assert run.report is None


@pytest.mark.parametrize("which", ["--data-root", "--loso-dir"])
def test_missing_folder_is_a_usage_error(template_gate, which):
    gate = template_gate
    missing = gate.root / "no_such_folder"
    args = [a for a in gate.args() if not a.startswith(which + "=")] + [f"{which}={missing}"]
    run = gate.run(*args, plain=True)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{which} {missing}: folder not found" in run.output
    assert "Traceback" not in run.output
    assert run.report is None


def test_data_root_not_given_is_a_usage_error(template_gate):
    gate = template_gate
    args = [a for a in gate.args() if not a.startswith("--data-root=")]
    run = gate.run(*args, plain=True)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--data-root is not" in run.output


def test_missing_baseline_file_is_a_usage_error(template_gate):
    gate = template_gate
    missing = gate.root / "base" / "nope.onnx"
    run = gate.run(f"--loso-baseline={missing}")
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert str(missing) in run.output and "file not found" in run.output
    # the usage error itself, naming the option (not an item's "model file not found")
    assert f"--loso-baseline {missing}: file not found" in run.output, run.output
    assert "Traceback" not in run.output
    assert not run.outcomes and run.report is None


# -- fold models: missing, extra, unreadable, wrong shape, degenerate output ----------------------
#
# The breakages of one fold model, or of the baseline, share three runs (batches), each in a fold of
# its own (mostly the one its test always broke; the external data moved out of the model's folder,
# to the linear folds, each to an outside file of its own). A breaker makes its breakage in a copy of
# the template and returns the path its messages name.


def _cut_in_half(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _no_fold_model(gate: GateEnv, arch: str, source: str) -> Path:
    shutil.rmtree(gate.fold_path(arch, source).parent)
    return gate.fold_path(arch, source)


def _truncated(gate: GateEnv, arch: str, source: str) -> Path:
    model = gate.fold_path(arch, source)
    _cut_in_half(model)
    return model


def _truncated_without_external_data(gate: GateEnv, arch: str, source: str) -> Path:
    model = gate.fold_path(arch, source)
    model.with_name(model.name + ".data").unlink()
    export_onnx(gate.folds[arch][source], model, external_data=False)
    _cut_in_half(model)
    return model


def _truncated_external_data(gate: GateEnv, arch: str, source: str) -> Path:
    model = gate.fold_path(arch, source)
    data = model.with_name(model.name + ".data")
    _cut_in_half(data)
    return data


def _missing_external_data(gate: GateEnv, arch: str, source: str) -> Path:
    model = gate.fold_path(arch, source)
    model.with_name(model.name + ".data").unlink()
    return model


def _text_file(gate: GateEnv, arch: str, source: str) -> Path:
    model = gate.fold_path(arch, source)
    model.write_text("this is not an ONNX model\n")
    return model


def _empty_file(gate: GateEnv, arch: str, source: str) -> Path:
    model = gate.fold_path(arch, source)
    model.write_bytes(b"")
    return model


def _five_inputs(gate: GateEnv, arch: str, source: str) -> Path:
    """The fold's model trained again on its training sources' first five features."""
    others = [s for s in SOURCES if s != source]
    x = np.concatenate([p[0] for s in others for p in gate.truth[s]])
    y = np.concatenate([p[1] for s in others for p in gate.truth[s]])
    model = gate.fold_path(arch, source)
    export_onnx(train(x[:, :5], y, arch, steps=50), model)
    return model


def _constant(gate: GateEnv, arch: str, source: str) -> Path:
    model = gate.fold_path(arch, source)
    export_onnx(Regressor([(np.zeros((6, 1)), np.array([50.0]))]), model)
    return model


def _all_zero(gate: GateEnv, arch: str, source: str) -> Path:
    model = gate.fold_path(arch, source)
    layers = [(np.zeros_like(w), np.zeros_like(b)) for w, b in gate.folds[arch][source].layers]
    export_onnx(Regressor(layers), model)
    return model


def _nan_output(model: Regressor) -> Regressor:
    """``model`` with a NaN output bias."""
    layers = list(model.layers)
    w, b = layers[-1]
    layers[-1] = (w, np.full_like(b, np.nan))
    return Regressor(layers)


def _nan_model(gate: GateEnv, arch: str, source: str) -> Path:
    model = gate.fold_path(arch, source)
    export_onnx(_nan_output(gate.folds[arch][source]), model)
    return model


def _two_outputs(gate: GateEnv, arch: str, source: str) -> Path:
    model = gate.fold_path(arch, source)
    w, b = gate.folds[arch][source].layers[0]
    export_onnx(Regressor([(np.hstack([w, w]), np.concatenate([b, b]))]), model)
    return model


def _text_baseline(gate: GateEnv) -> Path:
    gate.baseline.write_text("garbage")
    return gate.baseline


def _nan_baseline(gate: GateEnv) -> Path:
    export_onnx(_nan_output(gate.baseline_model), gate.baseline)
    return gate.baseline


def _atime_works(folder: Path) -> bool:
    probe = folder / "atime_probe"
    probe.write_bytes(b"x")
    os.utime(probe, (0, probe.stat().st_mtime))
    probe.read_bytes()
    works = probe.stat().st_atime != 0
    probe.unlink()
    return works


def _outside(how: str) -> Callable[[GateEnv, str, str], Breakage]:
    """A breaker that puts the fold's external data (its real weights) outside the model's folder, ``how``."""

    def breaker(gate: GateEnv, arch: str, source: str) -> Breakage:
        model = gate.fold_path(arch, source)
        folder = model.parent
        sibling = model.with_name(model.name + ".data")
        outside_dir = gate.root / "outside"
        outside_dir.mkdir(exist_ok=True)
        outside = outside_dir / f"evil-{how}.bin"
        if how == "dotdot":
            outside = (folder / f"../../evil-{how}.bin").resolve()
            rewrite_location(model, f"../../evil-{how}.bin")
        elif how == "absolute":
            rewrite_location(model, str(outside))
        elif how == "symlink_location":
            (folder / "weights.bin").symlink_to(outside)
            rewrite_location(model, "weights.bin")
        # the outside file holds the model's real weights: only the rule can make the item fail
        shutil.move(sibling, outside)
        if how == "symlink_sibling":
            sibling.symlink_to(outside)
        assert not folder.resolve() in outside.resolve().parents
        os.utime(outside, (0, outside.stat().st_mtime))
        return Breakage({_fold(arch, source)}, folder, {"model": model, "outside": outside})

    return breaker


Breaker = Callable[[GateEnv, str, str], "Path | Breakage"]


def _model_batch(gate: GateEnv, folds: dict[str, tuple[str, str, Breaker]],
                 baseline: dict[str, Callable[[GateEnv], Path]] | None = None, *, record_opens: bool = False) -> Batch:
    """One run of the gate with every breakage of ``folds`` (name: its fold and breaker) and of
    ``baseline`` (name: a breaker of the baseline); ``record_opens``: with a log of the paths opened."""
    breakages = {}
    for name, (arch, source, breaker) in folds.items():
        made = breaker(gate, arch, source)
        breakages[name] = made if isinstance(made, Breakage) else Breakage({_fold(arch, source)}, made)
    for name, baseline_breaker in (baseline or {}).items():
        breakages[name] = Breakage({BASELINE_ID}, baseline_breaker(gate))
    facts = {}
    if record_opens:
        facts["atime_checked"] = _atime_works(gate.root)
        facts["opened"] = install_open_recorder(gate.pytester)
    return Batch(gate, {"run": gate.run()}, breakages, facts)


@pytest.fixture
def broken_models_a(pytester: pytest.Pytester, built: Built) -> Batch:
    """A fold model missing (the only broken fold of mlp_small: its aggregate is asserted), three
    broken linear folds and a text file as the baseline."""
    return SHARED.get("broken_models_a", lambda: _model_batch(GateEnv(pytester, built), {
        "no fold model": ("mlp_small", "Src0001", _no_fold_model),
        "truncated without external data": ("linear", "Src0000", _truncated_without_external_data),
        "text file": ("linear", "Src0001", _text_file),
        "constant": ("linear", "Src0002", _constant),
    }, {"text file as baseline": _text_baseline}))


@pytest.fixture
def broken_models_b(pytester: pytest.Pytester, built: Built) -> Batch:
    """Six broken folds (the baseline passes), with a log of the paths the run opened."""
    return SHARED.get("broken_models_b", lambda: _model_batch(GateEnv(pytester, built), {
        "all-zero MLP": ("mlp_small", "Src0000", _all_zero),
        "five inputs": ("mlp_small", "Src0001", _five_inputs),
        "truncated external data": ("mlp_small", "Src0002", _truncated_external_data),
        "outside: dotdot": ("linear", "Src0000", _outside("dotdot")),
        "empty file": ("linear", "Src0001", _empty_file),
        "outside: absolute": ("linear", "Src0002", _outside("absolute")),
    }, record_opens=True))


@pytest.fixture
def broken_models_c(pytester: pytest.Pytester, built: Built) -> Batch:
    """Six more broken folds (the baseline passes), with a log of the paths the run opened."""
    return SHARED.get("broken_models_c", lambda: _model_batch(GateEnv(pytester, built), {
        "NaN model": ("mlp_small", "Src0000", _nan_model),
        "truncated": ("mlp_small", "Src0001", _truncated),
        "missing external data": ("mlp_small", "Src0002", _missing_external_data),
        "outside: symlink_location": ("linear", "Src0000", _outside("symlink_location")),
        "two outputs": ("linear", "Src0001", _two_outputs),
        "outside: symlink_sibling": ("linear", "Src0002", _outside("symlink_sibling")),
    }, record_opens=True))


def _section(markdown: str, heading: str) -> str:
    """The part of the Markdown report under ``heading``, up to the next heading of its level."""
    start = markdown.index(heading)
    end = markdown.find("\n## ", start + 1)
    return markdown[start:] if end < 0 else markdown[start:end]


def test_source_without_fold_model_fails_not_skips(broken_models_a):
    batch = broken_models_a
    run = batch.run
    assert "SKIPPED" not in run.outcomes.values()
    assert_isolated_failure(run, batch.breakages["no fold model"].failing, names="fold_Src0001/mlp_small_final.onnx",
                            says="has no fold model", among=batch.failing)
    # the failed fold is in the report, and the aggregate is over the folds that were scored
    per_fold = run.report["archs"]["mlp_small"]["per_fold"]
    assert "error" in per_fold["Src0001"] and "plcc" not in per_fold["Src0001"]
    assert run.report["archs"]["mlp_small"]["aggregate"]["n_folds"] == 2
    assert re.search(r"^\| Src0001 \|(?: — \|)+ FAILED \|$", _section(run.markdown, "## mlp_small: "), re.M)


def test_missing_fold_message_names_where_the_sweep_keeps_folds(broken_models_a):
    """In a sweep layout the expected path is inside the architecture's run folder."""
    batch = broken_models_a
    assert str(batch.gate.fold_path("mlp_small", "Src0001")) in batch.run.failure_text("loso::fold[mlp_small-Src0001]")


@pytest.fixture
def unknown_fold_and_nan_baseline(pytester: pytest.Pytester, built: Built) -> Batch:
    """A fold for a source the data root lacks (mlp_small's only one: its aggregate is asserted), and
    a baseline predicting NaN (which leaves every node id in the run)."""

    def make() -> Batch:
        gate = GateEnv(pytester, built)
        extra = gate.runs / "loso_mlp_small" / "fold_Src0009"
        shutil.copytree(gate.fold_path("mlp_small", "Src0000").parent, extra)
        breakages = {"fold not in the data root": Breakage({"loso::fold[mlp_small-Src0009]"}, extra / "mlp_small_final.onnx"),
                     "NaN baseline": Breakage({BASELINE_ID}, _nan_baseline(gate))}
        return Batch(gate, {"run": gate.run()}, breakages)

    return SHARED.get("unknown_fold_and_nan_baseline", make)


def test_fold_for_a_source_not_in_the_data_root(unknown_fold_and_nan_baseline):
    batch = unknown_fold_and_nan_baseline
    run = batch.run
    # the aggregate of mlp_small is not judged without that fold, and says so (a skip lists no node id)
    assert set(run.outcomes) == set(all_ids()) - {"loso::aggregate[mlp_small]"} | {"loso::fold[mlp_small-Src0009]"}
    assert run.report["aggregate_checks"]["mlp_small"]["outcome"] == "skipped"
    assert_breakage(batch, "fold not in the data root", says="not in the data root")
    assert run.report["archs"]["mlp_small"]["aggregate"]["n_folds"] == 3


@pytest.mark.parametrize("spelled", ["stem", "NAME="])
def test_two_baselines_with_one_name_are_a_usage_error(template_gate, spelled):
    """Two tests with one node id could not be told apart (-k, --deselect, JUnit, xdist)."""
    gate = template_gate
    other = gate.root / "other" / gate.baseline.name
    shutil.copytree(gate.baseline.parent, other.parent)
    given = [f"--loso-baseline={other}", f"--loso-baseline={gate.baseline}"] if spelled == "stem" else \
        [f"--loso-baseline=a={other}", f"--loso-baseline=a={gate.baseline}"]
    run = gate.run(*given, baseline=False)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    name = BASELINE_ID.removeprefix("loso::baseline[")[:-1] if spelled == "stem" else "a"
    assert f"--loso-baseline: two baselines are named {name} ({other} and {gate.baseline}); name each with " \
           "NAME=PATH" in run.result.stderr.str()


def test_truncated_onnx(broken_models_c):
    assert_breakage(broken_models_c, "truncated", says="not an ONNX model, or truncated")


def test_truncated_onnx_without_external_data(broken_models_a):
    assert_breakage(broken_models_a, "truncated without external data", says="not an ONNX model, or truncated")


def test_truncated_external_data(broken_models_b):
    assert_breakage(broken_models_b, "truncated external data", says="truncated")


def test_missing_external_data(broken_models_c):
    assert_breakage(broken_models_c, "missing external data", says="external data file")


def test_text_file_instead_of_onnx(broken_models_a):
    assert_breakage(broken_models_a, "text file", says="not an ONNX model")


def test_empty_onnx_file(broken_models_b):
    assert_breakage(broken_models_b, "empty file", says="not an ONNX model, or truncated (no graph)")


def test_text_file_as_baseline(broken_models_a):
    assert_breakage(broken_models_a, "text file as baseline", says="not an ONNX model")
    assert broken_models_a.run.report["baselines"]["vmaf_tiny_v1"]["all_clips_concat"]["error"]


def test_model_with_five_inputs(broken_models_b):
    assert_breakage(broken_models_b, "five inputs",
                    says="model input is [batch, 5] but the feature cache has 6 features per frame")


def test_constant_model(broken_models_a):
    assert_breakage(broken_models_a, "constant", says="model predicts the constant 50.0000")


def test_all_zero_mlp(broken_models_b):
    assert_breakage(broken_models_b, "all-zero MLP", says="constant")


def test_nan_model(broken_models_c):
    assert_breakage(broken_models_c, "NaN model", says="predicted NaN or inf")
    json.loads((broken_models_c.gate.report_dir / "loso_eval.json").read_text(), parse_constant=pytest.fail)


def test_nan_baseline_is_reported_per_clip(unknown_fold_and_nan_baseline):
    batch = unknown_fold_and_nan_baseline
    assert_breakage(batch, "NaN baseline", says="NaN")
    per_clip = batch.run.report["baselines"]["vmaf_tiny_v1"]["per_clip"]
    assert sorted(per_clip) == list(SOURCES)
    assert all("predicted NaN" in entry["error"] for entry in per_clip.values())


def test_model_with_two_outputs_per_frame(broken_models_c):
    assert_breakage(broken_models_c, "two outputs", says="model returned 240 predictions for 120 frames")


# -- external data outside the model's folder ------------------------------------------------


_OUTSIDE_BATCH = {"dotdot": "broken_models_b", "absolute": "broken_models_b",
                  "symlink_location": "broken_models_c", "symlink_sibling": "broken_models_c"}


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink_location", "symlink_sibling"])
def test_external_data_outside_the_folder_is_never_opened(request, how):
    batch = request.getfixturevalue(_OUTSIDE_BATCH[how])
    breakage = assert_breakage(batch, f"outside: {how}", says="refusing to read it")
    (nodeid,) = breakage.failing
    text = batch.run.failure_text(nodeid)
    assert "outside" in text
    paths = json.loads(batch.facts["opened"].read_text())
    assert str(breakage.more["model"].resolve()) in paths  # the recorder sees the gate's reads
    assert str(breakage.more["outside"].resolve()) not in paths
    if batch.facts["atime_checked"]:
        assert breakage.more["outside"].stat().st_atime == 0, "the outside file was read"


# -- oddities that must not fail anything: two runs ---------------------------------------------


@pytest.fixture
def harmless_oddities(pytester: pytest.Pytester, built: Built) -> Batch:
    """The untouched template run without the terminal plugin; then, on the same tree, one run with
    every oddity that must not fail a test, each where the others cannot reach it: external data
    renamed inside its folder (mlp_small-Src0002), a huge sparse external data file
    (linear-Src0000), one cache file of Src0001 in another feature order, distorted clips of a
    source without a reference, and per-source bounds for a source the data root lacks."""

    def make() -> Batch:
        gate = GateEnv(pytester, built)
        args = [a for a in gate.args() if a != "-rA"]  # -rA belongs to the terminal plugin
        untouched = gate.run("-p", "no:terminal", *args, plain=True)

        renamed = gate.fold_path("mlp_small", "Src0002")
        expected = script_metrics(renamed, *gate.xy("Src0002"))
        renamed.with_name(renamed.name + ".data").rename(renamed.parent / "weights.bin")
        rewrite_location(renamed, "weights.bin")

        huge = gate.fold_path("linear", "Src0000").with_name("linear_final.onnx.data")
        needed = huge.stat().st_size
        with open(huge, "r+b") as handle:
            handle.truncate(3 * 1024**3)  # 3 GB, sparse: the tensors still sit at its start

        x, y = gate.truth["Src0001"][3]
        order = [0, 1, 2, 3, 5, 4]
        names = ("adm2", "vif_scale0", "vif_scale1", "vif_scale2", "motion2", "integer_vif_scale3")
        write_cache(gate.cache_file("Src0001", 3), cache_payload(x[:, order], y, names))

        (gate.data_root / "dis" / "Ghost_01_360_500.yuv").touch()
        install_open_recorder(gate.pytester)
        odd = gate.run(NO_EXTRACTOR, "--loso-source-threshold", "FoxBrid: min_plcc=0.99")
        return Batch(gate, {"untouched": untouched, "odd": odd}, {},
                     {"renamed expected": expected, "huge": huge, "huge needed": needed})

    return SHARED.get("harmless_oddities", make)


def test_gate_runs_without_the_terminal_plugin(harmless_oddities):
    run = harmless_oddities.runs["untouched"]
    assert run.result.ret == 0, run.output
    assert "INTERNALERROR" not in run.output
    assert run.report is not None and not run.report["failures"]


def test_external_data_renamed_inside_the_folder_is_fine(harmless_oddities):
    """Control for the outside tests above: the same weights, under another name inside the folder, load."""
    run = harmless_oddities.runs["odd"]
    assert run.result.ret == 0, run.output
    assert_exact(run.report["archs"]["mlp_small"]["per_fold"]["Src0002"], harmless_oddities.facts["renamed expected"])


def test_a_huge_external_data_file_is_read_only_as_far_as_the_model_needs(harmless_oddities):
    batch = harmless_oddities
    run = batch.runs["odd"]
    assert run.result.ret == 0, run.output
    assert run.report["archs"]["linear"]["per_fold"]["Src0000"]["plcc"] > 0.9
    import hashlib

    with open(batch.facts["huge"], "rb") as handle:
        assert run.report["run_provenance"]["models"][str(batch.gate.fold_path("linear", "Src0000"))]["data_sha256"] == \
            hashlib.sha256(handle.read(batch.facts["huge needed"])).hexdigest()


def test_cache_files_of_a_source_in_another_feature_order_are_matched_by_name(harmless_oddities):
    before, after = harmless_oddities.runs["untouched"], harmless_oddities.runs["odd"]
    assert set(after.outcomes.values()) == {"PASSED"}, after.output
    for arch in ARCHS:
        assert after.report["archs"][arch]["per_fold"] == before.report["archs"][arch]["per_fold"]


def test_distorted_clips_without_reference_are_warned_about(harmless_oddities):
    run = harmless_oddities.runs["odd"]
    assert run.result.ret == 0, run.output
    assert "distorted clips of Ghost have no reference" in run.output
    assert any("Ghost" in w and "1 clips left out" in w for w in run.report["warnings"])
    assert "Ghost" in run.markdown


def test_per_source_threshold_for_an_unknown_source_is_warned_about(harmless_oddities):
    run = harmless_oddities.runs["odd"]
    assert run.result.ret == 0, run.output
    assert "per-source thresholds name FoxBrid, which the data root does not hold" in run.output
    assert any("FoxBrid" in w for w in run.report["warnings"])


# -- the feature cache -------------------------------------------------------------------------


def _cache_failure(gate, run: Run, path: Path, says: str) -> None:
    """Src0001 cannot be read: its folds and the baseline fail, and the baseline scored the other
    sources (so each of these breakages keeps a run of its own)."""
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


# Breakages of a source's cache whose tests assert nothing of the baseline's other sources share a
# run, two sources at a time (the third one's folds pass).

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
_FOREIGN_BATCH = {"full-feature": ("foreign_caches_a", "Src0000"), "flat": ("foreign_caches_a", "Src0001"),
                  "named": ("foreign_caches_b", "Src0000"), "names-not-text": ("foreign_caches_b", "Src0001")}


def _foreign_batch(gate: GateEnv, name: str) -> Batch:
    """The batch's other tools' cache files, run without and then with an extractor at hand."""
    breakages = {}
    for kind, (batch, source) in _FOREIGN_BATCH.items():
        if batch == name:
            victim = gate.cache_file(source, 1)
            victim.write_text(json.dumps(FOREIGN_CACHE_FILES[kind][0]))
            breakages[kind] = Breakage(_source_tests(source), victim,
                                       {"source": source, "before": victim.read_bytes(), "after": {}})
    runs = {}
    for extractor in ("--loso-extractor=none", "--loso-extractor=auto"):  # never replaced, even with libvmaf at hand
        runs[extractor] = gate.run(extractor)
        for breakage in breakages.values():
            breakage.more["after"][extractor] = Path(breakage.names).read_bytes()
    return Batch(gate, runs, breakages)


@pytest.fixture
def foreign_caches_a(pytester: pytest.Pytester, built: Built) -> Batch:
    return SHARED.get("foreign_caches_a", lambda: _foreign_batch(GateEnv(pytester, built), "foreign_caches_a"))


@pytest.fixture
def foreign_caches_b(pytester: pytest.Pytester, built: Built) -> Batch:
    return SHARED.get("foreign_caches_b", lambda: _foreign_batch(GateEnv(pytester, built), "foreign_caches_b"))


@pytest.mark.parametrize("kind", FOREIGN_CACHE_FILES)
def test_a_cache_file_in_another_schema_is_an_error_and_left_byte_for_byte(request, kind):
    batch = request.getfixturevalue(_FOREIGN_BATCH[kind][0])
    breakage = batch.breakages[kind]
    victim, described = breakage.names, FOREIGN_CACHE_FILES[kind][1]
    for extractor, run in batch.runs.items():
        assert_breakage(batch, kind, says=f"{victim}: not a feature-cache file of this schema: it holds ", run=extractor)
        assert described in run.failure_text(f"loso::fold[mlp_small-{breakage.more['source']}]"), extractor
        assert "recomput" not in run.output.replace("recompute it", "")  # no libvmaf run, no warning of one
        assert breakage.more["after"][extractor] == breakage.more["before"], extractor


UNPARSEABLE_CACHE_FILES = {  # what the file holds, and the batch and source it is in
    "invalid-utf8": (b"\xff\xfe not utf-8", "unparseable_caches", "Src0000"),
    "deep": (b"[" * 200_000, "unparseable_caches", "Src0001"),
    "huge-int": (b'{"features": ' + b"9" * 5000 + b"}", "unparseable_cache_and_a_feature_twice", "Src0000"),
}
_TWICE_NAMES = ("adm2", "vif_scale0", "vif_scale1", "vif_scale2", "vif_scale3", "motion2", "integer_adm2")


def _unparseable_batch(gate: GateEnv, name: str) -> Batch:
    """The batch's unparseable cache files (and, in one, every cache file of Src0002 holding adm2 twice)."""
    breakages = {}
    for kind, (content, batch, source) in UNPARSEABLE_CACHE_FILES.items():
        if batch == name:
            victim = gate.cache_file(source, 0)
            victim.write_bytes(content)
            breakages[kind] = Breakage(_source_tests(source), victim)
    if name == "unparseable_cache_and_a_feature_twice":
        source = "Src0002"
        for index in range(len(gate.stems(source))):
            x, y = gate.truth[source][index]
            write_cache(gate.cache_file(source, index), cache_payload(np.c_[x, x[:, 0] * 0.5], y, _TWICE_NAMES))
        # the file that names the features
        breakages["a feature twice"] = Breakage(_source_tests(source), gate.cache_file(source, 0))
    return Batch(gate, {"run": gate.run(NO_EXTRACTOR)}, breakages)


@pytest.fixture
def unparseable_caches(pytester: pytest.Pytester, built: Built) -> Batch:
    return SHARED.get("unparseable_caches", lambda: _unparseable_batch(GateEnv(pytester, built), "unparseable_caches"))


@pytest.fixture
def unparseable_cache_and_a_feature_twice(pytester: pytest.Pytester, built: Built) -> Batch:
    name = "unparseable_cache_and_a_feature_twice"
    return SHARED.get(name, lambda: _unparseable_batch(GateEnv(pytester, built), name))


@pytest.mark.parametrize("kind", UNPARSEABLE_CACHE_FILES)
def test_unparseable_cache_files_are_clean_errors(request, kind):
    assert_breakage(request.getfixturevalue(UNPARSEABLE_CACHE_FILES[kind][1]), kind, says="corrupt cache file")


@pytest.mark.parametrize("where", ["cache", "table"])
def test_a_feature_held_twice_is_an_error_not_a_silent_choice(request, where):
    """adm2 and libvmaf's integer_adm2 are one feature: with both, which one to score is not clear."""
    names = _TWICE_NAMES
    if where == "cache":  # every cache file of Src0002
        assert_breakage(request.getfixturevalue("unparseable_cache_and_a_feature_twice"), "a feature twice",
                        says="the same feature is held more than once: adm2 and integer_adm2")
        return
    gate = request.getfixturevalue("template_gate")
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


@pytest.fixture
def fifos_and_a_broken_link(pytester: pytest.Pytester, built: Built) -> Batch:
    """FIFOs where a cache file, a model and a model's external data go, and a broken link as
    external data: in a process of its own, as reading a FIFO would hang (then the timeout says)."""

    def make() -> Batch:
        gate = GateEnv(pytester, built)
        cache = gate.cache_file("Src0000", 2)
        model = gate.fold_path("mlp_small", "Src0001")
        data = gate.fold_path("mlp_small", "Src0002").with_name("mlp_small_final.onnx.data")
        for victim in (cache, model, data):
            victim.unlink()
            os.mkfifo(victim)
        link = gate.fold_path("linear", "Src0001").with_name("linear_final.onnx.data")
        link.unlink()
        moved = link.with_name("weights-moved-away.bin")
        link.symlink_to(moved)
        breakages = {"cache FIFO": Breakage(_source_tests("Src0000"), cache),
                     "model FIFO": Breakage({_fold("mlp_small", "Src0001")}, model),
                     "external data FIFO": Breakage({_fold("mlp_small", "Src0002")}, data),
                     "broken link": Breakage({_fold("linear", "Src0001")}, link, {"to": moved})}
        return Batch(gate, {"run": gate.run("--loso-extractor=auto", subprocess=True)}, breakages)

    return SHARED.get("fifos_and_a_broken_link", make)


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_cache_entry_that_is_not_a_file_is_neither_read_nor_replaced(request, kind):
    if kind == "fifo":  # a FIFO read would hang: its own process, so the timeout would say
        breakage = assert_breakage(request.getfixturevalue("fifos_and_a_broken_link"), "cache FIFO",
                                   says="is a FIFO, not a regular file")
        assert Path(breakage.names).is_fifo()
        return
    gate = request.getfixturevalue("gate")  # a folder cannot hang
    victim = gate.cache_file("Src0000", 2)
    victim.unlink()
    victim.mkdir()
    run = gate.run("--loso-extractor=auto")
    assert_isolated_failure(run, {f"loso::fold[{a}-Src0000]" for a in ARCHS} | {BASELINE_ID},
                            names=victim, says="is a folder, not a regular file")
    assert victim.is_dir()


@pytest.mark.parametrize("where", ["model", "external data"])
def test_a_fifo_as_model_is_refused_not_read(fifos_and_a_broken_link, where):
    # named as what it is (the external data's FIFO was "not found")
    assert_breakage(fifos_and_a_broken_link, f"{where} FIFO", says="is a FIFO, not a regular file")


def test_a_broken_link_as_external_data_is_named_as_one(fifos_and_a_broken_link):
    breakage = fifos_and_a_broken_link.breakages["broken link"]
    assert_breakage(fifos_and_a_broken_link, "broken link",
                    says=f"the external data file is a broken link (to {breakage.more['to']})")


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


def test_loso_dir_without_models(template_gate):
    gate = template_gate
    empty = gate.root / "empty_runs"
    empty.mkdir()
    args = [a for a in gate.args() if not a.startswith("--loso-dir=")] + [f"--loso-dir={empty}"]
    run = gate.run(*args, plain=True)
    _collection_failure(gate, run, empty, "no fold models found")


def test_unknown_arch(template_gate):
    gate = template_gate
    run = gate.run("--loso-arch", "transformer")
    _collection_failure(gate, run, gate.runs, "no fold models for --loso-arch transformer (found: linear, mlp_small)")


def test_collection_failure_under_xdist(gate):
    shutil.rmtree(gate.data_root / "ref")
    run = gate.run("-n", "2")
    _collection_failure(gate, run, gate.data_root / "ref", "folder not found")


def test_same_fold_offered_by_two_loso_dirs(template_gate):
    gate = template_gate
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


def test_empty_ref_folder_with_a_baseline(gate):
    for ref in (gate.data_root / "ref").iterdir():
        ref.unlink()
    run = gate.run(NO_EXTRACTOR)
    assert "INTERNALERROR" not in run.output and "Traceback" not in run.output, run.output
    assert run.outcomes[BASELINE_ID] == "FAILED"
    assert f"{gate.data_root / 'ref'}: no sources" in run.failure_text(BASELINE_ID)
    assert run.report is not None


def test_baseline_that_is_a_folder_is_a_usage_error(template_gate):
    gate = template_gate
    folder = gate.root / "base" / "not_a_model.onnx"
    folder.mkdir(parents=True)
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
def test_bad_ini_values_are_usage_errors(template_gate, ini, says):
    gate = template_gate
    gate.pytester.makeini(f"[pytest]\n{ini}\n")
    result = gate.pytester.runpytest(*gate.args())
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    assert says in result.stderr.str()


def test_accept_force_alone_is_a_usage_error(template_gate):
    gate = template_gate
    result = gate.pytester.runpytest(*gate.args("--loso-accept-force"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--loso-accept-force only qualifies --loso-accept: give both" in result.stderr.str()


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
