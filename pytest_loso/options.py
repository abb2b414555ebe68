"""Command-line options and ini keys, and turning them into one resolved :class:`GateOptions`.

Every option has an ini key of the same name (``--loso-min-plcc`` is ``loso_min_plcc``);
the command line wins. Relative paths on the command line are taken from the directory
pytest was started in; relative paths in an ini file from that file's directory.
This module imports nothing heavy: it runs in every pytest session.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .compare import DEFAULT_MAX_DROP, Allowance, load_accepted, parse_max_drop
from .corpus import default_cache_dir
from .errors import LosoInputError, what_is_at
from .thresholds import DEFAULTS, Bounds, Thresholds, parse_bound, parse_source_overrides

EXTRACTORS = ("auto", "ffmpeg", "vmaf", "none")
COMPARE_MODES = ("bound", "noise")
SROCC_RANKS = ("average", "ordinal")
EXAMPLE_DIR = Path(__file__).parent / "example"
EXAMPLE_FRAME_SIZE = (64, 48)  # of the bundled clips (scripts/build_example.py makes them)

# (option, ini type, help); ini key = option without leading dashes, "-" -> "_".
_PATH_OPTIONS = [
    ("--loso-dir", "paths", "folder of fold_<Source>/<arch>_final.onnx, or of loso_<arch>/ sweeps (repeatable)"),
    ("--data-root", "string", "corpus root with ref/ and dis/ (sources are discovered from file names)"),
    ("--loso-table", "string", "per-frame table (.jsonl or .parquet) as the corpus, instead of --data-root"),
    ("--loso-cache", "string", "feature cache root (default: $VMAF_TINY_AI_CACHE, else ~/.cache/vmaf-tiny-ai)"),
    ("--loso-baseline", "linelist", "baseline ONNX scored on every source and their concatenation: NAME=PATH, or "
     "PATH named by its file stem (repeatable; ini paths relative to the ini file)"),
    ("--loso-report", "string", "folder for loso_eval.json and loso_eval.md (default: runs/loso_eval)"),
    ("--loso-vmaf-bin", "string", "libvmaf's vmaf tool, to fill a cold cache (default: $VMAF_BIN)"),
    ("--loso-ffmpeg", "string", "ffmpeg with the libvmaf filter (default: the one in the imageio-ffmpeg wheel)"),
    ("--loso-compare", "string", "the accepted loso_eval.json (from main) to compare every metric with"),
    ("--loso-metrics", "string", "write an OpenMetrics metrics.txt here (GitLab merge-request metrics)"),
    ("--loso-plot", "string", "write scatter and bar-chart PNGs into this folder (needs the 'plot' extra)"),
    ("--loso-verdict", "string", "write a PROMOTE / HOLD verdict JSON here (the shape of validate_ensemble_seeds.py)"),
]
_THRESHOLD_OPTIONS = [
    ("--loso-min-plcc", "min_plcc", "per fold (and baseline concatenation): minimum PLCC"),
    ("--loso-min-srocc", "min_srocc", "per fold (and baseline concatenation): minimum SROCC"),
    ("--loso-max-rmse", "max_rmse", "per fold (and baseline concatenation): maximum RMSE"),
    ("--loso-min-mean-plcc", "min_mean_plcc", "per architecture (and seed, and mean over seeds): minimum mean "
     "PLCC over folds"),
    ("--loso-max-mean-rmse", "max_mean_rmse", "per architecture (and seed): maximum mean RMSE over folds"),
    ("--loso-min-seed-mean-plcc", "min_seed_mean_plcc", "over seeds: every seed's minimum mean PLCC over folds "
     "(its aggregate test; default: --loso-min-mean-plcc)"),
    ("--loso-max-seed-spread", "max_seed_spread", "over seeds: maximum spread (max - min) of the seeds' mean PLCC"),
]


def ini_key(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


_INTEGER_INI = [  # (key, help, default): whole-number ini keys, registered as numbers with the thresholds
    ("loso_jobs", "libvmaf runs at once (default: number of CPUs)", None),
    ("loso_bootstrap", "bootstrap resamples for 95% intervals", None),
    ("loso_bootstrap_seed", "bootstrap seed", "0"),
]
_NUMBER_KEYS = {ini_key(option) for option, _, _ in _THRESHOLD_OPTIONS} | {key for key, _, _ in _INTEGER_INI}


def add_options(parser: pytest.Parser) -> None:
    """The command-line options (the ini keys are :func:`add_ini`'s)."""
    group = parser.getgroup("loso", "LOSO accuracy gate (pytest-loso)")
    for option, ini_type, help_text in _PATH_OPTIONS:
        group.addoption(option, action="append" if ini_type in ("paths", "linelist") else "store", default=None, help=help_text)
    group.addoption("--loso-ensemble", action="append", default=None,
                    help="NAME=GLOB: score the members' mean as ensemble[NAME], e.g. "
                    "'fr_v2=model/tiny/fr_regressor_v2_ensemble_v1_seed*.onnx' (repeatable)")
    group.addoption("--loso-arch", action="append", default=None, help="score only this architecture (repeatable)")
    for option, key, help_text in _THRESHOLD_OPTIONS:
        group.addoption(option, default=None, help=f"{help_text} (default {DEFAULTS[key]}; 'none' disables)")
    group.addoption(
        "--loso-source-threshold",
        action="append",
        default=None,
        help="per-source bounds, e.g. 'FoxBird: min_plcc=0.92 max_rmse=18' (repeatable)",
    )
    group.addoption(
        "--loso-extractor",
        choices=EXTRACTORS,
        default=None,
        help="how to fill missing cache files: libvmaf's CLI, ffmpeg's libvmaf filter, or not at all "
        "(default auto: the CLI when given, else ffmpeg when available)",
    )
    group.addoption("--loso-recompute", action="store_true", default=False,
                    help="recompute with libvmaf every cache file the gate wrote that the selected tests read "
                    "(files another tool wrote are kept)")
    group.addoption("--loso-frame-size", default=None, help="frame size of the raw YUVs, WxH (default 1920x1080)")
    group.addoption("--loso-jobs", type=int, default=None, help="libvmaf runs at once (default: number of CPUs)")
    group.addoption("--loso-max-drop", default=None,
                    help=f"allowed change per metric vs the accepted report, absolute or %% (default {DEFAULT_MAX_DROP})")
    group.addoption("--loso-compare-mode", choices=COMPARE_MODES, default=None,
                    help="bound: fail a drop beyond the allowance; noise: only when also outside the bootstrap "
                    "interval (default bound)")
    group.addoption("--loso-accept", action="store_true", default=False,
                    help="write this run's report as the new accepted file (the --loso-compare path)")
    group.addoption("--loso-accept-force", action="store_true", default=False,
                    help="accept even when tests failed")
    group.addoption("--loso-bootstrap", type=int, default=None,
                    help="bootstrap resamples for 95%% intervals (default: 1000 with --loso-compare, else 0 = off)")
    group.addoption("--loso-bootstrap-seed", type=int, default=None, help="bootstrap seed (default 0)")
    group.addoption("--loso-logistic", action="store_true", default=None,
                    help="also report PLCC and RMSE after the 4-parameter logistic mapping")
    group.addoption("--loso-srocc-ranks", choices=SROCC_RANKS, default=None,
                    help="SROCC's ranks: average (scipy.stats.spearmanr, default) or ordinal "
                    "(argsort(argsort(x)), ties not averaged, as the team's newer eval scripts)")
    group.addoption("--loso-target", default=None, help="--loso-table: the target column (default vmaf)")
    group.addoption("--loso-where", action="append", default=None,
                    help="--loso-table: keep rows with COLUMN=VALUE (repeatable; AND across columns)")
    group.addoption(
        "--loso-example",
        action="store_true",
        default=False,
        help="gate the example corpus bundled with pytest-loso (sets --loso-dir, --data-root, its baseline, "
        "the frame size, and --loso-cache unless given; --loso-baseline / --loso-ensemble add your models)",
    )


def _ini(config: pytest.Config, key: str) -> Any:
    """An ini value. One of a type pytest refuses (``[tool.pytest]`` keeps TOML types: a number
    where only text is taken) is a usage error naming the key, not pytest's INTERNALERROR."""
    try:
        return config.getini(key)
    except (TypeError, ValueError) as exc:
        hint = ""
        if "expects a string" in str(exc):
            hint = "; write the value in quotes, as a TOML string"
            if not PYTEST_TAKES_TOML_NUMBERS and key in _NUMBER_KEYS:
                hint += f" (pytest {pytest.__version__} takes plugins' values as text; 9.2 and later take numbers)"
        raise pytest.UsageError(f"{key}: {exc}{hint}") from None


# pytest 9.2 takes union ini types, so a [tool.pytest] TOML number is read as a number; before
# it, plugins' ini values are text (and a TOML number is pytest's TypeError).
PYTEST_TAKES_TOML_NUMBERS = tuple(int(part) for part in pytest.__version__.split(".")[:2]) >= (9, 2)


def _number(kind: type) -> object:
    """An ini type that takes a TOML number as well as a string, where pytest can (else text)."""
    return kind | str if PYTEST_TAKES_TOML_NUMBERS else None


def add_ini(parser: pytest.Parser) -> None:
    """The ini keys. Also registered by the always-loaded ``pytest_loso.ini`` plugin, so that an
    ini file that configures the gate is quiet when the gate is disabled (``-p no:loso``)."""
    for option, ini_type, help_text in _PATH_OPTIONS:
        parser.addini(ini_key(option), help_text, type=ini_type,
                      default=[] if ini_type in ("paths", "linelist") else None)
    parser.addini("loso_ensemble", "ensembles, one 'NAME=GLOB' a line (globs relative to the ini file)", type="linelist")
    parser.addini("loso_arch", "architectures to score (default: all found)", type="args", default=[])
    for option, key, help_text in _THRESHOLD_OPTIONS:
        parser.addini(ini_key(option), f"{help_text} (default {DEFAULTS[key]}; 'none' disables)",
                      type=_number(float), default=None)
    for key, help_text, default in _INTEGER_INI:
        parser.addini(key, help_text, type=_number(int), default=default)
    parser.addini("loso_source_thresholds", "per-source bounds, one 'Source: key=value ...' a line", type="linelist")
    parser.addini("loso_extractor", "auto, ffmpeg, vmaf or none", default="auto")
    parser.addini("loso_frame_size", "frame size of the raw YUVs, WxH", default="1920x1080")
    parser.addini("loso_frame_sizes", "per-source frame sizes, one 'Source: WxH' a line", type="linelist")
    parser.addini("loso_max_drop", "allowed change per metric vs the accepted report", default=DEFAULT_MAX_DROP)
    parser.addini("loso_compare_mode", "bound or noise", default="bound")
    parser.addini("loso_logistic", "also report logistic-mapped PLCC and RMSE", type="bool", default=False)
    parser.addini("loso_target", "--loso-table: the target column", default="vmaf")
    parser.addini("loso_srocc_ranks", "SROCC's ranks: average or ordinal", default="average")
    parser.addini("loso_where", "--loso-table: row filters, one COLUMN=VALUE a line", type="linelist")


@dataclass(frozen=True)
class GateOptions:
    loso_dirs: tuple[Path, ...]
    data_root: Path | None
    cache_dir: Path
    baselines: tuple[Path, ...]
    archs: tuple[str, ...]  # empty: every architecture found
    report_dir: Path
    thresholds: Thresholds
    example: bool = False
    ensembles: tuple[tuple[str, str, tuple[Path, ...]], ...] = ()  # (name, glob, matched models)
    baseline_names: tuple[str, ...] = ()  # one per baseline (NAME=PATH); a bare path: its file stem
    extractor: str = "auto"
    vmaf_bin: Path | None = None
    ffmpeg: Path | None = None
    frame_size: tuple[int, int] = (1920, 1080)
    frame_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    jobs: int = 1
    recompute: bool = False

    compare: Path | None = None
    max_drop: dict[str, Allowance] = field(default_factory=dict)
    compare_mode: str = "bound"
    accept: bool = False
    accept_force: bool = False
    bootstrap: int = 0
    bootstrap_seed: int = 0
    logistic: bool = False
    metrics_path: Path | None = None
    plot_dir: Path | None = None
    verdict_path: Path | None = None
    srocc_ranks: str = "average"
    table: Path | None = None  # a per-frame table instead of data_root (table.py)
    target: str = "vmaf"
    where: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def frame_size_of(self, source: str) -> tuple[int, int]:
        return self.frame_sizes.get(source, self.frame_size)

    def to_json(self) -> dict:
        return {
            "loso_dirs": [str(p) for p in self.loso_dirs],
            "data_root": str(self.data_root) if self.data_root else None,
            "table": str(self.table) if self.table else None,
            "target": self.target,
            "where": {c: list(v) for c, v in self.where.items()},
            "cache_dir": str(self.cache_dir),
            "baselines": [str(p) for p in self.baselines],
            "ensembles": {name: {"glob": pattern, "members": [str(p) for p in members]}
                          for name, pattern, members in self.ensembles},
            "archs": list(self.archs),
            "report_dir": str(self.report_dir),
            "example": self.example,
            "extractor": self.extractor,
            "vmaf_bin": str(self.vmaf_bin) if self.vmaf_bin else None,
            "ffmpeg": str(self.ffmpeg) if self.ffmpeg else None,
            "frame_size": "x".join(map(str, self.frame_size)),
            "frame_sizes": {s: "x".join(map(str, v)) for s, v in sorted(self.frame_sizes.items())},
            "jobs": self.jobs,
            "recompute": self.recompute,
            "compare": str(self.compare) if self.compare else None,
            "compare_mode": self.compare_mode,
            "max_drop": {m: {"absolute": a.absolute, "relative": a.relative} for m, a in self.max_drop.items()},
            "accept": self.accept,
            "bootstrap": {"resamples": self.bootstrap, "seed": self.bootstrap_seed},
            "logistic": self.logistic,
            "srocc_ranks": self.srocc_ranks,
        }


def _ini_base_or_cwd(config: pytest.Config) -> Path:
    return config.inipath.parent if config.inipath else config.invocation_params.dir


def _writable_folder(path: Path, option: str) -> None:
    """Refuse at start a folder the report cannot be written to, before anything is scored."""
    for part in (path, *path.parents):
        there = what_is_at(part)
        if there is not None and there.startswith("a broken link"):
            raise pytest.UsageError(f"{option} {path}: {part} is {there}")
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise pytest.UsageError(f"{option} {path}: {existing} is not a folder; give a folder to write the report in")
    try:  # a real write, not os.access: root passes that on a read-only mount or in /sys
        os.rmdir(tempfile.mkdtemp(prefix=".loso-write-check-", dir=existing))
    except OSError as exc:
        raise pytest.UsageError(f"{option} {path}: cannot write in {existing}: {exc.strerror or exc}") from None


def _report_folder(path: Path) -> None:
    """The report folder, and no folder (or FIFO) where one of its files goes."""
    from .report import report_files

    _writable_folder(path, "--loso-report")
    for file in report_files(path):
        there = what_is_at(file)
        if there is not None:
            raise pytest.UsageError(f"--loso-report {path}: {file} is {there}, not a regular file, and the report "
                                    "is written there: remove it, or give another folder")


def _writable_file(path: Path | None, option: str) -> Path | None:
    """Refuse at start an output file that is a folder or cannot be created."""
    if path is None:
        return None
    if path.is_dir():
        raise pytest.UsageError(f"{option} {path}: is a folder; give a file path")
    _writable_folder(path.parent, option)
    return path


def _ini_base(config: pytest.Config) -> Path:
    return config.inipath.parent if config.inipath else config.rootpath


def _paths(config: pytest.Config, option: str) -> list[Path]:
    cli = config.getoption(ini_key(option))
    if cli:
        return [config.invocation_params.dir / p for p in cli]
    return [Path(p) for p in _ini(config, ini_key(option))]  # "paths" ini values are already absolute


def _named_baselines(config: pytest.Config) -> tuple[list[str], list[Path]]:
    """``--loso-baseline NAME=PATH`` or ``PATH`` (named by its stem); ini lines alike, relative to the ini file."""
    cli = config.getoption("loso_baseline")
    specs, base = (cli, config.invocation_params.dir) if cli else (_ini(config, "loso_baseline"), _ini_base(config))
    names, paths = [], []
    for spec in specs:
        name, sep, rest = (part.strip() for part in spec.partition("="))
        # NAME= only when NAME is a plain name: a path that itself holds '=' stays a path
        named = sep and name and not any(c in name for c in "/\\") and not (base / spec).exists()
        path = Path(rest if named else spec)
        path = path if path.is_absolute() else base / path
        names.append(name if named else path.stem)
        paths.append(path)
    return names, paths


def _path(config: pytest.Config, option: str) -> Path | None:
    cli = config.getoption(ini_key(option))
    if cli:
        return config.invocation_params.dir / cli
    ini = _ini(config, ini_key(option))
    return _ini_base(config) / ini if ini else None


def _value(config: pytest.Config, option: str) -> str | None:
    cli = config.getoption(ini_key(option))
    return cli if cli is not None else _ini(config, ini_key(option))


_SIZE_RE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


def parse_frame_size(text: str, where: str) -> tuple[int, int]:
    match = _SIZE_RE.match(text)
    if not match or int(match[1]) % 2 or int(match[2]) % 2 or not int(match[1]) or not int(match[2]):
        raise pytest.UsageError(f"{where}: {text!r} is not an even frame size WxH such as 1920x1080")
    return int(match[1]), int(match[2])


def _integer(config: pytest.Config, option: str, *, minimum: int) -> int | None:
    """An integer option or ini value; anything else is a usage error naming the option."""
    text = _value(config, option)
    if text is None or str(text).strip() == "":
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        raise pytest.UsageError(f"{option} / {ini_key(option)}: {text!r} is not a whole number") from None
    if value < minimum:
        raise pytest.UsageError(f"{option} / {ini_key(option)}: {value} is below {minimum}")
    return value


def _choice(config: pytest.Config, option: str, choices: tuple[str, ...]) -> str:
    """An option's value, checked against its choices in the ini file too (argparse checks the CLI)."""
    value = str(_value(config, option)).strip()
    if value not in choices:
        raise pytest.UsageError(f"{ini_key(option)} = {value!r}: choose one of {', '.join(choices)}")
    return value


def _frame_sizes(lines: list[str]) -> dict[str, tuple[int, int]]:
    sizes = {}
    for line in lines:
        source, sep, size = line.partition(":")
        if line.strip():
            if not sep:
                raise pytest.UsageError(f"loso_frame_sizes: {line!r} is not 'Source: WxH'")
            sizes[source.strip()] = parse_frame_size(size, f"loso_frame_sizes ({source.strip()})")
    return sizes


def _ensembles(config: pytest.Config) -> tuple[tuple[str, str, tuple[Path, ...]], ...]:
    """``--loso-ensemble NAME=GLOB`` (or ini lines): each name with the model files its glob matches."""
    cli = config.getoption("loso_ensemble")
    specs, base = (cli, config.invocation_params.dir) if cli else (_ini(config, "loso_ensemble"), _ini_base(config))
    found: dict[str, tuple[str, tuple[Path, ...]]] = {}
    for spec in (s.strip() for s in specs if s.strip()):
        name, sep, pattern = spec.partition("=")
        name, pattern = name.strip(), pattern.strip()
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not pattern:
            raise pytest.UsageError(f"--loso-ensemble / loso_ensemble: {spec!r} is not NAME=GLOB "
                                    "(e.g. fr_v2=model/tiny/fr_regressor_v2_ensemble_v1_seed*.onnx)")
        if name in found:
            raise pytest.UsageError(f"--loso-ensemble: two ensembles are named {name}")
        full = pattern if os.path.isabs(pattern) else str(base / pattern)
        anchor = Path(full).anchor
        # the models it matches: a member's sidecar (.json) and weights (.onnx.data) go with it
        members = tuple(sorted(p for p in Path(anchor).glob(full[len(anchor):]) if p.is_file() and p.suffix == ".onnx"))
        found[name] = (pattern, members)
    return tuple((name, pattern, members) for name, (pattern, members) in found.items())


def read_options(config: pytest.Config) -> GateOptions | None:
    """The gate's settings, or ``None`` when no ``--loso-dir`` is configured (the gate is off)."""
    example = bool(config.getoption("loso_example"))
    loso_dirs = [EXAMPLE_DIR / "folds"] if example else _paths(config, "--loso-dir")
    if not loso_dirs:
        return None
    if example:
        for option in ("--loso-dir", "--data-root", "--loso-table", "--loso-where", "--loso-target"):
            if config.getoption(ini_key(option)):  # silently gating another corpus than asked would lie
                raise pytest.UsageError(f"--loso-example gates the bundled example corpus and its folds: drop "
                                        f"{option}, or drop --loso-example to gate your own")
        data_root = EXAMPLE_DIR / "corpus"
        cache_dir = _path(config, "--loso-cache") or EXAMPLE_DIR / "cache"  # another cache: see it filled
        baselines = sorted(EXAMPLE_DIR.glob("baselines/*.onnx"))
        baseline_names = [p.stem for p in baselines]
        if config.getoption("loso_baseline"):  # your model beside the example's (ini ones are your corpus's)
            names, paths = _named_baselines(config)
            baseline_names, baselines = baseline_names + names, baselines + paths
    else:
        data_root = _path(config, "--data-root")
        cache_dir = _path(config, "--loso-cache") or default_cache_dir()
        baseline_names, baselines = _named_baselines(config)
    # the ini's table settings describe your corpus, not the example (as its baselines do)
    table, target, where = (None, "vmaf", {}) if example else _table_options(config, data_root)
    if data_root is None and table is None:
        raise pytest.UsageError("--loso-dir is set but --data-root is not: give the corpus root (ref/ and dis/) "
                                "or a per-frame table with --loso-table")
    for name, path in ([("--data-root", data_root)] if data_root else []) + [("--loso-dir", p) for p in loso_dirs]:
        if not path.is_dir():
            raise pytest.UsageError(f"{name} {path}: folder not found")
    for path in baselines:
        if not path.is_file():
            raise pytest.UsageError(f"--loso-baseline {path}: file not found (or not a file)")
    for name in dict.fromkeys(n for n in baseline_names if baseline_names.count(n) > 1):  # one node id each
        both = " and ".join(str(p) for n, p in zip(baseline_names, baselines) if n == name)
        raise pytest.UsageError(f"--loso-baseline: two baselines are named {name} ({both}); "
                                "name each with NAME=PATH, e.g. --loso-baseline=candidate=PATH")
    archs = config.getoption("loso_arch") or _ini(config, "loso_arch")
    try:
        bounds = {}
        for option, key, _ in _THRESHOLD_OPTIONS:
            given = _value(config, option)
            bounds[key] = DEFAULTS[key] if given is None else parse_bound(given, option)
        fold = Bounds(bounds["min_plcc"], bounds["min_srocc"], bounds["max_rmse"])
        overrides = config.getoption("loso_source_threshold") or _ini(config, "loso_source_thresholds")
        thresholds = Thresholds(
            fold=fold,
            per_source=parse_source_overrides(list(overrides), fold),
            min_mean_plcc=bounds["min_mean_plcc"],
            max_mean_rmse=bounds["max_mean_rmse"],
            min_seed_mean_plcc=bounds["min_seed_mean_plcc"],
            max_seed_spread=bounds["max_seed_spread"],
        )
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    # Not pytest's rootdir: its guess counts option values, so absolute --loso-dir / --data-root
    # could put the report in /tmp or in another project.
    report_dir = _path(config, "--loso-report") or _ini_base_or_cwd(config) / "runs" / "loso_eval"
    _report_folder(report_dir)
    plot_dir = _path(config, "--loso-plot")
    if plot_dir is not None and importlib.util.find_spec("matplotlib") is None:
        raise pytest.UsageError("--loso-plot needs matplotlib: pip install 'pytest-loso[plot]'")
    compare = _path(config, "--loso-compare")
    accept = bool(config.getoption("loso_accept"))
    if config.getoption("loso_accept_force") and not accept:
        raise pytest.UsageError("--loso-accept-force only qualifies --loso-accept: give both")
    if accept and compare is None:
        raise pytest.UsageError("--loso-accept writes the accepted report to the --loso-compare path: give one")
    if compare is not None and not accept and not compare.is_file():
        raise pytest.UsageError(f"--loso-compare {compare}: file not found (create it on main with --loso-accept)")
    if compare is not None and compare.is_file():
        try:
            load_accepted(compare)  # a broken accepted report stops the run before anything is scored
        except LosoInputError as exc:
            raise pytest.UsageError(f"--loso-compare {exc}") from None
    try:
        max_drop = parse_max_drop(_value(config, "--loso-max-drop"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    bootstrap = _integer(config, "--loso-bootstrap", minimum=0)
    if cache_dir.exists() and not cache_dir.is_dir():  # otherwise every fold fails on the same path
        raise pytest.UsageError(f"--loso-cache {cache_dir}: is not a folder; give the feature cache folder")
    logistic = config.getoption("loso_logistic")
    extractor = _choice(config, "--loso-extractor", EXTRACTORS)
    recompute = bool(config.getoption("loso_recompute"))
    if recompute:
        _check_recompute(table, extractor, _path(config, "--loso-vmaf-bin"), _path(config, "--loso-ffmpeg"))
    return GateOptions(
        loso_dirs=tuple(loso_dirs),
        data_root=data_root,
        cache_dir=cache_dir,
        baselines=tuple(baselines),
        baseline_names=tuple(baseline_names),
        ensembles=_ensembles(config) if not example or config.getoption("loso_ensemble") else (),
        archs=tuple(archs),
        report_dir=report_dir,
        thresholds=thresholds,
        example=example,
        extractor=extractor,
        recompute=recompute,
        vmaf_bin=_path(config, "--loso-vmaf-bin"),
        ffmpeg=_path(config, "--loso-ffmpeg"),
        frame_size=EXAMPLE_FRAME_SIZE if example and config.getoption("loso_frame_size") is None
        else parse_frame_size(_value(config, "--loso-frame-size"), "--loso-frame-size"),
        frame_sizes=_frame_sizes(_ini(config, "loso_frame_sizes")),
        jobs=_integer(config, "--loso-jobs", minimum=1) or os.cpu_count() or 1,
        compare=compare,
        max_drop=max_drop,
        compare_mode=_choice(config, "--loso-compare-mode", COMPARE_MODES),
        accept=accept,
        accept_force=bool(config.getoption("loso_accept_force")),
        bootstrap=bootstrap if bootstrap is not None else (1000 if compare else 0),
        bootstrap_seed=_integer(config, "--loso-bootstrap-seed", minimum=0) or 0,
        logistic=bool(logistic if logistic is not None else _ini(config, "loso_logistic")),
        metrics_path=_writable_file(_path(config, "--loso-metrics"), "--loso-metrics"),
        plot_dir=plot_dir,
        verdict_path=_writable_file(_path(config, "--loso-verdict"), "--loso-verdict"),
        srocc_ranks=_choice(config, "--loso-srocc-ranks", SROCC_RANKS),
        table=table,
        target=target,
        where=where,
    )


def _check_recompute(table: Path | None, extractor: str, vmaf_bin: Path | None, ffmpeg: Path | None) -> None:
    """``--loso-recompute`` needs a feature cache and something to recompute it with."""
    from .extract import resolve_extractor

    if table is not None:
        raise pytest.UsageError("--loso-recompute recomputes a YUV + cache corpus's cache; --loso-table has none")
    if resolve_extractor(extractor, vmaf_bin, ffmpeg) is None:
        raise pytest.UsageError(
            f"--loso-recompute needs an extractor, and --loso-extractor {extractor} gives none: "
            "pip install 'pytest-loso[vmaf]', or give --loso-ffmpeg PATH or --loso-vmaf-bin PATH")


def _table_options(config: pytest.Config, data_root: Path | None) -> tuple[Path | None, str, dict]:
    """``--loso-table``, ``--loso-target`` and ``--loso-where``, checked before anything is read."""
    from .table import TABLE_EXTRA_HINT, parse_where

    table = _path(config, "--loso-table")
    target = str(_value(config, "--loso-target") or "vmaf").strip()
    try:
        where = parse_where(list(config.getoption("loso_where") or _ini(config, "loso_where")))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    if table is None:
        given = ["--loso-where"] * bool(where) + ["--loso-target"] * (
            config.getoption("loso_target") is not None or target != "vmaf")
        if given and data_root is not None:  # a YUV + cache corpus has neither columns nor rows to filter
            raise pytest.UsageError(f"{' and '.join(given)} (or {' / '.join(map(ini_key, given))} in the ini) "
                                    "apply to a per-frame table (--loso-table); this run reads --data-root")
        return None, target, where
    if data_root is not None:
        raise pytest.UsageError("--data-root and --loso-table are two corpora: give one of them")
    if table.suffix not in (".jsonl", ".parquet"):
        raise pytest.UsageError(f"--loso-table {table}: expected a .jsonl or .parquet file")
    if not table.is_file():
        raise pytest.UsageError(f"--loso-table {table}: file not found (or not a file)")
    if table.suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise pytest.UsageError(f"--loso-table {table}: reading parquet needs pyarrow: {TABLE_EXTRA_HINT}")
    return table, target, where
