"""Checks at start that the files and folders the settings name can be used: a bad path is a usage
error before anything is scored, never a failure in every test or a lost report at the end.

No pytest here: each check raises :class:`~pytest_loso.errors.LosoUsageError`, which the options
layer shows as pytest's usage error.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

from .errors import LosoInputError, LosoUsageError, what_is_at
from .ids import predictions_path, report_files
from .settings import GateOptions

TABLE_SUFFIXES = (".jsonl", ".parquet")


def check(options: GateOptions) -> None:
    """Every file-system check of ``options``, in the order a user fixes them."""
    if options.table is not None:
        check_table_file(options.table, "--loso-table")
    for name, path in ([("--data-root", options.data_root)] if options.data_root else []) + \
            [("--loso-dir", p) for p in options.loso_dirs]:
        if not path.is_dir():
            raise LosoUsageError(f"{name} {path}: folder not found")
    for path in options.held_out:
        check_table_file(path, "--loso-predictions")
    for path in options.baselines:
        if not path.is_file():
            raise LosoUsageError(f"--loso-baseline {path}: file not found (or not a file)")
    for _, path in options.quantized:
        if not path.is_file():
            raise LosoUsageError(f"--loso-quantized {path}: file not found (or not a file)")
    report_folder(options.report_dir)
    if options.plot_dir is not None and importlib.util.find_spec("matplotlib") is None:
        raise LosoUsageError("--loso-plot needs matplotlib: pip install matplotlib")
    if options.compare is not None:
        check_accepted(options.compare, accepting=options.accept)
    if options.registry is not None:
        check_registry(options.registry)
    if options.table is None:  # a table run reads no cache: its default folder may be anything
        check_cache(options.cache_dir)
    if options.recompute:
        check_recompute(options)
    for output, option in ((options.metrics_path, "--loso-metrics"), (options.verdict_path, "--loso-verdict")):
        if output is not None:
            writable_file(output, option)
    outputs_are_not_inputs(options)
    if options.plot_dir is not None:  # the plots are written last: a file or an unwritable folder is known now
        writable_folder(options.plot_dir, "--loso-plot", what="the plots")


def _same(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def outputs_are_not_inputs(options: GateOptions) -> None:
    """No file the run writes is one it reads: the accepted report and its predictions file, a model,
    the table. Otherwise the end of the run would replace its own input (an accepted report
    overwritten by this run's, or by OpenMetrics text)."""
    inputs: list[tuple[Path, str]] = []
    if options.compare is not None:
        inputs += [(options.compare, "the accepted report (--loso-compare)"),
                   (predictions_path(options.compare), "the accepted report's predictions file")]
    if options.table is not None:
        inputs.append((options.table, "the table (--loso-table)"))
    inputs += [(path, "a baseline model (--loso-baseline)") for path in options.baselines]
    inputs += [(path, f"a member of ensemble {e.name}") for e in options.ensembles for path in e.members]
    # --loso-accept writes the accepted report and its predictions itself: the report folder may hold them
    accepted_files = {options.compare, predictions_path(options.compare)} if options.accept and options.compare else set()
    outputs = [(file, "--loso-report") for file in report_files(options.report_dir)]
    outputs += [(path, option) for path, option in ((options.metrics_path, "--loso-metrics"),
                                                    (options.verdict_path, "--loso-verdict"),
                                                    (options.plot_dir, "--loso-plot")) if path is not None]
    for output, option in outputs:
        for path, what in inputs:
            if path in accepted_files and option == "--loso-report":
                continue
            if _same(output, path):
                shown = output if option != "--loso-report" else options.report_dir
                raise LosoUsageError(f"{option} {shown}: would write {output}, which is {what} this run reads; "
                                     "give another path")


def check_cache(cache_dir: Path) -> None:
    """The cache folder is a folder, or can become one; otherwise every fold would fail on the same path."""
    try:
        if cache_dir.exists() and not cache_dir.is_dir():
            raise LosoUsageError(f"--loso-cache {cache_dir}: is not a folder; give the feature cache folder")
    except OSError as exc:  # e.g. a parent folder that cannot be searched
        raise LosoUsageError(f"--loso-cache {cache_dir}: cannot be read ({exc.strerror or exc}); give a feature "
                             "cache folder this user can read (or set $VMAF_TINY_AI_CACHE)") from None


def check_table_file(path: Path, option: str) -> None:
    """A per-frame table given to ``option`` (``--loso-table``, ``--loso-predictions``): a .jsonl or
    .parquet file that is there, and pyarrow to read parquet."""
    from .table import TABLE_EXTRA_HINT

    if path.suffix not in TABLE_SUFFIXES:
        raise LosoUsageError(f"{option} {path}: expected a .jsonl or .parquet file")
    if not path.is_file():
        raise LosoUsageError(f"{option} {path}: file not found (or not a file)")
    if path.suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise LosoUsageError(f"{option} {path}: reading parquet needs pyarrow: {TABLE_EXTRA_HINT}")


def check_accepted(path: Path, *, accepting: bool) -> None:
    """The accepted report exists (unless this run writes it) and is one: a broken file stops the run here."""
    from .accepted import load_accepted

    if not accepting and not path.is_file():
        raise LosoUsageError(f"--loso-compare {path}: file not found (create it on main with --loso-accept)")
    if accepting:  # --loso-accept writes this file at the end: a folder or an unwritable one is known now
        writable_file(path, "--loso-accept: --loso-compare")
    if path.is_file():
        try:
            load_accepted(path)
        except LosoInputError as exc:
            raise LosoUsageError(f"--loso-compare {exc}") from None


def check_registry(path: Path) -> None:
    """The registry is JSON in the registry's shape: a broken one stops the run here, not in every test."""
    from .registry import load_registry

    try:
        load_registry(path)
    except LosoInputError as exc:
        raise LosoUsageError(f"--loso-registry {exc}") from None


def check_recompute(options: GateOptions) -> None:
    """``--loso-recompute`` needs a feature cache and something to recompute it with."""
    from .extract import resolve_extractor

    if options.table is not None:
        raise LosoUsageError("--loso-recompute recomputes a YUV + cache corpus's cache; --loso-table has none")
    if resolve_extractor(options.extractor, options.vmaf_bin, options.ffmpeg) is None:
        raise LosoUsageError(
            f"--loso-recompute needs an extractor, and --loso-extractor {options.extractor} gives none: "
            "pip install imageio-ffmpeg filelock, or give --loso-ffmpeg PATH or --loso-vmaf-bin PATH")


def writable_folder(path: Path, option: str, what: str = "the report") -> None:
    """Refuse at start a folder the report cannot be written to, before anything is scored."""
    for part in (path, *path.parents):
        there = what_is_at(part)
        if there is not None and there.startswith("a broken link"):
            raise LosoUsageError(f"{option} {path}: {part} is {there}")
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise LosoUsageError(f"{option} {path}: {existing} is not a folder; give a folder to write {what} in")
    try:  # a real write, not os.access: root passes that on a read-only mount or in /sys
        os.rmdir(tempfile.mkdtemp(prefix=".loso-write-check-", dir=existing))
    except OSError as exc:
        raise LosoUsageError(f"{option} {path}: cannot write in {existing}: {exc.strerror or exc}") from None


def report_folder(path: Path) -> None:
    """The report folder, and no folder (or FIFO) where one of its files goes."""
    writable_folder(path, "--loso-report")
    for file in report_files(path):
        there = what_is_at(file)
        if there is not None:
            raise LosoUsageError(f"--loso-report {path}: {file} is {there}, not a regular file, and the report "
                                 "is written there: remove it, or give another folder")


def writable_file(path: Path, option: str) -> None:
    """Refuse at start an output file that is a folder or cannot be created."""
    if path.is_dir():
        raise LosoUsageError(f"{option} {path}: is a folder; give a file path")
    there = what_is_at(path)
    if there is not None:  # a device or a FIFO: an atomic write would replace it, a plain one could block
        raise LosoUsageError(f"{option} {path}: is {there}, not a regular file; give a file path")
    writable_folder(path.parent, option, what="it")
