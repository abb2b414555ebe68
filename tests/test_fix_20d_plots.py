"""Issue 20 item 10: the per-fold bar chart claims a 95% interval only when the bootstrap drew
one, and a fold that failed is shown (an empty bar marked "failed"), not left out."""

from __future__ import annotations

import pytest

from loso_helpers import SOURCES
from shared_runs import template_gate  # noqa: F401 (a fixture: runs that only read the template)


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plugin closes, by their file's name, kept open for the test to read."""
    plt = pytest.importorskip("matplotlib.pyplot")
    figures = {}
    real_savefig = plt.Figure.savefig

    def savefig(fig, path, *args, **kwargs):
        figures[str(path).rsplit("/", 1)[-1]] = fig
        return real_savefig(fig, path, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", savefig)
    monkeypatch.setattr(plt, "close", lambda fig=None: None)
    yield figures
    monkeypatch.undo()
    for fig in figures.values():
        plt.close(fig)


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_no_interval_claimed_with_the_bootstrap_off_and_a_failed_fold_is_shown(drawn, gate):
    broken = SOURCES[1]
    gate.fold_path("linear", broken).write_text("not a model\n")
    run = gate.run("--loso-plot=plots", "--loso-min-plcc=none")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED, run.output
    assert "Traceback" not in run.output and "INTERNALERROR" not in run.output, run.output
    fig = drawn["folds_linear.png"]
    top, bottom = fig.axes
    for ax in (top, bottom):
        legend = _legend(ax)
        assert not any("95%" in text or "interval" in text for text in legend), legend
        assert "fold failed (no metrics)" in legend, legend
        assert "failed" in [t.get_text() for t in ax.texts]
    labels = [t.get_text() for t in bottom.get_xticklabels()]
    assert labels == [s + (" (failed)" if s == broken else "") for s in SOURCES]
    # the scored folds are bars of their value, the failed one an empty hatched bar
    assert len([p for p in top.patches if p.get_fill()]) == len(SOURCES) - 1


def test_the_interval_is_named_when_the_bootstrap_drew_one(drawn, template_gate):
    gate = template_gate
    run = gate.run("--loso-plot=plots", "--loso-bootstrap=50")
    assert run.result.ret == 0, run.output
    top, bottom = drawn["folds_mlp_small.png"].axes
    assert "fold (95% bootstrap interval)" in _legend(top)
    assert "fold (95% bootstrap interval)" in _legend(bottom)
    assert not top.texts
