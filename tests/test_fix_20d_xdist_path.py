"""Issue 20 item 14, its last case: a gate path holding a byte that is not UTF-8, given on the
command line with ``-n N``: pytest-xdist cannot send it to its workers, so it is a usage error at
start naming the option and the fix, never an INTERNALERROR."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from shared_runs import template_gate  # noqa: F401 (a fixture: runs that only read the template)

pytest.importorskip("xdist")


def _rename(path: Path, suffix: bytes) -> Path:
    renamed = os.fsencode(path) + suffix
    os.rename(os.fsencode(path), renamed)
    return Path(os.fsdecode(renamed))


@pytest.mark.parametrize("spelling", ["--data-root=", "--data-root"], ids=["option=value", "option value"])
def test_a_non_utf8_data_root_with_workers_is_a_usage_error_naming_the_option(gate, spelling):
    gate.data_root = _rename(gate.data_root, b" \xff")
    args = [a for a in gate.args() if not a.startswith("--data-root=")]
    args += [f"--data-root={gate.data_root}"] if spelling.endswith("=") else ["--data-root", str(gate.data_root)]
    run = gate.run(*args, "-n", "2", plain=True)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR, run.output
    assert "INTERNALERROR" not in run.output and "Traceback" not in run.output, run.output
    assert "--data-root" in run.output and "corpus \\xff" in run.output, run.output
    assert "pytest-xdist cannot pass to its workers (-n 2)" in run.output, run.output
    assert "rename the folder (or file) to a UTF-8 name, or run without -n" in run.output, run.output


def test_a_non_utf8_report_folder_with_workers_is_a_usage_error(template_gate):
    gate = template_gate
    report_dir = gate.root / "report \udcfd"
    os.mkdir(os.fsencode(report_dir))
    args = [a for a in gate.args() if not a.startswith("--loso-report=")] + [f"--loso-report={report_dir}"]
    run = gate.run(*args, "-n", "2", plain=True)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR, run.output
    assert "--loso-report" in run.output and "report \\xfd" in run.output, run.output


def test_the_same_paths_without_workers_still_run(gate):
    gate.data_root = _rename(gate.data_root, b" \xff")
    run = gate.run("-n", "0")
    assert run.result.ret == 0, run.output
