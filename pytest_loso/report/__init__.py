"""Writing reports: the session's results aggregated into JSON, Markdown and terminal tables.

- :mod:`.session`: :class:`SessionResults` collects each gate test's outcome, builds the
  report (aggregates, seeds, comparison) and writes ``loso_eval.json`` / ``.md``.
- :mod:`.provenance`: what the report was made from (hashes, git, versions, the cache).
- :mod:`.render`: the Markdown report, the CI step summary and the terminal tables.
"""

from __future__ import annotations

from .render import render_markdown, render_terminal
from .session import AggregateVerdict, SessionResults, report_files, report_paths

__all__ = ["AggregateVerdict", "SessionResults", "render_markdown", "render_terminal", "report_files",
           "report_paths"]
