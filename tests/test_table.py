"""--loso-table: a per-frame table (JSONL or parquet) as the corpus, instead of --data-root.

The tables are exported from the YUV + cache corpus the tests build, so the same data must
give the same report numbers to the last digit.

A table run reads the template's models, not its corpus: every run here uses the template in
place (``template_gate``). The run of the cache corpus the tables are compared with is made
once, the JSONL table's run answers two tests, and bad frame indexes of different sources share
a run. A table the gate cannot read is a collection error: one run shows it as pytest prints it,
and the reader (``TableCorpus``, where every such error is raised) is asked directly for the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loso_helpers import ARCHS, BASELINE_ID, SOURCES, all_ids, install_open_recorder
from loso_helpers import table_rows as _rows
from loso_helpers import write_jsonl as _write_jsonl
from loso_helpers import _table_args
from pytest_loso.errors import LosoInputError
from pytest_loso.settings import parse_where
from pytest_loso.table import TableCorpus
from shared_runs import Batch, Breakage, SharedRuns, TemplateGate, template_gate  # noqa: F401  (a fixture)

SHARED = SharedRuns()


def _write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _numbers(report: dict) -> dict:
    return {"archs": {a: b["per_fold"] for a, b in report["archs"].items()},
            "aggregates": {a: b["aggregate"] for a, b in report["archs"].items()},
            "baselines": report["baselines"]}


@pytest.fixture
def cache_run(template_gate):
    """The template's YUV + cache corpus, scored with the bootstrap the table runs use."""
    return SHARED.get("cache_run", lambda: template_gate.run("--loso-bootstrap=30", "--loso-extractor=none"))


@pytest.fixture
def jsonl_run(template_gate) -> Batch:
    """The template's cache as a JSONL table, scored with the bootstrap and a log of the paths opened."""

    def make() -> Batch:
        gate = template_gate
        table = _write_jsonl(gate.root / "frames.jsonl", _rows(gate))
        opened = install_open_recorder(gate.pytester)
        run = gate.run(*_table_args(gate, table, "--loso-bootstrap=30"), plain=True)
        return Batch(gate, {"run": run}, {}, {"table": table, "opened": opened})

    return SHARED.get("jsonl_run", make)


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_table_with_the_cache_data_gives_the_same_numbers(request, cache_run, kind):
    assert set(cache_run.outcomes.values()) == {"PASSED"}
    if kind == "jsonl":
        batch = request.getfixturevalue("jsonl_run")
        gate, table, table_run = batch.gate, batch.facts["table"], batch.run
    else:
        gate = request.getfixturevalue("template_gate")
        # libvmaf's integer_ names, and the columns in another order: matched by name
        rows = [{("integer_" + k if k in ("adm2", "motion2") else k): v for k, v in reversed(r.items())}
                for r in _rows(gate)]
        table = _write_parquet(gate.root / f"frames.{kind}", rows)
        table_run = gate.run(*_table_args(gate, table, "--loso-bootstrap=30"), plain=True)
    assert set(table_run.outcomes) == set(all_ids())
    assert set(table_run.outcomes.values()) == {"PASSED"}
    assert _numbers(table_run.report) == _numbers(cache_run.report)
    provenance = table_run.report["run_provenance"]["table"]
    assert provenance["path"] == str(table)
    assert provenance["rows_read"] == len(_rows(gate)) and provenance["rows_filtered_out"] == 0
    import hashlib
    assert provenance["sha256"] == hashlib.sha256(table.read_bytes()).hexdigest()
    assert table_run.report["run_provenance"]["extraction"] is None  # no cache read, no pair computed


def test_clips_without_dis_basename_are_source_encoder_cq(template_gate, cache_run):
    """Without dis_basename each (source, encoder, cq) is a clip: the bootstrap resamples those."""
    gate = template_gate
    rows = _rows(gate)
    for row in rows:
        row["cq"] = int(row.pop("dis_basename").split("_")[1])  # the rung: one cq per pair of the cache corpus
    table = _write_jsonl(gate.root / "frames.jsonl", rows)
    table_run = gate.run(*_table_args(gate, table, "--loso-bootstrap=30"), plain=True)
    assert set(table_run.outcomes.values()) == {"PASSED"}
    # cq 0..3 sorts like the pairs' file names, so the clips and their order are the cache's
    assert _numbers(table_run.report) == _numbers(cache_run.report)
    assert "ci" in table_run.report["archs"][ARCHS[0]]["per_fold"][SOURCES[0]]


def test_where_filters_rows_and_target_picks_the_column(template_gate):
    gate = template_gate
    rows = _rows(gate, fps_suffix=False)
    for row in rows:
        row["corpus"] = "netflix" if row["source"] != SOURCES[-1] else "other"
        row["teacher"] = row["vmaf"]
    table = _write_jsonl(gate.root / "frames.jsonl", rows)
    run = gate.run(*_table_args(gate, table, "--loso-where=corpus=netflix", "--loso-target=teacher",
                                "--loso-arch=linear"), plain=True)
    kept = SOURCES[:-1]
    for source in kept:
        assert run.outcomes[f"loso::fold[linear-{source}]"] == "PASSED"
    dropped = f"loso::fold[linear-{SOURCES[-1]}]"
    assert run.outcomes[dropped] == "FAILED"
    assert "not in the table" in run.failure_text(dropped)
    provenance = run.report["run_provenance"]["table"]
    assert provenance["rows_filtered_out"] == sum(r["corpus"] == "other" for r in rows)
    assert provenance["target"] == "teacher"


# -- a table the gate cannot read: a collection error --------------------------------------------


def _unreadable(table: Path, **settings) -> str:
    """The message of the table's collection error (``TableCorpus`` raises all of them)."""
    with pytest.raises(LosoInputError) as info:
        TableCorpus(table, **settings)
    return str(info.value)


@pytest.mark.parametrize("column", ["src", "vmaf", "motion2"])
def test_a_column_missing_for_all_rows_is_a_collection_error(template_gate, column):
    gate = template_gate
    rows = _rows(gate)
    for row in rows:
        del row[column]
    table = _write_jsonl(gate.root / "frames.jsonl", rows)
    message = _unreadable(table)
    assert str(table) in message
    assert (column if column != "src" else "no source column") in message
    if column != "src":
        return
    # the fix says what to add, not to pick another target
    assert "its source clip's name in a source or src column" in message and "--loso-target" not in message
    # and the whole run shows it as the collection error it is (every unreadable table goes this way)
    run = gate.run(*_table_args(gate, table), plain=True)
    assert run.result.ret != 0
    assert "the gate cannot make its tests" in run.output and message in run.output
    assert "--loso-target" not in run.output
    assert run.report is not None and "Traceback" not in run.output


def test_bad_jsonl_line_and_unreadable_parquet(template_gate):
    gate = template_gate
    lines = [json.dumps(r) for r in _rows(gate)]
    lines[6] = lines[6][:-3]
    table = gate.root / "frames.jsonl"
    table.write_text("\n".join(lines) + "\n")
    assert "line 7 is not valid JSON" in _unreadable(table)
    broken = gate.root / "frames.parquet"
    broken.write_bytes(b"PAR1 not really")
    message = _unreadable(broken)
    assert "unreadable parquet" in message and str(broken) in message


def test_empty_selection_names_the_filter(template_gate):
    table = _write_jsonl(template_gate.root / "frames.jsonl", _rows(template_gate))
    message = _unreadable(table, where=parse_where(["encoder=av1_nvenc"]))  # --loso-where=encoder=av1_nvenc
    assert "no rows left" in message and "encoder in {av1_nvenc}" in message


def test_a_row_without_its_source_names_the_line(template_gate):
    rows = _rows(template_gate)
    del rows[4]["src"]
    table = _write_jsonl(template_gate.root / "frames.jsonl", rows)
    assert "line 5 has no src" in _unreadable(table)


# -- bad values: their source fails ---------------------------------------------------------------


def test_bad_values_fail_only_that_source(template_gate):
    gate = template_gate
    rows = _rows(gate)
    bad_source = SOURCES[1]
    victim = next(i for i, r in enumerate(rows) if r["src"].startswith(bad_source))
    rows[victim]["adm2"] = "n/a"
    table = _write_jsonl(gate.root / "frames.jsonl", rows)
    run = gate.run(*_table_args(gate, table), plain=True)
    for arch in ARCHS:
        for source in SOURCES:
            expected = "FAILED" if source == bad_source else "PASSED"
            assert run.outcomes[f"loso::fold[{arch}-{source}]"] == expected
    text = run.failure_text(f"loso::fold[{ARCHS[0]}-{bad_source}]")
    assert f"line {victim + 1}" in text and "non-numeric adm2" in text and str(table) in text
    assert run.outcomes[BASELINE_ID] == "FAILED"
    assert run.report is not None


# Bad values of different sources cannot interact (a source's frames are read alone): each batch
# breaks one row of each of its sources, and each test asserts its own source's failure.
_BAD_ROWS = {  # what breaks, in which batch and source
    "text": ("bad_rows_a", SOURCES[0]), "null": ("bad_rows_a", SOURCES[1]), "fraction": ("bad_rows_a", SOURCES[2]),
    "non-finite vmaf": ("bad_rows_b", SOURCES[0]), "twice": ("bad_rows_b", SOURCES[2]),
}


def _bad_rows(gate: TemplateGate, name: str) -> Batch:
    rows = _rows(gate)
    breakages = {}
    for kind, (batch, source) in _BAD_ROWS.items():
        if batch != name:
            continue
        victim = next(i for i, r in enumerate(rows) if r["src"].startswith(source))
        if kind == "twice":
            other = next(i for i, r in enumerate(rows) if i != victim and r["dis_basename"] == rows[victim]["dis_basename"])
            rows[other]["frame_index"] = rows[victim]["frame_index"]
            first, second = sorted((victim, other))
            says = f"frame_index {rows[victim]['frame_index']} twice in one clip (line {first + 1} and line {second + 1})"
        elif kind == "non-finite vmaf":
            rows[victim]["vmaf"] = float("nan")
            says = f"non-finite vmaf value nan at line {victim + 1}"
        else:
            rows[victim]["frame_index"] = {"text": "x", "null": None, "fraction": 2.5}[kind]
            says = f"frame_index value {rows[victim]['frame_index']!r} at line {victim + 1} is not a whole number"
        breakages[kind] = Breakage({f"loso::fold[{a}-{source}]" for a in ARCHS} | {BASELINE_ID}, source, {"says": says})
    table = _write_jsonl(gate.root / "frames.jsonl", rows)
    return Batch(gate, {"run": gate.run(*_table_args(gate, table), plain=True)}, breakages, {"table": table})


@pytest.fixture
def bad_rows_a(template_gate) -> Batch:
    return SHARED.get("bad_rows_a", lambda: _bad_rows(template_gate, "bad_rows_a"))


@pytest.fixture
def bad_rows_b(template_gate) -> Batch:
    return SHARED.get("bad_rows_b", lambda: _bad_rows(template_gate, "bad_rows_b"))


@pytest.mark.parametrize("kind", ["text", "null", "fraction", "twice"])
def test_a_bad_frame_index_fails_its_source_naming_the_line(request, kind):
    """frame_index orders a clip's frames: a value that is not a whole number, or one frame index
    held by two rows of a clip, would put frames in a made-up order (and change the numbers)."""
    batch = request.getfixturevalue(_BAD_ROWS[kind][0])
    breakage, run = batch.breakages[kind], batch.run
    # its source's tests failed, and no test no bad row can reach (each batch-mate checks its own)
    assert breakage.failing <= {n for n, o in run.outcomes.items() if o == "FAILED"} <= batch.failing, run.output
    bad_source = breakage.names
    text = run.failure_text(f"loso::fold[{ARCHS[0]}-{bad_source}]")
    assert f"{batch.facts['table']}: source {bad_source}: {breakage.more['says']}" in text, text


def test_non_finite_value_names_its_line(bad_rows_b):
    breakage = bad_rows_b.breakages["non-finite vmaf"]
    text = bad_rows_b.run.failure_text(f"loso::fold[{ARCHS[0]}-{breakage.names}]")
    assert breakage.more["says"] in text


# -- usage errors, the reader, reading once ---------------------------------------------------------


def test_table_and_data_root_are_exclusive(template_gate):
    gate = template_gate
    table = _write_jsonl(gate.root / "frames.jsonl", _rows(gate))
    run = gate.run(*_table_args(gate, table, f"--data-root={gate.data_root}"), plain=True)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--data-root and --loso-table" in run.output


def test_metadata_columns_reach_source_data(template_gate):
    """Codec-aware models get encoder / cq per frame, in the frames' order (clips by dis_basename)."""
    gate = template_gate
    rows = _rows(gate)
    table = _write_parquet(gate.root / "frames.parquet", rows)
    corpus = TableCorpus(table)
    assert corpus.sources == sorted(SOURCES)
    data = corpus.load(SOURCES[0])
    assert len(data.pair_frames) == len(gate.stems(SOURCES[0])) and sum(data.pair_frames) == len(data.scores)
    assert set(data.columns) == {"encoder", "cq"}
    assert set(data.columns["encoder"]) == {"libx264"} and set(data.columns["cq"].tolist()) == {30}
    x, y = gate.xy(SOURCES[0])
    assert (data.features == x).all() and (data.scores == y).all()


def test_table_is_read_once_per_process(jsonl_run):
    """Seven items (six folds and a baseline) over three sources: one read of the table."""
    run, table = jsonl_run.run, jsonl_run.facts["table"]
    assert set(run.outcomes.values()) == {"PASSED"} and len(run.outcomes) == len(all_ids())
    assert json.loads(jsonl_run.facts["opened"].read_text()).count(str(table.resolve())) == 1


def test_parquet_without_pyarrow_names_the_extra(template_gate):
    gate = template_gate
    table = _write_parquet(gate.root / "frames.parquet", _rows(gate))
    gate.pytester.makeconftest("import sys\nsys.modules['pyarrow'] = None\n")  # as if not installed
    run = gate.run(*_table_args(gate, table), plain=True)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert "pip install pyarrow" in run.output and "pytest-loso[table]" not in run.output  # not on the index
