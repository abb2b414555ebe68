"""Writing reports: the session's results aggregated into JSON, Markdown and terminal tables.

Runs in the one process that sees every item's result (the xdist controller, or the only
process), so mean ± std over folds is the same with and without ``-n``. The JSON keeps
the keys of the team's evaluation scripts (``loso_per_fold``, ``loso_aggregate``,
``archs``, ``baselines``) and adds ``thresholds``, ``failures``, ``dropped_frames`` and
``run_provenance``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import write_atomically
from .compare import session_comparison
from .errors import LosoInputError
from .metrics import aggregate, digits, finite_or_none
from .thresholds import check_aggregate

if TYPE_CHECKING:
    from .gate import Gate

PRIMARY_ARCH = "mlp_small"  # what the single-arch keys describe when it was scored


def _clean(value: object) -> object:
    """NaN/inf become null, recursively: the report must be strict JSON."""
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _entry(result: dict) -> dict:
    """A fold's or baseline's metrics as the script wrote them, plus its error when it failed."""
    entry = dict(result["metrics"] or {})
    if result["error"]:
        entry["error"] = result["error"]
    return entry


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _git(cwd: Path) -> dict | None:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("pytest-loso", "pytest", "numpy", "scipy", "onnx", "onnxruntime"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


class SessionResults:
    """Results of the items that ran, gathered from their reports, and the session's report."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.options = gate.options
        self.results: dict[str, dict] = {}
        self.started = time.time()
        self.report: dict | None = None
        self.aggregate_failures: list[str] = []
        self.collection_errors: list[str] = []  # the gate could not make its items
        self.notes: list[str] = []  # what was written where, for the terminal summary

    def add(self, result: dict) -> None:
        self.results[result["name"]] = result

    def add_collection_error(self, message: str) -> None:
        if message not in self.collection_errors:  # under xdist every worker reports it
            self.collection_errors.append(message)

    @property
    def nothing_ran(self) -> bool:
        """No gate test ran (e.g. ``-m "not loso"``): there is nothing to report."""
        return not self.results and not self.collection_errors

    def _not_run(self) -> list[str]:
        """Planned tests that did not run (``-k``, ``--deselect``, ``--lf``, ``-x``...)."""
        try:
            planned = [check.name for check in self.gate.plan()]
        except LosoInputError:
            return []  # the collection error is the report's story
        return sorted(set(planned) - set(self.results))

    def build(self, argv: list[str], cwd: Path) -> dict:
        """Aggregate per architecture and assemble the whole report.

        A partial run (some planned tests not run) is reported as such: its aggregate is
        shown but not held to the aggregate bounds, and it is never compared as a whole.
        """
        gate, extraction = self.gate, self.gate.extraction()
        not_run = self._not_run()
        results = sorted(self.results.values(), key=lambda r: r["name"])
        archs: dict[str, dict] = {}
        for r in (r for r in results if r["kind"] == "fold"):
            archs.setdefault(r["arch"], {"per_fold": {}, "aggregate": None})["per_fold"][r["source"]] = _entry(r)
        failures = [{"test": "loso", "message": m} for m in self.collection_errors]
        failures += [{"test": r["name"], "message": r["error"]} for r in results if r["error"]]
        self.aggregate_failures = []
        for arch, block in sorted(archs.items()):
            scored = [m for m in block["per_fold"].values() if "plcc" in m]
            block["aggregate"] = aggregate(scored)
            if block["aggregate"] is None or not_run:
                continue
            for violation in check_aggregate(block["aggregate"], self.options.thresholds):
                message = f"{arch}: {violation.sentence()} over {len(scored)} folds"
                self.aggregate_failures.append(message)
                failures.append({"test": f"aggregate[{arch}]", "message": message})
        primary = PRIMARY_ARCH if PRIMARY_ARCH in archs else min(archs, default=None)
        baselines = {
            r["label"]: {
                "model_path": r["model_path"],
                "per_clip": r.get("per_clip", {}),
                "all_clips_concat": _entry(r),
            }
            for r in results
            if r["kind"] == "baseline"
        }
        sources: dict[str, dict] = {}
        models: dict[str, dict] = {}
        for r in results:
            sources.update(r.get("sources", {}))
            models.update(r.get("models", {}))
        computed, recomputed = set(extraction["computed"]), set(extraction["recomputed"])
        for r in results:
            computed.update(r.get("extraction", {}).get("computed", []))
            recomputed.update(r.get("extraction", {}).get("recomputed", []))
        for r in results:  # models that failed to load still get their file's hash
            models.setdefault(r["model_path"], {"sha256": _sha256(Path(r["model_path"]))})
        fingerprint = hashlib.sha256(
            "".join(f"{s}:{sources[s]['fingerprint']}\n" for s in sorted(sources)).encode()
        ).hexdigest()
        report_dir = self.options.report_dir
        self.report = _clean({
            "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "corpus": str(self.options.table or self.options.data_root),
            "loso_per_fold": archs[primary]["per_fold"] if primary else {},
            "loso_aggregate": archs[primary]["aggregate"] if primary else None,
            "loso_primary_arch": primary,
            "archs": archs,
            "baselines": baselines,
            "thresholds": self.options.thresholds.to_json(),
            "failures": failures,
            "dropped_frames": {s: v["dropped"] for s, v in sorted(sources.items()) if v["dropped"]},
            "warnings": gate.corpus_warnings(),
            "partial": {"not_run": not_run, "ran": len(results)} if not_run else None,
            "run_provenance": {
                "entry_point": "pytest11: loso = pytest_loso.plugin",
                "plugin_version": _versions()["pytest-loso"],
                "argv": argv,
                "cwd": str(cwd),
                "options": self.options.to_json(),
                "data_root": str(self.options.data_root) if self.options.data_root else None,
                "table": _table_provenance(gate),
                "cache_dir": str(self.options.cache_dir),
                "loso_dirs": [str(p) for p in self.options.loso_dirs],
                "archs": sorted(archs),
                "baselines": {str(p): _sha256(p) for p in self.options.baselines},
                "models": dict(sorted(models.items())),
                "outputs": {"json": str(report_dir / "loso_eval.json"), "markdown": str(report_dir / "loso_eval.md")},
                "cache_fingerprint": {
                    "sha256": fingerprint,
                    "sources": {s: v["fingerprint"] for s, v in sorted(sources.items())},
                    "files": sum(v["cache_files"] for v in sources.values()),
                },
                "extraction": _extraction_provenance(extraction["extractor"], computed, recomputed, sources),
                "git": _git(cwd),
                "versions": _versions(),
                "items_run": len(results),
                "started": _iso(self.started),
                "finished": _iso(time.time()),
            },
        })
        if not_run:
            self.notes.append(f"partial run: {len(not_run)} of {len(not_run) + len(results)} gate tests did not run; "
                              "the aggregate bounds and the aggregate comparison were not applied")
        if gate.accepted is not None and self.options.compare is not None:
            comparison = session_comparison(gate.accepted, self.report, self.options.max_drop,
                                            self.options.compare_mode, self.options.compare, not_run)
            self.report["comparison"] = _clean(comparison)
            for message in comparison["regressions"]:
                if message.startswith("aggregate["):
                    self.aggregate_failures.append(message)
                    self.report["failures"].append({"test": message.split(":")[0], "message": message})
        return self.report

    def write(self) -> list[Path]:
        """Write ``loso_eval.json`` and ``loso_eval.md`` atomically; return their paths."""
        assert self.report is not None
        out = self.options.report_dir
        out.mkdir(parents=True, exist_ok=True)
        json_path, md_path = out / "loso_eval.json", out / "loso_eval.md"
        write_atomically(json_path, json.dumps(self.report, indent=2) + "\n")
        write_atomically(md_path, render_markdown(self.report))
        self.notes.append(f"report: {json_path} (and {md_path.name})")
        return [json_path, md_path]

    def publish(self, *, passed: bool) -> None:
        """The optional outputs: OpenMetrics, GitHub step summary, plots, and accepting the report."""
        from .ci import append_step_summary, write_openmetrics

        assert self.report is not None
        options = self.options
        if options.metrics_path is not None:
            write_openmetrics(options.metrics_path, self.report)
            self.notes.append(f"metrics: {options.metrics_path}")
        summary = append_step_summary(render_markdown(self.report, summary=True))
        if summary is not None:
            self.notes.append(f"step summary: appended to {summary}")
        if options.plot_dir is not None:
            from .plots import write_plots

            for path in write_plots(options.plot_dir, self.report, self.results, options.thresholds):
                self.notes.append(f"plot: {path}")
        if options.accept and options.compare is not None:
            if self.report["partial"]:
                self.notes.append(f"NOT accepted: a partial run ({len(self.report['partial']['not_run'])} gate tests "
                                  f"did not run), {options.compare} is unchanged")
            elif passed or options.accept_force:
                write_atomically(options.compare, json.dumps(self.report, indent=2) + "\n")
                self.notes.append(f"accepted: this run's report is now {options.compare}")
            else:
                self.notes.append(f"NOT accepted: tests failed, {options.compare} is unchanged "
                                  "(--loso-accept-force accepts anyway)")


def _extraction_provenance(extractor: dict | None, computed: set, recomputed: set, sources: dict) -> dict:
    """Which libvmaf filled the cache, and how many pairs it computed versus read."""
    from .extract import Extractor

    files = sum(v["cache_files"] for v in sources.values())
    done = len(computed | recomputed)
    described = None
    if extractor is not None:
        described = dict(extractor, version=Extractor(extractor["kind"], Path(extractor["path"])).version())
    return {
        "extractor": described,
        "pairs_computed": done,
        "pairs_read_from_cache": max(files - done, 0),
        "corrupt_recomputed": sorted(recomputed),
    }


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))


def _num(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _with_ci(m: dict, name: str, digits: int) -> str:
    text = _num(m[name], digits)
    interval = (m.get("ci") or {}).get(name)
    return f"{text} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]" if interval else text


def _row(label: str, m: dict) -> list[str]:
    if "plcc" not in m:
        return [label, "—", "—", "—", "—", "—", "FAILED"]
    status = "FAILED" if "error" in m else "ok"
    return [label, str(m["n"]), _with_ci(m, "plcc", 4), _with_ci(m, "srocc", 4), _num(m.get("krcc"), 4),
            _with_ci(m, "rmse", 3), status]


def _mean_row(agg: dict | None) -> list[str]:
    if agg is None:
        return ["mean ± std", "—", "—", "—", "—", "—", ""]

    def pm(name: str, digits: int) -> str:
        return f"{_num(agg['mean_' + name], digits)} ± {_num(agg['std_' + name], digits)}"

    krcc = pm("krcc", 4) if "mean_krcc" in agg else "—"
    return [f"mean ± std ({agg['n_folds']} folds)", "—", pm("plcc", 4), pm("srocc", 4), krcc, pm("rmse", 3), ""]


def tables(report: dict, *, concat_only: bool = False) -> list[tuple[str, list[list[str]]]]:
    """(title, rows) for every table of the report; shared by Markdown and the terminal."""
    out = []
    for arch, block in report["archs"].items():
        rows = [_row(source, m) for source, m in block["per_fold"].items()]
        rows.append(_mean_row(block["aggregate"]))
        out.append((f"{arch}: each fold on its held-out source", rows))
    for tag, block in report["baselines"].items():
        rows = [] if concat_only else [_row(source, m) for source, m in block["per_clip"].items()]
        rows.append(_row("all sources concatenated", block["all_clips_concat"]))
        out.append((f"baseline {tag} ({block['model_path']})", rows))
    return out


HEADER = ["split", "n", "PLCC", "SROCC", "KRCC", "RMSE", "status"]


def render_markdown(report: dict, *, summary: bool = False) -> str:
    """The report as Markdown; ``summary`` leaves out baselines' per-source rows and provenance."""
    lines = ["# LOSO evaluation", "", f"Generated: {report['generated']}  ", f"Corpus: `{report['corpus']}`", ""]
    if report["archs"]:
        lines += ["## Aggregate (mean ± std across folds)", "", "| arch | folds | PLCC | SROCC | RMSE |",
                  "|---|---:|---:|---:|---:|"]
        for arch, block in report["archs"].items():
            row = _mean_row(block["aggregate"])
            folds = block["aggregate"]["n_folds"] if block["aggregate"] else 0
            lines.append(f"| {arch} | {folds} | {row[2]} | {row[3]} | {row[5]} |")
        lines.append("")
    for title, rows in tables(report, concat_only=summary):
        lines += [f"## {title}", "", "| " + " | ".join(HEADER) + " |", "|---|---:|---:|---:|---:|---:|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    lines += comparison_markdown(report.get("comparison"))
    if report["failures"]:
        lines += ["## Failures", ""]
        for failure in report["failures"]:
            message = failure["message"].replace("\n", " ")
            lines.append(f"- **{failure['test']}**: {message}")
        lines.append("")
    if report["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    if report["dropped_frames"]:
        lines += ["## Frames dropped to align features and scores", ""]
        for source, pairs in report["dropped_frames"].items():
            for stem, c in pairs.items():
                lines.append(
                    f"- {source}/{stem}: {c['feature_frames']} feature vs {c['score_frames']} score frames, "
                    f"{c['dropped']} dropped"
                )
        lines.append("")
    if summary:
        return "\n".join(lines)
    provenance = report["run_provenance"]
    lines += [
        "## Provenance",
        "",
        f"- plugin {provenance['plugin_version']}, {provenance['entry_point']}",
        f"- command: `{' '.join(provenance['argv'])}`",
        f"- cache fingerprint: `{provenance['cache_fingerprint']['sha256']}` "
        f"({provenance['cache_fingerprint']['files']} files)",
        f"- git: {provenance['git']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in provenance['versions'].items())}",
        "",
    ]
    return "\n".join(lines)


def comparison_rows(comparison: dict, *, changed_only: bool) -> list[list[str]]:
    rows = []
    for row in comparison["rows"]:
        if changed_only and row["verdict"] == "same":
            continue
        n = digits(row["metric"])
        rows.append([row["test"], row["metric"], f"{row['before']:.{n}f}", f"{row['after']:.{n}f}",
                     f"{row['delta']:+.{n}f}", row["verdict"] + (f" ({row['rule']})" if row["rule"] else "")])
    return rows


def comparison_markdown(comparison: dict | None) -> list[str]:
    if not comparison:
        return []
    lines = ["## Comparison with the accepted report", "",
             f"Accepted: `{comparison['accepted']}` ({comparison['accepted_generated']}), rule: {comparison['mode']}", ""]
    lines += [f"> **Warning:** {w}" for w in comparison["warnings"]]
    if comparison["warnings"]:
        lines.append("")
    lines += ["| test | metric | before | after | delta | verdict |", "|---|---|---:|---:|---:|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in comparison_rows(comparison, changed_only=False)]
    for key in ("added", "removed"):
        if comparison[key]:
            lines.append(f"\n{key.capitalize()} since the accepted report: {', '.join(comparison[key])}")
    lines.append("")
    return lines


def render_terminal(report: dict) -> list[str]:
    """Aligned plain-text tables for the terminal summary."""
    lines = []
    for title, rows in tables(report):
        lines.append(title)
        table = [HEADER] + rows
        widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
        for row in table:
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1])] + [row[-1]]
            lines.append("  " + "  ".join(cells).rstrip())
        lines.append("")
    comparison = report.get("comparison")
    if comparison:
        changed = comparison_rows(comparison, changed_only=True)
        lines.append(f"compared with {comparison['accepted']} (rule: {comparison['mode']}): "
                     + (f"{len(changed)} metrics changed" if changed else "no metric changed"))
        if changed:
            table = [["test", "metric", "before", "after", "delta", "verdict"]] + changed
            widths = [max(len(row[i]) for row in table) for i in range(6)]
            lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
        for key in ("added", "removed"):
            if comparison[key]:
                lines.append(f"{key} since the accepted report: {', '.join(comparison[key])}")
        lines.append("")
    return lines


def _table_provenance(gate: Gate) -> dict | None:
    """The per-frame table's path, sha256 and row counts, when the corpus is one (and was readable)."""
    from .table import TableCorpus

    if gate.options.table is None:
        return None
    try:
        corpus = gate.corpus
    except LosoInputError:
        return {"path": str(gate.options.table), "sha256": _sha256(gate.options.table)}
    return corpus.provenance() if isinstance(corpus, TableCorpus) else None
