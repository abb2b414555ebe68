"""The accepted report (--loso-compare): the evaluation scripts' own JSON is read, and a malformed
file is a usage error at start that names the file and the key, never a crash at the end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compare_helpers import accept
from loso_helpers import ARCHS, BASELINE_TAG, SOURCES, all_ids, script_metrics
from shared_runs import template_gate  # noqa: F401  (a fixture)


def script_folds(gate, arch: str) -> dict:
    """``{"per_fold": ..., "aggregate": ...}`` as ai/scripts/eval_loso_*.py compute them."""
    per_fold = {source: script_metrics(gate.fold_path(arch, source), *gate.xy(source)) for source in SOURCES}
    aggregate = {}
    for metric in ("plcc", "srocc", "rmse"):
        values = [m[metric] for m in per_fold.values()]
        aggregate[f"mean_{metric}"] = float(np.mean(values))
    for metric in ("plcc", "srocc", "rmse"):
        aggregate[f"std_{metric}"] = float(np.std([m[metric] for m in per_fold.values()], ddof=1))
    return {"per_fold": per_fold, "aggregate": aggregate}


def mlp_small_script_report(gate) -> dict:
    """Exactly the keys eval_loso_mlp_small.py writes to loso_mlp_small_eval.json."""
    folds = script_folds(gate, "mlp_small")
    per_clip = {source: script_metrics(gate.baseline, *gate.xy(source)) for source in SOURCES}
    return {
        "generated": "2026-05-01T12:00:00+0000",
        "corpus": str(gate.data_root),
        "loso_per_fold": folds["per_fold"],
        "loso_aggregate": folds["aggregate"],
        # the script's tags, whatever its files are called; the medium baseline is not scored in this run
        "baselines": {"mlp_small_v1": {"model_path": str(gate.baseline), "per_clip": per_clip,
                                       "all_clips_concat": script_metrics(gate.baseline, *gate.all_xy())},
                      "mlp_medium_v1": {"model_path": "/repo/model/tiny/vmaf_tiny_v1_medium.onnx",
                                        "per_clip": per_clip,
                                        "all_clips_concat": script_metrics(gate.baseline, *gate.all_xy())}},
    }


def run_against(gate, report: object, name: str = "loso_mlp_small_eval.json"):
    path = gate.root / name
    path.write_text(json.dumps(report, indent=2) if not isinstance(report, str) else report)
    return path, gate.run(f"--loso-compare={path}")


def compared(run) -> dict[str, set[str]]:
    tests: dict[str, set[str]] = {}
    for row in run.report["comparison"]["rows"]:
        tests.setdefault(row["test"], set()).add(row["verdict"])
    return tests


def test_the_mlp_small_scripts_report_is_compared_test_by_test(template_gate):
    gate = template_gate  # its runs only read the template
    script = mlp_small_script_report(gate)
    _, run = run_against(gate, script)
    assert run.result.ret == pytest.ExitCode.OK, run.output
    tests = compared(run)
    expected = {f"fold[mlp_small-{s}]" for s in SOURCES} | {"aggregate[mlp_small]", f"baseline[{BASELINE_TAG}]"}
    assert set(tests) == expected
    # the same models on the same data: nothing slid (float32 vs the gate's path: within the allowance)
    assert all(verdicts <= {"same", "better", "worse (allowed)"} for verdicts in tests.values()), tests
    comparison = run.report["comparison"]
    assert comparison["regressions"] == []
    assert comparison["added"] == sorted(f"{kind}[linear{rest}]" for kind, rest in
                                         [("aggregate", "")] + [("fold", f"-{s}") for s in SOURCES])
    assert any("no provenance" in w for w in comparison["warnings"])
    assert comparison["removed"] == ["baseline[vmaf_tiny_v1_medium]"]  # matched by file stem, not by tag

    # the baseline is held to the script's numbers: a concatenation the script scored better fails it
    script["baselines"]["mlp_small_v1"]["all_clips_concat"]["plcc"] += 0.05
    _, run = run_against(gate, script)
    assert run.outcomes[f"loso::baseline[{BASELINE_TAG}]"] == "FAILED", run.output
    script["baselines"]["mlp_small_v1"]["all_clips_concat"]["plcc"] -= 0.05

    # a fold the script scored higher than this run does fails that fold alone
    script["loso_per_fold"]["Src0001"]["plcc"] += 0.05
    _, run = run_against(gate, script)
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED, run.output
    assert {n for n, o in run.outcomes.items() if o == "FAILED"} == {"loso::fold[mlp_small-Src0001]"}
    assert "fold[mlp_small-Src0001]: PLCC" in "\n".join(run.report["comparison"]["regressions"])


def test_the_3arch_scripts_report_is_compared_per_arch(template_gate):
    gate = template_gate  # its runs only read the template
    script = {"generated": "2026-05-01T12:00:00+0000", "corpus": str(gate.data_root),
              "archs": {arch: script_folds(gate, arch) for arch in ARCHS}}
    script["archs"]["mlp_medium"] = {"per_fold": {}, "aggregate": None}  # the script's arch without folds
    script["archs"]["linear"]["aggregate"]["mean_rmse"] -= 1.0  # this run's mean RMSE is 1.0 worse
    _, run = run_against(gate, script, "loso_3arch_eval.json")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED, run.output
    assert {n for n, o in run.outcomes.items() if o == "FAILED"} == {"loso::aggregate[linear]"}
    tests = compared(run)
    assert set(tests) == {f"fold[{a}-{s}]" for a in ARCHS for s in SOURCES} | {f"aggregate[{a}]" for a in ARCHS}
    assert tests["aggregate[linear]"] >= {"REGRESSED"}
    assert run.report["comparison"]["added"] == [f"baseline[{BASELINE_TAG}]"]


NESTED = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("content, where", [
    ({"archs": {"mlp_small": None}, "baselines": {}}, "archs.mlp_small should be an object, not None"),
    ({"archs": {"mlp_small": {"per_fold": {"Src0000": "0.99"}}}, "baselines": {}},
     "archs.mlp_small.per_fold.Src0000 should be an object of metrics, not '0.99'"),
    ({"archs": {"mlp_small": {"per_fold": {"Src0000": {"n": 30, "plcc": float("nan")}}}}, "baselines": {}},
     "archs.mlp_small.per_fold.Src0000.plcc should be a finite number or null, not nan"),
    ({"archs": {"mlp_small": {"per_fold": {"Src0000": {"plcc": True}}}}, "baselines": {}},
     "archs.mlp_small.per_fold.Src0000.plcc should be a finite number or null, not True"),
    ({"archs": [], "baselines": {}}, "archs should be an object, not list"),
    ({"archs": {"mlp_small": {"per_fold": []}}, "baselines": {}}, "archs.mlp_small.per_fold should be an object"),
    ({"archs": {"mlp_small": {"per_fold": {}, "aggregate": {"mean_plcc": "high"}}}, "baselines": {}},
     "archs.mlp_small.aggregate.mean_plcc should be a finite number or null, not 'high'"),
    ({"archs": {}, "baselines": {"b": {"all_clips_concat": [0.9]}}}, "baselines.b.all_clips_concat should be"),
    ({"archs": {}, "baselines": {}, "ensembles": {"e": {"all_clips_concat": {"rmse": "x"}}}},
     "ensembles.e.all_clips_concat.rmse should be a finite number or null, not 'x'"),
    ({"archs": {}, "baselines": {}, "run_provenance": []}, "run_provenance should be an object, not list"),
    ({"archs": {}, "baselines": {}, "run_provenance": {"cache_fingerprint": "abc"}},
     "run_provenance.cache_fingerprint should be an object, not 'abc'"),
    ({"archs": {}, "baselines": {}, "seeds": {"mlp_small": {"mean_plcc": [1]}}}, "seeds.mlp_small.mean_plcc"),
    ({"loso_per_fold": [], "baselines": {}}, "loso_per_fold should be an object"),
    ({"loso_per_fold": {"Src0000": {"plcc": None}}, "baselines": {"b": None}}, "baselines.b should be an object"),
    (NESTED, "nested too deeply"),
])
def test_a_malformed_accepted_report_is_a_usage_error_naming_the_key(template_gate, content, where):
    gate = template_gate  # its runs only read the template
    path, run = run_against(gate, content, "accepted.json")
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR, run.output
    assert "INTERNALERROR" not in run.output and "Traceback" not in run.output, run.output
    assert f"--loso-compare {path}: " in run.output and where in run.output, run.output
    assert not run.outcomes


def test_nulls_the_gate_writes_for_uncomputable_metrics_are_accepted(gate):
    path = gate.root / "accepted.json"
    accept(gate)  # the accept run on the untouched template (made once: it asserts ret == 0)
    accepted = json.loads(path.read_text())
    accepted["archs"]["mlp_small"]["per_fold"]["Src0000"]["srocc"] = None  # as _clean writes a NaN
    _, run = run_against(gate, accepted, "accepted.json")
    assert run.result.ret == pytest.ExitCode.OK, run.output
    assert set(run.outcomes) == set(all_ids())
