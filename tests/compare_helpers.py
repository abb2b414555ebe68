"""Helpers of the comparison tests (``test_compare``, ``test_paired``): accepting a report, comparing
with an edited copy of it, and the intervals recomputed from the script's recipe (onnxruntime on
float32 arrays, scipy on explicitly concatenated resamples), independently of the plugin's code.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import bootstrap, pearsonr, spearmanr

from loso_helpers import ARCHS, BASELINE_TAG, SOURCES
from loso_testing.training import Regressor, export_onnx

COMPARED = ("plcc", "srocc", "rmse")  # the metrics of the default --loso-max-drop
NOISE_FEATURE = 5  # synthetic_source's last feature is uniform noise, unrelated to the target


def accepted_file(gate) -> Path:
    return gate.root / "accepted.json"


# What an accept run wrote, by what it ran on: (its root, {relative path: bytes}).
_ACCEPT_RUNS: dict[tuple, tuple[str, dict[str, bytes]]] = {}
_ENVIRONMENT = ("LOSO", "VMAF", "GITHUB", "GITLAB", "CI", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def accept(gate, *extra: str) -> dict:
    """A first run that writes the accepted report; returns it.

    The same run on the same files (the same template and options, in another test's copy) is made
    once: later ones get the files it wrote, its folder's name replaced by theirs, which is all
    that differs. Any difference in the tree, the options or the gate's environment is a new run.
    """
    path = accepted_file(gate)
    assert not path.exists()
    before = _tree(gate.root)
    root = str(gate.root)
    key = (extra, tuple(sorted((name, data.replace(root.encode(), b"<root>")) for name, data in before.items())),
           tuple(sorted((k, v.replace(root, "<root>")) for k, v in os.environ.items() if k.startswith(_ENVIRONMENT))))
    if key in _ACCEPT_RUNS:
        old_root, written = _ACCEPT_RUNS[key]
        for name, data in written.items():
            (gate.root / name).parent.mkdir(parents=True, exist_ok=True)
            (gate.root / name).write_bytes(data.replace(old_root.encode(), root.encode()))
        return json.loads(path.read_text())
    run = gate.run(f"--loso-compare={path}", "--loso-accept", *extra)
    assert run.result.ret == 0, run.output
    accepted = json.loads(path.read_text())
    assert accepted == run.report
    assert "comparison" not in accepted  # nothing to compare with yet
    after = _tree(gate.root)
    written = {name: data for name, data in after.items() if before.get(name) != data}
    if not any(root.encode() in data for name, data in written.items() if not _is_text(data)):
        _ACCEPT_RUNS[key] = (root, written)  # a binary file naming the folder could not be moved
    return accepted


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def compare_with(gate, accepted: dict | None, *extra: str, **kwargs):
    """Write ``accepted`` (unless ``None``: keep the file) and run the gate against it."""
    path = accepted_file(gate)
    if accepted is not None:
        path.write_text(json.dumps(accepted, indent=2))
    return gate.run(f"--loso-compare={path}", *extra, **kwargs)


def rows(report: dict) -> dict[tuple[str, str], dict]:
    return {(row["test"], row["metric"]): row for row in report["comparison"]["rows"]}


def fold(report: dict, arch: str, source: str) -> dict:
    return report["archs"][arch]["per_fold"][source]


def all_tests() -> set[str]:
    return ({f"fold[{a}-{s}]" for a in ARCHS for s in SOURCES} | {f"aggregate[{a}]" for a in ARCHS}
            | {f"baseline[{BASELINE_TAG}]"})


def failed(run) -> set[str]:
    return {nodeid for nodeid, outcome in run.outcomes.items() if outcome != "PASSED"}


def sentence(who: str, label: str, before: float, after: float, allowed: str, rule: str | None,
             digits: int | None = None) -> str:
    """The gate's failure line, written out here from the spec (not from compare.Change); ``digits``
    when the default ones would not show the change exceed the allowance."""
    digits = digits or (3 if "RMSE" in label else 4)
    text = f"{who}: {label} {before:.{digits}f} -> {after:.{digits}f} ({after - before:+.{digits}f}, allowed {allowed})"
    return text + (f" [{rule}]" if rule else "")


def degrade_linear_fold(gate, source: str, weight: float = 3.0) -> None:
    """Replace the linear fold of ``source`` by the same model leaning on the noise feature."""
    (w, b), = gate.folds["linear"][source].layers
    w = w.copy()
    w[NOISE_FEATURE] += weight
    export_onnx(Regressor([(w, b)]), gate.fold_path("linear", source))


def ort_predict(model_path: Path, x: np.ndarray) -> np.ndarray:
    """The script's recipe: a plain InferenceSession on float32 features."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0].reshape(-1)


def explicit_resample_metrics(pred: np.ndarray, target: np.ndarray, pair_frames, chosen) -> tuple[float, float, float]:
    """PLCC, SROCC, RMSE of the explicitly concatenated frames of the chosen pairs."""
    bounds = np.cumsum([0, *pair_frames])
    p = np.concatenate([pred[bounds[i]:bounds[i + 1]] for i in chosen]).astype(np.float64)
    t = np.concatenate([target[bounds[i]:bounds[i + 1]] for i in chosen]).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a resample of one pair repeated may be constant
        return (float(pearsonr(p, t).statistic), float(spearmanr(p, t).statistic),
                float(np.sqrt(np.mean((p - t) ** 2))))


def explicit_bootstrap(pred, target, pair_frames, *, n_resamples: int, seed: int,
                       accepted=None) -> dict[str, dict[str, list]]:
    """scipy's BCa (and the percentile) bootstrap over pairs, the statistic computed by concatenating frames
    (with ``accepted`` predictions: of the paired difference, new − accepted, on the same resamples).

    Same resampling stream as the plugin (same rng seed, resample count and batch size), so
    the intervals must agree with its per-clip-sums computation to rounding.
    """
    def metrics(row):
        values = explicit_resample_metrics(pred, target, pair_frames, row)
        return values if accepted is None else np.subtract(
            values, explicit_resample_metrics(accepted, target, pair_frames, row))

    def statistic(pairs, axis=-1):
        # clips in a canonical order: a resample that holds every clip once is then bit-identical to the
        # estimate, as in the plugin (BCa's bias correction counts the resamples below the estimate)
        rows = np.sort(np.atleast_2d(pairs), axis=-1)
        values = np.array([metrics(row) for row in rows]).T
        return values[:, 0] if np.ndim(pairs) == 1 else values

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = bootstrap((np.arange(len(pair_frames)),), statistic, vectorized=True, n_resamples=n_resamples,
                           confidence_level=0.95, method="BCa", rng=np.random.default_rng(seed), batch=n_resamples)
    low, high = result.confidence_interval
    p_low, p_high = np.percentile(result.bootstrap_distribution, [2.5, 97.5], axis=-1)
    return {name: {"BCa": [float(low[i]), float(high[i])], "percentile": [float(p_low[i]), float(p_high[i])]}
            for i, name in enumerate(("plcc", "srocc", "rmse"))}
