"""Issue 20, items 12 and 15: an output path that is an input of the run is a usage error at start;
outputs that cannot be written are said, never a traceback that loses JUnit.

The runs read the template in place (``template_gate``), but for the one that names the baseline
as an output (a copy, ``gate``); the accepted report they read is accepted once (with test_fix_20b_accepted).
"""

from __future__ import annotations

import pytest
from compare_helpers import accepted_file

from shared_runs import ACCEPT_NOISE, accepted_once, template_gate  # noqa: F401  (template_gate: a fixture)


@pytest.mark.parametrize("option, target", [
    ("--loso-report", "accepted folder"),
    ("--loso-metrics", "accepted"),
    ("--loso-verdict", "accepted"),
    ("--loso-metrics", "predictions"),
    ("--loso-verdict", "baseline"),
    ("--loso-plot", "accepted"),
])
def test_an_output_that_is_an_input_is_a_usage_error(request, template_gate, option, target):
    report, predictions = accepted_once(template_gate, *ACCEPT_NOISE)  # any accepted report will do
    # the baseline as an output: on a copy, lest a regression write over the template's
    gate = request.getfixturevalue("gate") if target == "baseline" else template_gate
    renamed = accepted_file(gate).with_name("loso_eval.json")
    renamed.write_bytes(report)
    renamed.with_name("loso_eval.predictions.npz").write_bytes(predictions)
    before = renamed.read_bytes()
    path = {"accepted folder": renamed.parent, "accepted": renamed,
            "predictions": renamed.with_name("loso_eval.predictions.npz"), "baseline": gate.baseline}[target]
    args = [a for a in gate.args() if not (option == "--loso-report" and a.startswith("--loso-report="))]
    run = gate.run(*args, f"--loso-compare={renamed}", f"{option}={path}", plain=True)
    assert run.result.ret == 4, run.output  # usage error, before anything is scored
    assert "this run reads; give another path" in run.output and option in run.output
    assert renamed.read_bytes() == before


def _unreadable(monkeypatch, cache) -> None:
    from pathlib import Path

    real = Path.exists

    def exists(self, *args, **kwargs):
        if str(self).startswith(str(cache)):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "exists", exists)


def test_an_unreadable_default_cache_does_not_stop_a_table_run(template_gate, monkeypatch):
    """Issue 20 item 20: the default cache folder is not looked at by a run that reads a table."""
    gate = template_gate
    from loso_helpers import _table_args, table_rows as _rows, write_jsonl as _write_jsonl

    table = _write_jsonl(gate.root / "frames.jsonl", _rows(gate))
    cache = gate.root / "locked" / "cache"
    monkeypatch.setenv("VMAF_TINY_AI_CACHE", str(cache))
    _unreadable(monkeypatch, cache)
    run = gate.run(*_table_args(gate, table), plain=True)
    assert "INTERNALERROR" not in run.output and run.result.ret == 0, run.output


def test_an_unreadable_cache_is_a_usage_error_for_a_cache_run(template_gate, monkeypatch):
    gate = template_gate
    cache = gate.root / "locked" / "cache"
    _unreadable(monkeypatch, cache)
    args = [a for a in gate.args() if not a.startswith("--loso-cache=")]
    run = gate.run(*args, f"--loso-cache={cache}", plain=True)
    assert "INTERNALERROR" not in run.output and run.result.ret == 4, run.output
    assert f"--loso-cache {cache}: cannot be read (Permission denied)" in run.output


def test_a_step_summary_that_is_a_fifo_is_not_written_and_does_not_hang(template_gate, monkeypatch):
    """Issue 20 item 15: opening a FIFO for writing waits for a reader forever (old code: the run hung)."""
    gate = template_gate
    import os

    fifo = gate.root / "summary.fifo"
    os.mkfifo(fifo)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(fifo))
    junit = gate.root / "junit.xml"
    run = gate.run(f"--junitxml={junit}", subprocess=True)
    assert run.result.ret == 0, run.output
    assert f"step summary NOT written: $GITHUB_STEP_SUMMARY={fifo}: not a regular file (a FIFO)" in run.output
    assert run.report is not None and junit.exists()
