"""Paying for fewer gate runs and template copies: runs several tests share, and the template
used in place for runs that only read it.

A run of the whole plugin costs ~60 ms, about half of it pytest's own; a copy of the template a
few more (up to ~20 where ``/tmp`` is a disk and cold). So:

- :class:`SharedRuns`: several tests assert on one run, each on its own part of it (a batch of
  breakages that cannot interact, each in a fold of its own; or one run asked different
  questions). ``pytester`` is function-scoped, so the first test that asks makes the run inside
  its own ``pytester`` (whose folder stays on disk for the others to read) and the others reuse
  it; each process (an xdist worker too) makes it once. A module keeps its own.
- :class:`TemplateGate`: a :class:`~loso_helpers.GateEnv` over the session's template itself,
  not a copy, for runs that only read it (usage errors, per-frame tables, comparisons): the
  report and any file the test makes are in the test's own folder, and every run checks that it
  left the template as it found it. A test that writes a model, the corpus or the cache, or names
  one as an output, copies the template (``gate``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from compare_helpers import accept, accepted_file
from loso_helpers import Built, GateEnv, Run

T = TypeVar("T")


class SharedRuns:
    """What a module's tests share, made once per process by the first test that asks for it."""

    def __init__(self) -> None:
        self._made: dict[Hashable, Any] = {}

    def get(self, name: Hashable, make: Callable[[], T]) -> T:
        if name not in self._made:  # a make that fails stores nothing: the next test tries again
            self._made[name] = make()
        return self._made[name]


# An accepted report to compare with in noise mode, and few resamples (the default is 1000).
ACCEPT_NOISE = ("--loso-compare-mode=noise", "--loso-bootstrap=100")


def accepted_once(gate: GateEnv, *extra: str) -> tuple[bytes, bytes]:
    """The accepted report of the untouched template (``accept(gate, *extra)``) and its predictions
    file, as bytes: ``accept`` makes its run once for each tree, options and environment."""
    accept(gate, *extra)
    report = accepted_file(gate)
    return report.read_bytes(), report.with_name("accepted.predictions.npz").read_bytes()


@dataclass
class Breakage:
    """One bad input of a batch: the tests it fails, the file their messages name, and what else
    its test checks (the victim file, its bytes before the runs...)."""

    failing: set[str]
    names: Path | str
    more: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """Independent breakages in one tree, and the run (or runs, by name, in order) made on it."""

    gate: GateEnv
    runs: dict[str, Run]
    breakages: dict[str, Breakage]
    facts: dict[str, Any] = field(default_factory=dict)  # what the tree was before the runs, what they were told

    @property
    def run(self) -> Run:
        (run,) = self.runs.values()
        return run

    @property
    def failing(self) -> set[str]:
        """Every test some breakage of the batch fails."""
        return set().union(*(b.failing for b in self.breakages.values()))


def _tree_state(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under ``root`` (links not followed) with its size, mtime and mode."""
    state = {}
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            path = os.path.join(folder, name)
            stat = os.lstat(path)
            state[os.path.relpath(path, root)] = (stat.st_size, stat.st_mtime_ns, stat.st_mode)
    return state


class TemplateGate(GateEnv):
    """The gate run on the session's template in place: its models, corpus and cache are read
    where they are; the report goes to ``pytester.path`` (``root``, where the test makes its own
    files). For runs that write nothing but their report."""

    def __init__(self, pytester: pytest.Pytester, built: Built) -> None:
        super().__init__(pytester, built, in_place=True)

    def run(self, *extra: str, **kwargs: Any) -> Run:
        before = _tree_state(self.built.root)
        run = super().run(*extra, **kwargs)
        assert _tree_state(self.built.root) == before, f"the run changed the session's template {self.built.root}"
        return run


@pytest.fixture
def template_gate(pytester: pytest.Pytester, built: Built) -> TemplateGate:
    """A :class:`TemplateGate`: for tests whose runs only read the template (import it into the module)."""
    return TemplateGate(pytester, built)
