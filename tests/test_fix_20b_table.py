"""Issue 20, item 13: hostile JSONL tables fail naming the line, with a report and JUnit; never an
INTERNALERROR, and a line longer than the cap is refused before it is held."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loso_helpers import _table_args
from loso_helpers import table_rows as _rows
from loso_helpers import write_jsonl as _write_jsonl

from loso_helpers import ARCHS, BASELINE_ID, SOURCES
from pytest_loso import table as table_module
from pytest_loso.errors import LosoInputError
from pytest_loso.table import TableCorpus

BIG = "9" * 400


def _victim(rows: list[dict], source: str) -> int:
    return next(i for i, r in enumerate(rows) if r["src"].startswith(source))


def _write_raw(path: Path, rows: list[dict], victim: int, key: str, raw: str) -> Path:
    """The rows as JSONL, the victim's ``key`` written as ``raw`` JSON text (json.dumps cannot write it)."""
    lines = []
    for i, row in enumerate(rows):
        if i == victim:
            row = dict(row, **{key: "@@"})
            lines.append(json.dumps(row).replace('"@@"', raw))
        else:
            lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n")
    return path


def _junit_ok(gate, junit: Path) -> None:
    assert junit.exists() and "<testsuite" in junit.read_text()


@pytest.mark.parametrize("key", ["vmaf", "frame_index"])
def test_a_400_digit_number_fails_its_source_naming_the_line(gate, key):
    rows = _rows(gate)
    victim = _victim(rows, SOURCES[1])
    table = _write_raw(gate.root / "frames.jsonl", rows, victim, key, BIG)
    junit = gate.root / "junit.xml"
    run = gate.run(*_table_args(gate, table, f"--junitxml={junit}"), plain=True)
    assert "INTERNALERROR" not in run.output and "Traceback" not in run.output, run.output
    failed = {n for n, o in run.outcomes.items() if o == "FAILED"}
    assert failed == {f"loso::fold[{a}-{SOURCES[1]}]" for a in ARCHS} | {BASELINE_ID}, run.output
    text = run.failure_text(f"loso::fold[{ARCHS[0]}-{SOURCES[1]}]")
    assert f"a 400-digit number at line {victim + 1}" in text, text
    assert run.report is not None
    _junit_ok(gate, junit)


@pytest.mark.parametrize("raw, says", [
    ("9" * 5000, "Exceeds the limit"),
    ("[" * 100_000 + "]" * 100_000, "nested too deep"),
])
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_unreadable_numbers_and_deep_nesting_name_the_line(gate, raw, says, workers):
    rows = _rows(gate)
    victim = _victim(rows, SOURCES[0])
    table = _write_raw(gate.root / "frames.jsonl", rows, victim, "extra", raw)
    junit = gate.root / "junit.xml"
    run = gate.run(*_table_args(gate, table, f"--junitxml={junit}", *workers), plain=True)
    assert "INTERNALERROR" not in run.output, run.output
    assert f"line {victim + 1} is not valid JSON" in run.output and says in run.output
    assert run.result.ret != 0 and run.report is not None
    _junit_ok(gate, junit)


def test_an_encoder_that_is_an_array_breaks_only_codec_aware_models(gate):
    rows = _rows(gate)
    victim = _victim(rows, SOURCES[2])
    rows[victim]["encoder"] = ["libx264", "x"]
    table = _write_jsonl(gate.root / "frames.jsonl", rows)
    run = gate.run(*_table_args(gate, table), plain=True)
    assert not [n for n, o in run.outcomes.items() if o == "FAILED"], run.output  # no model here reads it


def test_an_encoder_array_fails_a_codec_aware_model_naming_it(tmp_path):
    import numpy as np
    from sidecar_helpers import VOCAB, _codec_sidecar, _frames, _save, _source

    from pytest_loso.models import load_model

    model = _save(tmp_path / "m.onnx", codec_width=len(VOCAB) + 2)
    _codec_sidecar(model)
    x = _frames(4)
    encoders = table_module._metadata(["libx264", ["libx264", "x"], "libx265", "libx265"])
    data = _source(x, encoder=encoders, cq=np.array([20.0, 21.0, 22.0, 23.0]))
    with pytest.raises(LosoInputError, match=r"encoder value \['libx264', 'x'\] \(frame 1 of the source\) is not"):
        load_model(model).predict_data(data)


def test_a_400_digit_cq_fails_a_codec_aware_model_naming_it(tmp_path):
    from sidecar_helpers import VOCAB, _codec_sidecar, _frames, _save, _source

    from pytest_loso.models import load_model

    model = _save(tmp_path / "m.onnx", codec_width=len(VOCAB) + 2)
    _codec_sidecar(model)
    x = _frames(3)
    data = _source(x, encoder=table_module._metadata(["libx264"] * 3), cq=table_module._metadata([20, int(BIG), 22]))
    with pytest.raises(LosoInputError, match="cq value a 400-digit number"):
        load_model(model).predict_data(data)


def test_a_line_longer_than_the_cap_is_refused_before_it_is_held(tmp_path, monkeypatch):
    monkeypatch.setattr(table_module, "MAX_LINE_BYTES", 1 << 16)
    path = tmp_path / "t.jsonl"
    with open(path, "wb") as handle:
        handle.write(b'{"src": "A", "vmaf": 1}\n')
        handle.write(b'{"src": "' + b"x" * (1 << 20))  # a megabyte and no newline
    sizes = []
    real = table_module._hashed

    def watch(lines, digest):
        for line in real(lines, digest):
            sizes.append(len(line))
            yield line

    monkeypatch.setattr(table_module, "_hashed", watch)
    with pytest.raises(LosoInputError, match=r"line 2 is longer than 65536 bytes"):
        TableCorpus(path)
    assert max(sizes) < 1 << 17
