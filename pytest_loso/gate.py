"""What the gate checks, and checking one thing: the pipeline stages put together.

:meth:`Gate.plan` turns the options into :class:`Check` specs (one per fold and per
baseline); :meth:`Gate.run` scores one of them. Results are plain JSON-able dicts, because
under pytest-xdist they travel from the worker that computed them to the process that
aggregates them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .compare import accepted_metrics, compare, load_accepted
from .corpus import Corpus, SourceData, SourceStore, discover_corpus, load_source
from .errors import LosoDataWarning, LosoInputError, data_warning  # noqa: F401  (LosoDataWarning: public here too)
from .extract import CacheFiller, resolve_extractor
from .metrics import METRICS, Bootstrap, ClipStatistic, bootstrap, logistic_metrics, score
from .models import OnnxModel, find_fold_models, load_model
from .options import GateOptions
from .predictions import AcceptedPredictions, entry
from .sidecar import describe_feed
from .table import TableCorpus
from .thresholds import Bounds, check

if TYPE_CHECKING:
    import numpy as np


class ThresholdFailure(Exception):
    """Metrics were computed and break a bound; the message is the reviewer's sentence."""


@dataclass(frozen=True)
class Check:
    """One test: a fold model on its held-out source, or a baseline on every source."""

    kind: str  # "fold", "baseline" or "ensemble"
    label: str  # arch-Source, arch-seedN-Source, baseline tag, or ensemble name
    model_path: Path
    arch: str | None = None
    source: str | None = None
    problem: str | None = None  # known at planning time: the item fails with this
    fix: str | None = None  # and what to do about it
    seed: int | None = None  # the training seed of a run repeated over seeds
    members: tuple[Path, ...] = ()  # an ensemble's models

    @property
    def name(self) -> str:
        return f"{self.kind}[{self.label}]"

    @property
    def run(self) -> str | None:
        """The LOSO run a fold belongs to, aggregated on its own: ``arch``, or ``arch-seedN``."""
        return run_name(self.arch, self.seed) if self.arch else None


def run_name(arch: str, seed: int | None) -> str:
    return arch if seed is None else f"{arch}-seed{seed}"


class Gate:
    """Per-process state: the corpus listing and the sources read so far."""

    def __init__(self, options: GateOptions) -> None:
        self.options = options
        self.store = SourceStore(self._load)

    @cached_property
    def corpus(self) -> Corpus | TableCorpus:
        """The YUV + cache corpus under --data-root, or the per-frame table (read once per process)."""
        if self.options.table is not None:
            return TableCorpus(self.options.table, self.options.target, self.options.where)
        assert self.options.data_root is not None
        return discover_corpus(self.options.data_root)

    def _load(self, source: str) -> SourceData:
        corpus = self.corpus
        if isinstance(corpus, TableCorpus):
            return corpus.load(source)
        return load_source(corpus, source, self.options.cache_dir, self.filler, self.options.frame_size_of(source))

    @cached_property
    def filler(self) -> CacheFiller | None:
        """Fills missing cache files with libvmaf, when an extractor is configured or available."""
        options = self.options
        if options.table is not None:
            return None  # a table holds the features already
        extractor = resolve_extractor(options.extractor, options.vmaf_bin, options.ffmpeg)
        return CacheFiller(extractor, options.cache_dir, options.frame_size_of) if extractor else None

    def prefill(self, progress: Callable[[str], None] | None, sources: set[str] | None = None) -> None:
        """Compute the missing cache files of ``sources`` (default: the corpus) up front, ``jobs``
        libvmaf runs at a time."""
        if self.filler is not None:
            try:
                corpus = self.corpus
            except LosoInputError:
                return  # collection reports it (a failed "loso" collector), not an INTERNALERROR here
            pairs = [pair for source in corpus.sources if sources is None or source in sources
                     for pair in corpus.pairs[source]]
            self.filler.fill(pairs, self.options.jobs, progress, recompute=self.options.recompute)

    def extraction(self) -> dict:
        """What this process computed with libvmaf, for the report."""
        if self.filler is None:
            return {"extractor": None, "computed": [], "recomputed": {}}
        return {
            "extractor": {"kind": self.filler.extractor.kind, "path": str(self.filler.extractor.binary)},
            "computed": list(self.filler.computed),
            "recomputed": dict(self.filler.recomputed),
            "kept_on_recompute": list(self.filler.kept),
        }

    def corpus_warnings(self) -> list[str]:
        """What the corpus and the options disagree on without making a test fail."""
        found = []
        try:
            corpus = self.corpus
        except LosoInputError:
            return found  # the gate's collection error says it
        found += corpus.warnings()
        unknown = sorted(set(self.options.thresholds.per_source) - set(corpus.sources))
        if unknown:
            found.append(f"per-source thresholds name {', '.join(unknown)}, "
                         f"which the {corpus.describe()} does not hold "
                         f"(sources: {', '.join(corpus.sources)})")
        return found

    def plan(self) -> list[Check]:
        """Every fold of every selected architecture over the discovered sources, then the baselines.

        Made once per process (collection, ordering and the report all ask for it): walking
        the fold tree costs ~0.3 s at 1,000 folds, and it does not change during a run.
        """
        return list(self._checks)

    def _fold_problem(self, found: dict, arch: str, seed: int | None, source: str,
                      sources: frozenset[str]) -> tuple[Path, str | None, str | None]:
        """A fold test's model file, and what is wrong with it known before scoring (with the fix)."""
        paths = found.get((arch, seed, source), [])
        if len(paths) > 1:
            return (paths[0], f"two fold models for {run_name(arch, seed)} on {source}: {', '.join(map(str, paths))}",
                    "give --loso-dir folders that offer each fold once")
        if paths and source in sources:
            return paths[0], None, None
        if paths:
            where = (f"the table {self.options.table} (no rows with source {source}"
                     f"{' after --loso-where' if self.options.where else ''})" if self.options.table else
                     f"the data root (no {self.options.data_root}/ref/{source}_<fps>fps.yuv)")
            return (paths[0], f"fold for source {source}, which is not in {where}",
                    f"add the source's clips to the corpus, or remove fold_{source}")
        # where this run's other folds are (a sweep keeps them in loso_<arch>/[seed<N>/])
        run_dir = min(p.parent.parent for (a, sd, _), ps in found.items() if (a, sd) == (arch, seed) for p in ps)
        expected = run_dir / f"fold_{source}" / f"{arch}_final.onnx"
        if source not in sources:  # only another seed has it: that seed's fold is the stray one
            stray = min((p for (a, _, s), ps in found.items() if (a, s) == (arch, source) for p in ps), key=str)
            return (expected, f"no fold for {source} here, where another seed has one ({stray}); and {source} is "
                    "not a source of the corpus",
                    f"remove fold_{source} from the seed that has it, or add the source's clips to the corpus")
        return (expected, f"source {source} has no fold model: expected {expected}",
                f"train and export the fold that holds out {source}, or take {source} out of the corpus")

    @cached_property
    def _checks(self) -> tuple[Check, ...]:  # an error is not cached: every caller gets it raised afresh
        found = find_fold_models(self.options.loso_dirs)
        archs = sorted({arch for arch, _, _ in found})
        if self.options.archs:
            unknown = [a for a in self.options.archs if a not in archs]
            if unknown:
                raise LosoInputError(
                    self.options.loso_dirs[0],
                    f"no fold models for --loso-arch {', '.join(unknown)} (found: {', '.join(archs) or 'none'})",
                )
            archs = [a for a in archs if a in self.options.archs]
        if not archs:
            raise LosoInputError(
                self.options.loso_dirs[0],
                "no fold models found",
                "expected fold_<Source>/<arch>_final.onnx or loso_<arch>/fold_<Source>/<arch>_final.onnx",
            )
        sources = frozenset(self.corpus.sources)
        checks = []
        runs = sorted({(arch, seed) for arch, seed, _ in found if arch in archs}, key=lambda r: (r[0], r[1] or -1))
        for arch, seed in runs:
            # every seed of a run is held to the same folds: the sources, and any fold another seed has
            for source in sorted(sources | {s for a, _, s in found if a == arch}):
                path, problem, fix = self._fold_problem(found, arch, seed, source, sources)
                checks.append(Check("fold", f"{run_name(arch, seed)}-{source}", path, arch=arch, source=source,
                                    problem=problem, fix=fix, seed=seed))
        for tag, path in zip(self.options.baseline_names, self.options.baselines):  # unique: options says so
            checks.append(Check("baseline", tag, path))
        for name, pattern, members in self.options.ensembles:
            problem = None
            if len(members) < 2:
                problem = (f"--loso-ensemble {name}={pattern} matches {len(members)} model file"
                           f"{'' if len(members) == 1 else 's'}; an ensemble's spread needs at least two members")
            checks.append(Check("ensemble", name, members[0] if members else Path(pattern), problem=problem,
                                fix="give a glob that matches the members' .onnx files", members=tuple(members)))
        return tuple(checks)

    def run(self, check_: Check, result: dict) -> None:
        """Score ``check_``, filling ``result`` as it goes so a failure keeps what was computed.

        Raises :class:`LosoInputError` for unusable input and :class:`ThresholdFailure` for
        a bound that is broken.
        """
        if check_.problem:
            raise LosoInputError(check_.model_path, check_.problem, check_.fix)
        try:
            self._score(check_, result)
        finally:
            result["extraction"] = self.extraction()

    @cached_property
    def accepted(self) -> dict | None:
        """The accepted report to compare with (read once per process), if any."""
        path = self.options.compare
        return load_accepted(path) if path is not None and path.is_file() else None

    @cached_property
    def accepted_predictions(self) -> AcceptedPredictions:
        """The accepted run's per-frame predictions (its sidecar, sha256 checked), for the paired comparison."""
        assert self.options.compare is not None and self.accepted is not None
        return AcceptedPredictions.load(self.options.compare, self.accepted)

    def _score(self, check_: Check, result: dict) -> None:
        if check_.kind == "ensemble":
            models = [load_model(path) for path in check_.members]
            result["models"] = {str(m.path): self._model_provenance(m) for m in models}
            self._run_ensemble(models, result)
            members = f"{', '.join(m.path.name for m in models)} in {models[0].path.parent}"
            self._judge(check_, f"members: {members}", result, self.options.thresholds.fold,
                        f"ensemble {check_.label} (mean of {len(models)} members) on all sources")
            return
        model = load_model(check_.model_path)
        result["models"] = {str(model.path): self._model_provenance(model)}
        if check_.kind == "fold":
            assert check_.source is not None
            data = self._source(check_.source, result)
            result["metrics"] = self._metrics_of(model.predict_data(data), data.scores, data.pair_frames,
                                                 f"source {data.source}", result, model.path)
            bounds = self.options.thresholds.for_source(check_.source)
            subject = f"{check_.run} fold {check_.source}"
        else:
            self._run_baseline(model, result)
            bounds = self.options.thresholds.fold
            subject = f"baseline {check_.label} on all sources"
        self._judge(check_, f"model: {model.path}", result, bounds, subject)

    def _model_provenance(self, model: OnnxModel) -> dict:
        """The model's files, and how its sidecar says to feed it on this corpus."""
        provenance = {
            "sha256": model.sha256,
            "data_path": str(model.data_path) if model.data_path else None,
            "data_sha256": model.data_sha256,
        }
        if model.sidecar is not None:
            corpus = self.corpus
            provenance["feed"] = describe_feed(model.sidecar, corpus.columns if isinstance(corpus, TableCorpus) else ())
        return provenance

    def _judge(self, check_: Check, scored: str, result: dict, bounds: Bounds, subject: str) -> None:
        """Hold the metrics to ``bounds`` and to the accepted report; raise the reviewer's sentences
        (``scored``: the line that says which model files made the predictions)."""
        metrics = result["metrics"]
        violations = check(metrics, bounds)
        result["violations"] = [v.sentence() for v in violations]
        lines = [f"{subject}: {v.sentence()} (n={metrics['n']} frames)" for v in violations]
        if self.accepted is not None:
            before = accepted_metrics(self.accepted, check_.kind, check_.run, check_.label, check_.source)
            changes = compare(before or {}, metrics, self.options.max_drop, mode=self.options.compare_mode,
                              intervals=metrics.get("ci"), paired=metrics.get("paired"))
            who = f"{check_.source} ({check_.run})" if check_.kind == "fold" else f"{check_.kind} {check_.label}"
            lines += [f"{who}: {c.sentence()}" for c in changes if c.verdict == "REGRESSED"]
        if lines:
            raise ThresholdFailure("\n".join(lines) + f"\n  {scored}")

    def _metrics_of(self, pred: np.ndarray, scores: np.ndarray, pair_frames: tuple[int, ...], desc: str,
                    result: dict, model_path: Path) -> dict:
        """The script's metrics, plus KRCC, the optional logistic ones, intervals and plot points."""
        import numpy as np

        metrics = score(pred, scores, model_path=model_path, target_desc=desc, srocc_ranks=self.options.srocc_ranks)
        options = self.options
        if options.logistic:
            metrics.update(logistic_metrics(pred, scores))
        result["predictions"] = entry(pred, scores, pair_frames)  # for the sidecar: a later run pairs with them
        if options.bootstrap > 0:
            self._bootstrap(pred, scores, pair_frames, metrics, result)
        if options.plot_dir is not None:
            keep = np.linspace(0, len(pred) - 1, min(len(pred), 2000)).astype(int)  # enough for a scatter
            result["points"] = {"pred": pred[keep].tolist(), "target": scores[keep].tolist()}
        return metrics

    def _bootstrap(self, pred: np.ndarray, scores: np.ndarray, pair_frames: tuple[int, ...], metrics: dict,
                   result: dict) -> None:
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
        metrics["ci"], metrics["ci_method"] = own.intervals, own.methods
        result["distribution"] = own.distribution.astype(np.float64).tobytes()
        if options.compare_mode == "noise" and self.accepted is not None:
            metrics["paired"] = self._paired(own, scores, pair_frames, result)
        if options.srocc_ranks != "average":  # the resampled SROCC averages ties: not this estimate's interval
            metrics["ci"]["srocc"] = None
            metrics["ci_method"]["srocc"] = f"none (no bootstrap for {options.srocc_ranks} ranks)"
            if "ci" in metrics.get("paired", {}):
                metrics["paired"]["ci"]["srocc"] = None

    def _paired(self, own: Bootstrap, scores: np.ndarray, pair_frames: tuple[int, ...], result: dict) -> dict:
        """The bootstrap of new − accepted over the same resampled clips, or why it cannot be made."""
        import numpy as np

        accepted_pred, reason = self.accepted_predictions.lookup(result["name"], scores, pair_frames)
        if accepted_pred is None:
            return {"rule": "unpaired", "reason": reason}
        accepted = ClipStatistic(accepted_pred, scores, pair_frames)
        reproduced = accepted.of_counts(np.ones((1, accepted.n_clips)))[:, 0]
        kind, _, label = result["name"][:-1].partition("[")
        recorded = accepted_metrics(self.accepted, kind, result["arch"], label, result["source"]) or {}
        for name, value in zip(METRICS, reproduced):
            if name == "srocc":
                continue  # its ranks may be ordinal; PLCC and RMSE prove the predictions are the report's
            if not isinstance(recorded.get(name), (int, float)) or abs(recorded[name] - value) > 1e-6:
                return {"rule": "unpaired", "reason": f"the accepted report's {name} of {result['name']} is not "
                        "that of its predictions (the report was edited?)"}
        paired = own.minus(bootstrap(accepted, n_resamples=self.options.bootstrap, seed=self.options.bootstrap_seed))
        result["paired_distribution"] = paired.distribution.astype(np.float64).tobytes()
        return {"rule": "paired", "ci": paired.intervals, "ci_method": paired.methods}

    def _source(self, source: str, result: dict) -> SourceData:
        data = self.store.get(source)
        result.setdefault("sources", {})[source] = {
            "fingerprint": data.fingerprint,
            "cache_files": len(data.cache_files),
            "file_sha256": data.file_sha256,
            "frames": int(data.scores.size),
            "dropped": data.dropped,
        }
        for stem, counts in data.dropped.items():
            data_warning(
                f"{self.options.cache_dir / source / stem}.json: {counts['feature_frames']} feature frames vs "
                f"{counts['score_frames']} score frames; using the first "
                f"{min(counts['feature_frames'], counts['score_frames'])}, {counts['dropped']} dropped"
            )
        return data

    def _run_baseline(self, model: OnnxModel, result: dict) -> None:
        """Per source, then on all sources concatenated in sorted order (as the script did).

        Each source is predicted once and its features dropped: the concatenation reuses the
        per-source predictions (float32, like the model's output), so at 1,000 sources the
        peak holds one source's features plus two float32 values per frame, not every feature.
        """
        import numpy as np

        if not self.corpus.sources:
            assert self.options.data_root is not None  # a table without rows is refused when read
            raise LosoInputError(self.options.data_root / "ref", "no sources: no <Source>_<fps>fps.yuv here")
        per_clip: dict[str, dict] = {}
        result["per_clip"] = per_clip
        errors = []
        preds, targets, pair_frames = [], [], []
        for source in self.corpus.sources:
            try:
                data = self._source(source, result)
                pred = model.predict_data(data)
                # The script's per-source rows; KRCC is left to folds and the concatenation (cost).
                per_clip[source] = score(pred, data.scores, model_path=model.path, target_desc=f"source {source}",
                                         krcc=False, srocc_ranks=self.options.srocc_ranks)
                preds.append(pred.astype(np.float32, copy=False))
                targets.append(data.scores)
                pair_frames.extend(data.pair_frames)
            except LosoInputError as exc:
                per_clip[source] = {"error": str(exc)}
                errors.append((source, str(exc)))
        if errors:
            raise _sources_failed(model.path, "cannot score on all sources", errors)
        result["metrics"] = self._metrics_of(np.concatenate(preds), np.concatenate(targets), tuple(pair_frames),
                                             "all sources concatenated", result, model.path)

    def _run_ensemble(self, models: list[OnnxModel], result: dict) -> None:
        """Every member scored like a baseline, and the members' mean prediction the same way.

        Per frame, mu is the members' mean and sigma their sample std (ddof=1); the report gives
        the mean sigma and the coverage of mu ± 1.96 sigma (the share of frames whose VMAF lies
        inside), per source and on all sources concatenated.
        """
        import numpy as np

        if not self.corpus.sources:
            raise LosoInputError(self.options.data_root / "ref", "no sources: no <Source>_<fps>fps.yuv here")
        members: dict[str, dict] = {str(m.path): {"per_clip": {}} for m in models}
        per_clip: dict[str, dict] = {}
        result.update(per_clip=per_clip, members=members)
        errors, parts = [], []
        for source in self.corpus.sources:
            try:
                data = self._source(source, result)
                preds = np.stack([m.predict_data(data) for m in models])
                for model, pred in zip(models, preds):
                    members[str(model.path)]["per_clip"][source] = score(
                        pred, data.scores, model_path=model.path, target_desc=f"source {source}", krcc=False,
                        srocc_ranks=self.options.srocc_ranks)
                mu, sigma = preds.mean(axis=0), preds.std(axis=0, ddof=1)
                per_clip[source] = score(mu, data.scores, model_path=models[0].path, krcc=False,
                                         target_desc=f"source {source} (ensemble mean)",
                                         srocc_ranks=self.options.srocc_ranks)
                per_clip[source].update(_spread(mu, sigma, data.scores))
                parts.append((data, preds))
            except LosoInputError as exc:
                per_clip[source] = {"error": str(exc)}
                errors.append((source, str(exc)))
        if errors:
            raise _sources_failed(models[0].path, "cannot score the ensemble on all sources", errors)
        preds = np.concatenate([p for _, p in parts], axis=1)
        scores = np.concatenate([d.scores for d, _ in parts])
        pair_frames = tuple(n for d, _ in parts for n in d.pair_frames)
        for model, pred in zip(models, preds):
            members[str(model.path)]["all_clips_concat"] = score(
                pred, scores, model_path=model.path, target_desc="all sources concatenated",
                srocc_ranks=self.options.srocc_ranks)
        mu, sigma = preds.mean(axis=0), preds.std(axis=0, ddof=1)
        result["metrics"] = self._metrics_of(mu, scores, pair_frames, "all sources concatenated (ensemble mean)",
                                             result, models[0].path)
        result["metrics"].update(_spread(mu, sigma, scores))


SOURCES_NAMED = 10  # sources listed by name under a failure shared by more of them


def _sources_failed(path: Path, what: str, errors: list[tuple[str, str]]) -> LosoInputError:
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


def _spread(mu: np.ndarray, sigma: np.ndarray, target: np.ndarray) -> dict:
    """The ensemble's spread: mean sigma, and how often mu ± 1.96 sigma holds the VMAF target."""
    import numpy as np

    return {"mean_sigma": float(sigma.mean()), "coverage_95": float(np.mean(np.abs(target - mu) <= 1.96 * sigma))}
