"""Issue 20 item 10 (--help): readable placeholders, each default said once, --loso-example first."""

from __future__ import annotations

import re

import pytest

from shared_runs import SharedRuns

SHARED = SharedRuns()


@pytest.fixture
def gate_help(pytester: pytest.Pytester) -> str:
    """The gate's part of ``pytest --help`` (one run, asked by both tests)."""

    def make() -> str:
        text = pytester.runpytest("--help").stdout.str()
        return text[text.index("LOSO accuracy gate (pytest-loso):"):].split("\n\n")[0]

    return SHARED.get("help", make)


def test_help_has_placeholders_not_dest_names(gate_help: str):
    text = gate_help
    assert not re.search(r"=LOSO_[A-Z_]+|=DATA_ROOT", text), text  # argparse's automatic placeholders
    assert "--loso-min-plcc=X" in text and "--loso-dir=DIR" in text and "--loso-data-root=DIR" in text


def test_help_says_each_default_once_and_starts_with_the_example(gate_help: str):
    text = gate_help
    options = re.findall(r"^  (--[a-z-]+)", text, re.M)
    assert options[0] == "--loso-example"
    assert "(default None" not in text
    seed = text[text.index("--loso-min-seed-mean-plcc"):text.index("--loso-max-seed-spread")]
    assert " ".join(seed.split()).count("default") == 1, seed
