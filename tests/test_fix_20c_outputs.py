"""Issue 20, item 15: end-of-run outputs are checked at start (a usage error naming the option) or,
when only the end can tell (a full disk), said with a "NOT written" note; never a traceback that
loses JUnit, never a stray predictions file beside an accepted report that was not written."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

import pytest_loso.files
from shared_runs import template_gate  # noqa: F401 (a fixture: runs that only read the template)


def _full_disk(monkeypatch, name: str) -> None:
    """Writing a file called ``name`` fails as on a full disk (the temporary is made, then the write fails)."""
    real = pytest_loso.files._write_temporary

    def write(path: Path, text):
        if path.name == name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, text)

    monkeypatch.setattr(pytest_loso.files, "_write_temporary", write)


@pytest.mark.parametrize("where", ["a file", "unwritable folder"])
def test_plots_onto_a_file_or_an_unwritable_folder_is_a_usage_error(template_gate, where):
    gate = template_gate
    target = gate.root / "plots.png" if where == "a file" else Path("/proc/loso-plots")
    if where == "a file":
        target.write_text("not a folder")
    run = gate.run(f"--loso-plot={target}")
    assert run.result.ret == 4 and "Traceback" not in run.output, run.output
    assert f"--loso-plot {target}" in run.output
    if where == "a file":
        assert target.read_text() == "not a folder"


@pytest.mark.parametrize("where", ["a folder", "unwritable folder"])
def test_accepting_onto_a_folder_or_an_unwritable_folder_is_a_usage_error(template_gate, where):
    gate = template_gate
    target = gate.root / "accepted" if where == "a folder" else Path("/proc/loso-accepted/accepted.json")
    if where == "a folder":
        target.mkdir()
    run = gate.run(f"--loso-compare={target}", "--loso-accept")
    assert run.result.ret == 4 and "Traceback" not in run.output, run.output
    assert f"--loso-accept: --loso-compare {target if where == 'a folder' else target.parent}" in run.output
    assert run.report is None  # before anything is scored


def test_accepting_on_a_full_disk_is_said_and_leaves_no_stray_predictions(template_gate, monkeypatch):
    gate = template_gate
    accepted = gate.root / "accepted.json"
    _full_disk(monkeypatch, accepted.name)
    junit = gate.root / "junit.xml"
    run = gate.run(f"--loso-compare={accepted}", "--loso-accept", f"--junitxml={junit}")
    assert "Traceback" not in run.output and "INTERNALERROR" not in run.output, run.output
    assert run.result.ret == 1, run.output  # asked to accept, and could not: the run fails
    assert (f"NOT accepted: {accepted} could not be written (No space left on device), it is unchanged"
            in run.output)
    assert junit.exists() and run.report is not None
    assert sorted(p.name for p in gate.root.iterdir() if p.name.startswith((".accepted", "accepted"))) == []
    # a failed test of its own, as a lost report is: pytest's counts and JUnit agree with the exit status
    assert run.outcomes["loso::accept"] == "FAILED", run.outcomes
    xml = junit.read_text()
    assert 'failures="1"' in xml and 'name="accept"' in xml and "could not be written" in xml
    # and the run's own report says so: not accepted, with the same failure
    said = f"NOT accepted: {accepted} could not be written (No space left on device), it is unchanged; the run fails"
    assert run.report["acceptance"] == {"path": str(accepted), "accepted": False, "refused": said}
    assert {"test": "accept", "message": said} in run.report["failures"]


def test_a_verdict_on_a_full_disk_is_said_and_junit_is_written(template_gate, monkeypatch):
    gate = template_gate
    verdict = gate.report_dir / "verdict.json"
    _full_disk(monkeypatch, verdict.name)
    junit = gate.root / "junit.xml"
    run = gate.run(f"--loso-verdict={verdict}", f"--junitxml={junit}")
    assert "Traceback" not in run.output and "INTERNALERROR" not in run.output, run.output
    assert f"verdict NOT written: {verdict}: No space left on device" in run.output
    assert junit.exists() and run.report is not None and not verdict.exists()


def test_a_verdict_onto_a_fifo_is_a_usage_error_and_the_fifo_is_kept(template_gate):
    gate = template_gate
    """Not a real device such as /dev/full: the old code replaced it with the verdict's JSON."""
    fifo = gate.root / "verdict.fifo"
    os.mkfifo(fifo)
    run = gate.run(f"--loso-verdict={fifo}")
    assert run.result.ret == 4, run.output
    assert f"--loso-verdict {fifo}: is a FIFO, not a regular file" in run.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
