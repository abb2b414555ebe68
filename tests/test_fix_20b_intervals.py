"""Issue 20, item 21: every interval holds the estimate printed beside it, and a source with too
few clips for a trustworthy interval is said once, not as a long method name on every row."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from loso_helpers import PAIRS_PER_SOURCE, SOURCES
from pytest_loso.metrics import ClipStatistic, bootstrap, hold_estimates, score
from pytest_loso.report.render import render_terminal


def _near_perfect(seed: int = 12):
    """8 clips of 30 frames, a near-perfect predictor: BCa misses SROCC and the percentile fallback is
    extended to the bootstrap's own estimate, a last bit away from scipy's."""
    rng = np.random.default_rng(seed)
    y = np.round(rng.random(240) * 100, 1).astype(np.float32)
    p = (y + rng.normal(size=240) * rng.choice([0.5, 1, 2])).astype(np.float32)
    return p, y, (30,) * 8


def test_the_fallback_interval_holds_the_reported_srocc_itself():
    p, y, clips = _near_perfect()
    reported = score(p, y, model_path=Path("m.onnx"), target_desc="x")
    own = bootstrap(ClipStatistic(p, y, clips), n_resamples=200, seed=0)
    assert not own.intervals["srocc"][0] <= reported["srocc"] <= own.intervals["srocc"][1]  # the defect's input
    held = hold_estimates(own.intervals, reported)
    for name in ("plcc", "srocc", "rmse"):
        assert held[name][0] <= reported[name] <= held[name][1]
    assert reported["srocc"] in held["srocc"]  # the bound is the estimate itself


def test_every_reported_interval_holds_its_estimate_and_few_clips_are_said_once(gate):
    run = gate.run("--loso-bootstrap=200")
    report = run.report
    assert report is not None, run.output
    blocks = [m for block in report["archs"].values() for m in block["per_fold"].values()]
    blocks += [b["all_clips_concat"] for b in report["baselines"].values()]
    for metrics in blocks:
        for name, interval in metrics["ci"].items():
            if interval is not None:
                assert interval[0] <= metrics[name] <= interval[1], (name, metrics)
    intervals = report["intervals"]
    assert intervals["few_clips"] == dict.fromkeys(SOURCES, PAIRS_PER_SOURCE)
    assert f"{len(SOURCES)} sources have fewer than 10 clips, too few for a trustworthy bootstrap interval" \
        in intervals["note"]
    assert intervals["note"] in run.markdown
    terminal = render_terminal(report)
    assert sum(intervals["note"] in line for line in terminal) == 1
    assert not [line for line in terminal if "percentile extended to the estimate" in line]
