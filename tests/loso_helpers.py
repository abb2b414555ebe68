"""Helpers shared by the tests: the test tree's layout, running the gate, and reference numbers.

The corpus and models are built once per session (see ``conftest.py``: training is the slow
part) and copied into each test's ``pytester.path``, where the test may break them as it
likes. Every number the tests compare against is computed here independently of the plugin:
float64 numpy forward passes of the trained weights, and the evaluation script's own recipe
(``InferenceSession`` on the file, ``pearsonr(pred, y).statistic`` on float32 arrays).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from loso_testing.training import Regressor

ARCHS = ("mlp_small", "linear")
N_SOURCES = 3
PAIRS_PER_SOURCE = 4
FRAMES = 30
STEPS = 150
SOURCES = tuple(f"Src{i:04d}" for i in range(N_SOURCES))
BASELINE_TAG = "vmaf_tiny_v1"
ENSEMBLE_MEMBERS = 3  # conftest's ensemble_members
SWEEP_SEEDS = (0, 1, 2)  # conftest's seed_sweep


def sweep_folder(seed: int) -> str:
    """A seed's folder in the seed sweep: ``seed<N>``, the last seed spelled ``seed_<N>`` (both are read)."""
    return f"seed_{seed}" if seed == SWEEP_SEEDS[-1] else f"seed{seed}"

_OUTCOME_RE = re.compile(r"^(PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS) (?!\[\d+\])(\S+)")


@dataclass
class Built:
    """The session's template tree and what was used to make it."""

    root: Path
    truth: dict[str, list[tuple[np.ndarray, np.ndarray]]]
    folds: dict[str, dict[str, Regressor]]
    baseline: Regressor


@dataclass
class Run:
    result: pytest.RunResult
    report: dict | None
    outcomes: dict[str, str] = field(default_factory=dict)
    markdown: str | None = None  # loso_eval.md, when written

    @property
    def output(self) -> str:
        return self.result.stdout.str() + "\n" + self.result.stderr.str()

    def failure_text(self, nodeid: str) -> str:
        return failure_section(self.result.stdout.lines, nodeid)


class GateEnv:
    """A copy of the template in ``pytester.path`` and ways to run the gate on it."""

    def __init__(self, pytester: pytest.Pytester, built: Built, root: Path | None = None, *,
                 in_place: bool = False) -> None:
        """The copy is made in ``root`` (default: ``pytester.path``, where the runs start); ``in_place``:
        no copy, the models, corpus and cache are the template's own (the report still goes to ``root``)."""
        self.pytester = pytester
        self.built = built
        self.root = pytester.path if root is None else root
        if not in_place:
            shutil.copytree(built.root, self.root, dirs_exist_ok=True, symlinks=True)
        tree = built.root if in_place else self.root
        self.data_root = tree / "corpus"
        self.cache_dir = tree / "cache"
        self.runs = tree / "runs"
        self.baseline = tree / "base" / f"{BASELINE_TAG}.onnx"
        self.report_dir = self.root / "report"
        self.truth = built.truth
        self.folds = built.folds
        self.baseline_model = built.baseline

    # -- paths and data -------------------------------------------------------------------
    def fold_path(self, arch: str, source: str) -> Path:
        return self.runs / f"loso_{arch}" / f"fold_{source}" / f"{arch}_final.onnx"

    def stems(self, source: str) -> list[str]:
        return sorted(p.stem for p in (self.data_root / "dis").glob(f"{source}_*.yuv"))

    def cache_file(self, source: str, index: int) -> Path:
        return self.cache_dir / source / f"{self.stems(source)[index]}.json"

    def xy(self, source: str) -> tuple[np.ndarray, np.ndarray]:
        """The source's frames, pairs in sorted file order, float32 as written to the cache."""
        pairs = self.truth[source]
        return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])

    def all_xy(self, sources: tuple[str, ...] = SOURCES) -> tuple[np.ndarray, np.ndarray]:
        parts = [self.xy(s) for s in sorted(sources)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    # -- running --------------------------------------------------------------------------
    def args(self, *extra: str, baseline: bool = True) -> list[str]:
        args = [
            "-p", "no:cacheprovider",
            "-rA",
            f"--loso-dir={self.runs}",
            f"--data-root={self.data_root}",
            f"--loso-cache={self.cache_dir}",
            f"--loso-report={self.report_dir}",
        ]
        if baseline:
            args.append(f"--loso-baseline={self.baseline}")
        return args + list(extra)

    def run(self, *extra: str, baseline: bool = True, subprocess: bool = False, plain: bool = False) -> Run:
        """Run pytest; ``plain`` passes only ``extra`` (for runs configured by ini or not at all)."""
        args = list(extra) if plain else self.args(*extra, baseline=baseline)
        report_json, report_md = self.report_dir / "loso_eval.json", self.report_dir / "loso_eval.md"
        partial_json, partial_md = self.report_dir / "loso_eval.partial.json", self.report_dir / "loso_eval.partial.md"
        sidecars = [self.report_dir / f"{stem}.predictions.npz" for stem in ("loso_eval", "loso_eval.partial")]
        for stale in (report_json, report_md, partial_json, partial_md, *sidecars):
            stale.unlink(missing_ok=True)
        if subprocess:
            result = self.pytester.runpytest_subprocess(*args, timeout=120)
        else:
            result = runpytest_in_process(self.pytester, *args)
        if not report_json.exists() and partial_json.exists():  # a partial run writes beside the whole report
            report_json, report_md = partial_json, partial_md
        report = json.loads(report_json.read_text()) if report_json.exists() else None
        markdown = report_md.read_text() if report_md.exists() else None
        return Run(result, report, parse_outcomes(result), markdown)


_XDIST_OPTIONS = ("-n", "--numprocesses", "--dist", "--tx", "--maxprocesses")


def runpytest_in_process(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """``pytester.runpytest`` (in process) with the plugin named by ``-p`` rather than found by its entry point.

    Finding entry points reads every installed distribution's metadata, twice a run (plugins, then
    the modules to assertion-rewrite): ~8 ms of a ~60 ms run, over 500 runs. The plugin's modules
    and hooks are the same either way. Runs that need entry points keep them: xdist's options, and
    ``-p no:loso`` (the plugin disabled by its entry point's name). Separate processes (the quick
    start, the CI scripts, the signal tests) always find the plugin as a user's pytest does.
    """
    if any(arg.startswith(_XDIST_OPTIONS) or arg.endswith("no:loso") for arg in map(str, args)):
        return pytester.runpytest(*args)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        return pytester.runpytest("-p", "pytest_loso.plugin", "-p", "pytest_loso.ini", *args)


def failure_section(lines: list[str], nodeid: str) -> str:
    """The failure section pytest printed for ``nodeid`` (between its ``___ name ___`` banners)."""
    name = nodeid.split("::")[-1]
    starts = [i for i, line in enumerate(lines) if re.match(rf"^_+ {re.escape(name)} _+$", line)]
    assert starts, f"no failure section for {nodeid}:\n" + "\n".join(lines)
    end = starts[0] + 1
    while end < len(lines) and not re.match(r"^(_{3,} .* _{3,}|={3,} .* ={3,})$", lines[end]):
        end += 1
    return "\n".join(lines[starts[0] + 1 : end])


def outcomes_of(lines: list[str]) -> dict[str, str]:
    """``{nodeid: PASSED/FAILED/...}`` from the ``-rA`` short test summary in ``lines``
    (a ``SKIPPED [n] file:line`` line names no test and is left out)."""
    found = {}
    for line in lines:
        match = _OUTCOME_RE.match(line)
        if match:
            found[match[2]] = match[1]
    return found


def parse_outcomes(result: pytest.RunResult) -> dict[str, str]:
    """:func:`outcomes_of` the lines of a pytester run."""
    return outcomes_of(result.stdout.lines)


def fold_ids(archs: tuple[str, ...] = ARCHS, sources: tuple[str, ...] = SOURCES) -> list[str]:
    return [f"loso::fold[{a}-{s}]" for a in archs for s in sources]


BASELINE_ID = f"loso::baseline[{BASELINE_TAG}]"


def aggregate_ids(archs: tuple[str, ...] = ARCHS) -> list[str]:
    return [f"loso::aggregate[{a}]" for a in archs]


def scored_ids() -> list[str]:
    """The tests that score a model (every one but the aggregates)."""
    return fold_ids() + [BASELINE_ID]


def all_ids() -> list[str]:
    return scored_ids() + aggregate_ids()


# -- independent numbers ----------------------------------------------------------------------


def independent_metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """float64 metrics from first principles (no onnxruntime, no plugin code)."""
    pred = np.asarray(pred, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return {
        "n": int(y.size),
        "plcc": float(pearsonr(pred, y).statistic),
        "srocc": float(spearmanr(pred, y).statistic),
        "rmse": float(np.sqrt(np.mean((pred - y) ** 2))),
    }


def script_metrics(model_path: Path, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The hand-run evaluation script's recipe: plain ``InferenceSession(path)`` on float32 arrays."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    pred = session.run(None, {name: x.astype(np.float32)})[0].reshape(-1)
    y = y.astype(np.float32)
    return {
        "n": int(y.size),
        "plcc": float(pearsonr(pred, y).statistic),
        "srocc": float(spearmanr(pred, y).statistic),
        "rmse": float(np.sqrt(((pred - y) ** 2).mean())),
    }


def assert_close(reported: dict, expected: dict, tol: float = 1e-5) -> None:
    assert reported["n"] == expected["n"]
    assert reported["plcc"] == pytest.approx(expected["plcc"], abs=tol)
    assert reported["srocc"] == pytest.approx(expected["srocc"], abs=tol)
    assert reported["rmse"] == pytest.approx(expected["rmse"], rel=tol, abs=tol)


def assert_exact(reported: dict, expected: dict) -> None:
    for key in ("n", "plcc", "srocc", "rmse"):
        assert reported[key] == expected[key], (key, reported[key], expected[key])


# -- writing broken inputs -------------------------------------------------------------------


def rewrite_location(model_path: Path, location: str) -> None:
    """Point every external-data ``location`` of ``model_path`` at ``location`` (bytes only, no data moved)."""
    import onnx

    proto = onnx.load(str(model_path), load_external_data=False)
    tensors = list(proto.graph.initializer)
    assert tensors and all(t.data_location == onnx.TensorProto.EXTERNAL for t in tensors)
    for tensor in tensors:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    model_path.write_bytes(proto.SerializeToString())


OPEN_RECORDER = '''
import builtins, io, json, os, pathlib

_opened = []
_saved = {}


def _wrap(original):
    def opener(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            _opened.append(os.path.realpath(os.fsdecode(file)))
        return original(file, *args, **kwargs)
    return opener


def pytest_configure(config):
    _saved["io"], _saved["builtins"], _saved["os"] = io.open, builtins.open, os.open
    io.open = _wrap(_saved["io"])
    builtins.open = _wrap(_saved["builtins"])
    os.open = _wrap(_saved["os"])


def pytest_unconfigure(config):
    io.open, builtins.open, os.open = _saved["io"], _saved["builtins"], _saved["os"]
    with _saved["io"](os.path.join(str(config.rootpath), "opened.json"), "w") as handle:
        json.dump(_opened, handle)
'''


def install_open_recorder(pytester: pytest.Pytester) -> Path:
    """A conftest that logs every path Python opens during the inner run to ``opened.json``."""
    pytester.makeconftest(OPEN_RECORDER)
    return pytester.path / "opened.json"


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` made unwritable: chmod for a user, the immutable attribute for root (chmod binds
    no root); skipped where neither can be had."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                        capture_output=True).returncode:
        pytest.skip("running as root without chattr +i: no way to make a folder read-only here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


# -- per-frame tables from the template's cache (test_table and the tests that feed a table) ---------


def table_rows(gate, *, fps_suffix: bool = True) -> list[dict]:
    """Every cached frame as a table row (the cache files' floats, unchanged), rows shuffled."""
    rows = []
    for source in SOURCES:
        for stem in gate.stems(source):
            payload = json.loads((gate.cache_dir / source / f"{stem}.json").read_text())
            names = payload["features"]["feature_names"]
            for i, (features, vmaf) in enumerate(zip(payload["features"]["per_frame"],
                                                     payload["scores"]["per_frame"])):
                row = {"src" if fps_suffix else "source": f"{source}_24fps" if fps_suffix else source,
                       "dis_basename": stem, "frame_index": i, "vmaf": vmaf, "encoder": "libx264", "cq": 30}
                row.update(dict(zip(names, features)))
                rows.append(row)
    random.Random(0).shuffle(rows)  # the gate orders clips and frames itself
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _table_args(gate, table: Path, *extra: str) -> list[str]:
    return ["-p", "no:cacheprovider", "-rA", f"--loso-dir={gate.runs}", f"--loso-table={table}",
            f"--loso-report={gate.report_dir}", f"--loso-baseline={gate.baseline}", *extra]


_SAMPLE_RE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^{}]*)\} (?P<value>\S+)$")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _parse_openmetrics(text: str) -> dict[str, dict[tuple, float]]:
    """``{family: {sorted label items: value}}``; fails on anything out of the grammar."""
    assert text.endswith("# EOF\n")
    lines = text[:-1].split("\n")
    assert lines[-1] == "# EOF" and lines.count("# EOF") == 1
    families: dict[str, dict[tuple, float]] = {}
    current = None
    for line in lines[:-1]:
        if line.startswith("#"):
            match = re.fullmatch(r"# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) gauge", line)
            assert match, line
            assert match[1] not in families, f"family {match[1]} declared twice (samples must be grouped)"
            current = match[1]
            families[current] = {}
            continue
        match = _SAMPLE_RE.match(line)
        assert match, f"not name{{labels}} value: {line!r}"
        assert match["name"] == current, f"{match['name']} sample outside its family ({current})"
        pairs = _LABEL_RE.findall(match["labels"])
        assert ",".join(f'{k}="{v}"' for k, v in pairs) == match["labels"], line
        key = tuple(sorted(pairs))
        assert key not in families[current], f"duplicate sample {line}"
        families[current][key] = float(match["value"])
    return families
