"""Scoring one planned test: its models' predictions on the corpus, and the metrics of them.

A fold is scored on its held-out source; a baseline or an ensemble on every source and on
their concatenation, through one loop over sources (:meth:`Scorer._over_sources`). The
result is a :class:`~.records.TestResult` built as scoring goes, so a test that fails half-way
still reports what it read and computed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .accepted import AcceptedReport
from .corpus import Corpus
from .errors import LosoInputError, data_warning
from .frames import SourceData, SourceStore
from .held_out import HeldOut
from .metrics import (METRICS, Bootstrap, ClipStatistic, bootstrap, hold_estimates, logistic_metrics,
                      score)
from .metrics.calibration import calibration, worst_sources
from .metrics.slices import by_value
from .models import OnnxModel, load_model
from .plan import TestSpec
from .predictions import entry
from .quantized import DEFAULT_AGREEMENT, RESAMPLES, paired_intervals, pair_figures
from .records import ModelRecord, TestResult
from .registry import Registry
from .settings import GateOptions
from .sidecar import describe_feed

if TYPE_CHECKING:
    import numpy as np

SOURCES_NAMED = 10  # sources listed by name under a failure shared by more of them
PLOT_POINTS = 2000  # a scatter needs no more


class Scorer:
    """Scores tests in one process: each source's frames are read once (:class:`SourceStore`)."""

    def __init__(self, options: GateOptions, corpus: Callable[[], Corpus], accepted: AcceptedReport,
                 held_out: Callable[[], HeldOut | None] = lambda: None, registry: Registry | None = None) -> None:
        self.options = options
        self._held_out = held_out  # the --loso-predictions tables (read with the plan)
        self.registry = registry
        self._corpus = corpus  # opened on first use: a corpus that cannot be read fails the tests that need it
        self.accepted = accepted
        self.store = SourceStore(lambda source: self._corpus().load(source))

    def score(self, spec: TestSpec, result: TestResult) -> None:
        """Score ``spec`` into ``result`` (the metrics, and what they were computed from).

        Raises :class:`LosoInputError` for input that cannot be used; ``result`` keeps what was read.
        """
        if spec.kind == "quant" and len(spec.members) == 2:
            result["parent_path"] = str(spec.members[0])
        if spec.problem:
            raise LosoInputError(spec.model_path, spec.problem, spec.fix)
        if spec.held_out is not None:  # a fold whose predictions a trainer wrote: no model to run
            self._score_held_out(spec, result)
            return
        if spec.kind in ("ensemble", "quant"):
            models = [load_model(path) for path in spec.members]
            self._record_models(models, result)
            if spec.kind == "quant":
                self._score_quant(models[0], models[1], result)
            else:
                self._score_ensemble(models, result)
            return
        model = load_model(spec.model_path)
        self._record_models([model], result)
        if spec.kind == "fold":
            assert spec.source is not None
            data = self._source(spec.source, result)
            pred = model.predict_data(data)
            result["metrics"] = self._metrics_of(pred, data.scores, data.pair_frames, f"source {data.source}", result,
                                                 model.path)
            self._slices(pred, data.scores, data.slice_values, result)
            _keep_targets(spec, data, result)
        else:
            self._score_baseline(model, result)

    def _score_held_out(self, spec: TestSpec, result: TestResult) -> None:
        """A fold scored on the predictions its run's table holds for the held-out source's frames."""
        held_out = self._held_out()
        assert held_out is not None and spec.held_out is not None and spec.source is not None and spec.arch
        result["models"] = {str(spec.held_out): ModelRecord(sha256=held_out.sha256_of(spec.held_out),
                                                           data_path=None, data_sha256=None)}
        data = self._source(spec.source, result)
        pred = held_out.predict(spec.arch, spec.seed, data, self._corpus().describe())
        result["metrics"] = self._metrics_of(pred, data.scores, data.pair_frames, f"source {data.source}", result,
                                             spec.held_out)
        self._slices(pred, data.scores, data.slice_values, result)
        _keep_targets(spec, data, result)

    def _slices(self, pred: np.ndarray, scores: np.ndarray, values: dict[str, np.ndarray], result: TestResult) -> None:
        """``--loso-slice``: the metrics on the frames of each value of each slice column."""
        if self.options.slices:
            result["slices"] = {column: by_value(pred, scores, values[column], srocc_ranks=self.options.srocc_ranks)
                                for column in self.options.slices}

    def _record_models(self, models: list[OnnxModel], result: TestResult) -> None:
        """The models' records, then the registry's pins: a file whose digest is not the pinned one
        fails the test before anything is scored from it (its digest is in the report all the same)."""
        result["models"] = {str(m.path): self._model_record(m) for m in models}
        if self.registry is None:
            return
        errors = []
        for model in models:
            result["models"][str(model.path)]["registry"], error = self.registry.check(model.path, model.sha256)
            if error is not None:
                errors.append(error)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise LosoInputError(errors[0].path.parent, f"{len(errors)} models do not match the registry's pins:\n  "
                                 + "\n  ".join(str(e) for e in errors))

    def _model_record(self, model: OnnxModel) -> ModelRecord:
        """The model's files, and how its sidecar says to feed it on this corpus."""
        record = ModelRecord(sha256=model.sha256, data_path=str(model.data_path) if model.data_path else None,
                             data_sha256=model.data_sha256)
        if model.sidecar is not None:
            record["feed"] = describe_feed(model.sidecar, self._corpus().columns)
        return record

    def _metrics_of(self, pred: np.ndarray, scores: np.ndarray, pair_frames: tuple[int, ...], desc: str,
                    result: TestResult, model_path: Path) -> dict:
        """The script's metrics, plus KRCC, the optional logistic ones, intervals and plot points."""
        import numpy as np

        # the script's numbers, then what this run adds (None where the logistic fit fails, intervals...)
        metrics: dict = score(pred, scores, model_path=model_path, target_desc=desc,
                              srocc_ranks=self.options.srocc_ranks)
        options = self.options
        if options.logistic:
            metrics.update(logistic_metrics(pred, scores))
        result["predictions"] = entry(pred, scores, pair_frames)  # a later run pairs with them
        if options.bootstrap > 0:
            self._bootstrap(pred, scores, pair_frames, metrics, result)
        if options.plot_dir is not None:
            keep = np.linspace(0, len(pred) - 1, min(len(pred), PLOT_POINTS)).astype(int)
            result["points"] = {"pred": pred[keep].tolist(), "target": scores[keep].tolist()}
        return metrics

    def _bootstrap(self, pred: np.ndarray, scores: np.ndarray, pair_frames: tuple[int, ...], metrics: dict,
                   result: TestResult) -> None:
        """This run's intervals over clips and, in ``noise`` mode, the paired difference with the accepted run.

        The resampled metrics (the distribution) go with the result: an aggregate's two-stage
        interval draws from its folds' distributions.
        """
        import numpy as np

        options = self.options
        if len(pair_frames) < 2:
            metrics["ci"], metrics["ci_method"] = dict.fromkeys(METRICS), {}
            return
        statistic = ClipStatistic(pred, scores, pair_frames)
        own = bootstrap(statistic, n_resamples=options.bootstrap, seed=options.bootstrap_seed)
        metrics["ci"], metrics["ci_method"] = hold_estimates(own.intervals, metrics), own.methods
        result["distribution"] = own.distribution.astype(np.float64).tobytes()
        if options.compare_mode == "noise" and self.accepted.report is not None:
            metrics["paired"] = self._paired(own, scores, pair_frames, result)
        if options.srocc_ranks != "average":  # the resampled SROCC averages ties: not this estimate's interval
            metrics["ci"]["srocc"] = None
            metrics["ci_method"]["srocc"] = f"none (no bootstrap for {options.srocc_ranks} ranks)"
            if "ci" in metrics.get("paired", {}):
                metrics["paired"]["ci"]["srocc"] = None

    def _paired(self, own: Bootstrap, scores: np.ndarray, pair_frames: tuple[int, ...], result: TestResult) -> dict:
        """The bootstrap of new − accepted over the same resampled clips, or why it cannot be made."""
        import numpy as np

        accepted_pred, reason = self.accepted.predictions.lookup(result["name"], scores, pair_frames)
        if accepted_pred is None:
            return {"rule": "unpaired", "reason": reason}
        accepted = ClipStatistic(accepted_pred, scores, pair_frames)
        reproduced = accepted.of_counts(np.ones((1, accepted.n_clips)))[:, 0]
        recorded = self.accepted.metrics(result["kind"], result["run"], result["label"], result["source"]) or {}
        for name, value in zip(METRICS, reproduced):
            if name == "srocc":
                continue  # its ranks may be ordinal; PLCC and RMSE prove the predictions are the report's
            if not isinstance(recorded.get(name), (int, float)) or abs(recorded[name] - value) > 1e-6:
                return {"rule": "unpaired", "reason": f"the accepted report's {name} of {result['name']} is not "
                        "that of its predictions (the report was edited?)"}
        paired = own.minus(bootstrap(accepted, n_resamples=self.options.bootstrap, seed=self.options.bootstrap_seed))
        result["paired_distribution"] = paired.distribution.astype(np.float64).tobytes()
        return {"rule": "paired", "ci": paired.intervals, "ci_method": paired.methods}

    def _source(self, source: str, result: TestResult) -> SourceData:
        data = self.store.get(source)
        result.setdefault("sources", {})[source] = {
            "fingerprint": data.fingerprint,
            "cache_files": len(data.cache_files),
            "file_sha256": data.file_sha256,
            "frames": int(data.scores.size),
            "clips": len(data.pair_frames),
            "dropped": data.dropped,
        }
        for stem, counts in data.dropped.items():
            data_warning(
                f"{self.options.cache_dir / source / stem}.json: {counts['feature_frames']} feature frames vs "
                f"{counts['score_frames']} score frames; using the first "
                f"{min(counts['feature_frames'], counts['score_frames'])}, {counts['dropped']} dropped"
            )
        return data

    def _over_sources(self, models: list[OnnxModel], result: TestResult, what: str,
                      per_source: Callable[[str, np.ndarray, np.ndarray], dict],
                      predict: Callable[[OnnxModel, SourceData], np.ndarray] | None = None,
                      ) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], dict[str, np.ndarray]]:
        """Every source through ``models``, in sorted order (as the script did): ``per_source(source,
        predictions, targets)`` gives the source's row of ``result["per_clip"]``; returns every model's
        predictions on all sources concatenated ``(models, frames)``, the targets, the clips' frames
        and each slice column's values. ``predict(model, data)`` runs one model on one source
        (default: as its sidecar says, in one run).

        Each source is predicted once and only its predictions kept (its features stay in the store's
        one copy). A source that cannot be scored is recorded and the others still are; then one error
        says what failed where.
        """
        import numpy as np

        corpus = self._corpus()
        if not corpus.sources:
            raise corpus.no_sources()
        per_clip: dict[str, dict] = {}
        result["per_clip"] = per_clip
        errors = []
        preds: list[np.ndarray] = []
        targets: list[np.ndarray] = []
        pair_frames: list[int] = []
        slice_values: dict[str, list[np.ndarray]] = {column: [] for column in self.options.slices}
        for source in corpus.sources:
            try:
                data = self._source(source, result)
                pred = np.stack([predict(model, data) if predict else model.predict_data(data) for model in models])
                per_clip[source] = per_source(source, pred, data.scores)
                preds.append(pred)
                targets.append(data.scores)
                pair_frames.extend(data.pair_frames)
                for column, parts in slice_values.items():
                    parts.append(data.slice_values[column])
            except LosoInputError as exc:
                per_clip[source] = {"error": str(exc)}
                errors.append((source, str(exc)))
        if errors:
            raise sources_failed(models[0].path, what, errors)
        return (np.concatenate(preds, axis=1), np.concatenate(targets), tuple(pair_frames),
                {column: np.concatenate(parts) for column, parts in slice_values.items()})

    def _score_baseline(self, model: OnnxModel, result: TestResult) -> None:
        """Per source (the script's rows; KRCC is left to folds and the concatenation, for its cost),
        then on all sources concatenated."""
        import numpy as np

        def row(source: str, pred: np.ndarray, target: np.ndarray) -> dict:
            return score(pred[0], target, model_path=model.path, target_desc=f"source {source}", krcc=False,
                         srocc_ranks=self.options.srocc_ranks)

        preds, scores, pair_frames, values = self._over_sources([model], result, "cannot score on all sources", row)
        # float32, like the model's output: the concatenation is the script's
        pred = preds[0].astype(np.float32, copy=False)
        result["metrics"] = self._metrics_of(pred, scores, pair_frames, "all sources concatenated", result, model.path)
        self._slices(pred, scores, values, result)

    def _score_ensemble(self, models: list[OnnxModel], result: TestResult) -> None:
        """Every member scored like a baseline, and the members' mean prediction the same way.

        Per frame, mu is the members' mean and sigma their sample std (ddof=1); the report gives
        the mean sigma and the coverage of mu ± 1.96 sigma (the share of frames whose VMAF lies
        inside), and the calibration (coverage and mean width of mu ± z sigma at each nominal
        level), per source and on all sources concatenated, where each level names its worst source.
        """
        members: dict[str, dict] = {str(m.path): {"per_clip": {}} for m in models}
        result["members"] = members
        ranks, levels = self.options.srocc_ranks, self.options.coverage_levels

        def row(source: str, preds: np.ndarray, target: np.ndarray) -> dict:
            for model, pred in zip(models, preds):
                members[str(model.path)]["per_clip"][source] = score(
                    pred, target, model_path=model.path, target_desc=f"source {source}", krcc=False,
                    srocc_ranks=ranks)
            mu, sigma = preds.mean(axis=0), preds.std(axis=0, ddof=1)
            found = score(mu, target, model_path=models[0].path, krcc=False,
                          target_desc=f"source {source} (ensemble mean)", srocc_ranks=ranks)
            found.update(spread(mu, sigma, target, levels))
            return found

        preds, scores, pair_frames, values = self._over_sources(
            models, result, "cannot score the ensemble on all sources", row)
        for model, pred in zip(models, preds):
            members[str(model.path)]["all_clips_concat"] = score(
                pred, scores, model_path=model.path, target_desc="all sources concatenated", srocc_ranks=ranks)
        mu, sigma = preds.mean(axis=0), preds.std(axis=0, ddof=1)
        metrics = result["metrics"] = self._metrics_of(
            mu, scores, pair_frames, "all sources concatenated (ensemble mean)", result, models[0].path)
        metrics.update(spread(mu, sigma, scores, levels))
        self._slices(mu, scores, values, result)
        for level, worst in worst_sources(result["per_clip"]).items():
            metrics["calibration"][level].update(worst_source=worst["source"],
                                                 worst_source_coverage=worst["coverage"])

    def _score_quant(self, parent: OnnxModel, int8: OnnxModel, result: TestResult) -> None:
        """The int8 model beside its fp32 parent on every source and on their concatenation.

        The int8 model is fed exactly as its parent (its own sidecar when it has one, else the
        parent's) and run ``--loso-quant-batch`` frames at a time (default one, as libvmaf scores);
        the parent runs a source at once, as every other test does.
        """
        import numpy as np

        options = self.options
        fed_by = int8 if int8.sidecar is not None else parent
        if fed_by is parent and parent.sidecar is not None:
            result["models"][str(int8.path)]["feed"] = dict(describe_feed(parent.sidecar, self._corpus().columns),
                                                            sidecar_of=str(parent.path))

        def predict(model: OnnxModel, data: SourceData) -> np.ndarray:
            if model is parent:
                return parent.predict_data(data)
            return int8.run_batched(fed_by.inputs(data), options.quant_batch)

        def row(source: str, preds: np.ndarray, target: np.ndarray) -> dict:
            return pair_figures(preds[0], preds[1], target, model_path=int8.path, target_desc=f"source {source}",
                                krcc=False, srocc_ranks=options.srocc_ranks)

        preds, scores, pair_frames, _ = self._over_sources([parent, int8], result,
                                                        "cannot score the quantised pair on all sources", row, predict)
        fp32, quantised = (p.astype(np.float32, copy=False) for p in preds)
        metrics = pair_figures(fp32, quantised, scores, model_path=int8.path, target_desc="all sources concatenated",
                               krcc=True, srocc_ranks=options.srocc_ranks)
        metrics["ci"], metrics["ci_method"] = paired_intervals(
            fp32, quantised, scores, pair_frames, resamples=options.bootstrap or RESAMPLES, seed=options.bootstrap_seed)
        metrics["batch"] = "source" if options.quant_batch is None else options.quant_batch
        metrics["bounds"] = self._quant_bounds(parent.path)
        result["metrics"] = metrics
        result["predictions"] = entry(quantised, scores, pair_frames)

    def _quant_bounds(self, parent: Path) -> dict:
        """``--loso-max-quant-drop``, the agreement by default the registry's budget for the parent, else 0.01."""
        bounds: dict = {"agreement": DEFAULT_AGREEMENT, "plcc": None, "rmse": None, "bias": None}
        source = "default"
        budget = self.registry.quant_budget(parent) if self.registry is not None else None
        if budget is not None:
            bounds["agreement"], source = budget, f"registry {self.registry.path.name}"  # type: ignore[union-attr]
        if "agreement" in self.options.max_quant_drop:
            source = "--loso-max-quant-drop"
        bounds.update(self.options.max_quant_drop)
        return dict(bounds, agreement_from=source, per_source=self.options.quant_per_source)


def _keep_targets(spec: TestSpec, data: SourceData, result: TestResult) -> None:
    """A seeded fold keeps its VMAF targets: the seeds' folds on a source form an ensemble whose
    calibration the ``seeds[<arch>]`` judge measures from the records alone (they cross xdist)."""
    import numpy as np

    if spec.seed is not None:
        result["targets"] = np.ascontiguousarray(data.scores, dtype=np.float32).tobytes()


def sources_failed(path: Path, what: str, errors: list[tuple[str, str]]) -> LosoInputError:
    """One error for the sources a baseline or ensemble could not be scored on: a problem every
    source shares (e.g. a codec-aware model on a corpus without an encoder column) is said once,
    with the other sources it hit named, not repeated a thousand times."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for source, message in errors:
        groups.setdefault(message.replace(source, "\0"), []).append((source, message))
    lines = []
    for failed in groups.values():
        lines.append(failed[0][1])
        others = [source for source, _ in failed[1:]]
        if others:
            named = ", ".join(others[:SOURCES_NAMED]) + (f" and {len(others) - SOURCES_NAMED} more"
                                                       if len(others) > SOURCES_NAMED else "")
            lines.append(f"the same for {len(others)} more source{'s' if len(others) > 1 else ''}: {named}")
    return LosoInputError(path, f"{what}; {len(errors)} failed:\n  " + "\n  ".join(lines))


def spread(mu: np.ndarray, sigma: np.ndarray, target: np.ndarray, levels: tuple[str, ...]) -> dict:
    """The ensemble's spread: mean sigma, how often mu ± 1.96 sigma holds the VMAF target (the
    report's first figure, kept as it was), and the calibration at each nominal level."""
    import numpy as np

    return {"mean_sigma": float(sigma.mean()), "coverage_95": float(np.mean(np.abs(target - mu) <= 1.96 * sigma)),
            "calibration": calibration(mu, sigma, target, levels)}
