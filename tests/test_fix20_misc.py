"""Issue 20 item 10, the smaller parts: the benchmark's --workdir, the docs' report folder and wording."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_extract_with_a_missing_workdir_is_a_clear_error(tmp_path):
    missing = tmp_path / "nonexistent"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_extract.py"), "--workdir", str(missing)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert f"--workdir {missing}: not a folder" in done.stderr


def test_the_docs_name_the_default_report_folder_as_the_code_makes_it():
    """options.py puts it under the ini file's folder, else the invocation folder: never 'the rootdir'."""
    options = (ROOT / "docs" / "options.md").read_text(encoding="utf-8")
    (row,) = [line for line in options.splitlines() if line.startswith("| `--loso-report DIR`")]
    assert "rootdir |" not in row and "ini file's folder" in row and "started in" in row


def test_the_docs_do_not_call_an_rmse_increase_a_drop():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        prose = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # not the quoted output
        prose = re.sub(r"-?-?loso[-_][a-z_-]*drop", "", prose)  # option names: --loso-max-drop, --loso-max-quant-drop
        prose = prose.replace('"drop beyond the allowance"', "")
        prose = re.sub(r"\bplcc[ _]drop|`plcc` \(the drop\)", "", prose, flags=re.I)  # a PLCC drop is one
        for sentence in re.split(r"(?<=[.:;])\s", prose):
            assert not re.search(r"\bdrops?\b", sentence) or "rmse" not in sentence.lower(), (page.name, sentence)


def test_a_cold_fill_leaves_no_lock_files(tmp_path):
    from pytest_loso.cache_files import Pair
    from pytest_loso.extract import CacheFiller

    class Extractor:
        identity = {"tool": "stub"}

        def run(self, ref, dis, width, height):
            return {"frames": [{"frameNum": 0, "metrics": {"vmaf": 50.0}}]}

    for name in ("ref.yuv", "dis.yuv"):
        (tmp_path / name).write_bytes(b"\0" * 6)
    cache = tmp_path / "cache"
    filler = CacheFiller(Extractor(), cache, lambda source: (2, 2))  # type: ignore[arg-type]
    filler.extraction = lambda source: None  # type: ignore[method-assign]
    import pytest_loso.extract as extract

    real = extract.made_by.record
    extract.made_by.record = lambda *args: {"stub": True}
    try:
        assert filler.ensure(Pair("Src", tmp_path / "ref.yuv", tmp_path / "dis.yuv"))
    finally:
        extract.made_by.record = real
    assert [p.name for p in (cache / "Src").iterdir()] == ["dis.json"]
