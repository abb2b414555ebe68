"""The paired comparison (issue 10 items 2 and 3): the predictions sidecar, the bootstrap of new − accepted
over the same resampled clips, its unpaired fallbacks, and the intervals of the mean over folds.

Every expected interval is recomputed here by ``scipy.stats.bootstrap`` on explicitly concatenated frames
of the script's own predictions (``InferenceSession`` on the ONNX files), not by the plugin's code.
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from loso_helpers import FRAMES, PAIRS_PER_SOURCE, SOURCES, STEPS, Built, GateEnv, Run
from loso_testing.training import export_onnx, train
from compare_helpers import (accept, accepted_file, compare_with, degrade_linear_fold, explicit_bootstrap, failed,
                          fold, ort_predict, rows)
from shared_runs import SharedRuns, TemplateGate
from shared_runs import template_gate  # noqa: F401 (a fixture: runs that only read the template)

PAIR_FRAMES = (FRAMES,) * PAIRS_PER_SOURCE
NOISE = ("--loso-compare-mode=noise",)

_SHARED = SharedRuns()


def _degraded_in_noise_mode(pytester: pytest.Pytester, built: Built,
                            tmp_path_factory: pytest.TempPathFactory) -> tuple[GateEnv, dict, Run]:
    """The template accepted, its linear Src0001 fold degraded, and compared in noise mode (with a JUnit
    file): the tree (a copy of its own, which no test changes afterwards), the accepted report and the
    run. Made once for the tests that read it (the noise-mode test and the xdist one's serial run)."""
    def make() -> tuple[GateEnv, dict, Run]:
        gate = GateEnv(pytester, built, root=tmp_path_factory.mktemp("paired_degraded"))
        accepted = accept(gate)
        degrade_linear_fold(gate, "Src0001")
        return gate, accepted, compare_with(gate, None, *NOISE, f"--junitxml={gate.root / 'out.xml'}")

    return _SHARED.get("degraded", make)


def sidecar(gate):
    return accepted_file(gate).with_name("accepted.predictions.npz")


def test_the_sidecar_holds_each_tests_predictions_and_the_accept_copies_it(template_gate):
    gate = template_gate
    accepted = accept(gate)
    written = gate.report_dir / "loso_eval.predictions.npz"
    assert accepted["predictions"]["file"] == written.name
    assert accepted["predictions"]["sha256"] == hashlib.sha256(written.read_bytes()).hexdigest()
    assert sidecar(gate).read_bytes() == written.read_bytes()  # beside the accepted report
    with np.load(sidecar(gate)) as stored:
        index = json.loads(str(stored["index"]))
        assert accepted["predictions"]["tests"] == len(index) == 7  # 6 folds and the baseline
        x, _ = gate.xy("Src0001")
        key = index["fold[linear-Src0001]"]["key"]
        assert stored[f"{key}_pred"].dtype == np.float32
        assert np.array_equal(stored[f"{key}_pred"], ort_predict(gate.fold_path("linear", "Src0001"), x))
        assert list(stored[f"{key}_pair_frames"]) == list(PAIR_FRAMES)
        x, _ = gate.all_xy()
        key = index["baseline[vmaf_tiny_v1]"]["key"]
        assert np.array_equal(stored[f"{key}_pred"], ort_predict(gate.baseline, x))


def test_paired_noise_mode_flags_a_worse_model_with_the_difference_and_its_interval(pytester, built,
                                                                                   tmp_path_factory):
    gate, accepted, run = _degraded_in_noise_mode(pytester, built, tmp_path_factory)
    x, y = gate.xy("Src0001")
    old = ort_predict(built.root / gate.fold_path("linear", "Src0001").relative_to(gate.root), x)  # the template's
    new = ort_predict(gate.fold_path("linear", "Src0001"), x)

    assert run.outcomes["loso::fold[linear-Src0001]"] == "FAILED", run.output
    metrics = fold(run.report, "linear", "Src0001")
    assert metrics["paired"]["rule"] == "paired"
    # JUnit carries the paired difference as flat properties, one value each (not a printed dict)
    case = ET.parse(gate.root / "out.xml").find(".//testcase[@name='fold[linear-Src0001]']")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["loso_paired_rule"] == "paired"
    for name in ("plcc", "srocc", "rmse"):
        assert [float(props[f"loso_paired_{name}_ci_{end}"]) for end in ("low", "high")] == \
            metrics["paired"]["ci"][name]
        assert props[f"loso_paired_{name}_ci_method"] == metrics["paired"]["ci_method"][name]
    assert not any(value.startswith("{") for value in props.values())
    expected = explicit_bootstrap(new, y, PAIR_FRAMES, n_resamples=1000, seed=0, accepted=old)
    row = rows(run.report)[("fold[linear-Src0001]", "plcc")]
    assert row["verdict"] == "REGRESSED"
    low, high = metrics["paired"]["ci"]["plcc"]
    method = metrics["paired"]["ci_method"]["plcc"]
    explicit = expected["plcc"]["BCa" if method == "BCa" else "percentile"]
    if method.startswith("percentile extended"):
        explicit = [min(explicit[0], row["delta"]), max(explicit[1], row["delta"])]
    assert [low, high] == pytest.approx(explicit, abs=1e-6), method
    assert high < 0  # a genuine drop: the whole interval of the difference is below zero
    before = fold(accepted, "linear", "Src0001")["plcc"]
    assert row["before"] == before and row["after"] == metrics["plcc"]
    rule = (f"paired: drop beyond the allowance and the 95% interval of the difference new − accepted over the "
            f"same resampled clips, {row['delta']:+.4f} [{low:+.4f}, {high:+.4f}], wholly below zero")
    assert row["rule"] == rule
    line = (f"Src0001 (linear): PLCC {before:.4f} -> {metrics['plcc']:.4f} ({row['delta']:+.4f}, allowed -0.005) "
            f"[{rule}]")
    assert line in run.failure_text("loso::fold[linear-Src0001]").splitlines(), run.output
    assert run.report["comparison"]["pairing"] == {"paired": 9, "compared": 9, "unpaired": {}}  # folds, baseline, means
    assert "noise rule: paired (bootstrap of new − accepted over the same clips) for 9 of 9 tests" in run.output
    # the untouched folds are paired too, with a zero difference
    assert fold(run.report, "linear", "Src0000")["paired"]["ci"]["plcc"] == [0.0, 0.0]


def test_a_same_quality_retrain_is_not_flagged_where_the_bound_rule_would(gate):
    accept(gate)
    held_out = "Src0002"
    x = np.concatenate([p[0] for s in SOURCES if s != held_out for p in gate.truth[s]])
    y = np.concatenate([p[1] for s in SOURCES if s != held_out for p in gate.truth[s]])
    export_onnx(train(x, y, "mlp_small", steps=STEPS, seed=1), gate.fold_path("mlp_small", held_out))
    strict = "--loso-max-drop=plcc=0.0002,srocc=0.0002,rmse=0.01"

    bound = compare_with(gate, None, strict)
    assert bound.outcomes[f"loso::fold[mlp_small-{held_out}]"] == "FAILED", bound.output
    worse = {m for (t, m), r in rows(bound.report).items() if t == f"fold[mlp_small-{held_out}]"
             and r["verdict"] == "REGRESSED"}
    assert worse

    noise = compare_with(gate, None, strict, *NOISE)
    assert noise.outcomes[f"loso::fold[mlp_small-{held_out}]"] == "PASSED", noise.output
    for metric in worse:
        row = rows(noise.report)[(f"fold[mlp_small-{held_out}]", metric)]
        assert row["verdict"] == "worse (noise)"
        assert row["rule"].startswith("paired: the 95% interval of the difference") and row["rule"].endswith(
            "includes zero"), row["rule"]


@pytest.mark.parametrize("damage", ["missing", "tampered"])
def test_without_a_trustworthy_sidecar_the_rule_is_unpaired_and_says_why(gate, damage):
    accept(gate)
    path = sidecar(gate)
    if damage == "missing":
        path.unlink()
        reason = f"no predictions sidecar {path}"
    else:
        data = bytearray(path.read_bytes())
        data[-100] ^= 1
        path.write_bytes(bytes(data))
        reason = (f"predictions sidecar {path} does not match the sha256 the accepted report records "
                  "(changed or replaced)")
    degrade_linear_fold(gate, "Src0001")
    run = compare_with(gate, None, *NOISE)
    metrics = fold(run.report, "linear", "Src0001")
    assert metrics["paired"] == {"rule": "unpaired", "reason": reason}
    low, high = metrics["ci"]["plcc"]
    row = rows(run.report)[("fold[linear-Src0001]", "plcc")]
    rule = "accepted value outside this run's 95% bootstrap interval" if row["verdict"] == "REGRESSED" else \
        "accepted value inside this run's 95% bootstrap interval"
    assert row["rule"].startswith("unpaired: ") and rule in row["rule"], row
    assert row["rule"].endswith(f"; not paired: {reason}"), row["rule"]
    if row["verdict"] == "REGRESSED":
        assert f"[{low:.4g}, {high:.4g}]" in row["rule"]
    assert f"not paired: {reason}" in run.output  # the terminal says it
    pairing = run.report["comparison"]["pairing"]
    assert pairing["paired"] == 0 and pairing["unpaired"]["fold[linear-Src0001]"] == reason
    assert f"fold[linear-Src0001]: unpaired rule (this run's interval vs the accepted value): {reason}" in run.output
    assert f"not paired: {reason}" in run.markdown


def test_other_frames_are_not_paired(gate):
    accept(gate)
    cache = gate.cache_file("Src0001", 0)
    payload = json.loads(cache.read_text())
    payload["scores"]["per_frame"] = [float(v) + 0.5 for v in payload["scores"]["per_frame"]]  # same features
    cache.write_text(json.dumps(payload))
    run = compare_with(gate, None, *NOISE)
    assert fold(run.report, "linear", "Src0001")["paired"] == {
        "rule": "unpaired", "reason": "the frames differ from the accepted run's (other targets or clips)"}
    assert fold(run.report, "linear", "Src0000")["paired"]["rule"] == "paired"


def test_a_partial_run_writes_a_partial_sidecar(template_gate):
    gate = template_gate
    run = gate.run("--loso-bootstrap=50", "-k", "Src0000")
    assert run.report["partial"] is not None
    partial = gate.report_dir / "loso_eval.partial.predictions.npz"
    assert run.report["predictions"] == {"file": partial.name, "tests": 2,
                                         "sha256": hashlib.sha256(partial.read_bytes()).hexdigest()}
    assert not (gate.report_dir / "loso_eval.predictions.npz").exists()


def test_aggregates_have_two_stage_intervals_and_a_paired_comparison(gate):
    run = gate.run("--loso-bootstrap=300")
    assert run.result.ret == 0, run.output
    for arch in ("linear", "mlp_small"):
        block = run.report["archs"][arch]["aggregate"]
        for name in ("plcc", "srocc", "rmse"):
            low, high = block["ci"][name]
            assert low <= block[f"mean_{name}"] <= high and low < high, (arch, name)
            assert block["ci_method"][name].startswith(("BCa (two-stage", "percentile"))
        # the mean's interval reaches wider than any single fold's estimate spread would suggest: it holds
        # the folds' own clip noise (each fold interval lies partly inside it)
        for source in SOURCES:
            fold_low, fold_high = fold(run.report, arch, source)["ci"]["plcc"]
            assert fold_low < block["ci"]["plcc"][1]
    assert f"{run.report['archs']['linear']['aggregate']['mean_plcc']:.4f} ± " in run.markdown
    low, high = run.report["archs"]["linear"]["aggregate"]["ci"]["plcc"]
    assert f"[{low:.4f}, {high:.4f}]" in run.markdown

    accepted_file(gate).write_text(json.dumps(run.report))
    accepted_file(gate).with_name("accepted.predictions.npz").write_bytes(
        (gate.report_dir / "loso_eval.predictions.npz").read_bytes())
    degrade_linear_fold(gate, "Src0001")
    compared = compare_with(gate, None, *NOISE, "--loso-bootstrap=300")
    aggregate = compared.report["archs"]["linear"]["aggregate"]
    assert aggregate["paired"]["rule"] == "paired"
    row = rows(compared.report)[("aggregate[linear]", "plcc")]
    low, high = aggregate["paired"]["ci"]["plcc"]
    assert low <= row["delta"] <= high < 0 or high == 0  # resampled sources may hold only the unchanged folds
    # every fold worse: the interval of the mean difference lies below zero, and the aggregate fails on it
    for source in SOURCES:
        degrade_linear_fold(gate, source)
    compared = compare_with(gate, None, *NOISE, "--loso-bootstrap=300")
    aggregate = compared.report["archs"]["linear"]["aggregate"]
    row = rows(compared.report)[("aggregate[linear]", "plcc")]
    low, high = aggregate["paired"]["ci"]["plcc"]
    assert low <= row["delta"] <= high < 0
    assert row["verdict"] == "REGRESSED" and row["rule"].startswith("paired: drop beyond the allowance"), row
    assert compared.outcomes["loso::aggregate[linear]"] == "FAILED"
    assert "paired: drop beyond the allowance" in compared.failure_text("loso::aggregate[linear]")


def test_the_comparison_and_its_paired_intervals_under_xdist_equal_serial(pytester, built, tmp_path_factory):
    """A degraded fold compared in noise mode on two workers and serially: the same outcomes, comparison,
    failure sentences, intervals and predictions sidecar (the bound mode's comparison is the same code
    on the controller, with no intervals to carry). The serial run is the noise-mode test's (its JUnit
    file is all that differs); the workers' run reads that tree in place and reports here."""
    pytest.importorskip("xdist")
    shared, _, serial = _degraded_in_noise_mode(pytester, built, tmp_path_factory)
    parallel = TemplateGate(pytester, Built(shared.root, built.truth, built.folds, built.baseline)).run(
        f"--loso-compare={accepted_file(shared)}", *NOISE, "-n", "2")
    for run in (serial, parallel):
        assert run.result.ret == pytest.ExitCode.TESTS_FAILED, run.output
        assert "INTERNALERROR" not in run.output
    assert "gw0" in parallel.output or "2 workers" in parallel.output
    assert parallel.outcomes == serial.outcomes, parallel.output
    # the aggregate's mean moved within its interval: compared (its rows below), not flagged
    assert failed(parallel) == {"loso::fold[linear-Src0001]"}, parallel.output
    # the comparison is the controller's, from what the workers scored: the same rows, sentences and failures
    for key in ("rows", "regressions", "added", "removed", "warnings", "fingerprint_match", "pairing"):
        assert parallel.report["comparison"][key] == serial.report["comparison"][key], key
    assert parallel.report["failures"] == serial.report["failures"]

    def message(run):  # xdist adds a "[gw0] linux -- Python ..." line above the message
        text = run.failure_text("loso::fold[linear-Src0001]").splitlines()
        return [line for line in text if not line.startswith("[gw")]

    assert message(parallel) == message(serial)
    assert any(line.startswith("Src0001 (linear): PLCC ") for line in message(parallel))
    # the distributions and predictions travel from the workers: the same intervals, the same sidecar
    for arch in ("linear", "mlp_small"):
        assert parallel.report["archs"][arch] == serial.report["archs"][arch]
    assert parallel.report["comparison"]["rows"] == serial.report["comparison"]["rows"]
    assert parallel.report["predictions"]["sha256"] == serial.report["predictions"]["sha256"]
