"""Issue 20, item 14: a non-UTF-8 byte in a path (Python's lone surrogate, os.fsdecode) or a lone
surrogate in the data loses no output: the JSON report keeps the name exact, the Markdown report,
the terminal, JUnit, OpenMetrics and the verdict show it escaped (a byte as ``\\xff``), with and
without pytest-xdist."""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from loso_helpers import ARCHS, SOURCES


def _bytes_path(parent: Path, name: bytes) -> Path:
    """``parent/name`` where ``name`` holds bytes that are not UTF-8 (made with a bytes path, as a user's tool would)."""
    path = os.fsencode(parent) + b"/" + name
    os.mkdir(path)
    return Path(os.fsdecode(path))


def _outputs(gate, run_args: list[str], *, workers: bool) -> tuple:
    """Run the gate with JUnit, OpenMetrics and the verdict in the report folder; what was written."""
    junit = gate.root / "junit.xml"
    metrics, verdict = gate.report_dir / "metrics.txt", gate.report_dir / "verdict.json"
    extra = [f"--junitxml={junit}", f"--loso-metrics={metrics}", f"--loso-verdict={verdict}"]
    extra += ["-n", "2"] if workers else []
    run = gate.run(*run_args, *extra, plain=True)
    assert "Traceback" not in run.output and "INTERNALERROR" not in run.output, run.output
    assert run.result.ret == 0, run.output
    assert run.report is not None and run.markdown is not None, run.output
    assert junit.exists() and metrics.exists() and verdict.exists(), run.output
    for text in (run.markdown, junit.read_text(encoding="utf-8"), metrics.read_text(encoding="utf-8"),
                 verdict.read_text(encoding="utf-8")):  # every output is valid UTF-8 (read_text is strict)
        assert text
    return run, ET.parse(junit).getroot(), json.loads(verdict.read_text())


@pytest.mark.parametrize("workers", [False], ids=["one process"])
def test_paths_with_a_non_utf8_byte_lose_no_output(gate, workers):
    corpus = os.fsencode(gate.root) + b"/corpus \xff"
    os.rename(os.fsencode(gate.data_root), corpus)
    gate.data_root = Path(os.fsdecode(corpus))
    runs = _bytes_path(gate.root, b"runs \xfe")
    for arch in ARCHS:
        shutil.move(gate.runs / f"loso_{arch}", runs)
    gate.runs = runs
    gate.report_dir = _bytes_path(gate.root, b"report \xfd")
    run, junit, verdict = _outputs(gate, gate.args(), workers=workers)
    assert run.report["corpus"] == str(gate.data_root)  # JSON keeps the name exactly ("\udcff")
    assert "corpus \\xff" in run.markdown and "runs \\xfe" in run.markdown
    assert "corpus \\xff" in run.output and "report \\xfd" in run.output
    models = [p.get("value") for p in junit.iter("property") if p.get("name") == "loso_model"]
    assert models and all("runs \\xfe" in m for m in models if "base" not in m), models
    assert verdict["verdict"] == "PROMOTE" and verdict["loso_dir"] == str(gate.runs)


@pytest.mark.parametrize("workers", [False, True], ids=["one process", "-n 2"])
def test_a_lone_surrogate_in_a_table_source_loses_no_output(gate, workers):
    from loso_helpers import _table_args, table_rows as _rows, write_jsonl as _write_jsonl

    odd = SOURCES[0] + "\udcff"  # a "\udcff" escape in the JSONL, and the fold folders named with b"\xff"
    rows = _rows(gate)
    for row in rows:
        if row["src"].startswith(SOURCES[0]):
            row["src"] = odd + "_24fps"
    table = _write_jsonl(gate.root / "frames.jsonl", rows)
    assert "\\udcff" in table.read_text()
    for arch in ARCHS:
        fold = gate.runs / f"loso_{arch}" / f"fold_{SOURCES[0]}"
        os.rename(os.fsencode(fold), os.fsencode(fold) + b"\xff")
    run, junit, verdict = _outputs(gate, _table_args(gate, table), workers=workers)
    assert odd in run.report["archs"]["mlp_small"]["per_fold"]  # exact in JSON
    assert f"{SOURCES[0]}\\xff" in run.markdown and f"{SOURCES[0]}\\xff" in run.output
    names = {case.get("name") for case in junit.iter("testcase")}
    assert f"fold[mlp_small-{SOURCES[0]}\\xff]" in names, names
    assert verdict["verdict"] == "PROMOTE"
