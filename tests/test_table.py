"""--loso-table: a per-frame table (JSONL or parquet) as the corpus, instead of --data-root.

The tables are exported from the YUV + cache corpus the tests build, so the same data must
give the same report numbers to the last digit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loso_helpers import ARCHS, BASELINE_ID, SOURCES, all_ids
from loso_helpers import table_rows as _rows
from loso_helpers import write_jsonl as _write_jsonl
from loso_helpers import _table_args


def _write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _numbers(report: dict) -> dict:
    return {"archs": {a: b["per_fold"] for a, b in report["archs"].items()},
            "aggregates": {a: b["aggregate"] for a, b in report["archs"].items()},
            "baselines": report["baselines"]}


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_table_with_the_cache_data_gives_the_same_numbers(gate, kind):
    cache_run = gate.run("--loso-bootstrap=30", "--loso-extractor=none")
    assert set(cache_run.outcomes.values()) == {"PASSED"}
    writer = _write_jsonl if kind == "jsonl" else _write_parquet
    rows = _rows(gate)
    if kind == "parquet":  # libvmaf's integer_ names, and the columns in another order: matched by name
        rows = [{("integer_" + k if k in ("adm2", "motion2") else k): v for k, v in reversed(r.items())} for r in rows]
    table = writer(gate.root / f"frames.{kind}", rows)
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


def test_clips_without_dis_basename_are_source_encoder_cq(gate):
    """Without dis_basename each (source, encoder, cq) is a clip: the bootstrap resamples those."""
    rows = _rows(gate)
    for row in rows:
        row["cq"] = int(row.pop("dis_basename").split("_")[1])  # the rung: one cq per pair of the cache corpus
    table = _write_jsonl(gate.root / "frames.jsonl", rows)
    cache_run = gate.run("--loso-bootstrap=30", "--loso-extractor=none")
    table_run = gate.run(*_table_args(gate, table, "--loso-bootstrap=30"), plain=True)
    assert set(table_run.outcomes.values()) == {"PASSED"}
    # cq 0..3 sorts like the pairs' file names, so the clips and their order are the cache's
    assert _numbers(table_run.report) == _numbers(cache_run.report)
    assert "ci" in table_run.report["archs"][ARCHS[0]]["per_fold"][SOURCES[0]]


def test_where_filters_rows_and_target_picks_the_column(gate):
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


@pytest.mark.parametrize("column", ["src", "vmaf", "motion2"])
def test_a_column_missing_for_all_rows_is_a_collection_error(gate, column):
    rows = _rows(gate)
    for row in rows:
        del row[column]
    table = _write_jsonl(gate.root / "frames.jsonl", rows)
    run = gate.run(*_table_args(gate, table), plain=True)
    assert run.result.ret != 0
    assert "the gate cannot make its tests" in run.output and str(table) in run.output
    assert (column if column != "src" else "no source column") in run.output
    if column == "src":  # the fix says what to add, not to pick another target
        assert "its source clip's name in a source or src column" in run.output and "--loso-target" not in run.output
    assert run.report is not None


def test_bad_values_fail_only_that_source(gate):
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


@pytest.mark.parametrize("kind", ["text", "null", "fraction", "twice"])
def test_a_bad_frame_index_fails_its_source_naming_the_line(gate, kind):
    """frame_index orders a clip's frames: a value that is not a whole number, or one frame index
    held by two rows of a clip, would put frames in a made-up order (and change the numbers)."""
    rows = _rows(gate)
    bad_source = SOURCES[2]
    victim = next(i for i, r in enumerate(rows) if r["src"].startswith(bad_source))
    if kind == "twice":
        other = next(i for i, r in enumerate(rows) if i != victim and r["dis_basename"] == rows[victim]["dis_basename"])
        rows[other]["frame_index"] = rows[victim]["frame_index"]
        first, second = sorted((victim, other))
        says = f"frame_index {rows[victim]['frame_index']} twice in one clip (line {first + 1} and line {second + 1})"
    else:
        rows[victim]["frame_index"] = {"text": "x", "null": None, "fraction": 2.5}[kind]
        says = f"frame_index value {rows[victim]['frame_index']!r} at line {victim + 1} is not a whole number"
    table = _write_jsonl(gate.root / "frames.jsonl", rows)
    run = gate.run(*_table_args(gate, table), plain=True)
    assert {n for n, o in run.outcomes.items() if o == "FAILED"} == \
        {f"loso::fold[{a}-{bad_source}]" for a in ARCHS} | {BASELINE_ID}, run.output
    text = run.failure_text(f"loso::fold[{ARCHS[0]}-{bad_source}]")
    assert f"{table}: source {bad_source}: {says}" in text, text


def test_non_finite_value_names_its_line(gate):
    rows = _rows(gate)
    victim = next(i for i, r in enumerate(rows) if r["src"].startswith(SOURCES[0]))
    rows[victim]["vmaf"] = float("nan")
    table = _write_jsonl(gate.root / "frames.jsonl", rows)
    run = gate.run(*_table_args(gate, table, f"--loso-arch={ARCHS[0]}"), plain=True)
    text = run.failure_text(f"loso::fold[{ARCHS[0]}-{SOURCES[0]}]")
    assert f"non-finite vmaf value nan at line {victim + 1}" in text


def test_bad_jsonl_line_and_unreadable_parquet(gate):
    rows = _rows(gate)
    lines = [json.dumps(r) for r in rows]
    lines[6] = lines[6][:-3]
    table = gate.root / "frames.jsonl"
    table.write_text("\n".join(lines) + "\n")
    run = gate.run(*_table_args(gate, table), plain=True)
    assert "line 7 is not valid JSON" in run.output and run.result.ret != 0
    broken = gate.root / "frames.parquet"
    broken.write_bytes(b"PAR1 not really")
    run = gate.run(*_table_args(gate, broken), plain=True)
    assert "unreadable parquet" in run.output and str(broken) in run.output and run.result.ret != 0
    assert run.report is not None and "Traceback" not in run.output


def test_empty_selection_names_the_filter(gate):
    table = _write_jsonl(gate.root / "frames.jsonl", _rows(gate))
    run = gate.run(*_table_args(gate, table, "--loso-where=encoder=av1_nvenc"), plain=True)
    assert "no rows left" in run.output and "encoder in {av1_nvenc}" in run.output


def test_table_and_data_root_are_exclusive(gate):
    table = _write_jsonl(gate.root / "frames.jsonl", _rows(gate))
    run = gate.run(*_table_args(gate, table, f"--data-root={gate.data_root}"), plain=True)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--data-root and --loso-table" in run.output


def test_metadata_columns_reach_source_data(gate):
    """Codec-aware models get encoder / cq per frame, in the frames' order (clips by dis_basename)."""
    from pytest_loso.table import TableCorpus

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


def test_table_is_read_once_per_process(gate):
    """Seven items (six folds and a baseline) over three sources: one read of the table."""
    from loso_helpers import install_open_recorder

    table = _write_jsonl(gate.root / "frames.jsonl", _rows(gate))
    opened = install_open_recorder(gate.pytester)
    run = gate.run(*_table_args(gate, table), plain=True)
    assert set(run.outcomes.values()) == {"PASSED"} and len(run.outcomes) == len(all_ids())
    assert json.loads(opened.read_text()).count(str(table.resolve())) == 1


def test_parquet_without_pyarrow_names_the_extra(gate):
    table = _write_parquet(gate.root / "frames.parquet", _rows(gate))
    gate.pytester.makeconftest("import sys\nsys.modules['pyarrow'] = None\n")  # as if not installed
    run = gate.run(*_table_args(gate, table), plain=True)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert "pip install pyarrow" in run.output and "pytest-loso[table]" not in run.output  # not on the index


def test_a_row_without_its_source_names_the_line(gate):
    rows = _rows(gate)
    del rows[4]["src"]
    table = _write_jsonl(gate.root / "frames.jsonl", rows)
    run = gate.run(*_table_args(gate, table), plain=True)
    assert "line 5 has no src" in run.output and run.result.ret != 0 and run.report is not None
