"""Rendering a report: Markdown (the report file and the CI step summary) and the terminal summary."""

from __future__ import annotations

from pathlib import Path

from ..metrics import CI_METHOD, digits, label

SROCC_METHODS = {"average": "average ranks (scipy.stats.spearmanr)",
                 "ordinal": "ordinal ranks argsort(argsort(x)), ties not averaged"}

_MD_ESCAPES = {"|": "\\|", "\\": "\\\\", "`": "\\`", "<": "&lt;", ">": "&gt;", "&": "&amp;", "\n": " ", "\r": " "}


def _md(text: object) -> str:
    """``text`` as literal Markdown: folder names and messages may hold ``|``, newlines or HTML."""
    return "".join(_MD_ESCAPES.get(char, char) for char in str(text))


def _num(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _with_ci(m: dict, name: str, digits: int) -> str:
    text = _num(m[name], digits)
    interval = (m.get("ci") or {}).get(name)
    if not interval:
        return text
    method = (m.get("ci_method") or {}).get(name, "")
    # the tables' note says once what the mark means; ci_method in the JSON names each method
    shown = "" if method.startswith(CI_METHOD) or not method else NOT_BCA_MARK
    return f"{text} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]{shown}"


NOT_BCA_MARK = "*"


def interval_notes(report: dict, *, marked: bool = True) -> list[str]:
    """Said once under the tables: what the bootstrap was, what a marked interval is, and which
    sources have too few clips for their intervals to be trusted; ``marked=False`` leaves out
    the first sentence (the terminal says it only when a row is marked)."""
    intervals = report.get("intervals")
    if not intervals:
        return []
    notes = [f"Intervals: 95% {CI_METHOD} bootstrap over clips ({intervals['resamples']} resamples); an interval "
             f"marked {NOT_BCA_MARK} is the percentile one, BCa being undefined or missing its estimate there "
             "(its method is ci_method in loso_eval.json)."] if marked else []
    if intervals.get("note"):
        notes.append(intervals["note"])
    return notes


def _with_logistic(m: dict, name: str, digits: int) -> str:
    """The metric with its interval, and after the logistic mapping when ``--loso-logistic`` computed it."""
    text = _with_ci(m, name, digits)
    key = f"{name}_logistic"
    return f"{text}; logistic {_num(m[key], digits)}" if key in m else text


def _row(label: str, m: dict, *, checked: bool = True) -> list[str]:
    """One scored set of frames; ``checked=False`` for rows no bound applies to (status "—")."""
    if "plcc" not in m:
        return [label, "—", "—", "—", "—", "—", "FAILED"]
    status = ("FAILED" if "error" in m else "ok") if checked else "—"
    return [label, str(m["n"]), _with_logistic(m, "plcc", 4), _with_ci(m, "srocc", 4), _num(m.get("krcc"), 4),
            _with_logistic(m, "rmse", 3), status]


def _mean_row(agg: dict | None) -> list[str]:
    if agg is None:
        return ["mean ± std", "—", "—", "—", "—", "—", ""]

    def pm(name: str, digits: int) -> str:
        text = f"{_num(agg['mean_' + name], digits)} ± {_num(agg['std_' + name], digits)}"
        interval = (agg.get("ci") or {}).get(name)  # the mean's two-stage bootstrap interval
        return text + (f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]" if interval else "")

    krcc = pm("krcc", 4) if "mean_krcc" in agg else "—"
    return [f"mean ± std ({_fold_count(agg)})", "—", pm("plcc", 4), pm("srocc", 4), krcc, pm("rmse", 3), ""]


def _fold_count(agg: dict) -> str:
    """``9 folds``, or ``7 of 9 folds`` when some planned folds are missing from the mean."""
    n, planned = agg["n_folds"], agg.get("n_folds_planned", agg["n_folds"])
    return f"{n} folds" if n == planned else f"{n} of {planned} folds"


AGGREGATE_STATUS = {"passed": "ok", "failed": "FAILED", "skipped": "not checked", "not run": "not run"}


def _aggregate_status(report: dict, arch: str) -> str:
    check = (report.get("aggregate_checks") or {}).get(arch)
    return AGGREGATE_STATUS[check["outcome"]] if check else "—"


def tables(report: dict, *, concat_only: bool = False) -> list[tuple[str, list[list[str]]]]:
    """(title, rows) for every table of the report; shared by Markdown and the terminal."""
    out = []
    for arch, block in report["archs"].items():
        rows = [_row(source, m) for source, m in block["per_fold"].items()]
        rows.append(_mean_row(block["aggregate"])[:-1] + [_aggregate_status(report, arch)])
        out.append((f"{arch}: each fold on its held-out source", rows))
    for arch, summary in (report.get("seeds") or {}).items():
        out += _seed_tables(arch, summary, concat_only)
    for tag, block in report["baselines"].items():
        # per-source rows are context: only the concatenation is held to the bounds
        rows = [] if concat_only else [_row(source, m, checked=False) for source, m in block["per_clip"].items()]
        rows.append(_row("all sources concatenated", block["all_clips_concat"]))
        out.append((f"baseline {tag} ({block['model_path']})", rows))
    for name, block in (report.get("ensembles") or {}).items():
        rows = [] if concat_only else [_row(source, m, checked=False) + [_coverage(m)]
                                       for source, m in block["per_clip"].items()]
        rows.append(_row("all sources concatenated (mean μ)", block["all_clips_concat"]) +
                    [_coverage(block["all_clips_concat"])])
        rows += [_row(f"member {Path(path).name}", m["all_clips_concat"], checked=False) + [""]
                 for path, m in block["members"].items() if "all_clips_concat" in m]
        out.append((f"ensemble {name} ({len(block['members'])} members)", rows))
    return out


def _coverage(m: dict) -> str:
    """The ensemble's spread: mean σ, the share of frames inside μ ± 1.96σ, and its calibration:
    the coverage and mean width of μ ± zσ at each nominal level."""
    if "coverage_95" not in m:
        return "—"
    text = f"σ {m['mean_sigma']:.3f}" + (f", {100 * m['coverage_95']:.1f}% in μ±1.96σ"
                                         if m["coverage_95"] is not None else "")
    levels = m.get("calibration") or {}
    if levels:
        text += "; nominal " + ", ".join(
            f"{level}%: {100 * f['coverage']:.1f}% in (width {f['mean_width']:.2f})" for level, f in levels.items())
    return text


def _seed_tables(arch: str, summary: dict, short: bool) -> list[tuple[str, list[list[str]]]]:
    """Each seed's mean over folds, the mean over seeds with its spread, and each fold across seeds."""
    def pm(block: dict, name: str, digits: int) -> str:
        return f"{_num(block['mean_' + name], digits)} ± {_num(block['std_' + name], digits)}"

    def spread(name: str, digits: int) -> str:
        return _num(summary[f"spread_{name}"], digits)

    rows = [[f"seed {seed}", f"{agg['n_folds']} folds", pm(agg, "plcc", 4), pm(agg, "srocc", 4), "—",
             pm(agg, "rmse", 3), ""] for seed, agg in summary["per_seed"].items()]
    rows.append([f"mean ± std over {summary['n_seeds']} seeds", "—", pm(summary, "plcc", 4), pm(summary, "srocc", 4),
                 "—", pm(summary, "rmse", 3), AGGREGATE_STATUS[summary["check"]["outcome"]]])
    rows.append(["spread (max − min)", "—", spread("plcc", 4), spread("srocc", 4), "—", spread("rmse", 3), ""])
    rows.append([f"lowest seed: {summary['lowest_seed']}", "—", _num(summary["lowest_seed_mean_plcc"], 4),
                 "—", "—", "—", ""])
    out = [(f"{arch} over seeds: each seed's mean over folds", rows)]
    if not short:
        folds = [[source, f"{agg['n_seeds']} seeds", pm(agg, "plcc", 4), pm(agg, "srocc", 4), "—",
                  pm(agg, "rmse", 3), ""] for source, agg in summary["per_fold"].items()]
        out.append((f"{arch} over seeds: each fold's mean ± std across seeds", folds))
    if "calibration" in summary:  # the seeds' folds on a source as an ensemble (μ, σ over seeds per frame)
        calib = [] if short else [[source, f"{agg['n_seeds']} seeds", "—", "—", "—", "—", "", _coverage(
            dict(agg, coverage_95=None))] for source, agg in summary["per_fold"].items() if "calibration" in agg]
        calib.append(["all sources concatenated", str(summary["calibration_n"]), "—", "—", "—", "—",
                      AGGREGATE_STATUS[summary["check"]["outcome"]], _coverage(dict(summary, coverage_95=None))])
        out.append((f"{arch} over seeds as an ensemble of its seeds' folds: calibration", calib))
    return out


HEADER = ["split", "n", "PLCC", "SROCC", "KRCC", "RMSE", "status"]


def _header(rows: list[list[str]]) -> list[str]:
    """The columns of a table: an ensemble's rows add its spread."""
    return HEADER + ["spread"] if rows and len(rows[0]) > len(HEADER) else HEADER


def render_markdown(report: dict, *, summary: bool = False) -> str:
    """The report as Markdown; ``summary`` leaves out baselines' per-source rows and provenance."""
    lines = ["# LOSO evaluation", "", f"Generated: {report['generated']}  ", f"Corpus: `{report['corpus']}`", ""]
    partial = report.get("partial")
    if partial:
        ran = partial.get("tests_ran") or []
        lines += [f"**Partial run:** {partial['ran']} of {partial['ran'] + len(partial['not_run'])} gate tests ran "
                  f"({_md(', '.join(ran)) or 'none'}); not run: {_md(', '.join(partial['not_run']))}. "
                  "Means below cover only the folds that ran: they are not the aggregate, and no aggregate "
                  "bound or comparison was applied.", ""]
    if report["archs"]:
        title = "Mean over the folds that ran (partial run: not the aggregate)" if partial else \
            "Aggregate (mean ± std across folds)"
        lines += [f"## {title}", "", "| arch | folds | PLCC | SROCC | RMSE | status |",
                  "|---|---:|---:|---:|---:|---|"]
        for arch, block in report["archs"].items():
            row = _mean_row(block["aggregate"])
            folds = _fold_count(block["aggregate"]) if block["aggregate"] else "0 folds"
            lines.append(f"| {_md(arch)} | {folds} | {row[2]} | {row[3]} | {row[5]} | {_aggregate_status(report, arch)} |")
        lines.append("")
        notes = [f"- **aggregate[{_md(arch)}]** not checked: {_md(check['message'])}"
                 for arch, check in (report.get("aggregate_checks") or {}).items()
                 if check["outcome"] in ("skipped", "not run")]
        lines += notes + ([""] if notes else [])
    for title, rows in tables(report, concat_only=summary):
        header = _header(rows)
        lines += [f"## {_md(title)}", "", "| " + " | ".join(header) + " |",
                  "|---|" + "---:|" * 5 + "---|" * (len(header) - 6)]
        lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
        lines.append("")
    for note in interval_notes(report):
        lines += [_md(note), ""]
    lines += [f"SROCC: {report.get('srocc_method', SROCC_METHODS['average'])}.", ""]
    lines += thresholds_markdown(report["thresholds"])
    lines += versus_markdown(report.get("versus"))
    lines += slices_markdown(report.get("slices"))
    lines += comparison_markdown(report.get("comparison"))
    lines += registry_markdown(report.get("registry"))
    lines += quantized_markdown(report.get("quantized"))
    if report["failures"]:
        lines += ["## Failures", ""]
        for failure in report["failures"]:
            lines.append(f"- **{_md(failure['test'])}**: {_md(failure['message'])}")
        lines.append("")
    if report["warnings"]:
        lines += ["## Warnings", ""] + [f"- {_md(w)}" for w in report["warnings"]] + [""]
    if report["dropped_frames"]:
        lines += ["## Frames dropped to align features and scores", ""]
        for source, pairs in report["dropped_frames"].items():
            for stem, c in pairs.items():
                lines.append(
                    f"- {_md(source)}/{_md(stem)}: {c['feature_frames']} feature vs {c['score_frames']} score frames, "
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
        f"- command: {_md(' '.join(provenance['argv']))}",
        f"- cache fingerprint: `{provenance['cache_fingerprint']['sha256']}` "
        f"({provenance['cache_fingerprint']['files']} files)",
        f"- git: {provenance['git']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in provenance['versions'].items())}",
        "",
    ]
    return "\n".join(lines)


def _difference(block: dict, metric: str) -> str:
    d = (block.get("difference") or {}).get(metric)
    if d is None:
        return "—"
    places = digits(metric) + 1
    ci = (block.get("ci") or {}).get(metric)
    return f"{d:+.{places}f}" + (f" [{ci[0]:+.{places}f}, {ci[1]:+.{places}f}]" if ci else "")


VERSUS_TITLE = "Versus (paired, new − old over common folds; 95% interval)"
VERSUS_HEADER = ["test", "folds", "PLCC", "SROCC", "RMSE", "winner", "rule", "status"]


def versus_rows(versus: dict) -> list[list[str]]:
    """Per paired A/B test: the mean differences new − old with their 95% intervals, the winner, rule and outcome."""
    rows = []
    for test, block in versus.items():
        winner = block.get("winner") or ("no difference shown" if "difference" in block else "—")
        rows.append([test, str(block.get("n_folds", 0)), _difference(block, "plcc"), _difference(block, "srocc"),
                     _difference(block, "rmse"), winner, block.get("rule", ""), block["check"]["outcome"]])
    return rows


def versus_markdown(versus: dict | None) -> list[str]:
    """The paired A/B tests as a Markdown table (:func:`versus_rows`)."""
    if not versus:
        return []
    lines = [f"## {VERSUS_TITLE}", "", "| " + " | ".join(VERSUS_HEADER) + " |", "|---|---:|---:|---:|---:|---|---|---|"]
    for test, folds, plcc, srocc, rmse, winner, rule, outcome in versus_rows(versus):
        lines.append(f"| {_md(test)} | {folds} | {plcc} | {srocc} | {rmse} | {_md(winner)} | {_md(rule)} | {outcome} |")
    return lines + [""]


SLICE_VALUES_SHOWN = 12  # a table wider than this is unreadable; the JSON has every value


def _slice_cell(plcc: float | None, rmse: float | None, check: dict | None = None) -> str:
    text = "—" if plcc is None and rmse is None else f"{_num(plcc, 4)} / {_num(rmse, 3)}"
    return text + (f" ({AGGREGATE_STATUS[check['outcome']]})" if check else "")


def slices_markdown(slices: dict | None) -> list[str]:
    """Per slice column, one compact table: runs (mean over folds) and baselines / ensembles (their
    concatenation) × the column's values, each cell mean PLCC / RMSE; then the folds left out of a mean."""
    if not slices:
        return []
    lines: list[str] = []
    for column, values in slices.items():
        shown = list(values)[:SLICE_VALUES_SHOWN]
        rows: dict[str, dict[str, str]] = {}
        notes = []
        for value in shown:
            block = values[value]
            for run, summary in block["runs"].items():
                rows.setdefault(run, {})[value] = _slice_cell(summary.get("mean_plcc"), summary.get("mean_rmse"),
                                                              summary.get("check"))
                for source, why in (summary.get("left_out") or {}).items():
                    notes.append(f"- {_md(run)}, {_md(column)}={_md(value)}: {_md(source)} left out of the mean ({_md(why)})")
            for kind in ("baselines", "ensembles"):
                for name, m in block[kind].items():
                    rows.setdefault(f"{kind[:-1]} {name} (all sources)", {})[value] = _slice_cell(m.get("plcc"),
                                                                                                 m.get("rmse"))
        lines += [f"## Slices by {_md(column)} (mean PLCC / RMSE over folds; baselines on all sources)", "",
                  "| run | " + " | ".join(_md(v) for v in shown) + " |", "|---|" + "---:|" * len(shown)]
        lines += [f"| {_md(name)} | " + " | ".join(cells.get(v, "—") for v in shown) + " |"
                  for name, cells in rows.items()]
        lines.append("")
        if len(values) > len(shown):
            lines += [f"{len(values) - len(shown)} more values of {_md(column)} in loso_eval.json (slices).", ""]
        lines += notes + ([""] if notes else [])
    return lines


def thresholds_markdown(thresholds: dict) -> list[str]:
    """The bounds this run held its tests to ("off" where a bound is disabled)."""
    def bounds(values: dict) -> str:
        return ", ".join(f"{label(key.split('_', 1)[1])} {'≥' if key.startswith('min') else '≤'} "
                         + ("off" if value is None else f"{value:g}") for key, value in values.items())

    lines = ["## Thresholds", "", f"- each fold, and each baseline on all sources: {bounds(thresholds['fold'])}"]
    lines += [f"- fold {_md(source)}: {bounds(b)}" for source, b in thresholds["per_source"].items()]
    lines += [f"- each architecture's mean over folds: {bounds(thresholds['aggregate'])}",
              "- baselines' per-source rows: not held to a bound (status —)", ""]
    return lines


def quantized_markdown(quantized: dict | None) -> list[str]:
    """One row per quantised model: its figures against VMAF and against its fp32 parent."""
    if not quantized:
        return []
    vnni = {True: "yes", False: "no"}.get(quantized["cpu_vnni"], quantized["cpu_vnni"])
    lines = ["## Quantised models against their fp32 parents", "",
             f"Int8 models run {quantized['batch_means']}; onnxruntime {quantized['onnxruntime']}; CPU VNNI: {vnni}. "
             "The figures are of this batching and this machine.", "",
             "| quant | int8 model | n | PLCC int8 (fp32) | RMSE int8 (fp32) | agreement 1−PLCC(fp32, int8) | "
             "PLCC drop | RMSE rise | bias | max \\|Δ\\| | status |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for tag, block in quantized["models"].items():
        m = block["all_clips_concat"]
        if "plcc" not in m:
            lines.append(f"| {_md(tag)} | {_md(Path(block['model_path']).name)} | — | — | — | — | — | — | — | — | FAILED |")
            continue

        def interval(name: str, digits: int) -> str:
            ci = (m.get("ci") or {}).get(name)
            return f"{_num(m[name], digits)}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")

        status = "FAILED" if "error" in m else "ok"
        lines.append(f"| {_md(tag)} | {_md(Path(block['model_path']).name)} | {m['n']} | "
                     f"{_num(m['plcc'], 4)} ({_num(m['fp32']['plcc'], 4)}) | {_num(m['rmse'], 3)} "
                     f"({_num(m['fp32']['rmse'], 3)}) | {_num(m['agreement'], 5)} | {interval('plcc_drop', 4)} | "
                     f"{interval('rmse_rise', 3)} | {_num(m['bias'], 3)} | {_num(m['max_abs_diff'], 3)} | {status} |")
    return lines + [""]


def registry_markdown(registry: dict | None) -> list[str]:
    """``--loso-registry``: which scored models it pins and whether they matched, and those it does not list."""
    if not registry:
        return []
    checked = registry["checked"]
    matched = sum(1 for r in checked.values() if r.get("matches"))
    lines = ["## Registry", "", f"`{_md(registry['path'])}` (sha256 `{registry['sha256'][:12]}`): "
             f"{matched} of {len(checked)} listed models match their pins.", ""]
    lines += [f"- **mismatch**: {_md(Path(p).name)} (entry {_md(checked[p]['entry'])}, {checked[p]['pin']})"
              for p in registry["mismatched"]]
    lines += [f"- not pinned: {_md(Path(p).name)} (entry {_md(checked[p]['entry'])} has no {checked[p]['pin']})"
              for p in registry["unpinned"]]
    if registry["unlisted"]:
        lines.append(f"- not in the registry: {_md(', '.join(Path(p).name for p in registry['unlisted']))}")
    return lines + [""] if len(lines) > 4 else lines


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
    lines += [f"> **Warning:** {_md(w)}" for w in comparison["warnings"]]
    if comparison["warnings"]:
        lines.append("")
    lines += ["| test | metric | before | after | delta | verdict |", "|---|---|---:|---:|---:|---|"]
    lines += ["| " + " | ".join(_md(cell) for cell in r) + " |" for r in comparison_rows(comparison, changed_only=False)]
    lines += [f"\n{_md(text)}" for text in comparison_notes(comparison)]
    lines.append("")
    return lines


def comparison_notes(comparison: dict) -> list[str]:
    """Tests that were not compared, and why: added, removed, failed, or an incomplete aggregate."""
    notes = [f"{key} since the accepted report: {', '.join(comparison[key])}"
             for key in ("added", "removed") if comparison[key]]
    if comparison.get("failed"):
        notes.append(f"failed in this run, not compared: {', '.join(comparison['failed'])}")
    notes += [f"{test} not compared: {reason}" for test, reason in (comparison.get("not_compared") or {}).items()]
    pairing = comparison.get("pairing")
    if pairing:
        notes.append(f"noise rule: paired (bootstrap of new − accepted over the same clips) for {pairing['paired']} of "
                     f"{pairing['compared']} tests")
        notes += [f"{test}: unpaired rule (this run's interval vs the accepted value): {reason}"
                  for test, reason in pairing["unpaired"].items()]
    return notes


def render_terminal(report: dict) -> list[str]:
    """Aligned plain-text tables for the terminal summary."""
    lines = []
    for title, rows in tables(report):
        lines.append(title)
        table = [_header(rows)] + rows
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        for row in table:
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1])] + [row[-1]]
            lines.append("  " + "  ".join(cells).rstrip())
        lines.append("")
    marked = any(f"]{NOT_BCA_MARK}" in cell for _, rows in tables(report) for row in rows for cell in row)
    notes = interval_notes(report, marked=marked)
    lines += [*notes, ""] if notes and lines else []
    if report.get("versus"):
        table = [VERSUS_HEADER] + versus_rows(report["versus"])
        widths = [max(len(row[i]) for row in table) for i in range(len(VERSUS_HEADER))]
        lines.append(VERSUS_TITLE)
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
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
        lines += comparison_notes(comparison)
        lines.append("")
    return lines
