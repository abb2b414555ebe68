"""The corpus: where every source's frames (features, VMAF targets, per-frame metadata) come from.

One interface, :class:`Corpus`, with two kinds behind it: the YUV + cache corpus of
``--data-root`` (:mod:`.cache_corpus`) and the per-frame table of ``--loso-table``
(:mod:`.table`). Nothing above this module asks which kind it has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .errors import LosoInputError
from .files import sha256_or_none
from .frames import SourceData
from .records import ExtractionRecord
from .settings import GateOptions


class Corpus(Protocol):
    """What the gate asks of a corpus kind."""

    @property
    def sources(self) -> list[str]:
        """The sources, sorted: each is one LOSO fold."""

    @property
    def columns(self) -> tuple[str, ...]:
        """The per-frame columns a codec-aware model's sidecar may name (``encoder``, ``cq``...)."""

    def describe(self) -> str:
        """``data root`` or ``table <path>``, for messages."""

    def warnings(self) -> list[str]:
        """What the corpus holds that the gate leaves out, without failing a test."""

    def load(self, source: str) -> SourceData:
        """One source's frames; :class:`LosoInputError` naming the file when they cannot be read."""

    def missing_source(self, source: str) -> str:
        """Where ``source`` was looked for and not found, for a fold whose source is not here."""

    def no_sources(self) -> LosoInputError:
        """Why there is nothing to score a baseline on."""

    def prefill(self, sources: set[str] | None, progress: Callable[[str], None] | None) -> None:
        """Compute what is missing for ``sources`` before any test runs (a cold feature cache)."""

    def extraction(self) -> ExtractionRecord | None:
        """What this process computed with libvmaf (``None``: this kind computes nothing)."""

    def provenance(self) -> dict | None:
        """The report's ``run_provenance.table`` (``None`` for a kind that is not a table)."""


def open_corpus(options: GateOptions) -> Corpus:
    """The corpus the options name (a table is read here, once per process)."""
    if options.table is not None:
        from .table import TableCorpus

        return TableCorpus(options.table, options.target, options.where, options.slices)
    from .cache_corpus import CacheCorpus

    return CacheCorpus(options)


def unreadable_provenance(options: GateOptions) -> dict | None:
    """The report's ``run_provenance.table`` when the table could not be read: its path and sha256."""
    if options.table is None:
        return None
    return {"path": str(options.table), "sha256": sha256_or_none(options.table)}


def describe_options(options: GateOptions) -> str:
    """The corpus a run reads, for the terminal's header line (nothing is opened)."""
    if options.table is not None:
        return f"table {options.table}"
    return f"data root {options.data_root}, cache {options.cache_dir}"
