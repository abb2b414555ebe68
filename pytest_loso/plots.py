"""Plots for a person to look at: predicted vs target per fold, and per-fold metrics with intervals.

Needs matplotlib (``pip install matplotlib``); rendered off-screen.
"""

from __future__ import annotations

import math
from pathlib import Path

from .errors import LosoInputError
from .records import TestResult
from .settings import Thresholds

MAX_PANELS = 64  # a scatter grid beyond this is unreadable; the rest are listed as left out


def write_plots(out_dir: Path, report: dict, results: dict[str, TestResult], thresholds: Thresholds) -> list[Path]:
    """``scatter_<arch>.png`` and ``folds_<arch>.png`` per architecture; returns the files written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LosoInputError(out_dir, "--loso-plot needs matplotlib", "pip install matplotlib") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for arch, block in report["archs"].items():
        points = {r["source"]: r["points"] for r in results.values()
                  if r["kind"] == "fold" and r["run"] == arch and r.get("points")}
        if points:
            written.append(_scatter(plt, out_dir / f"scatter_{arch}.png", arch, points, block["per_fold"]))
        written.append(_bars(plt, out_dir / f"folds_{arch}.png", arch, block, thresholds))
    return written


def _scatter(plt, path: Path, arch: str, points: dict, per_fold: dict) -> Path:
    sources = sorted(points)[:MAX_PANELS]
    cols = math.ceil(math.sqrt(len(sources)))
    rows = math.ceil(len(sources) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(sources):]:
        ax.axis("off")
    for ax, source in zip(axes.flat, sources):
        pred, target = points[source]["pred"], points[source]["target"]
        ax.scatter(target, pred, s=4, alpha=0.5, color="tab:blue")
        ax.plot([0, 100], [0, 100], color="gray", linewidth=0.8, linestyle="--")
        ax.set_xlim(0, 100)
        ax.set_ylim(min(0, min(pred)), max(100, max(pred)))
        m = per_fold.get(source, {})
        title = source if "plcc" not in m else f"{source}\nPLCC {m['plcc']:.3f}  RMSE {m['rmse']:.2f}"
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("VMAF (target)", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("predicted", fontsize=8)
    left_out = len(points) - len(sources)
    fig.suptitle(f"{arch}: each fold on its held-out source" + (f" ({left_out} more not shown)" if left_out else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _bars(plt, path: Path, arch: str, block: dict, thresholds: Thresholds) -> Path:
    """Every fold of the run, in the report's order: a fold with no value (it failed, or its metric
    is undefined) is an empty hatched bar marked as such, never left out of the chart."""
    per_fold = block["per_fold"]
    sources = list(per_fold)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.0, 0.6 * len(sources) + 2), 6.5), sharex=True)
    for ax, metric, bound_name in ((top, "plcc", "min_plcc"), (bottom, "rmse", "max_rmse")):
        values = [_number(per_fold[s].get(metric)) for s in sources]
        intervals = [(per_fold[s].get("ci") or {}).get(metric) for s in sources]
        errors = [[0.0, 0.0] if v is None or not ci else [v - ci[0], ci[1] - v] for v, ci in zip(values, intervals)]
        scored = [i for i, v in enumerate(values) if v is not None]
        # the interval is named only when the bootstrap drew one (it is off with --loso-bootstrap=0)
        label = "fold (95% bootstrap interval)" if any(intervals[i] for i in scored) else "fold"
        ax.bar(scored, [values[i] for i in scored], color="tab:blue" if metric == "plcc" else "tab:orange",
               yerr=list(zip(*[errors[i] for i in scored])) if scored else None, capsize=3, label=label)
        bound = getattr(thresholds.fold, bound_name)
        if bound is not None:
            ax.axhline(bound, color="red", linestyle="--", linewidth=1, label=f"{bound_name} {bound:g}")
        for i, source in enumerate(sources):  # per-source overrides as short red ticks
            own = getattr(thresholds.for_source(source), bound_name)
            if own is not None and own != bound:
                ax.hlines(own, i - 0.4, i + 0.4, color="darkred", linewidth=2)
        aggregate = block.get("aggregate") or {}
        if aggregate.get(f"mean_{metric}") is not None:
            ax.axhline(aggregate[f"mean_{metric}"], color="black", linewidth=0.8, label="mean over folds")
        if metric == "plcc":
            lows = [v - e[0] for v, e in zip(values, errors) if v is not None]  # the scored folds'
            low = min(lows + ([bound] if bound is not None else []), default=0.0)  # no fold scored: empty
            ax.set_ylim(max(0.0, low - 0.05), 1.0)
        elif not scored and bound is None:
            ax.set_ylim(0.0, 1.0)
        missing = [i for i, v in enumerate(values) if v is None]
        bottom_y, top_y = ax.get_ylim()
        labelled = set()
        for i in missing:
            word = "failed" if "error" in per_fold[sources[i]] else "undefined"
            legend = {"failed": "fold failed (no metrics)", "undefined": f"{metric.upper()} undefined"}[word]
            ax.bar(i, top_y - bottom_y, bottom=bottom_y, fill=False, hatch="//", edgecolor="gray",
                   label=None if word in labelled else legend)
            labelled.add(word)
            ax.text(i, (bottom_y + top_y) / 2, word, rotation=90, ha="center", va="center", fontsize=8,
                    color="dimgray")
        ax.set_ylim(bottom_y, top_y)
        ax.set_ylabel(metric.upper())
        ax.legend(fontsize=7, loc="lower right" if metric == "plcc" else "upper right")
    bottom.set_xticks(range(len(sources)))
    bottom.set_xticklabels([s + (" (failed)" if "error" in per_fold[s] else "") for s in sources],
                           rotation=45, ha="right", fontsize=8)
    fig.suptitle(f"{arch}: per-fold PLCC and RMSE")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
