"""The report: built from the session's results, then written and rendered. It only builds and
writes outputs; judging and acceptance happen below it.

- :mod:`.build`: the whole report (aggregates, seeds, comparison, provenance) as one dict.
- :mod:`.outputs`: ``loso_eval.json`` / ``.md`` and the predictions file; OpenMetrics, the step
  summary, the verdict and the plots.
- :mod:`.provenance`: what the report was made from (git, versions, how the cache was filled).
- :mod:`.render`: the Markdown report, the CI step summary and the terminal tables.
"""
