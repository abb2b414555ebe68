"""Issue 20, item 18: a seed folder whose folds hold no model fails its folds and HOLDs the verdict."""

from __future__ import annotations

import json

from loso_helpers import SOURCES
from test_seeds import ARCH, _run, seeded  # noqa: F401  (the fixture)


def test_seed_with_empty_folds_fails_naming_the_files_expected_and_holds(seeded):
    empty = seeded.sweep / f"loso_{ARCH}" / "seed3"
    for source in SOURCES:
        (empty / f"fold_{source}").mkdir(parents=True)
    verdict = seeded.root / "verdict.json"
    run = _run(seeded, f"--loso-verdict={verdict}")
    for source in SOURCES:
        node = f"loso::fold[{ARCH}-seed3-{source}]"
        assert run.outcomes[node] == "FAILED", run.output
        expected = empty / f"fold_{source}" / f"{ARCH}_final.onnx"
        assert f"source {source} has no fold model: expected {expected}" in run.failure_text(node)
    assert run.outcomes.get(f"loso::seeds[{ARCH}]") != "PASSED"  # skipped: a seed has no fold scored
    assert json.loads(verdict.read_text())["verdict"] == "HOLD", verdict.read_text()
