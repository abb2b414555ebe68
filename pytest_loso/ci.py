"""Speaking CI's languages: OpenMetrics for GitLab, the GitHub step summary.

(JUnit XML needs nothing here: each item records its metrics with ``user_properties``.)
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from .errors import TEXT_ERRORS
from .files import write_atomically

_METRIC_KEYS = ("plcc", "srocc", "krcc", "rmse", "plcc_logistic", "rmse_logistic", "n")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_openmetrics(report: dict) -> str:
    """``loso_plcc{arch="mlp_small",fold="FoxBird"} 0.9266`` lines, one family per metric, ending ``# EOF``."""
    families: dict[str, list[str]] = {}

    def add(name: str, labels: dict[str, str], value: object) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            families.setdefault(name, []).append(f"loso_{name}{{{text}}} {value}")

    for arch, block in report["archs"].items():
        for source, entry in block["per_fold"].items():
            for key in _METRIC_KEYS:
                add(key, {"arch": arch, "fold": source}, entry.get(key))
        for key, value in (block["aggregate"] or {}).items():
            add(key, {"arch": arch}, value)
    for tag, block in report["baselines"].items():
        for key in _METRIC_KEYS:
            add(key, {"baseline": tag, "split": "all"}, block["all_clips_concat"].get(key))
        for source, entry in block["per_clip"].items():
            for key in _METRIC_KEYS:
                add(key, {"baseline": tag, "split": source}, entry.get(key))
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
