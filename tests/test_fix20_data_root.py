"""Issue 20 item 3: --loso-data-root / loso_data_root always work; the unprefixed --data-root /
data_root yield to a project whose conftest defines its own (installing the plugin never breaks it)."""

from __future__ import annotations

import pytest

from loso_helpers import GateEnv
from shared_runs import template_gate  # noqa: F401  (a fixture: these runs only read the template)

_PROJECT_CONFTEST = '''
def pytest_addoption(parser):
    parser.addoption("--data-root", default="unset", help="the project's own data folder")
    parser.addini("data_root", "the project's own data folder", default="ini-unset")

def pytest_report_header(config):
    return f"project data root: {config.getoption('data_root')} / {config.getini('data_root')}"
'''


def test_a_project_that_defines_data_root_keeps_it(pytester: pytest.Pytester):
    pytester.makeconftest(_PROJECT_CONFTEST)
    pytester.makepyfile(test_project="def test_ok(request):\n    assert request.config.getoption('data_root') == 'mine'\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--data-root=mine", "test_project.py")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["project data root: mine / ini-unset"])


def test_the_gate_runs_with_loso_data_root_beside_a_project_data_root(template_gate: GateEnv):
    gate = template_gate
    gate.pytester.makeconftest(_PROJECT_CONFTEST)
    args = [a.replace("--data-root=", "--loso-data-root=") for a in gate.args()]
    run = gate.run(*args, "--data-root=mine", plain=True)
    assert run.result.ret == 0, run.output
    assert run.report is not None and run.outcomes["loso::aggregate[mlp_small]"] == "PASSED"
    assert "project data root: mine" in run.output


def test_the_project_data_root_is_not_taken_for_the_gate(template_gate: GateEnv):
    gate = template_gate
    gate.pytester.makeconftest(_PROJECT_CONFTEST)
    result = gate.pytester.runpytest("-p", "no:cacheprovider", f"--loso-dir={gate.runs}", f"--data-root={gate.data_root}")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--data-root*belong to this project*--loso-data-root*"])


def test_data_root_still_works_where_the_project_does_not_define_it(template_gate: GateEnv):
    run = template_gate.run()  # gate.args() passes --data-root
    assert run.result.ret == 0, run.output


def test_the_ini_keys_data_root_and_loso_data_root(template_gate: GateEnv):
    gate = template_gate
    for key in ("data_root", "loso_data_root"):
        gate.pytester.makeini(f"[pytest]\nloso_dir = {gate.runs}\n{key} = {gate.data_root}\n"
                              f"loso_cache = {gate.cache_dir}\nloso_report = {gate.report_dir}\n")
        run = gate.run("-p", "no:cacheprovider", plain=True)
        assert run.result.ret == 0, (key, run.output)
