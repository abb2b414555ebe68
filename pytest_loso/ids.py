"""The gate's names for things: its node and test ids, LOSO run names, the headline architecture,
and the report's file names. A leaf: no pytest, no I/O, imported by every layer above.

Words, one meaning each:

- a **kind** is what a test scores: ``fold``, ``baseline``, ``ensemble`` or ``quant`` (an int8 model
  beside its fp32 parent);
- a **run** is one LOSO run, aggregated on its own: an architecture (``mlp_small``), or one of its
  seeds (``mlp_small-seed1``); never the pytest session;
- a **test** is one of the gate's pytest items, named ``<kind>[<label>]``, ``aggregate[<run>]`` or
  ``seeds[<arch>]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from .errors import readable

Kind = Literal["fold", "baseline", "ensemble", "quant"]
Outcome = Literal["passed", "failed", "skipped", "not run"]  # "not run": in the report only

GATE_NODE = "loso"  # the gate's collector: its tests are loso::<test>
PRIMARY_ARCH = "mlp_small"  # what the single-arch keys (and the verdict's headline gate) describe when scored
PREDICTIONS_SUFFIX = ".predictions.npz"


def run_name(arch: str, seed: int | None) -> str:
    """The LOSO run of ``arch`` trained with ``seed``: ``arch``, or ``arch-seedN``."""
    return arch if seed is None else f"{arch}-seed{seed}"


def test_name(kind: str, label: str) -> str:
    """``fold[mlp_small-FoxBird]``, ``baseline[vmaf_tiny_v1]``, ``aggregate[mlp_small]``..."""
    return readable(f"{kind}[{label}]")  # a node id crosses pytest-xdist's channel and JUnit: UTF-8 only


def parse_test_name(name: str) -> tuple[str, str]:
    """``"fold[a-S]"`` -> ``("fold", "a-S")``."""
    kind, _, rest = name.partition("[")
    return kind, rest[:-1]


def node_id(name: str) -> str:
    return f"{GATE_NODE}::{name}"


def aggregate_tests(runs: Iterable[tuple[str, int | None]]) -> list[str]:
    """``aggregate[<run>]`` for each LOSO run of ``(arch, seed)``, then ``seeds[<arch>]`` for each
    architecture trained over seeds."""
    runs = set(runs)
    names = sorted({run_name(arch, seed) for arch, seed in runs})
    seeded = sorted({arch for arch, seed in runs if seed is not None})
    return [test_name("aggregate", run) for run in names] + [test_name("seeds", arch) for arch in seeded]


def versus_test(new: str, old: str) -> str:
    """``versus[<new>-<old>]``: the paired A/B test of run ``new`` against run ``old``."""
    return test_name("versus", f"{new}-{old}")


def slice_test(run: str, column: str, value: str) -> str:
    """``slice[<run>-<column>=<value>]``: run ``run``'s mean over folds on the frames whose ``column`` is ``value``."""
    return test_name("slice", f"{run}-{column}={value}")


def primary_arch(names: Iterable[str]) -> str | None:
    """The architecture a one-figure summary describes: ``mlp_small`` when scored, else the first by name."""
    names = sorted(names)
    return PRIMARY_ARCH if PRIMARY_ARCH in names else (names[0] if names else None)


def report_paths(report_dir: Path, *, partial: bool) -> dict[str, Path]:
    """``loso_eval.json`` / ``.md``, or ``loso_eval.partial.json`` / ``.md`` for a partial run."""
    stem = "loso_eval.partial" if partial else "loso_eval"
    return {"json": report_dir / f"{stem}.json", "markdown": report_dir / f"{stem}.md"}


def predictions_path(report_path: Path) -> Path:
    """``dir/loso_eval.json`` -> ``dir/loso_eval.predictions.npz`` (the same for ``.partial`` and accepted names)."""
    return report_path.with_name(report_path.stem + PREDICTIONS_SUFFIX)


def report_files(report_dir: Path) -> list[Path]:
    """Every file a run may write in ``report_dir``: a whole or partial run's report, Markdown and predictions."""
    files = []
    for partial in (False, True):
        paths = report_paths(report_dir, partial=partial)
        files += [paths["json"], paths["markdown"], predictions_path(paths["json"])]
    return files
