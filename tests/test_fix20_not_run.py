"""Issue 20 item 6: the gate's options given, but the gate did not run: the terminal says why."""

from __future__ import annotations

import pytest

from loso_helpers import GateEnv
from shared_runs import template_gate  # noqa: F401  (a fixture: the gate does not run, the template is not copied)


def test_path_arguments_that_exclude_the_gate_are_said(template_gate: GateEnv):
    gate = template_gate
    gate.pytester.makepyfile(test_other="def test_x():\n    pass\n")
    result = gate.pytester.runpytest(*gate.args("test_other.py"))
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*loso: the gate did not run: the path arguments select none of its tests*"])


def test_gate_options_without_loso_dir_are_said(template_gate: GateEnv):
    gate = template_gate
    result = gate.pytester.runpytest("-p", "no:cacheprovider", "-m", "loso", f"--data-root={gate.data_root}")
    assert result.ret == 5
    result.stdout.fnmatch_lines(["*loso: the gate did not run: --data-root, -m loso given, but no --loso-dir*"])


def test_a_session_without_gate_options_says_nothing_of_the_gate(pytester: pytest.Pytester):
    pytester.makepyfile(test_other="def test_x():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "test_other.py")
    assert result.ret == 0 and "the gate did not run" not in result.stdout.str()
