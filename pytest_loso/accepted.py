"""The accepted report: read once, checked at start, and looked up per test.

Besides the gate's own ``loso_eval.json`` this reads the evaluation scripts' reports
(``loso_mlp_small_eval.json``, ``loso_3arch_eval.json``), so a team can start comparing
from the report it already has.
"""

from __future__ import annotations

import json
import math
from functools import cached_property
from pathlib import Path

from .errors import LosoInputError
from .ids import PRIMARY_ARCH
from .metrics.names import LABELS
from .predictions import AcceptedPredictions


def load_accepted(path: Path) -> dict:
    """The accepted report, in the gate's shape; a clear error when it is missing or malformed.

    Every part the comparison reads is checked here, at start, so a malformed file is a usage
    error naming the key, never a crash at the end.
    """
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LosoInputError(path, "no accepted report here", "create it with --loso-accept on main") from None
    except RecursionError:
        raise LosoInputError(path, "not a readable JSON report (nested too deeply)",
                             "re-download the accepted report") from None
    except (OSError, ValueError) as exc:
        raise LosoInputError(path, f"not a readable JSON report ({exc})", "re-download the accepted report") from None
    if isinstance(report, dict) and "archs" not in report and "loso_per_fold" in report:
        report = _from_mlp_small_script(report, path)
    if not isinstance(report, dict) or "archs" not in report:
        raise LosoInputError(path, "not a pytest-loso report (no 'archs' / 'baselines')")
    report.setdefault("baselines", {})  # the 3-arch script's report has none
    _check_shape(report, path)
    return report


# The evaluation script (ai/scripts/eval_loso_mlp_small.py) scores the mlp_small folds only.
SCRIPT_ARCH = PRIMARY_ARCH


def _from_mlp_small_script(report: dict, path: Path) -> dict:
    """``loso_per_fold`` / ``loso_aggregate`` / ``baselines`` of the script -> the gate's ``archs`` layout."""
    per_fold, aggregate = report["loso_per_fold"], report.get("loso_aggregate")
    if not isinstance(per_fold, dict):
        raise _shape_error(path, "loso_per_fold", "an object of source -> metrics", per_fold)
    if isinstance(aggregate, dict) and aggregate and "n_folds" not in aggregate:
        aggregate = dict(aggregate, n_folds=len(per_fold))
    return dict(report, archs={SCRIPT_ARCH: {"per_fold": per_fold, "aggregate": aggregate or None}},
                baselines=_baselines_by_stem(report.get("baselines") or {}))


def _baselines_by_stem(baselines: object) -> object:
    """The script's baselines under their model file's stem (``mlp_small_v1`` -> ``vmaf_tiny_v1``), the
    name a bare ``--loso-baseline PATH`` gets, so they are compared with the same file's scores; its
    tag where the entry names no file or two share a stem. A malformed entry is left to the shape check."""
    if not isinstance(baselines, dict):
        return baselines
    key = {tag: Path(entry["model_path"]).stem
           if isinstance(entry, dict) and isinstance(entry.get("model_path"), str) and entry["model_path"] else tag
           for tag, entry in baselines.items()}
    while True:  # a stem taken twice (by another stem or a kept tag): those renamed keep their tag instead
        taken = list(key.values())
        clashes = [tag for tag, k in key.items() if k != tag and taken.count(k) > 1]
        if not clashes:
            return {key[tag]: entry for tag, entry in baselines.items()}
        key.update((tag, tag) for tag in clashes)


def _shape_error(path: Path, where: str, expected: str, found: object) -> LosoInputError:
    shown = repr(found) if isinstance(found, (int, float, str, bool)) or found is None else type(found).__name__
    return LosoInputError(path, f"{where} should be {expected}, not {shown[:60]}",
                          "re-create it with --loso-accept on main, or restore the file")


def _check_metrics(entry: object, path: Path, where: str, *, prefixes: tuple[str, ...] = ("",)) -> None:
    """An object whose metric values (``plcc``, ``mean_rmse``, ``n``...) are finite numbers (or null)."""
    if not isinstance(entry, dict):
        raise _shape_error(path, where, "an object of metrics", entry)
    for key, value in entry.items():
        name = next((key[len(p):] for p in prefixes if key.startswith(p) and key[len(p):] in LABELS), None)
        if name is None and key not in ("n", "n_folds", "n_folds_planned"):
            continue
        if value is None:  # the gate writes a metric that could not be computed (NaN) as null
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _shape_error(path, f"{where}.{key}", "a finite number or null", value)


def _check_object(value: object, path: Path, where: str, *, optional: bool = False) -> dict:
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise _shape_error(path, where, "an object", value)
    return value


def _check_shape(report: dict, path: Path) -> None:
    """Every part of ``report`` the comparison reads has the type it reads it as."""
    for arch, block in _check_object(report["archs"], path, "archs").items():
        block = _check_object(block, path, f"archs.{arch}")
        for source, entry in _check_object(block.get("per_fold"), path, f"archs.{arch}.per_fold").items():
            _check_metrics(entry, path, f"archs.{arch}.per_fold.{source}")
        if block.get("aggregate") is not None:
            _check_metrics(block["aggregate"], path, f"archs.{arch}.aggregate", prefixes=("mean_",))
    for key in ("baselines", "ensembles"):
        for tag, block in _check_object(report.get(key), path, key, optional=key == "ensembles").items():
            block = _check_object(block, path, f"{key}.{tag}")
            _check_metrics(block.get("all_clips_concat"), path, f"{key}.{tag}.all_clips_concat")
    for arch, summary in _check_object(report.get("seeds"), path, "seeds", optional=True).items():
        _check_metrics(summary, path, f"seeds.{arch}", prefixes=("mean_",))
    provenance = _check_object(report.get("run_provenance"), path, "run_provenance", optional=True)
    _check_object(provenance.get("cache_fingerprint"), path, "run_provenance.cache_fingerprint", optional=True)
    _check_object(provenance.get("options"), path, "run_provenance.options", optional=True)


def accepted_metrics(report: dict, kind: str, arch: str | None, label: str, source: str | None) -> dict | None:
    """The accepted metrics of one fold or baseline, or ``None`` when it had none."""
    if kind == "fold":
        entry = report.get("archs", {}).get(arch, {}).get("per_fold", {}).get(source)
    else:
        entry = ((report.get(f"{kind}s") or {}).get(label) or {}).get("all_clips_concat")  # null: none
    return entry if entry and "plcc" in entry else None


class AcceptedReport:
    """The accepted report a run compares with, read once per process, and its predictions."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    @cached_property
    def report(self) -> dict | None:
        """The accepted report, if one is given and there (``--loso-accept`` may be about to write it)."""
        return load_accepted(self.path) if self.path is not None and self.path.is_file() else None

    @cached_property
    def predictions(self) -> AcceptedPredictions:
        """The accepted run's per-frame predictions (sha256 checked), for the paired comparison."""
        assert self.path is not None and self.report is not None
        return AcceptedPredictions.load(self.path, self.report)

    def metrics(self, kind: str, run: str | None, label: str, source: str | None) -> dict | None:
        """The accepted metrics of one fold, baseline or ensemble (``None``: none, or no accepted report)."""
        return accepted_metrics(self.report, kind, run, label, source) if self.report is not None else None

    def block(self, *keys: str) -> object:
        """``report[k1][k2]...``, ``None`` where a level is missing (or there is no accepted report)."""
        value: object = self.report
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value
