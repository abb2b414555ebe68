"""--loso-predictions: held-out predictions written by any trainer, scored as fold tests.

The predictions are written here as a trainer would: its own onnxruntime run of each fold model
on the frames the fold held out (read from the cache files, not through the plugin), one long
table of (run, seed, source, dis_basename, frame_index, prediction) rows in shuffled order. The
gate must give exactly the numbers the fold models give it.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest

from loso_helpers import ARCHS, SOURCES
from held_out_helpers import predictions_args, trainer_rows, write
from held_out_helpers import table_rows
from shared_runs import Batch, Breakage, SharedRuns, template_gate  # noqa: F401  (template_gate: a fixture)

ARCH = ARCHS[0]
SHARED = SharedRuns()


def _numbers(report: dict) -> dict:
    return {"archs": {a: b["per_fold"] for a, b in report["archs"].items()},
            "aggregates": {a: b["aggregate"] for a, b in report["archs"].items()}}


@pytest.fixture
def onnx_run(template_gate):
    """The fold models' own run, that both formats' predictions must equal (it only reads the template)."""
    def make():
        run = template_gate.run("--loso-bootstrap=30", "--loso-extractor=none", baseline=False)
        assert set(run.outcomes.values()) == {"PASSED"}, run.output
        return run

    return SHARED.get("onnx_run", make)


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_predictions_give_the_fold_models_numbers_to_the_last_digit(template_gate, onnx_run, kind):
    gate = template_gate
    predictions = write(gate.root / f"held_out.{kind}", trainer_rows(gate))
    run = gate.run(*predictions_args(gate, predictions), "--loso-bootstrap=30", plain=True)
    assert run.outcomes == onnx_run.outcomes, run.output
    assert _numbers(run.report) == _numbers(onnx_run.report)
    import hashlib
    [provenance] = run.report["run_provenance"]["held_out_predictions"]
    assert provenance["sha256"] == hashlib.sha256(predictions.read_bytes()).hexdigest()
    assert provenance["rows"] == len(trainer_rows(gate)) and provenance["runs"] == sorted(ARCHS)
    assert run.report["run_provenance"]["models"][str(predictions)]["sha256"] == provenance["sha256"]


def test_on_a_table_corpus_and_under_xdist_the_numbers_are_the_fold_models(template_gate):
    gate = template_gate  # its runs only read the template
    table = write(gate.root / "frames.parquet", table_rows(gate))
    corpus = (f"--loso-table={table}",)
    onnx_run = gate.run(*predictions_args(gate, corpus=corpus), f"--loso-dir={gate.runs}", "--loso-bootstrap=30",
                        plain=True)
    assert set(onnx_run.outcomes.values()) == {"PASSED"}, onnx_run.output
    # a table names its clips by dis_basename (the stem here): the predictions use its names
    predictions = write(gate.root / "held_out.jsonl", trainer_rows(gate, clip_name=lambda stem: stem))
    run = gate.run(*predictions_args(gate, predictions, corpus=corpus), "--loso-bootstrap=30", "-n", "2",
                   plain=True)
    assert run.outcomes == onnx_run.outcomes, run.output
    assert _numbers(run.report) == _numbers(onnx_run.report)


def test_seeds_mixed_with_fold_models_baselines_and_an_accepted_report(template_gate):
    """Two seeds' predictions of another run beside the fold models and the baseline: seeds[...] and
    the paired comparison work as for fold models."""
    gate = template_gate  # its runs only read the template
    rows = trainer_rows(gate, (ARCH,), run_of=lambda a: "trainer", seed=0)
    rows += trainer_rows(gate, (ARCHS[1],), run_of=lambda a: "trainer", seed=1)
    predictions = write(gate.root / "held_out.jsonl", rows)
    accepted = gate.root / "accepted.json"
    first = gate.run(f"--loso-predictions={predictions}", "--loso-extractor=none", f"--loso-compare={accepted}",
                     "--loso-accept", "--loso-bootstrap=30")
    assert first.result.ret == 0, first.output
    run = gate.run(f"--loso-predictions={predictions}", "--loso-extractor=none", f"--loso-compare={accepted}",
                   "--loso-compare-mode=noise", "--loso-bootstrap=30")
    assert run.result.ret == 0, run.output
    for seed in (0, 1):
        for source in SOURCES:
            assert run.outcomes[f"loso::fold[trainer-seed{seed}-{source}]"] == "PASSED"
            paired = run.report["archs"][f"trainer-seed{seed}"]["per_fold"][source]["paired"]
            assert paired["rule"] == "paired" and paired["ci"]["plcc"] == [0.0, 0.0]
    assert run.outcomes["loso::seeds[trainer]"] == "PASSED"
    assert run.outcomes["loso::aggregate[trainer-seed0]"] == "PASSED"
    assert {f"loso::fold[{a}-{s}]" for a in ARCHS for s in SOURCES} <= set(run.outcomes)
    # seed 0 holds the mlp_small folds' predictions, seed 1 the linear ones: their numbers
    for seed, arch in ((0, ARCH), (1, ARCHS[1])):
        assert run.report["archs"][f"trainer-seed{seed}"]["per_fold"] == {
            s: {**m, "paired": run.report["archs"][f"trainer-seed{seed}"]["per_fold"][s]["paired"]}
            for s, m in run.report["archs"][arch]["per_fold"].items()}
    assert "loso::baseline[vmaf_tiny_v1]" in run.outcomes


def _fails_cleanly(run, test: str, *words: str) -> str:
    assert run.outcomes.get(test) == "FAILED", run.output
    text = run.failure_text(test)
    assert "Traceback" not in run.output and "INTERNALERROR" not in run.output
    for word in words:
        assert word in text, text
    return text


def _one_arch(gate) -> list[dict]:
    return trainer_rows(gate, (ARCH,))


def _first(rows: list[dict], source: str) -> int:
    return next(i for i, r in enumerate(rows) if r["src"].startswith(source))


# Bad rows that cannot interact share one predictions file and one run (a batch, see ``shared_runs``):
# each breakage is in a run (the trainer's name for its models) of its own, so it fails folds no
# other breakage reaches; each test asserts its own folds and lines, and that the tests that failed
# are the batch's.
_BAD_ROWS = [
    ({"frame_index": 999}, ["frame_index 999 is not a frame of source"]),
    ({"dis_basename": "nope.yuv"}, ["'nope.yuv'", "is not a frame of source"]),
    ({"prediction": float("nan")}, ["prediction nan", "not a finite number"]),
    ({"prediction": "high"}, ["prediction 'high'", "not a finite number"]),
    ({"frame_index": 1.5}, ["frame_index 1.5 is not a whole number"]),
]


def _bad_row_key(change: dict) -> str:
    return f"row {json.dumps(change)}"


def _bad_predictions(gate) -> Batch:
    base = _one_arch(gate)
    lines: list[dict] = []
    breakages = {}

    def add(key: str, run: str, rows: list[dict], failing: set[str], **more) -> None:
        more |= {"run": run, "offset": len(lines)}  # the rows' line numbers are offset + their index + 1
        lines.extend(rows)
        breakages[key] = Breakage(failing, "", more)

    def own(run: str) -> list[dict]:
        return [{**row, "run": run} for row in base]

    rows = own(f"{ARCH}_twice")
    i = _first(rows, SOURCES[1])
    rows.append(dict(rows[i]))
    add("twice", rows[0]["run"], rows, {f"loso::fold[{rows[0]['run']}-{SOURCES[1]}]"}, first=i, last=len(rows) - 1)

    rows = own(f"{ARCH}_missing")
    dropped = rows.pop(_first(rows, SOURCES[2]))
    add("missing", dropped["run"], rows, {f"loso::fold[{dropped['run']}-{SOURCES[2]}]"}, dropped=dropped)

    for n, (change, _) in enumerate(_BAD_ROWS):
        rows = own(f"{ARCH}_row{n}")
        i = _first(rows, SOURCES[0])
        rows[i].update(change)
        add(_bad_row_key(change), rows[0]["run"], rows, {f"loso::fold[{rows[0]['run']}-{SOURCES[0]}]"}, row=i)

    run = f"{ARCH}_stems"  # no breakage: its clips named without .yuv, as a table names them (a run that passes)
    add("stems", run, trainer_rows(gate, (ARCH,), clip_name=lambda stem: stem, run_of=lambda a: run), set(),
        tests={f"loso::fold[{run}-{source}]" for source in SOURCES} | {f"loso::aggregate[{run}]"})

    run = f"{ARCH}_absent"
    rows = [r for r in own(run) if not r["src"].startswith(SOURCES[1])]
    rows.append({"run": run, "src": "Elsewhere_24fps", "dis_basename": "x", "frame_index": 0, "prediction": 1.0})
    add("absent", run, rows, {f"loso::fold[{run}-{SOURCES[1]}]", f"loso::fold[{run}-Elsewhere]"})

    predictions = gate.root / "p.jsonl"
    predictions.write_text("".join(json.dumps(r) + "\n" for r in lines))  # a NaN written as JSON's NaN
    batch = Batch(gate, {"run": gate.run(*predictions_args(gate, predictions), plain=True)}, breakages,
                  {"predictions": predictions})
    for breakage in breakages.values():
        breakage.names = predictions
    return batch


@pytest.fixture
def bad_predictions(template_gate) -> Batch:
    return SHARED.get("bad_predictions", lambda: _bad_predictions(template_gate))


def _only_its_own_failed(batch: Batch, key: str) -> None:
    """Its own tests failed, and no test no breakage of the batch reaches (each batch-mate checks its own)."""
    failed = {n for n, o in batch.run.outcomes.items() if o == "FAILED"}
    assert batch.breakages[key].failing <= failed <= batch.failing, batch.run.output


def _names_line(text: str, line: int) -> bool:
    """The batch's file is long: a line number is checked whole, not as the start of a longer one."""
    return re.search(rf"\bline {line}\b", text) is not None


def test_a_frame_predicted_twice_fails_its_fold_naming_both_lines(bad_predictions):
    breakage, run = bad_predictions.breakages["twice"], bad_predictions.run
    _only_its_own_failed(bad_predictions, "twice")
    name, offset = breakage.more["run"], breakage.more["offset"]
    first, last = offset + breakage.more["first"] + 1, offset + breakage.more["last"] + 1
    text = _fails_cleanly(run, f"loso::fold[{name}-{SOURCES[1]}]", str(breakage.names), f"line {first}",
                          f"line {last}", "predicted twice", "fix:")
    assert _names_line(text, first) and _names_line(text, last), text  # "line 1" is not "line 1087" here
    assert run.outcomes[f"loso::fold[{name}-{SOURCES[0]}]"] == "PASSED"
    assert f"the aggregate of {name} covers 2 of 3 folds" in run.output  # skipped, not judged on the others


def test_a_corpus_frame_without_a_prediction_fails_its_fold(bad_predictions):
    breakage, run = bad_predictions.breakages["missing"], bad_predictions.run
    _only_its_own_failed(bad_predictions, "missing")
    dropped = breakage.more["dropped"]
    _fails_cleanly(run, f"loso::fold[{breakage.more['run']}-{SOURCES[2]}]", str(breakage.names), "1 of",
                   "have no prediction", repr(dropped["dis_basename"]), f"frame_index {dropped['frame_index']}",
                   "never drops")


@pytest.mark.parametrize("change, words", _BAD_ROWS)
def test_a_bad_row_fails_its_fold_naming_the_line(bad_predictions, change, words):
    key = _bad_row_key(change)
    breakage, run = bad_predictions.breakages[key], bad_predictions.run
    _only_its_own_failed(bad_predictions, key)
    line = breakage.more["offset"] + breakage.more["row"] + 1
    text = _fails_cleanly(run, f"loso::fold[{breakage.more['run']}-{SOURCES[0]}]", str(breakage.names),
                          f"line {line}", "fix:", *words)
    assert _names_line(text, line), text  # "line 7" is not "line 727" here


def test_a_source_not_predicted_or_not_in_the_corpus_fails_that_fold(bad_predictions):
    breakage, run = bad_predictions.breakages["absent"], bad_predictions.run
    _only_its_own_failed(bad_predictions, "absent")
    _fails_cleanly(run, f"loso::fold[{breakage.more['run']}-{SOURCES[1]}]", "no held-out predictions for source")
    _fails_cleanly(run, f"loso::fold[{breakage.more['run']}-Elsewhere]", "not in the data root")


@pytest.mark.parametrize("column", ["run", "src", "dis_basename", "frame_index", "prediction"])
def test_a_missing_column_stops_the_gate_naming_it(template_gate, column):
    gate = template_gate  # its runs only read the template
    rows = _one_arch(gate)
    for row in rows:
        del row[column]
    predictions = write(gate.root / "p.jsonl", rows)
    run = gate.run(*predictions_args(gate, predictions), plain=True)
    assert run.result.ret != 0
    assert "the gate cannot make its tests" in run.output and str(predictions) in run.output
    assert f"no {'source' if column == 'src' else column} column" in run.output
    assert "INTERNALERROR" not in run.output and "Traceback" not in run.output


@pytest.mark.parametrize("content, words", [
    ('{"run": "a-b", "source": "S", "dis_basename": "x", "frame_index": 0, "prediction": 1}\n', ["run 'a-b'"]),
    ('{"run": "a", "seed": "one", "source": "S", "dis_basename": "x", "frame_index": 0, "prediction": 1}\n',
     ["seed 'one'"]),
    ('{"run": "a", "source": null, "dis_basename": "x", "frame_index": 0, "prediction": 1}\n', ["has no source"]),
    ("not json\n", ["line 1 is not valid JSON"]),
])
def test_a_bad_run_seed_or_source_stops_the_gate(template_gate, content, words):
    gate = template_gate  # its runs only read the template
    predictions = gate.root / "p.jsonl"
    predictions.write_text(content)
    run = gate.run(*predictions_args(gate, predictions), plain=True)
    assert run.result.ret != 0
    assert "the gate cannot make its tests" in run.output and str(predictions) in run.output
    for word in words:
        assert word in run.output
    assert "INTERNALERROR" not in run.output and "Traceback" not in run.output


def test_a_missing_file_or_another_suffix_is_a_usage_error(template_gate):
    gate = template_gate  # its runs only read the template
    run = gate.run(*predictions_args(gate, gate.root / "none.jsonl"), plain=True)
    assert run.result.ret == 4 and "--loso-predictions" in run.output and "file not found" in run.output
    other = gate.root / "p.csv"
    other.write_text("run\n")
    run = gate.run(*predictions_args(gate, other), plain=True)
    assert run.result.ret == 4 and "expected a .jsonl or .parquet file" in run.output


def test_one_run_in_two_files_or_beside_its_fold_models_stops_the_gate(template_gate):
    gate = template_gate  # its runs only read the template
    a = write(gate.root / "a.jsonl", _one_arch(gate))
    b = write(gate.root / "b.jsonl", _one_arch(gate))
    run = gate.run(*predictions_args(gate, a, b), plain=True)
    assert run.result.ret != 0 and f"run {ARCH} is also in {a}" in run.output
    run = gate.run(*predictions_args(gate, a), f"--loso-dir={gate.runs}", plain=True)
    assert run.result.ret != 0 and "has fold models in --loso-dir too" in run.output


def test_a_table_without_dis_basename_cannot_be_joined(template_gate):
    gate = template_gate  # its runs only read the template
    rows = table_rows(gate)
    for row in rows:
        row["cq"] = int(row.pop("dis_basename").split("_")[1])
    table = write(gate.root / "frames.jsonl", rows)
    predictions = write(gate.root / "p.jsonl", trainer_rows(gate, (ARCH,), clip_name=lambda stem: stem))
    run = gate.run(*predictions_args(gate, predictions, corpus=(f"--loso-table={table}",)), plain=True)
    _fails_cleanly(run, f"loso::fold[{ARCH}-{SOURCES[0]}]", "has no dis_basename column")


def test_clip_names_with_or_without_yuv_join_the_cache_corpus(bad_predictions):
    """Its run's clips are named without .yuv, its batch-mates' with: both join the cache corpus."""
    breakage, run = bad_predictions.breakages["stems"], bad_predictions.run
    _only_its_own_failed(bad_predictions, "stems")
    name, tests = breakage.more["run"], breakage.more["tests"]
    assert tests <= set(run.outcomes)
    assert {run.outcomes[test] for test in tests} == {"PASSED"}, run.output
    assert not math.isnan(run.report["archs"][name]["aggregate"]["mean_plcc"])


def test_the_documented_example_gives_the_example_folds_numbers(pytester):
    """docs/held_out.md's trainer script, run as written, on the bundled corpus."""
    import re

    from pytest_loso.settings import EXAMPLE_DIR

    doc = (Path(__file__).parent.parent / "docs" / "held_out.md").read_text()
    script = re.findall(r"```python\n(.*?)```", doc, re.S)[0]
    (pytester.path / "trainer.py").write_text(script)
    result = pytester.run(sys.executable, str(pytester.path / "trainer.py"))
    assert result.ret == 0, result.stderr.str()
    report = pytester.path / "report"
    common = ["-p", "no:cacheprovider", "-rA", f"--loso-report={report}", "--loso-extractor=none"]
    example = pytester.runpytest(*common, "--loso-example", "--loso-bootstrap=1000")  # as --loso-versus turns on
    folds = json.loads((report / "loso_eval.json").read_text())["archs"]
    run = pytester.runpytest(*common, "--loso-predictions=held_out.jsonl", f"--data-root={EXAMPLE_DIR / 'corpus'}",
                             f"--loso-cache={EXAMPLE_DIR / 'cache'}", "--loso-frame-size=64x48",
                             "--loso-versus=mlp_small=linear")
    assert run.ret == 0 and example.ret == 0, run.stdout.str()
    held_out = json.loads((report / "loso_eval.json").read_text())
    assert held_out["archs"] == folds
    assert held_out["versus"]["versus[mlp_small-linear]"]["check"]["outcome"] == "passed"
