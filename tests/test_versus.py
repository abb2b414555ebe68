"""--loso-versus NEW=OLD: a paired A/B test of two runs scored in one session."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loso_helpers import ARCHS, SOURCES
from held_out_helpers import predictions_args, trainer_rows, write
from shared_runs import SharedRuns, template_gate  # noqa: F401 (a fixture: runs that only read the template)

ARCH = ARCHS[0]


def _candidates(gate, noise: float = 8.0) -> list[dict]:
    """``good``: the fold models' predictions; ``poor``: the same with noise; ``twin``: good's copy."""
    good = trainer_rows(gate, (ARCH,), run_of=lambda a: "good")
    rng = np.random.default_rng(0)
    poor = [dict(r, run="poor", prediction=r["prediction"] + float(rng.normal(0, noise))) for r in good]
    twin = [dict(r, run="twin") for r in good]
    return good + poor + twin


_ROWS = SharedRuns()  # the candidates' rows: the same for every test (the template's folds and cache)


def _run(gate, *extra):
    predictions = gate.root / "candidates.jsonl"
    if not predictions.exists():
        write(predictions, _ROWS.get("candidates", lambda: _candidates(gate)))
    return gate.run(*predictions_args(gate, predictions), "--loso-bootstrap=200", *extra, plain=True)


def test_a_good_candidate_is_better_and_a_poor_one_is_worse(template_gate):
    gate = template_gate
    run = _run(gate, "--loso-versus=good=poor", "--loso-versus-rule=better")
    assert run.outcomes["loso::versus[good-poor]"] == "PASSED", run.output
    block = run.report["versus"]["versus[good-poor]"]
    assert block["winner"] == "good" and block["ci"]["plcc"][0] > 0
    assert block["n_folds"] == len(SOURCES) and block["sources"] == list(SOURCES)
    # the difference is the mean over folds of the two runs' own fold figures
    folds = run.report["archs"]
    for metric in ("plcc", "srocc", "rmse"):
        expected = np.mean([folds["good"]["per_fold"][s][metric] - folds["poor"]["per_fold"][s][metric]
                            for s in SOURCES])
        assert block["difference"][metric] == pytest.approx(expected, abs=1e-12)
    assert block["worse_folds"]["plcc"] == []
    assert "| versus[good-poor] | 3 |" in run.markdown and "| good | better | passed |" in run.markdown
    # and in the terminal, the same row
    shown = [line.split() for line in run.result.stdout.lines if line.strip().startswith("versus[good-poor]")]
    assert shown and shown[0][:2] == ["versus[good-poor]", "3"] and shown[0][-3:] == ["good", "better", "passed"], \
        run.output

    run = _run(gate, "--loso-versus=poor=good")  # not-worse, the default
    assert run.outcomes["loso::versus[poor-good]"] == "FAILED"
    text = run.failure_text("loso::versus[poor-good]")
    assert "mean PLCC difference -" in text and "rule: not-worse" in text
    assert f"poor is worse on {', '.join(SOURCES)}" in text
    block = run.report["versus"]["versus[poor-good]"]
    assert block["winner"] == "good" and block["ci"]["plcc"][1] < 0
    assert any(f["test"] == "versus[poor-good]" and "rule: not-worse" in f["message"]
               for f in run.report["failures"])


def test_identical_candidates_differ_by_exactly_zero(template_gate):
    gate = template_gate
    run = _run(gate, "--loso-versus=twin=good")
    assert run.outcomes["loso::versus[twin-good]"] == "PASSED", run.output
    block = run.report["versus"]["versus[twin-good]"]
    assert block["difference"] == {"plcc": 0.0, "srocc": 0.0, "rmse": 0.0}
    assert block["ci"]["plcc"] == [0.0, 0.0] and block["winner"] is None
    run = _run(gate, "--loso-versus=twin=good", "--loso-versus-rule=better")
    assert run.outcomes["loso::versus[twin-good]"] == "FAILED"
    assert "is not surely above zero (rule: better)" in run.failure_text("loso::versus[twin-good]")


def test_a_partial_run_skips_the_versus_test(template_gate):
    gate = template_gate
    run = _run(gate, "--loso-versus=good=poor", "--deselect", f"loso::fold[poor-{SOURCES[0]}]")
    block = run.report["versus"]["versus[good-poor]"]
    assert block["check"]["outcome"] == "skipped" and "partial run" in block["check"]["message"]


@pytest.mark.parametrize("spec, words", [
    ("good=nothing", ["--loso-versus good=nothing names nothing", "runs: good, poor, twin"]),
])
def test_an_unknown_run_stops_the_gate(template_gate, spec, words):
    gate = template_gate
    run = _run(gate, f"--loso-versus={spec}")
    assert run.result.ret != 0 and "the gate cannot make its tests" in run.output
    for word in words:
        assert word in run.output


@pytest.mark.parametrize("spec", ["good", "good=", "good=good"])
def test_a_malformed_pair_is_a_usage_error(template_gate, spec):
    gate = template_gate
    run = _run(gate, f"--loso-versus={spec}")
    assert run.result.ret == 4 and "expected NEW=OLD" in run.output


def test_the_verdict_names_the_winner(template_gate):
    gate = template_gate
    verdict = gate.root / "verdict.json"
    run = _run(gate, "--loso-versus=good=poor", f"--loso-verdict={verdict}")
    assert run.result.ret == 0, run.output
    found = json.loads(verdict.read_text())["versus"]["versus[good-poor]"]
    assert found["winner"] == "good" and found["ci_plcc"][0] > 0 and found["outcome"] == "passed"
