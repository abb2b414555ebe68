"""pytest-xdist: items run on workers, the controller aggregates; the report does not change."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from loso_helpers import ARCHS, SOURCES, aggregate_ids, all_ids, script_metrics, scored_ids
from loso_testing.training import cache_payload, write_cache

pytest.importorskip("xdist")


def _numbers(report: dict) -> dict:
    return {key: report[key] for key in ("archs", "baselines", "loso_per_fold", "loso_aggregate", "dropped_frames")}


def test_xdist_report_equals_serial(gate):
    # one source's fold broken, so failures travel from workers too, and frames dropped from one pair
    gate.fold_path("linear", "Src0002").write_text("not a model\n")
    x, y = gate.truth["Src0001"][1]
    write_cache(gate.cache_file("Src0001", 1), cache_payload(x, y[:-2]))
    serial = gate.run()  # and below the same under xdist: items on two worker processes
    parallel = gate.run("-n", "2")
    for run in (serial, parallel):
        assert run.result.ret == pytest.ExitCode.TESTS_FAILED, run.output
        assert run.report is not None
        assert "INTERNALERROR" not in run.output
    assert "2 workers" in parallel.output or "gw1" in parallel.output
    assert parallel.outcomes == serial.outcomes
    assert set(serial.outcomes) == set(all_ids()) - {"loso::aggregate[linear]"}  # skipped: listed by reason
    assert _numbers(parallel.report) == _numbers(serial.report)
    assert parallel.report["failures"] == serial.report["failures"]
    assert [f["test"] for f in serial.report["failures"]] == ["fold[linear-Src0002]"]
    # its architecture's aggregate cannot be whole without it: not judged, and it says so
    for run in (serial, parallel):
        assert run.report["aggregate_checks"]["linear"]["outcome"] == "skipped"
        assert "covers 2 of 3 folds (fold[linear-Src0002] could not be scored)" in run.output
        run.result.assert_outcomes(passed=7, failed=1, skipped=1)
    assert parallel.report["dropped_frames"]["Src0001"][gate.stems("Src0001")[1]]["dropped"] == 2
    prov_s, prov_p = serial.report["run_provenance"], parallel.report["run_provenance"]
    assert prov_p["models"] == prov_s["models"]
    assert prov_p["cache_fingerprint"] == prov_s["cache_fingerprint"]
    assert prov_p["items_run"] == prov_s["items_run"] == len(scored_ids())


def test_xdist_aggregate_threshold(gate):
    junit = gate.root / "junit.xml"
    run = gate.run("-n", "2", "--loso-max-mean-rmse", "0.001", f"--junitxml={junit}")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED, run.output
    assert "2 workers" in run.output or "gw1" in run.output, run.output  # xdist really ran the items
    # every fold passed on the workers; the aggregates failed on the controller, counted like any test
    assert run.outcomes == {nodeid: "PASSED" for nodeid in scored_ids()} | {n: "FAILED" for n in aggregate_ids()}
    run.result.assert_outcomes(passed=7, failed=2)
    # the controller's own tests count in the progress: it ends at 100%, not 128%
    progress = [int(p) for p in re.findall(r"\[ *(\d+)%\]", run.output)]
    assert progress and max(progress) == 100 and progress[-1] == 100, run.output
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("9", "2")
    failed_cases = {case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None}
    assert failed_cases == {"aggregate[mlp_small]", "aggregate[linear]"}
    assert {f["test"] for f in run.report["failures"]} == {"aggregate[mlp_small]", "aggregate[linear]"}
    assert run.report["partial"] is None
    # the controller's means are over every fold the workers scored: the script's numbers, recomputed here
    for arch in ARCHS:
        aggregate = run.report["archs"][arch]["aggregate"]
        assert aggregate["n_folds"] == len(SOURCES)
        rmse = [script_metrics(gate.fold_path(arch, s), *gate.xy(s))["rmse"] for s in SOURCES]
        assert aggregate["mean_rmse"] == float(np.mean(rmse))
        assert aggregate["mean_rmse"] > 0.001
        (message,) = [f["message"] for f in run.report["failures"] if f["test"] == f"aggregate[{arch}]"]
        assert message.startswith(f"{arch}: ") and message.endswith(f" over {len(SOURCES)} folds"), message
        assert message in run.result.stdout.lines
