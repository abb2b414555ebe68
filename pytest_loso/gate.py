"""The gate in one process: a small facade over the corpus, the plan, scoring and judging.

:meth:`Gate.plan` turns the options into :class:`~.plan.TestSpec` s (one per fold, baseline
and ensemble); :meth:`Gate.evaluate` scores one and judges it, returning its
:class:`~.records.TestResult` and, when it failed, why. Results are plain JSON-able records,
because under pytest-xdist they travel from the worker that computed them to the process that
aggregates them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from .accepted import AcceptedReport
from .corpus import Corpus, open_corpus, unreadable_provenance
from .errors import LosoInputError, ThresholdFailure
from .held_out import HeldOut
from .judging import judge_test
from .plan import Plan, TestSpec, make_plan
from .records import ExtractionRecord, TestResult
from .registry import load_registry
from .scoring import Scorer
from .settings import GateOptions


@dataclass(frozen=True)
class Scored:
    """One test's result, and the exception it failed with (``None``: it passed)."""

    result: TestResult
    failure: BaseException | None = None


class Gate:
    """Per-process state: the corpus, the plan, the sources read so far and the accepted report."""

    def __init__(self, options: GateOptions) -> None:
        self.options = options
        self.accepted = AcceptedReport(options.compare)
        # checked at start (preflight): read again here, in every process that scores
        registry = load_registry(options.registry) if options.registry is not None else None
        self.scorer = Scorer(options, lambda: self.corpus, self.accepted, lambda: self.held_out, registry)

    @cached_property
    def corpus(self) -> Corpus:
        """The corpus the options name (an error is not cached: every caller gets it raised afresh)."""
        return open_corpus(self.options)

    @cached_property
    def held_out(self) -> HeldOut | None:
        """The ``--loso-predictions`` tables, read once per process (``None``: none given)."""
        return HeldOut(self.options.held_out) if self.options.held_out else None

    @cached_property
    def _plan(self) -> Plan:
        return make_plan(self.options, self.corpus, self.held_out)

    def plan(self) -> Plan:
        """Every fold of every selected architecture over the discovered sources, then the baselines.

        Made once per process (collection, ordering and the report all ask for it): walking
        the fold tree costs ~0.3 s at 1,000 folds, and it does not change during a run.
        """
        return self._plan

    def prefill(self, progress: Callable[[str], None] | None, sources: set[str] | None = None) -> None:
        """Compute what the corpus lacks for ``sources`` (default: all of them) before any test runs."""
        try:
            corpus = self.corpus
        except LosoInputError:
            return  # collection reports it (a failed "loso" collector), not an INTERNALERROR here
        corpus.prefill(sources, progress)

    def extraction(self) -> ExtractionRecord | None:
        """What this process computed with libvmaf (``None``: the corpus computes nothing)."""
        try:
            return self.corpus.extraction()
        except LosoInputError:
            return None

    def corpus_provenance(self) -> dict | None:
        """The table's provenance, when the corpus is one (its path and sha256 when it could not be read)."""
        try:
            return self.corpus.provenance()
        except LosoInputError:
            return unreadable_provenance(self.options)

    def held_out_provenance(self) -> list[dict]:
        """Each ``--loso-predictions`` file's path, sha256, rows and runs (path and sha256 when unreadable)."""
        from .files import sha256_or_none

        try:
            held_out = self.held_out
        except LosoInputError:
            return [{"path": str(p), "sha256": sha256_or_none(p)} for p in self.options.held_out]
        return held_out.provenance() if held_out is not None else []

    def corpus_warnings(self) -> list[str]:
        """What the corpus and the options disagree on without making a test fail."""
        try:
            corpus = self.corpus
            found = corpus.warnings()
        except LosoInputError:
            return []  # the gate's collection error says it
        unknown = sorted(set(self.options.thresholds.per_source) - set(corpus.sources))
        if unknown:
            found.append(f"per-source thresholds name {', '.join(unknown)}, "
                         f"which the {corpus.describe()} does not hold "
                         f"(sources: {', '.join(corpus.sources)})")
        return found

    def evaluate(self, spec: TestSpec) -> Scored:
        """Score ``spec`` and judge it. A failure keeps what was computed: :class:`LosoInputError` for
        input that cannot be used, :class:`ThresholdFailure` for a broken bound or a regression, any
        other exception a bug of the gate's (its traceback is kept for pytest to show)."""
        result = spec.new_result()
        failure: BaseException | None = None
        try:
            self.scorer.score(spec, result)
            violations, lines = judge_test(spec, result["metrics"], self.options, self.accepted,  # type: ignore[arg-type]
                                           result.get("per_clip"))
            result["violations"] = violations
            if lines:
                raise ThresholdFailure("\n".join(lines) + f"\n  {_scored_by(spec)}")
        except (LosoInputError, ThresholdFailure) as exc:
            result["error"], failure = str(exc), exc
        except Exception as exc:  # a bug of ours: keep the report honest, let pytest show the traceback
            result["error"], failure = f"{type(exc).__name__}: {exc}", exc
        result["extraction"] = self.extraction()
        return Scored(result, failure)


def _scored_by(spec: TestSpec) -> str:
    """The line that says which model files made the predictions."""
    if spec.held_out is not None:
        return f"held-out predictions: {spec.held_out} (run {spec.run})"
    if spec.kind == "ensemble":
        return f"members: {', '.join(p.name for p in spec.members)} in {spec.members[0].parent}"
    if spec.kind == "quant":
        return f"models: {spec.model_path} against its fp32 parent {spec.members[0].name}"
    return f"model: {spec.model_path}"
