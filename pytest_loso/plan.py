"""Planning: which tests the gate makes, from the fold folders, the corpus's sources and the options.

One :class:`TestSpec` per fold (of every architecture and seed), per baseline and per ensemble;
a problem already known here (a fold with no model, a source the corpus lacks) travels with
its spec, and the test fails with it. The :class:`Plan` answers what the rest of the session
asks of it: a run's folds, its seeds, the aggregate tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .corpus import Corpus
from .errors import LosoInputError
from .held_out import HeldOut
from .ids import Kind, aggregate_tests, run_name, slice_test, test_name, versus_test
from .models import find_empty_seed_runs, find_fold_models
from .records import TestResult, new_result
from .settings import GateOptions, SliceBounds


@dataclass(frozen=True)
class TestSpec:
    """One test: a fold model on its held-out source, or a baseline or ensemble on every source."""

    kind: Kind
    label: str  # arch-Source, arch-seedN-Source, baseline tag, or ensemble name
    model_path: Path
    arch: str | None = None
    source: str | None = None
    problem: str | None = None  # known at planning time: the test fails with this
    fix: str | None = None  # and what to do about it
    seed: int | None = None  # the training seed of a run repeated over seeds
    members: tuple[Path, ...] = ()  # an ensemble's models; a quant test's (fp32 parent, int8 model)
    # where a fold's predictions come from: None, running the model at model_path; else the
    # --loso-predictions file (model_path too) whose rows are the run's held-out predictions
    held_out: Path | None = None

    @property
    def name(self) -> str:
        return test_name(self.kind, self.label)

    @property
    def run(self) -> str | None:
        """The LOSO run a fold belongs to, aggregated on its own: ``arch``, or ``arch-seedN``."""
        return run_name(self.arch, self.seed) if self.arch else None

    def new_result(self) -> TestResult:
        return new_result(self.kind, self.name, self.label, self.run, self.seed, self.source, str(self.model_path))


@dataclass(frozen=True)
class Plan:
    """The session's planned tests, in the order they are collected."""

    specs: tuple[TestSpec, ...]
    versus: tuple[tuple[str, str], ...] = ()  # (new run, old run) of each versus[...] test
    slice_bounds: tuple[SliceBounds, ...] = ()  # each makes a slice[<run>-<column>=<value>] test per run

    def __iter__(self) -> Iterator[TestSpec]:
        return iter(self.specs)

    @property
    def folds(self) -> list[TestSpec]:
        return [spec for spec in self.specs if spec.kind == "fold"]

    def folds_of(self, run: str) -> list[TestSpec]:
        """The fold tests of one LOSO run (``arch`` or ``arch-seedN``)."""
        return [spec for spec in self.folds if spec.run == run]

    def is_seeded(self, run: str) -> bool:
        return any(spec.seed is not None for spec in self.folds_of(run))

    def seed_runs(self, arch: str) -> dict[int, str]:
        """``{seed: run}`` of an architecture trained over seeds."""
        return {spec.seed: spec.run for spec in self.folds
                if spec.arch == arch and spec.seed is not None and spec.run}

    @property
    def seeded_archs(self) -> list[str]:
        return sorted({spec.arch for spec in self.folds if spec.arch and spec.seed is not None})

    @property
    def names(self) -> set[str]:
        return {spec.name for spec in self.specs}

    def aggregate_tests(self) -> list[str]:
        """``aggregate[<run>]`` for each LOSO run, ``seeds[<arch>]`` for each architecture over seeds,
        ``versus[...]`` for each A/B pair, ``slice[...]`` for each run and bounded slice."""
        return aggregate_tests((spec.arch, spec.seed) for spec in self.folds if spec.arch) + [
            versus_test(new, old) for new, old in self.versus] + [name for name, _ in self.slice_tests()]

    @property
    def runs(self) -> list[str]:
        """Every LOSO run with folds in the plan, sorted."""
        return sorted({spec.run for spec in self.folds if spec.run})

    def slice_tests(self) -> list[tuple[str, tuple[str, SliceBounds]]]:
        """``(slice[<run>-<column>=<value>], (run, bounds))`` for each run and each ``--loso-slice-threshold``."""
        return [(slice_test(run, b.column, b.value), (run, b)) for run in self.runs for b in self.slice_bounds]

    def slice_of(self, test: str) -> tuple[str, SliceBounds]:
        """The run and the bounded slice a ``slice[...]`` test judges."""
        return next(found for name, found in self.slice_tests() if name == test)

    def versus_of(self, test: str) -> tuple[str, str]:
        """The ``(new, old)`` runs a ``versus[...]`` test judges (run names may hold a '-' of their own)."""
        return next(pair for pair in self.versus if versus_test(*pair) == test)


def make_plan(options: GateOptions, corpus: Corpus, held_out: HeldOut | None = None) -> Plan:
    """Every fold of every selected architecture (and held-out predictions' run) over the corpus's
    sources, then the baselines and ensembles; :class:`LosoInputError` when there is nothing to score."""
    found = find_fold_models(options.loso_dirs)
    nameless = sorted(p for (arch, _, _), paths in found.items() if not arch for p in paths)
    if nameless:  # its folds would belong to no run: no aggregate, and no place in the report
        raise LosoInputError(nameless[0], "a fold model's file name gives its architecture, <arch>_final.onnx, "
                             "and this one gives none", "rename it after its architecture, e.g. mlp_small_final.onnx")
    predicted = held_out.runs if held_out is not None else []
    archs = sorted({arch for arch, _, _ in found} | {run for run, _ in predicted})
    where = options.loso_dirs[0] if options.loso_dirs else options.held_out[0]
    if options.archs:
        unknown = [a for a in options.archs if a not in archs]
        if unknown:
            raise LosoInputError(
                where,
                f"no fold models{' or held-out predictions' if predicted else ''} for --loso-arch {', '.join(unknown)} "
                f"(found: {', '.join(archs) or 'none'})",
            )
        archs = [a for a in archs if a in options.archs]
    if not archs:
        raise LosoInputError(
            where,
            "no fold models found",
            "expected fold_<Source>/<arch>_final.onnx or loso_<arch>/fold_<Source>/<arch>_final.onnx",
        )
    sources = frozenset(corpus.sources)
    specs = []
    empty: dict[tuple[str, int | None], Path] = {  # keyed as runs are: (arch, seed or None)
        run: folder for run, folder in find_empty_seed_runs(options.loso_dirs, found).items() if run[0] in archs}
    runs = sorted({(arch, seed) for arch, seed, _ in found if arch in archs} | set(empty),
                  key=lambda r: (r[0], r[1] or -1))
    for arch, seed in runs:
        # every seed of a run is held to the same folds: the sources, and any fold another seed has
        for source in sorted(sources | {s for a, _, s in found if a == arch}):
            path, problem, fix = _fold_problem(found, arch, seed, source, sources, corpus, empty.get((arch, seed)))
            specs.append(TestSpec("fold", f"{run_name(arch, seed)}-{source}", path, arch=arch, source=source,
                                  problem=problem, fix=fix, seed=seed))
    for run, seed in (r for r in predicted if r[0] in archs):
        assert held_out is not None
        path = held_out.path_of(run, seed)
        if (run, seed) in runs:
            raise LosoInputError(path, f"run {run_name(run, seed)} has fold models in --loso-dir too",
                                 "give the held-out predictions' run another name than the fold models' architecture")
        predicted_sources = held_out.sources_of(run, seed)
        for source in sorted(sources | {s for r, sd in predicted if r == run for s in held_out.sources_of(r, sd)}):
            problem = fix = None
            if source not in sources:
                problem = (f"run {run_name(run, seed)} has held-out predictions for source {source}, which is not "
                           f"in {corpus.missing_source(source)}")
                fix = f"add the source's clips to the corpus, or drop its rows from {path.name}"
            elif source not in predicted_sources:
                problem = f"run {run_name(run, seed)} has no held-out predictions for source {source}"
                fix = (f"write the predictions of the fold that holds out {source}, or take {source} out of "
                       "the corpus")
            specs.append(TestSpec("fold", f"{run_name(run, seed)}-{source}", path, arch=run, source=source,
                                  problem=problem, fix=fix, seed=seed, held_out=path))
    for tag, path in zip(options.baseline_names, options.baselines):  # unique: options says so
        specs.append(TestSpec("baseline", tag, path))
    for ensemble in options.ensembles:
        members = ensemble.members
        problem = None
        if len(members) < 2:
            problem = (f"--loso-ensemble {ensemble.name}={ensemble.pattern} matches {len(members)} model file"
                       f"{'' if len(members) == 1 else 's'}; an ensemble's spread needs at least two members")
        specs.append(TestSpec("ensemble", ensemble.name, members[0] if members else Path(ensemble.pattern),
                              problem=problem, fix="give a glob that matches the members' .onnx files",
                              members=members))
    runs_planned = sorted({spec.run for spec in specs if spec.run})
    for new, old in options.versus:
        unknown = [run for run in (new, old) if run not in runs_planned]
        if unknown:
            raise LosoInputError(where, f"--loso-versus {new}={old} names {' and '.join(unknown)}, which no fold "
                                 f"model or predictions file of this run makes (runs: {', '.join(runs_planned)})",
                                 "name two runs this session scores (an architecture, a predictions run, or "
                                 "arch-seedN)")
    specs += _quant_specs(options)
    return Plan(tuple(specs), options.versus, options.slice_bounds)


INT8_SUFFIX = ".int8.onnx"


def _quant_specs(options: GateOptions) -> list[TestSpec]:
    """``quant[<tag>]``: each baseline ``X.onnx`` with an ``X.int8.onnx`` beside it, and each
    ``--loso-quantized``, paired with its fp32 parent ``X.onnx`` (one test per int8 file)."""
    found: dict[Path, str] = {}  # int8 path -> tag; named explicitly, a file keeps the tag given
    for tag, path in zip(options.baseline_names, options.baselines):
        sibling = path.with_name(path.name.removesuffix(".onnx") + INT8_SUFFIX)
        if path.name.endswith(".onnx") and not path.name.endswith(INT8_SUFFIX) and sibling.is_file():
            found[sibling] = tag
    for tag, path in options.quantized:
        found[path] = tag
    specs, tags = [], set()
    for path, tag in found.items():
        parent = path.with_name(path.name[: -len(INT8_SUFFIX)] + ".onnx") if path.name.endswith(INT8_SUFFIX) else None
        problem = fix = None
        if parent is None:
            problem = f"cannot tell the fp32 parent of {path.name}: a quantised model is named X.int8.onnx beside X.onnx"
            fix = "name the int8 file after its parent, X.int8.onnx beside X.onnx"
        elif not parent.is_file():
            problem = f"its fp32 parent {parent} is not there, and a quantised model is measured against it"
            fix = f"put {parent.name} beside {path.name}"
        elif tag in tags:
            problem = f"two quantised models are tagged {tag}"
            fix = "name each with --loso-quantized TAG=PATH"
        tags.add(tag)
        specs.append(TestSpec("quant", tag, path, problem=problem, fix=fix,
                              members=(parent, path) if parent is not None else (path,)))
    return specs


def _fold_problem(found: dict, arch: str, seed: int | None, source: str, sources: frozenset[str],
                  corpus: Corpus, empty_seed: Path | None = None) -> tuple[Path, str | None, str | None]:
    """A fold test's model file, and what is wrong with it known before scoring (with the fix).

    ``empty_seed`` is the run's seed folder when it holds fold folders but no model at all."""
    paths = found.get((arch, seed, source), [])
    if len(paths) > 1:
        return (paths[0], f"two fold models for {run_name(arch, seed)} on {source}: {', '.join(map(str, paths))}",
                "give --loso-dir folders that offer each fold once")
    if paths and source in sources:
        return paths[0], None, None
    if paths:
        return (paths[0], f"fold for source {source}, which is not in {corpus.missing_source(source)}",
                f"add the source's clips to the corpus, or remove fold_{source}")
    # where this run's other folds are (a sweep keeps them in loso_<arch>/[seed<N>/])
    run_dir = empty_seed or min(p.parent.parent for (a, sd, _), ps in found.items() if (a, sd) == (arch, seed)
                                for p in ps)
    expected = run_dir / f"fold_{source}" / f"{arch}_final.onnx"
    if empty_seed is not None and source in sources:
        return (expected, f"source {source} has no fold model: expected {expected} ({empty_seed.name}/ has fold "
                "folders but no fold model at all)",
                f"export seed {seed}'s fold models, or remove {empty_seed}")
    if source not in sources:  # only another seed has it: that seed's fold is the stray one
        stray = min((p for (a, _, s), ps in found.items() if (a, s) == (arch, source) for p in ps), key=str)
        return (expected, f"no fold for {source} here, where another seed has one ({stray}); and {source} is "
                "not a source of the corpus",
                f"remove fold_{source} from the seed that has it, or add the source's clips to the corpus")
    return (expected, f"source {source} has no fold model: expected {expected}",
            f"train and export the fold that holds out {source}, or take {source} out of the corpus")
