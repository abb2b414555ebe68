"""What the gate reads and writes: each cache file once per process; the report atomically, always."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from loso_helpers import ARCHS, BASELINE_ID, BASELINE_TAG, SOURCES, all_ids, install_open_recorder
from shared_runs import SharedRuns, template_gate  # noqa: F401  (template_gate: a fixture)

NO_EXTRACTOR = "--loso-extractor=none"
SHARED = SharedRuns()


def _cache_reads(gate, opened_log) -> Counter:
    cache = str(gate.cache_dir.resolve())
    paths = json.loads(opened_log.read_text())
    return Counter(p for p in paths if p.startswith(cache + "/") and p.endswith(".json"))


@pytest.fixture
def recorded_deep_run(template_gate):
    """The untouched template's run, every path it opens recorded, its report in a folder that does
    not exist yet: the gate, the recorder's log and the report folder. Asked two questions: what it
    read (where the report goes reads nothing) and whether the folder was made."""
    def make():
        gate = template_gate
        opened = install_open_recorder(gate.pytester)
        deep = gate.root / "a" / "b" / "c"
        return gate, gate.run(f"--loso-report={deep}"), opened, deep

    return SHARED.get("recorded_deep_run", make)


def test_each_cache_file_is_read_once_per_process(recorded_deep_run):
    gate, run, opened, _ = recorded_deep_run  # 2 architectures x 3 folds + 1 baseline: every source is needed 3 times
    assert run.result.ret == 0, run.output
    reads = _cache_reads(gate, opened)
    expected = {str(p.resolve()) for p in gate.cache_dir.rglob("*.json")}
    assert len(expected) == len(SOURCES) * 4
    assert set(reads) == expected
    assert set(reads.values()) == {1}, reads


def test_a_broken_cache_file_is_read_once_too(gate):
    broken = gate.cache_file("Src0002", 1)
    broken.write_text("{not json")
    opened = install_open_recorder(gate.pytester)
    run = gate.run(NO_EXTRACTOR)
    failed = {n for n, o in run.outcomes.items() if o == "FAILED"}
    assert failed == {f"loso::fold[{a}-Src0002]" for a in ARCHS} | {BASELINE_ID}
    reads = _cache_reads(gate, opened)
    assert reads[str(broken.resolve())] == 1
    # the source's files after the broken one are never needed
    assert str(gate.cache_file("Src0002", 2).resolve()) not in reads
    assert set(reads.values()) == {1}
    # every item that needs the source reports the same error
    assert len(run.report["failures"]) == 3
    assert all(str(broken) in f["message"] for f in run.report["failures"])


def test_report_replaced_atomically(template_gate):
    gate = template_gate  # its runs only read the template
    first = gate.run("--loso-arch=linear")  # whole runs (a partial run writes loso_eval.partial.*)
    assert first.result.ret == 0
    json_path = gate.report_dir / "loso_eval.json"
    md_path = gate.report_dir / "loso_eval.md"
    # hard links keep the old files' inodes: a rename leaves them intact, an in-place rewrite would not
    old_json, old_md = gate.root / "old.json", gate.root / "old.md"
    old_json.hardlink_to(json_path)
    old_md.hardlink_to(md_path)
    sidecar, old_sidecar = gate.report_dir / "loso_eval.predictions.npz", gate.root / "old.npz"
    old_sidecar.hardlink_to(sidecar)
    before = json_path.read_text()

    second = gate.pytester.runpytest(*gate.args("--loso-arch=mlp_small"))
    assert second.ret == 0
    assert old_json.read_text() == before
    assert json.loads(old_json.read_text())["archs"].keys() == {"linear"}
    assert json_path.stat().st_ino != old_json.stat().st_ino
    assert md_path.stat().st_ino != old_md.stat().st_ino
    assert sidecar.stat().st_ino != old_sidecar.stat().st_ino  # the predictions sidecar too
    assert json.loads(json_path.read_text())["archs"].keys() == {"mlp_small"}
    assert sorted(p.name for p in gate.report_dir.iterdir()) == ["loso_eval.json", "loso_eval.md",
                                                                 "loso_eval.predictions.npz"]


def test_report_written_when_items_fail_and_with_exitfirst(gate):
    gate.fold_path("linear", "Src0000").write_text("nope")
    run = gate.run("-x", "-p", "no:randomly")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    assert run.report is not None
    assert [f["test"] for f in run.report["failures"]] == ["fold[linear-Src0000]"]
    assert run.report["run_provenance"]["items_run"] == 1
    # stopped after one test: a partial run, written beside (never over) a whole run's report
    assert run.report["partial"]["tests_ran"] == ["fold[linear-Src0000]"]
    assert (gate.report_dir / "loso_eval.partial.md").is_file()
    assert not (gate.report_dir / "loso_eval.md").exists()


def test_report_folder_is_created(recorded_deep_run):
    _, run, _, deep = recorded_deep_run
    assert run.result.ret == 0
    assert (deep / "loso_eval.json").is_file() and (deep / "loso_eval.md").is_file()


def _row(label: str, n: int | str, m: dict, status: str) -> re.Pattern:
    """A table row with n, PLCC, SROCC, ..., RMSE, status (extra metric columns allowed before RMSE)."""
    cells = [re.escape(label), str(n), f"{m['plcc']:.4f}", f"{m['srocc']:.4f}"]
    return re.compile(
        r"^\| " + r" \| ".join(cells) + r" \|(?: [^|]* \|)*? " + re.escape(f"{m['rmse']:.3f}") + rf" \| {status} \|$",
        re.M,
    )


def test_markdown_and_terminal_tables(template_gate):
    gate = template_gate  # its run only reads the template
    run = gate.run("--loso-max-rmse", "0.01", "-k", "Src0000 or baseline")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    report = run.report
    md = (gate.report_dir / "loso_eval.partial.md").read_text()  # a partial run (-k)
    assert md.startswith("# LOSO evaluation")
    assert f"Corpus: `{gate.data_root}`" in md
    assert "## Mean over the folds that ran (partial run: not the aggregate)" in md
    for arch in ARCHS:
        agg = report["archs"][arch]["aggregate"]
        # a partial run's mean says what it covers, and that it was not checked (-k deselected its test)
        assert re.search(rf"^\| {arch} \| 1 of 3 folds \| {agg['mean_plcc']:.4f} ± — \|.* \| not run \|$", md, re.M), md
        assert f"## {arch}: each fold on its held-out source" in md
        assert _row("Src0000", 120, report["archs"][arch]["per_fold"]["Src0000"], "FAILED").search(md), md
    block = report["baselines"][BASELINE_TAG]
    assert f"## baseline {BASELINE_TAG} ({gate.baseline})" in md
    for source in SOURCES:  # context, held to no bound: status "—", not "ok"
        assert _row(source, 120, block["per_clip"][source], "—").search(md), md
    concat = block["all_clips_concat"]
    assert _row("all sources concatenated", 360, concat, "FAILED").search(md), md
    assert "## Failures" in md and "**fold[linear-Src0000]**" in md
    assert "## Thresholds" in md
    assert "- each fold, and each baseline on all sources: PLCC ≥ 0.75, SROCC ≥ 0.7, RMSE ≤ 0.01" in md
    assert "- each architecture's mean over folds: mean PLCC ≥ 0.85, mean RMSE ≤ 12" in md
    assert "- **aggregate[mlp_small]** not checked: partial run: 1 of 3 folds of mlp_small ran" in md
    assert "## Provenance" in md and report["run_provenance"]["cache_fingerprint"]["sha256"] in md

    fold = report["archs"]["mlp_small"]["per_fold"]["Src0000"]
    run.result.stdout.fnmatch_lines([
        "*LOSO gate*",
        "mlp_small: each fold on its held-out source",
        "*split*n*PLCC*SROCC*RMSE*status",
        f"*Src0000*120*{fold['plcc']:.4f}*{fold['rmse']:.3f}*FAILED",
        f"baseline {BASELINE_TAG} ({gate.baseline})",
        f"*all sources concatenated*360*{concat['plcc']:.4f}*{concat['rmse']:.3f}*FAILED",
        f"report: {gate.report_dir / 'loso_eval.partial.json'} (and loso_eval.partial.md)",
    ])


def test_collect_only_writes_no_report_and_reads_no_cache(template_gate):
    gate = template_gate  # its run only reads the template
    opened = install_open_recorder(gate.pytester)
    run = gate.run("--collect-only")
    assert run.result.ret == 0
    assert run.report is None
    assert not gate.report_dir.exists()
    assert _cache_reads(gate, opened) == Counter()


def test_outcomes_cover_every_item(clean):
    assert clean.run.outcomes == {nodeid: "PASSED" for nodeid in all_ids()}
