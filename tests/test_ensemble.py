"""--loso-ensemble NAME=GLOB: the members and their mean, scored like a baseline, with the spread."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from loso_helpers import ENSEMBLE_MEMBERS, SOURCES, STEPS, parse_outcomes, script_metrics
from shared_runs import template_gate  # noqa: F401 (a fixture)

MEMBERS = ENSEMBLE_MEMBERS


@pytest.fixture
def ensemble(template_gate, ensemble_members):
    """The template run in place (the tests only read it), the members copied into the test's folder."""
    shutil.copytree(ensemble_members, template_gate.root / "ens")
    return template_gate


def _members(gate):
    return sorted((gate.root / "ens").glob("member_seed*.onnx"))


def _predict(path, x) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0].reshape(-1)


def test_members_and_their_mean_are_scored_with_the_spread(ensemble):
    run = ensemble.run("--loso-ensemble", "fr=ens/member_seed*.onnx", "-k", "ensemble", baseline=False)
    assert run.result.ret == 0, run.output
    assert run.outcomes == {"loso::ensemble[fr]": "PASSED"}
    block = run.report["ensembles"]["fr"]
    x, y = ensemble.all_xy()
    preds = np.stack([_predict(p, x) for p in _members(ensemble)])
    mu, sigma = preds.mean(axis=0), preds.std(axis=0, ddof=1)
    concat = block["all_clips_concat"]
    assert concat["n"] == y.size
    assert concat["plcc"] == pytest.approx(float(pearsonr(mu, y.astype(np.float32)).statistic), abs=1e-7)
    assert concat["srocc"] == pytest.approx(float(spearmanr(mu, y).statistic), abs=1e-7)
    assert concat["mean_sigma"] == pytest.approx(float(sigma.mean()), rel=1e-6)
    assert concat["coverage_95"] == float(np.mean(np.abs(y - mu) <= 1.96 * sigma))
    assert 0 < concat["coverage_95"] < 1  # the members disagree a little: some frames fall outside
    assert set(block["members"]) == {str(p) for p in _members(ensemble)}
    for path in _members(ensemble):
        expected = script_metrics(path, x, y)
        assert block["members"][str(path)]["all_clips_concat"]["plcc"] == expected["plcc"]
        per_source = block["members"][str(path)]["per_clip"][SOURCES[1]]
        assert per_source["plcc"] == script_metrics(path, *ensemble.xy(SOURCES[1]))["plcc"]
    xs, ys = ensemble.xy(SOURCES[2])
    mu_s = np.stack([_predict(p, xs) for p in _members(ensemble)]).mean(axis=0)
    assert block["per_clip"][SOURCES[2]]["rmse"] == pytest.approx(float(np.sqrt(((mu_s - ys) ** 2).mean())), rel=1e-6)
    assert "ensemble fr (3 members)" in run.output and "% in μ±1.96σ" in run.output


def test_the_ensemble_mean_is_held_to_the_baseline_bounds(ensemble):
    run = ensemble.run("--loso-ensemble", "fr=ens/member_seed*.onnx", "--loso-min-plcc=0.99999", "-k", "ensemble",
                       baseline=False)
    assert run.outcomes == {"loso::ensemble[fr]": "FAILED"}
    plcc = run.report["ensembles"]["fr"]["all_clips_concat"]["plcc"]
    assert (f"ensemble fr (mean of 3 members) on all sources: PLCC {plcc:.4f} is below the minimum 1.0000 "
            f"(n={ensemble.all_xy()[1].size} frames)") in run.failure_text("loso::ensemble[fr]")


@pytest.mark.parametrize("pattern, found", [("ens/nothing*.onnx", "0 model files"), ("ens/member_seed0.onnx", "1 model file")])
def test_an_ensemble_glob_that_matches_fewer_than_two_models_fails_that_test_only(ensemble, pattern, found):
    run = ensemble.run("--loso-ensemble", f"fr={pattern}")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    assert {n for n, o in run.outcomes.items() if o == "FAILED"} == {"loso::ensemble[fr]"}
    assert f"--loso-ensemble fr={pattern} matches {found}; an ensemble's spread needs at least two members" in \
        run.failure_text("loso::ensemble[fr]")
    assert run.report["ensembles"]["fr"]["all_clips_concat"]["error"]


def test_a_malformed_ensemble_option_is_a_usage_error(ensemble):
    run = ensemble.run("--loso-ensemble", "no-equals-sign")
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert "'no-equals-sign' is not NAME=GLOB" in run.output


def _docs_seed_sweep_command() -> list[str]:
    """The gate command of the seed-sweep CI example in docs/ci.md (section "Promoting a seed sweep"),
    folded lines joined."""
    import re
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "ci.md").read_text(encoding="utf-8")
    section = text[text.index("## Promoting a seed sweep (ADR-0303)\n"):]
    end = section.find("\n## ", 1)
    (block,) = re.findall(r"```yaml\n(.*?)```", section if end < 0 else section[:end], re.S)
    folded = block[block.index("run: >\n") + len("run: >\n"):].split("\n      - ")[0]
    return shlex.split(" ".join(line.strip() for line in folded.splitlines()))


def test_the_docs_seed_sweep_example_gates_the_sweep_and_the_ensemble_and_writes_the_verdict(ensemble):
    """The seed-sweep CI example of docs/ci.md as written: seeds over a per-frame table, the ensemble, the ADR-0303 rule."""
    import json

    from loso_testing.training import train_folds
    from loso_helpers import table_rows as _rows
    from loso_helpers import write_jsonl as _write_jsonl

    gate = ensemble
    args = _docs_seed_sweep_command()
    assert args[:3] == ["pytest", "-m", "loso"]
    option = dict(a.split("=", 1) for a in args[3:] if "=" in a)
    root = gate.root
    for seed in range(2):  # the sweep the example points at
        train_folds(root / option["--loso-dir"] / "loso_mlp_small" / f"seed{seed}", gate.truth, "mlp_small",
                    steps=STEPS, seed=30 + seed)
    table = root / option["--loso-table"]
    table.parent.mkdir(parents=True)
    _write_jsonl(table, _rows(gate))
    name, pattern = option["--loso-ensemble"].split("=", 1)
    (root / pattern).parent.mkdir(parents=True)
    for i, member in enumerate(_members(gate)):  # the members where the example's glob looks
        target = root / pattern.replace("*", str(i))
        member.rename(target)
        member.with_name(member.name + ".data").rename(target.with_name(target.name + ".data"))
    result = gate.pytester.runpytest("-p", "no:cacheprovider", "-rA", *args[1:])
    verdict = json.loads((root / option["--loso-verdict"]).read_text())
    outcomes = parse_outcomes(result)
    expected = {f"loso::fold[mlp_small-seed{seed}-{s}]" for seed in range(2) for s in SOURCES}
    expected |= {"loso::aggregate[mlp_small-seed0]", "loso::aggregate[mlp_small-seed1]", "loso::seeds[mlp_small]",
                 f"loso::ensemble[{name}]"}
    assert set(outcomes) == expected, result.stdout.str()
    # trained models on this corpus hold the rule (PLCC ~0.996, spread < 0.001): every test passes, PROMOTE
    assert set(outcomes.values()) == {"PASSED"} and result.ret == 0, result.stdout.str()
    assert verdict["verdict"] == "PROMOTE", verdict
    assert verdict["gate"]["mean_plcc_threshold"] == 0.95 and verdict["gate"]["plcc_spread_max"] == 0.005
    assert verdict["seeds"] == [0, 1]
    assert (root / option["--junitxml"]).is_file() and (root / option["--loso-report"] / "loso_eval.json").is_file()


def test_a_glob_that_also_matches_sidecars_and_weights_takes_the_models_and_a_failure_names_them(ensemble):
    (ensemble.root / "ens" / "member_seed_manifest.json").write_text("{}")  # a manifest beside the members
    assert any(p.suffix == ".data" for p in (ensemble.root / "ens").iterdir())  # external weights, matched too
    run = ensemble.run("--loso-ensemble", "fr=ens/member_seed*", "--loso-max-rmse=0.001", "-k", "ensemble",
                       baseline=False)
    assert run.outcomes == {"loso::ensemble[fr]": "FAILED"}, run.output
    assert set(run.report["ensembles"]["fr"]["members"]) == {str(p) for p in _members(ensemble)}
    text = run.failure_text("loso::ensemble[fr]")
    # the mean of every member failed, not the first member's file
    names = ", ".join(p.name for p in _members(ensemble))
    assert text.splitlines()[-1] == f"  members: {names} in {ensemble.root / 'ens'}", text
    assert "model: " not in text
