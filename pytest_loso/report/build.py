"""Building the report: the session's results, aggregated and judged, as one JSON-able dict.

The JSON keeps the keys of the team's evaluation scripts (``loso_per_fold``,
``loso_aggregate``, ``archs``, ``baselines``) and adds ``thresholds``, ``failures``,
``dropped_frames`` and ``run_provenance``.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import overload

from ..compare import session_comparison
from ..files import sha256_or_none
from ..gate import Gate
from ..ids import primary_arch, report_paths, versus_test
from ..judging import AggregateJudge
from ..metrics import CI_METHOD, FEW_CLIPS, finite_or_none
from ..metrics.slices import value_order
from ..records import ExtractionRecord, ModelRecord, SourceRecord, TestResult
from ..results import ResultStore
from ..quantized import runtime
from .provenance import extraction_provenance, git_state, iso_time, versions
from .render import SROCC_METHODS


@overload
def clean(value: dict) -> dict: ...


@overload
def clean(value: object) -> object: ...


def clean(value: object) -> object:
    """NaN/inf become null, recursively: the report must be strict JSON (a dict stays a dict)."""
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def _entry(result: TestResult) -> dict:
    """A fold's or baseline's metrics as the script wrote them, plus its error when it failed."""
    entry = dict(result["metrics"] or {})
    if result["error"]:
        entry["error"] = result["error"]
    return entry


def build_report(gate: Gate, store: ResultStore, judge: AggregateJudge, *, acceptance: dict | None,
                 accept_failure: dict | None, argv: list[str], cwd: Path, started: float) -> dict:
    """Aggregate per LOSO run and assemble the whole report.

    A partial run (some planned tests not run) is reported as such: its aggregate is shown but
    not held to the aggregate bounds, and it is never compared as a whole. ``acceptance`` is the
    report's ``acceptance`` block, ``accept_failure`` the ``loso::accept`` failure when that test ran.
    """
    options = gate.options
    extraction = gate.extraction()
    not_run = store.not_run()
    results = store.sorted()
    ran = store.ran()  # the aggregate tests that ran too: "N of M" counts every planned gate test
    archs: dict[str, dict] = {}
    for r in (r for r in results if r["kind"] == "fold"):
        # every fold has its run: the plan gives each fold an architecture (make_plan refuses a nameless model)
        assert r["run"] is not None, r["name"]
        archs.setdefault(r["run"], {"per_fold": {}, "aggregate": None})["per_fold"][r["source"]] = _entry(r)
    failures = [{"test": "loso", "message": m} for m in store.collection_errors]
    failures += [{"test": r["name"], "message": r["error"]} for r in results if r["error"]]
    aggregate_checks = {}
    for run, block in sorted(archs.items()):
        block["aggregate"] = judge.aggregate(run, block["per_fold"])
        judgement = judge.as_run(judge.judge_aggregate(run))
        aggregate_checks[run] = judgement.to_json()
        if judgement.outcome == "failed":
            failures.append({"test": judgement.test, "message": judgement.message})
    seeds = {}
    for arch in store.plan.seeded_archs:
        summary = judge.seed_summary(arch)
        if summary is None:
            continue
        judgement = judge.as_run(judge.judge_seeds(arch))
        seeds[arch] = dict(summary, check=judgement.to_json())
        if judgement.outcome == "failed":
            failures.append({"test": judgement.test, "message": judgement.message})
    versus = {}
    for new, old in store.plan.versus:
        judgement = judge.as_run(judge.judge_versus(versus_test(new, old)))
        versus[judgement.test] = dict(judge.versus(new, old) or {"new": new, "old": old}, check=judgement.to_json())
        if judgement.outcome == "failed":
            failures.append({"test": judgement.test, "message": judgement.message})
    slices = _slices(store, judge, results, failures) if options.slices else None
    primary = primary_arch(archs)
    baselines = {r["label"]: {"model_path": r["model_path"], "per_clip": r.get("per_clip", {}),
                              "all_clips_concat": _entry(r)} for r in results if r["kind"] == "baseline"}
    ensembles = {r["label"]: {"members": r.get("members", {}), "per_clip": r.get("per_clip", {}),
                              "all_clips_concat": _entry(r)} for r in results if r["kind"] == "ensemble"}
    quantized = {r["label"]: {"model_path": r["model_path"], "parent_path": r.get("parent_path"),
                              "per_clip": r.get("per_clip", {}), "all_clips_concat": _entry(r)}
                 for r in results if r["kind"] == "quant"}
    sources: dict[str, SourceRecord] = {}
    models: dict[str, ModelRecord] = {}
    for r in results:
        sources.update(r.get("sources", {}))
        models.update(r.get("models", {}))
    for r in results:  # models that failed to load still get their file's hash
        models.setdefault(r["model_path"], ModelRecord(sha256=sha256_or_none(Path(r["model_path"]))))
    registry = _registry(gate, models)
    file_sha256 = {name: digest for v in sources.values() for name, digest in v.get("file_sha256", {}).items()}
    fingerprint = hashlib.sha256(
        "".join(f"{s}:{sources[s]['fingerprint']}\n" for s in sorted(sources)).encode("utf-8", "surrogatepass")
    ).hexdigest()
    report = clean({
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "corpus": str(options.table or options.data_root),
        "loso_per_fold": archs[primary]["per_fold"] if primary else {},
        "loso_aggregate": archs[primary]["aggregate"] if primary else None,
        "loso_primary_arch": primary,
        "archs": archs,
        "baselines": baselines,
        "ensembles": ensembles,
        "registry": registry,
        "quantized": dict(runtime(options.quant_batch), models=quantized) if quantized else None,
        "aggregate_checks": aggregate_checks,
        "seeds": seeds,
        "versus": versus,
        **({"slices": slices} if slices is not None else {}),
        "thresholds": options.thresholds.to_json(),
        "srocc_method": SROCC_METHODS[options.srocc_ranks],
        "failures": failures + ([accept_failure] if accept_failure else []),
        "acceptance": acceptance,
        "dropped_frames": {s: v["dropped"] for s, v in sorted(sources.items()) if v["dropped"]},
        "warnings": gate.corpus_warnings(),
        "partial": {"not_run": not_run, "ran": len(ran), "tests_ran": ran} if not_run else None,
        "run_provenance": {
            "entry_point": "pytest11: loso = pytest_loso.plugin",
            "plugin_version": versions()["pytest-loso"],
            "argv": argv,
            "cwd": str(cwd),
            "options": options.to_json(),
            "data_root": str(options.data_root) if options.data_root else None,
            "table": gate.corpus_provenance(),
            "cache_dir": str(options.cache_dir),
            "loso_dirs": [str(p) for p in options.loso_dirs],
            "held_out_predictions": gate.held_out_provenance(),
            "archs": sorted(archs),
            "baselines": {str(p): sha256_or_none(p) for p in options.baselines},
            "models": dict(sorted(models.items())),
            "outputs": {kind: str(path) for kind, path in
                        report_paths(options.report_dir,
                                     partial=bool(not_run or store.collection_errors)).items()},
            "cache_fingerprint": {
                "sha256": fingerprint,
                "sources": {s: v["fingerprint"] for s, v in sorted(sources.items())},
                # a table is one file, read for every source
                "files": len(file_sha256),
                "file_sha256": dict(sorted(file_sha256.items())),
            },
            "extraction": _extraction(extraction, results, {str(options.cache_dir / name) for name in file_sha256}),
            "git": git_state(cwd),
            "versions": versions(),
            "items_run": len(results),
            "started": iso_time(started),
            "finished": iso_time(time.time()),
        },
    })
    report["intervals"] = _intervals(options.bootstrap, sources)
    if gate.accepted.report is not None and options.compare is not None:
        report["comparison"] = clean(session_comparison(gate.accepted.report, report, options.max_drop,
                                                        options.compare_mode, options.compare, not_run))
    return report


def _registry(gate: Gate, models: dict[str, ModelRecord]) -> dict | None:
    """``--loso-registry``: the registry read, the models it pins (and whether each matched), and the
    scored models it does not list (listed here, not failed)."""
    registry = gate.scorer.registry
    if registry is None:
        return None
    checked = {path: record["registry"] for path, record in sorted(models.items())
               if (record.get("registry") or {}).get("entry") is not None}
    return dict(registry.to_json(),
                checked=checked,
                mismatched=[path for path, record in checked.items() if record.get("matches") is False],
                unpinned=[path for path, record in checked.items() if record.get("matches") is None],
                unlisted=[path for path, record in sorted(models.items())
                          if "registry" in record and record["registry"].get("entry") is None])


def _slices(store: ResultStore, judge: AggregateJudge, results: list[TestResult], failures: list[dict]) -> dict:
    """``--loso-slice``: per column and value, each run's folds and mean over folds (with its
    ``slice[...]`` test's check when bounded), and each baseline's and ensemble's concatenation."""
    columns = judge.options.slices
    found: dict[str, dict[str, dict]] = {column: {} for column in columns}

    def entry(column: str, value: str) -> dict:
        return found[column].setdefault(value, {"runs": {}, "baselines": {}, "ensembles": {}})

    for column in columns:
        values = sorted({value for r in results for value in ((r.get("slices") or {}).get(column) or {})},
                        key=value_order)
        for value in values:
            for run in store.plan.runs:
                summary = judge.slice_summary(run, column, value)
                if summary is not None:
                    entry(column, value)["runs"][run] = summary
            for r in results:
                if r["kind"] != "fold" and value in ((r.get("slices") or {}).get(column) or {}):
                    entry(column, value)[f"{r['kind']}s"][r["label"]] = r["slices"][column][value]
    for test, (run, bounds) in store.plan.slice_tests():
        judgement = judge.as_run(judge.judge_slice(test))
        runs = entry(bounds.column, bounds.value)["runs"]
        runs[run] = dict(runs.get(run) or {"n_folds": 0}, bounds=dict(bounds.bounds), check=judgement.to_json())
        if judgement.outcome == "failed":
            failures.append({"test": judgement.test, "message": judgement.message})
    return {column: dict(sorted(values.items(), key=lambda item: value_order(item[0])))
            for column, values in found.items()}


def _extraction(extraction: ExtractionRecord | None, results: list[TestResult], read: set[str]) -> dict | None:
    """How the cache was filled, over every process's results (``None``: a corpus that computes nothing)."""
    if extraction is None:
        return None  # a table is read as it is: no cache, nothing computed
    computed, recomputed = set(extraction["computed"]), dict(extraction["recomputed"])
    for r in results:
        computed.update((r.get("extraction") or {}).get("computed", []))
        recomputed.update((r.get("extraction") or {}).get("recomputed", {}))
    return extraction_provenance(extraction["extractor"], computed, recomputed, read,
                                 extraction.get("kept_on_recompute", []))


def _intervals(resamples: int, sources: dict[str, SourceRecord]) -> dict | None:
    """How the intervals were made and, said once, the sources with too few clips to trust theirs."""
    if resamples <= 0:
        return None
    few = {source: v["clips"] for source, v in sorted(sources.items()) if v.get("clips", FEW_CLIPS) < FEW_CLIPS}
    note = None
    if few:
        listed = ", ".join(f"{source} ({clips})" for source, clips in list(few.items())[:10])
        more = f" and {len(few) - 10} more" if len(few) > 10 else ""
        note = (f"{len(few)} source{'s have' if len(few) > 1 else ' has'} fewer than {FEW_CLIPS} clips, too few for a "
                f"trustworthy bootstrap interval: {listed}{more}. Their intervals (and any mean over them) "
                "are a rough guide only; with so few clips BCa often misses its own estimate.")
    return {"method": CI_METHOD, "resamples": resamples, "few_clips": few, "note": note}
