"""Speaking CI's languages: OpenMetrics for GitLab, the GitHub step summary.

(JUnit XML needs nothing here: each item records its metrics with ``user_properties``.)
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from .errors import TEXT_ERRORS
from .files import write_atomically

_METRIC_KEYS = ("plcc", "srocc", "krcc", "rmse", "plcc_logistic", "rmse_logistic", "n")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_SEEDED_RUN = re.compile(r"(?P<arch>.+)-seed(?P<seed>[0-9]+)")
_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def _run_labels(run: str) -> dict[str, str]:
    """A LOSO run's labels: ``arch``, and ``seed`` for a run of an architecture trained over seeds
    (``mlp_small-seed1`` is ``arch="mlp_small",seed="1"``, not an architecture of its own)."""
    match = _SEEDED_RUN.fullmatch(run)
    return {"arch": match["arch"], "seed": match["seed"]} if match else {"arch": run}


def render_openmetrics(report: dict) -> str:
    """``loso_plcc{arch="mlp_small",fold="FoxBird"} 0.9266`` lines, one family per metric, ending ``# EOF``.

    Folds and each run's mean over folds (``seed`` labelled for a run over seeds); the figures
    across seeds as ``loso_seeds_<figure>{arch=...}`` (and per fold); baselines and ensembles
    (``baseline=``/``ensemble=`` with ``split="all"`` for all clips, else the source)."""
    families: dict[str, list[str]] = {}

    def add(name: str, labels: dict[str, str], value: object) -> None:
        if (_NAME.fullmatch(name) and isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value)):
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            families.setdefault(name, []).append(f"loso_{name}{{{text}}} {value}")

    for run, block in report["archs"].items():
        labels = _run_labels(run)
        for source, entry in block["per_fold"].items():
            for key in _METRIC_KEYS:
                add(key, {**labels, "fold": source}, entry.get(key))
        for key, value in (block["aggregate"] or {}).items():
            add(key, labels, value)
    for arch, summary in (report.get("seeds") or {}).items():
        for key, value in summary.items():
            add(f"seeds_{key}", {"arch": arch}, value)
        for source, entry in (summary.get("per_fold") or {}).items():
            for key, value in entry.items():
                add(f"seeds_{key}", {"arch": arch, "fold": source}, value)
    for kind, blocks in (("baseline", report["baselines"]), ("ensemble", report.get("ensembles") or {})):
        # an ensemble's concatenation has its spread's figures too (coverage_95, mean_sigma...)
        keys = _METRIC_KEYS if kind == "baseline" else None
        for tag, block in blocks.items():
            splits = {"all": block["all_clips_concat"], **block["per_clip"]}
            for split, entry in splits.items():
                for key in keys or entry:
                    add(key, {kind: tag, "split": split}, entry.get(key))
    lines = []
    for name, samples in families.items():
        lines += [f"# TYPE loso_{name} gauge", *samples]
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def write_openmetrics(path: Path, report: dict) -> None:
    write_atomically(path, render_openmetrics(report))


def append_step_summary(target: Path, markdown: str) -> None:
    """Append to the file GitHub Actions names in ``$GITHUB_STEP_SUMMARY`` (raises ``OSError``).

    Only a regular file (or a new one) is written: opening a FIFO would wait forever for a reader.
    Text the encoding cannot hold (a lone surrogate from a file name) is written escaped (``TEXT_ERRORS``)."""
    import stat

    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        raise OSError(f"not a regular file (a {'FIFO' if stat.S_ISFIFO(mode) else 'folder or device'}); "
                      "not opened, as it could block the run")
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o644)
    with open(fd, "a", encoding="utf-8", errors=TEXT_ERRORS) as handle:
        handle.write(markdown + "\n")
