"""The gate does each piece of work once per process.

Its speed is shown by ``benchmarks/`` (never by a timed test); what is tested here is the
count: at 1,000 folds, walking the fold tree for every question the report asked (13 walks
in one run) cost ~20 s of a 1,000-source run on a loaded machine.
"""

from __future__ import annotations

import pytest_loso.plan as plan_module
from shared_runs import template_gate  # noqa: F401  (a fixture)


def test_the_fold_tree_is_walked_once_per_run(template_gate, monkeypatch):
    gate = template_gate  # its run only reads the template
    walks = []
    walk = plan_module.find_fold_models

    def counted(loso_dirs):
        walks.append(list(loso_dirs))
        return walk(loso_dirs)

    monkeypatch.setattr(plan_module, "find_fold_models", counted)
    run = gate.run()
    assert run.result.ret == 0
    assert run.report["loso_aggregate"]  # collection, the run and the report all used the plan
    assert walks == [[gate.runs]]


def test_a_fold_tree_that_cannot_be_planned_is_reported_each_time_it_is_asked(gate):
    """Only a plan that was made is kept: the error of one that was not is raised to every caller."""
    for arch in ("mlp_small", "linear"):
        for fold in (gate.runs / f"loso_{arch}").iterdir():
            for file in fold.iterdir():
                file.unlink()
            fold.rmdir()
    run = gate.run()
    assert run.result.ret != 0
    assert "no fold models found" in run.output
