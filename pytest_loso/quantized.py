"""A quantised model against its fp32 parent on the same frames: the pair's figures, the bounds on
them, and the machine they were measured on.

Dynamic quantisation picks its scale per run, so an int8 model's output depends on the frames
run with it; and onnxruntime's int8 sums saturate on a CPU without VNNI. The figures are
therefore of a batching and a machine, and recorded with both (:func:`runtime`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from .metrics import ClipStatistic, bootstrap, score

if TYPE_CHECKING:
    import numpy as np

DEFAULT_AGREEMENT = 0.01  # the team's quant_accuracy_budget_plcc when no registry gives one
RESAMPLES = 1000  # the paired intervals' resamples when --loso-bootstrap sets none
CPUINFO = Path("/proc/cpuinfo")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")

# bound key -> (the figure it bounds, what it is)
FIGURES = {
    "agreement": ("agreement", "agreement 1 - PLCC(fp32, int8)"),
    "plcc": ("plcc_drop", "PLCC drop against VMAF (fp32 - int8)"),
    "rmse": ("rmse_rise", "RMSE rise against VMAF (int8 - fp32)"),
    "bias": ("bias", "mean bias |mean(int8 - fp32)|"),
}


def pair_figures(fp32: np.ndarray, int8: np.ndarray, target: np.ndarray, *, model_path: Path, target_desc: str,
                 krcc: bool, srocc_ranks: str) -> dict:
    """The int8 model's metrics against VMAF (``n``, ``plcc``, ``srocc``, ``rmse``), its parent's
    (``fp32``), and the pair's: ``agreement`` (1 - PLCC(fp32, int8)), ``plcc_drop``, ``rmse_rise``,
    ``bias`` (mean int8 - fp32) and ``max_abs_diff`` (max |int8 - fp32|), in VMAF points."""
    import numpy as np
    from scipy.stats import pearsonr

    own = score(int8, target, model_path=model_path, target_desc=target_desc, krcc=krcc, srocc_ranks=srocc_ranks)
    parent = score(fp32, target, model_path=model_path, target_desc=f"{target_desc} (fp32 parent)", krcc=krcc,
                   srocc_ranks=srocc_ranks)
    difference = int8.astype(np.float64) - fp32.astype(np.float64)
    if np.ptp(fp32) == 0 or np.ptp(int8) == 0:
        agreement = math.nan  # a constant model agrees with nothing: the bound fails it (NaN is not below)
    else:
        agreement = 1.0 - float(pearsonr(fp32, int8).statistic)
    return {**own, "fp32": parent, "agreement": agreement, "plcc_drop": parent["plcc"] - own["plcc"],
            "rmse_rise": own["rmse"] - parent["rmse"], "bias": float(difference.mean()),
            "max_abs_diff": float(np.abs(difference).max())}


def paired_intervals(fp32: np.ndarray, int8: np.ndarray, target: np.ndarray, pair_frames: tuple[int, ...], *,
                     resamples: int, seed: int) -> tuple[dict, dict]:
    """95% intervals of the PLCC drop and the RMSE rise, both models scored on the same resampled
    clips (one seed, one counts matrix): ``(ci, ci_method)``; none with fewer than two clips."""
    if len(pair_frames) < 2:
        return {"plcc_drop": None, "rmse_rise": None}, {}
    parent = bootstrap(ClipStatistic(fp32, target, pair_frames), n_resamples=resamples, seed=seed)
    child = bootstrap(ClipStatistic(int8, target, pair_frames), n_resamples=resamples, seed=seed)
    difference = child.minus(parent)  # int8 - fp32: plcc, srocc, rmse
    plcc = difference.intervals.get("plcc")
    ci = {"plcc_drop": [-plcc[1], -plcc[0]] if plcc else None, "rmse_rise": difference.intervals.get("rmse")}
    methods = {"plcc_drop": f"paired {difference.methods.get('plcc', '')}".strip(),
               "rmse_rise": f"paired {difference.methods.get('rmse', '')}".strip()}
    return ci, methods


def breaches(figures: dict, bounds: dict[str, float | None]) -> list[tuple[str, float, float]]:
    """``(bound key, figure, bound)`` for each bound ``figures`` break (NaN breaks every bound)."""
    found = []
    for key, bound in bounds.items():
        if bound is None:
            continue
        value = figures.get(FIGURES[key][0])
        value = abs(value) if key == "bias" and value is not None else value
        if value is None or not value <= bound:
            found.append((key, math.nan if value is None else value, bound))
    return found


def judge_pair(metrics: dict, per_source: dict[str, dict], bounds: dict[str, float | None], *,
               per_source_bounds: bool) -> list[str]:
    """The breached bounds, each naming the figure, where it broke and the worst source."""
    lines = []
    for key, bound in bounds.items():
        if bound is None:
            continue
        figure, what = FIGURES[key]
        rows = {s: row for s, row in per_source.items() if figure in row}
        worst = max(rows, key=lambda s: _badness(rows[s], key), default=None)
        worst_text = f"; worst source {worst}: {_shown(rows[worst], key)}" if worst else ""
        where = [("all sources concatenated", metrics)] if breaches(metrics, {key: bound}) else []
        if per_source_bounds:
            where += [(f"source {s}", rows[s]) for s in sorted(rows) if breaches(rows[s], {key: bound})]
        for place, values in where:
            lines.append(f"{what} {_shown(values, key)} is above the maximum {bound:g} on {place}{worst_text}")
    return lines


def _badness(row: dict, key: str) -> float:
    value = row[FIGURES[key][0]]
    value = abs(value) if key == "bias" else value
    return math.inf if value is None or math.isnan(value) else value


def _shown(row: dict, key: str) -> str:
    value = row[FIGURES[key][0]]
    return "undefined" if value is None or math.isnan(value) else f"{value:.4f}"


def cpu_vnni(cpuinfo: Path = CPUINFO) -> bool | str:
    """Whether the CPU has VNNI (exact int8 dot products): read from /proc/cpuinfo's flags; ``"unknown"``
    where there is no such file (not Linux) or it has no flags line."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "unknown"
    flags = set()
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == "flags":
            flags.update(value.split())
    if not flags:
        return "unknown"
    return any(flag in flags for flag in VNNI_FLAGS)


def runtime(batch: int | None) -> dict:
    """The batching and the machine the figures are of."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ort_version: str | None = version("onnxruntime")
    except PackageNotFoundError:
        ort_version = None
    return {"batch": "source" if batch is None else batch,
            "batch_means": "all of a source's frames in one run" if batch is None else
            f"{batch} frame{'s' if batch != 1 else ''} per run",
            "onnxruntime": ort_version, "cpu_vnni": cpu_vnni()}
