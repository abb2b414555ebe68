"""Command-line options and ini keys, and reading them once into :class:`~.settings.GateOptions`.

Every option has an ini key of the same name (``--loso-min-plcc`` is ``loso_min_plcc``);
the command line wins. Relative paths on the command line are taken from the directory
pytest was started in; relative paths in an ini file from that file's directory.
Small resolvers read one group of settings each; :mod:`.preflight` then checks the files they
name. This module imports nothing heavy: it runs in every pytest session.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import pytest

from .errors import LosoUsageError
from .settings import (
    COMPARE_MODES,
    DEFAULT_MAX_DROP,
    DEFAULTS,
    EXAMPLE_DIR,
    EXAMPLE_FRAME_SIZE,
    EXTRACTORS,
    SROCC_RANKS,
    CACHE_SLICE_COLUMNS,
    VERSUS_RULES,
    Bounds,
    Ensemble,
    GateOptions,
    Thresholds,
    default_cache_dir,
    check_bound_range,
    parse_bound,
    parse_ensemble,
    parse_frame_size,
    parse_frame_sizes,
    parse_max_drop,
    parse_max_quant_drop,
    parse_min_coverage,
    parse_quant_batch,
    parse_source_overrides,
    parse_slice_thresholds,
    parse_slices,
    parse_versus,
    parse_where,
)

__all__ = ["EXAMPLE_DIR", "EXAMPLE_FRAME_SIZE", "add_ini", "add_options", "add_unprefixed_data_root", "read_options"]

# The one unprefixed spelling, kept because the team's CI uses it: registered after the
# project's initial conftests and only where free (add_unprefixed_data_root), so a project
# that defines its own --data-root / data_root keeps it, and the gate reads --loso-data-root.
UNPREFIXED_OPTION = "--data-root"
UNPREFIXED_DEST = "loso_unprefixed_data_root"
UNPREFIXED_INI = "data_root"
_UNPREFIXED_HELP = "corpus root with ref/ and dis/: the same as --loso-data-root"
# whether this session's --data-root / data_root are the gate's (set where they were registered)
UNPREFIXED_OURS: pytest.StashKey[tuple[bool, bool]] = pytest.StashKey()

# (option, ini type, help); ini key = option without leading dashes, "-" -> "_".
_PATH_OPTIONS: list[tuple[str, Literal["paths", "string", "linelist"], str]] = [
    ("--loso-dir", "paths", "folder of fold_<Source>/<arch>_final.onnx, or of loso_<arch>/ sweeps (repeatable)"),
    ("--loso-predictions", "paths", "held-out predictions from any trainer: a .jsonl or .parquet table with columns "
     "run, [seed,] source, dis_basename, frame_index, prediction; scored as fold tests (repeatable)"),
    ("--loso-data-root", "string", "corpus root with ref/ and dis/ (sources are discovered from file names); "
     "also --data-root, unless the project defines its own"),
    ("--loso-table", "string", "per-frame table (.jsonl or .parquet) as the corpus, instead of --data-root"),
    ("--loso-cache", "string", "feature cache root (default: $VMAF_TINY_AI_CACHE, else ~/.cache/vmaf-tiny-ai)"),
    ("--loso-baseline", "linelist", "baseline ONNX scored on every source and their concatenation: NAME=PATH, or "
     "PATH named by its file stem (repeatable; ini paths relative to the ini file)"),
    ("--loso-report", "string", "folder for loso_eval.json and loso_eval.md (default: runs/loso_eval in the ini file's folder, else in "
     "the folder pytest was started in)"),
    ("--loso-vmaf-bin", "string", "libvmaf's vmaf tool, to fill a cold cache (default: $VMAF_BIN)"),
    ("--loso-ffmpeg", "string", "ffmpeg with the libvmaf filter (default: the one in the imageio-ffmpeg wheel)"),
    ("--loso-compare", "string", "the accepted loso_eval.json (from main) to compare every metric with"),
    ("--loso-metrics", "string", "write an OpenMetrics metrics.txt here (GitLab merge-request metrics)"),
    ("--loso-plot", "string", "write scatter and bar-chart PNGs into this folder (needs matplotlib)"),
    ("--loso-verdict", "string", "write a PROMOTE / HOLD verdict JSON here (the shape of validate_ensemble_seeds.py)"),
    ("--loso-registry", "string", "the team's model/tiny/registry.json: every scored model it lists is checked "
     "against its pinned sha256 / int8_sha256 before scoring"),
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


_METAVARS = {  # --help's placeholders, not argparse's LOSO_DIR...
    "--loso-dir": "DIR", "--loso-predictions": "PATH", "--loso-data-root": "DIR", "--loso-table": "PATH",
    "--loso-cache": "DIR", "--loso-baseline": "[NAME=]PATH", "--loso-report": "DIR", "--loso-vmaf-bin": "PATH",
    "--loso-ffmpeg": "PATH", "--loso-compare": "PATH", "--loso-metrics": "PATH", "--loso-plot": "DIR",
    "--loso-verdict": "PATH", "--loso-registry": "PATH",
}


def _threshold_help(key: str, help_text: str) -> str:
    """The help of a bound, with its default said once (a bound that defaults to another says so itself)."""
    if "default" in help_text:
        return f"{help_text}; 'none' disables"
    default = DEFAULTS[key]
    return f"{help_text} (default {'off' if default is None else default}; 'none' disables)"


def add_options(parser: pytest.Parser) -> None:
    """The command-line options (the ini keys are :func:`add_ini`'s)."""
    group = parser.getgroup("loso", "LOSO accuracy gate (pytest-loso)")
    group.addoption(  # first: where a newcomer starts
        "--loso-example",
        action="store_true",
        default=False,
        help="gate the example corpus bundled with pytest-loso (sets --loso-dir, --loso-data-root, its baseline, "
        "the frame size, and --loso-cache unless given; --loso-baseline / --loso-ensemble add your models)",
    )
    for option, ini_type, help_text in _PATH_OPTIONS:
        group.addoption(option, action="append" if ini_type in ("paths", "linelist") else "store", default=None,
                        metavar=_METAVARS[option], help=help_text)
    group.addoption("--loso-ensemble", action="append", default=None, metavar="NAME=GLOB",
                    help="NAME=GLOB: score the members' mean as ensemble[NAME], e.g. "
                    "'fr_v2=model/tiny/fr_regressor_v2_ensemble_v1_seed*.onnx' (repeatable)")
    group.addoption("--loso-arch", action="append", default=None, metavar="ARCH", help="score only this architecture (repeatable)")
    for option, key, help_text in _THRESHOLD_OPTIONS:
        group.addoption(option, default=None, metavar="X", help=_threshold_help(key, help_text))
    group.addoption(
        "--loso-source-threshold",
        action="append",
        default=None,
        metavar="'SOURCE: KEY=X ...'",
        help="per-source bounds, e.g. 'FoxBird: min_plcc=0.92 max_rmse=18' (repeatable)",
    )
    group.addoption("--loso-quantized", action="append", default=None, metavar="[TAG=]PATH",
                    help="[TAG=]INT8_PATH: score a quantised model against its fp32 parent (X.onnx beside X.int8.onnx) "
                    "as quant[TAG]; a baseline's X.int8.onnx beside it is paired without asking (repeatable)")
    group.addoption("--loso-quant-batch", default=None, metavar="N|source",
                    help="frames per run of a quantised model: N, or 'source' for a source at once (default 1, "
                    "as libvmaf scores frame by frame)")
    group.addoption("--loso-max-quant-drop", default=None, metavar="SPEC",
                    help="bounds of a quantised model against its parent, e.g. agreement=0.01,plcc=0.005,rmse=1.0,"
                    "bias=0.5 (default: agreement = the registry's quant_accuracy_budget_plcc, else 0.01)")
    group.addoption("--loso-quant-per-source", action="store_true", default=None,
                    help="hold every source to --loso-max-quant-drop too, not only the concatenation")
    group.addoption("--loso-min-coverage", action="append", default=None, metavar="LEVEL=COVERAGE",
                    help="LEVEL=COVERAGE: fail an ensemble whose μ ± zσ at nominal LEVEL%% holds fewer than "
                    "COVERAGE of the frames on all sources, e.g. 95=0.90 (repeatable)")
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
    group.addoption("--loso-frame-size", default=None, metavar="WxH", help="frame size of the raw YUVs, WxH (default 1920x1080)")
    group.addoption("--loso-jobs", type=int, default=None, metavar="N", help="libvmaf runs at once (default: number of CPUs)")
    group.addoption("--loso-max-drop", default=None, metavar="METRIC=X[%],...",
                    help=f"allowed change per metric vs the accepted report, absolute or %% (default {DEFAULT_MAX_DROP})")
    group.addoption("--loso-compare-mode", choices=COMPARE_MODES, default=None,
                    help="bound: fail a drop beyond the allowance; noise: only when also outside the bootstrap "
                    "interval (default bound)")
    group.addoption("--loso-accept", action="store_true", default=False,
                    help="write this run's report as the new accepted file (the --loso-compare path)")
    group.addoption("--loso-accept-force", action="store_true", default=False,
                    help="accept even when tests failed")
    group.addoption("--loso-bootstrap", type=int, default=None, metavar="N",
                    help="bootstrap resamples for 95%% intervals (default: 1000 with --loso-compare, else 0 = off)")
    group.addoption("--loso-versus", action="append", default=None, metavar="NEW=OLD",
                    help="NEW=OLD: judge run NEW against run OLD on their common folds with the paired bootstrap, "
                    "as the test versus[NEW-OLD] (repeatable)")
    group.addoption("--loso-versus-rule", choices=VERSUS_RULES, default=None,
                    help="not-worse: fail when NEW's mean difference is surely below -allowance (--loso-max-drop); "
                    "better: fail unless NEW's mean PLCC is surely above OLD's (default not-worse)")
    group.addoption("--loso-bootstrap-seed", type=int, default=None, metavar="N", help="bootstrap seed (default 0)")
    group.addoption("--loso-logistic", action="store_true", default=None,
                    help="also report PLCC and RMSE after the 4-parameter logistic mapping")
    group.addoption("--loso-srocc-ranks", choices=SROCC_RANKS, default=None,
                    help="SROCC's ranks: average (scipy.stats.spearmanr, default) or ordinal "
                    "(argsort(argsort(x)), ties not averaged, as the team's newer eval scripts)")
    group.addoption("--loso-target", default=None, metavar="COLUMN", help="--loso-table: the target column (default vmaf)")
    group.addoption("--loso-slice", action="append", default=None, metavar="COLUMN",
                    help="also report every fold, baseline and aggregate per value of this per-frame column: a "
                    "table's column (encoder, codec, corpus...), or quality / height / kbps of a YUV + cache "
                    "corpus's distorted file names (repeatable)")
    group.addoption("--loso-slice-threshold", action="append", default=None, metavar="'COLUMN=VALUE: BOUNDS'",
                    help="'COLUMN=VALUE: min_mean_plcc=0.95 max_mean_rmse=8': the test slice[<run>-COLUMN=VALUE] "
                    "holds that slice's mean over folds to these bounds, for every run (repeatable)")
    group.addoption("--loso-where", action="append", default=None, metavar="COLUMN=VALUE",
                    help="--loso-table: keep rows with COLUMN=VALUE (repeatable; AND across columns)")


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


def add_ini(parser: pytest.Parser) -> None:
    """The ini keys. Also registered by the always-loaded ``pytest_loso.ini`` plugin, so that an
    ini file that configures the gate is quiet when the gate is disabled (``-p no:loso``)."""
    for option, ini_type, help_text in _PATH_OPTIONS:
        parser.addini(ini_key(option), help_text, type=ini_type,
                      default=[] if ini_type in ("paths", "linelist") else None)
    parser.addini("loso_ensemble", "ensembles, one 'NAME=GLOB' a line (globs relative to the ini file)", type="linelist")
    parser.addini("loso_arch", "architectures to score (default: all found)", type="args", default=[])
    # numbers: the ini type takes a TOML number as well as a string, where pytest can (else text)
    for option, key, help_text in _THRESHOLD_OPTIONS:
        parser.addini(ini_key(option), _threshold_help(key, help_text),
                      type=(float | str) if PYTEST_TAKES_TOML_NUMBERS else None, default=None)
    for key, help_text, default in _INTEGER_INI:
        parser.addini(key, help_text, type=(int | str) if PYTEST_TAKES_TOML_NUMBERS else None, default=default)
    parser.addini("loso_source_thresholds", "per-source bounds, one 'Source: key=value ...' a line", type="linelist")
    parser.addini("loso_extractor", "auto, ffmpeg, vmaf or none", default="auto")
    parser.addini("loso_frame_size", "frame size of the raw YUVs, WxH", default="1920x1080")
    parser.addini("loso_frame_sizes", "per-source frame sizes, one 'Source: WxH' a line", type="linelist")
    parser.addini("loso_max_drop", "allowed change per metric vs the accepted report", default=DEFAULT_MAX_DROP)
    parser.addini("loso_compare_mode", "bound or noise", default="bound")
    parser.addini("loso_logistic", "also report logistic-mapped PLCC and RMSE", type="bool", default=False)
    parser.addini("loso_target", "--loso-table: the target column", default="vmaf")
    parser.addini("loso_srocc_ranks", "SROCC's ranks: average or ordinal", default="average")
    parser.addini("loso_versus", "paired A/B tests, one 'NEW=OLD' a line", type="linelist")
    parser.addini("loso_versus_rule", "not-worse or better", default="not-worse")
    parser.addini("loso_slice", "slice columns, one a line (--loso-slice)", type="linelist")
    parser.addini("loso_slice_threshold", "slice bounds, one 'COLUMN=VALUE: key=number ...' a line", type="linelist")
    parser.addini("loso_where", "--loso-table: row filters, one COLUMN=VALUE a line", type="linelist")
    parser.addini("loso_quantized", "quantised models, one '[TAG=]INT8_PATH' a line (relative to the ini file)",
                  type="linelist")
    parser.addini("loso_quant_batch", "frames per run of a quantised model: N or 'source'", default=None)
    parser.addini("loso_max_quant_drop", "bounds of a quantised model against its parent", default=None)
    parser.addini("loso_quant_per_source", "hold every source to the quantised bounds too", type="bool", default=False)
    parser.addini("loso_min_coverage", "ensembles' minimum coverage, one LEVEL=COVERAGE a line (e.g. 95=0.90)",
                  type="linelist")


def add_unprefixed_data_root(config: pytest.Config, parser: pytest.Parser, *, option: bool) -> None:
    """Register ``--data-root`` (when ``option``) and the ini key ``data_root`` as the gate's, each only
    if the project's initial conftests left it free. Called once they are loaded; idempotent."""
    taken = {name for group in parser._groups for opt in group.options for name in opt.names()}
    dests = {opt.dest for group in parser._groups for opt in group.options}
    option_ours, ini_ours = config.stash.get(UNPREFIXED_OURS, (False, False))
    if option and not option_ours and UNPREFIXED_OPTION not in taken and "data_root" not in dests:
        parser.getgroup("loso").addoption(UNPREFIXED_OPTION, dest=UNPREFIXED_DEST, default=None, metavar="DIR",
                                          help=_UNPREFIXED_HELP)
        option_ours = True
    if not ini_ours and UNPREFIXED_INI not in parser._inidict:
        parser.addini(UNPREFIXED_INI, "the same as loso_data_root (unless the project defines data_root)", default=None)
        ini_ours = True
    config.stash[UNPREFIXED_OURS] = (option_ours, ini_ours)


def _data_root(config: pytest.Config) -> Path | None:
    """``--loso-data-root`` (or ``--data-root`` where it is the gate's), else the ini's ``loso_data_root``
    (or ``data_root`` where it is the gate's)."""
    option_ours, ini_ours = config.stash.get(UNPREFIXED_OURS, (False, False))
    cli = config.getoption("loso_data_root") or (config.getoption(UNPREFIXED_DEST, None) if option_ours else None)
    if cli:
        return config.invocation_params.dir / cli
    ini = _ini(config, "loso_data_root") or (_ini(config, UNPREFIXED_INI) if ini_ours else None)
    return _ini_base(config) / ini if ini else None


def _data_root_given_on_command_line(config: pytest.Config) -> bool:
    option_ours, _ = config.stash.get(UNPREFIXED_OURS, (False, False))
    return bool(config.getoption("loso_data_root") or (option_ours and config.getoption(UNPREFIXED_DEST, None)))


def _not_ours_hint(config: pytest.Config) -> str:
    """When the project owns --data-root / data_root: how to reach the gate's corpus root instead."""
    option_ours, ini_ours = config.stash.get(UNPREFIXED_OURS, (False, False))
    owned = [UNPREFIXED_OPTION] * (not option_ours) + [UNPREFIXED_INI] * (not ini_ours)
    if not owned:
        return ""
    return (f" ({' and '.join(owned)} belong to this project, not to the gate: "
            "use --loso-data-root or the ini key loso_data_root)")


def _ini_base_or_cwd(config: pytest.Config) -> Path:
    return config.inipath.parent if config.inipath else config.invocation_params.dir


def _ini_base(config: pytest.Config) -> Path:
    return config.inipath.parent if config.inipath else config.rootpath


def _paths(config: pytest.Config, option: str) -> list[Path]:
    cli = config.getoption(ini_key(option))
    if cli:
        return [config.invocation_params.dir / p for p in cli]
    return [Path(p) for p in _ini(config, ini_key(option))]  # "paths" ini values are already absolute


def _specs(config: pytest.Config, option: str, ini: str) -> tuple[list[str], Path]:
    """A repeatable option's values and the folder their relative paths start from (the ini's, for ini lines)."""
    cli = config.getoption(ini_key(option))
    return (cli, config.invocation_params.dir) if cli else (_ini(config, ini), _ini_base(config))


def _named_baselines(config: pytest.Config, option: str = "--loso-baseline") -> tuple[list[str], list[Path]]:
    """``--loso-baseline NAME=PATH`` or ``PATH`` (named by its stem; a quantised ``X.int8.onnx`` by ``X``);
    ini lines alike, relative to the ini file."""
    specs, base = _specs(config, option, ini_key(option))
    names, paths = [], []
    for spec in specs:
        name, sep, rest = (part.strip() for part in spec.partition("="))
        # NAME= only when NAME is a plain name: a path that itself holds '=' stays a path
        named = sep and name and not any(c in name for c in "/\\") and not (base / spec).exists()
        path = Path(rest if named else spec)
        path = path if path.is_absolute() else base / path
        # a bare quantised X.int8.onnx is tagged X, its parent's name
        stem = path.name[: -len(".int8.onnx")] if option == "--loso-quantized" and path.name.endswith(".int8.onnx") \
            else path.stem
        names.append(name if named else stem)
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


def _value_or_default(config: pytest.Config, option: str) -> str:
    """:func:`_value` of an option whose ini key has a text default: never ``None``."""
    value = _value(config, option)
    assert value is not None  # pytest gives the ini key's default (text) when the ini file sets none
    return value


def _lines(config: pytest.Config, option: str, ini: str) -> list[str]:
    """A repeatable option's values, else its ini lines."""
    return list(config.getoption(ini_key(option)) or _ini(config, ini))


def _integer(config: pytest.Config, option: str, *, minimum: int) -> int | None:
    """An integer option or ini value; anything else is a usage error naming the option."""
    text = _value(config, option)
    if text is None or str(text).strip() == "":
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        raise LosoUsageError(f"{option} / {ini_key(option)}: {text!r} is not a whole number") from None
    if value < minimum:
        raise LosoUsageError(f"{option} / {ini_key(option)}: {value} is below {minimum}")
    return value


def _choice(config: pytest.Config, option: str, choices: tuple[str, ...]) -> str:
    """An option's value, checked against its choices in the ini file too (argparse checks the CLI)."""
    value = str(_value(config, option)).strip()
    if value not in choices:
        raise LosoUsageError(f"{ini_key(option)} = {value!r}: choose one of {', '.join(choices)}")
    return value


def _ensembles(config: pytest.Config) -> tuple[Ensemble, ...]:
    """``--loso-ensemble NAME=GLOB`` (or ini lines): each name with the model files its glob matches."""
    specs, base = _specs(config, "--loso-ensemble", "loso_ensemble")
    found: dict[str, Ensemble] = {}
    for spec in (s.strip() for s in specs if s.strip()):
        name, pattern = parse_ensemble(spec)
        if name in found:
            raise LosoUsageError(f"--loso-ensemble: two ensembles are named {name}")
        full = pattern if os.path.isabs(pattern) else str(base / pattern)
        anchor = Path(full).anchor
        # the models it matches: a member's sidecar (.json) and weights (.onnx.data) go with it
        members = tuple(sorted(p for p in Path(anchor).glob(full[len(anchor):]) if p.is_file() and p.suffix == ".onnx"))
        found[name] = Ensemble(name, pattern, members)
    return tuple(found.values())


def _corpus(config: pytest.Config, example: bool) -> dict[str, Any]:
    """Where the frames come from: the bundled example, a data root with its cache, or a per-frame table."""
    if example:
        if _data_root_given_on_command_line(config):
            raise LosoUsageError("--loso-example gates the bundled example corpus and its folds: drop "
                                 "--data-root, or drop --loso-example to gate your own")
        for option in ("--loso-dir", "--loso-table", "--loso-where", "--loso-target"):
            if config.getoption(ini_key(option)):  # silently gating another corpus than asked would lie
                raise LosoUsageError(f"--loso-example gates the bundled example corpus and its folds: drop "
                                     f"{option}, or drop --loso-example to gate your own")
        # the ini's table settings describe your corpus, not the example (as its baselines do)
        return {"data_root": EXAMPLE_DIR / "corpus", "table": None, "target": "vmaf", "where": {},
                "cache_dir": _path(config, "--loso-cache") or EXAMPLE_DIR / "cache",  # another cache: see it filled
                **_slices(config, True, ini=False)}
    data_root, table = _data_root(config), _path(config, "--loso-table")
    target = str(_value(config, "--loso-target") or "vmaf").strip()
    where = parse_where(_lines(config, "--loso-where", "loso_where"))
    if table is None:
        given = ["--loso-where"] * bool(where) + ["--loso-target"] * (
            config.getoption("loso_target") is not None or target != "vmaf")
        if given and data_root is not None:  # a YUV + cache corpus has neither columns nor rows to filter
            raise LosoUsageError(f"{' and '.join(given)} (or {' / '.join(map(ini_key, given))} in the ini) "
                                 "apply to a per-frame table (--loso-table); this run reads --data-root")
        if data_root is None:
            raise LosoUsageError("--loso-dir or --loso-predictions is set but --data-root is not: give the corpus "
                                 "root (ref/ and dis/) or a per-frame table with --loso-table" + _not_ours_hint(config))
    elif data_root is not None:
        raise LosoUsageError("--data-root and --loso-table are two corpora: give one of them")
    return {"data_root": data_root, "table": table, "target": target, "where": where,
            "cache_dir": _path(config, "--loso-cache") or default_cache_dir(), **_slices(config, table is None)}


def _slices(config: pytest.Config, cache_corpus: bool, *, ini: bool = True) -> dict[str, Any]:
    """``--loso-slice`` columns, with those ``--loso-slice-threshold`` bounds; a YUV + cache corpus has
    only the fields of its distorted file names to slice by. ``ini=False``: the command line's only
    (the ini's slices describe your corpus, not the bundled example)."""
    def lines(option: str, key: str) -> list[str]:
        return _lines(config, option, key) if ini else list(config.getoption(ini_key(option)) or ())

    bounds = parse_slice_thresholds(lines("--loso-slice-threshold", "loso_slice_threshold"))
    slices = parse_slices(lines("--loso-slice", "loso_slice") + [b.column for b in bounds])
    other = [column for column in slices if cache_corpus and column not in CACHE_SLICE_COLUMNS]
    if other:
        raise LosoUsageError(f"--loso-slice / --loso-slice-threshold: column {', '.join(map(repr, other))} is not "
                             "a field of a YUV + cache corpus (its slice columns are "
                             f"{', '.join(CACHE_SLICE_COLUMNS)}, from dis/<Source>_<quality>_<height>_<kbps>.yuv); "
                             "slice by another column with a per-frame table (--loso-table)")
    return {"slices": slices, "slice_bounds": bounds}


def _models(config: pytest.Config, example: bool) -> dict[str, Any]:
    """The fold folders, baselines, ensembles and architectures to score."""
    loso_dirs = [EXAMPLE_DIR / "folds"] if example else _paths(config, "--loso-dir")
    baseline_names, baselines = [], []
    if example:
        baselines = sorted(EXAMPLE_DIR.glob("baselines/*.onnx"))
        baseline_names = [p.stem for p in baselines]
    if not example or config.getoption("loso_baseline"):  # yours beside the example's (ini ones are your corpus's)
        names, paths = _named_baselines(config)
        baseline_names, baselines = baseline_names + names, baselines + paths
    for name in dict.fromkeys(n for n in baseline_names if baseline_names.count(n) > 1):  # one node id each
        both = " and ".join(str(p) for n, p in zip(baseline_names, baselines) if n == name)
        raise LosoUsageError(f"--loso-baseline: two baselines are named {name} ({both}); "
                             "name each with NAME=PATH, e.g. --loso-baseline=candidate=PATH")
    return {"loso_dirs": tuple(loso_dirs), "held_out": tuple(_paths(config, "--loso-predictions")),
            "baselines": tuple(baselines), "baseline_names": tuple(baseline_names),
            "ensembles": _ensembles(config) if not example or config.getoption("loso_ensemble") else (),
            "archs": tuple(config.getoption("loso_arch") or _ini(config, "loso_arch"))}


def _thresholds(config: pytest.Config) -> Thresholds:
    bounds = {}
    for option, key, _ in _THRESHOLD_OPTIONS:
        given = _value(config, option)
        bounds[key] = DEFAULTS[key] if given is None else check_bound_range(key, parse_bound(given, option), option)
    fold = Bounds(bounds["min_plcc"], bounds["min_srocc"], bounds["max_rmse"])
    return Thresholds(
        fold=fold,
        per_source=parse_source_overrides(_lines(config, "--loso-source-threshold", "loso_source_thresholds"), fold),
        min_mean_plcc=bounds["min_mean_plcc"],
        max_mean_rmse=bounds["max_mean_rmse"],
        min_seed_mean_plcc=bounds["min_seed_mean_plcc"],
        max_seed_spread=bounds["max_seed_spread"],
    )


def _shipping(config: pytest.Config) -> dict[str, Any]:
    """What ships beside the fp32 regressors, and its bounds: the ensembles' calibration, the registry's pins,
    the quantised models."""
    return {"min_coverage": parse_min_coverage(_lines(config, "--loso-min-coverage", "loso_min_coverage")),
            "registry": _path(config, "--loso-registry"),
            "quantized": _quantized(config),
            "quant_batch": parse_quant_batch(_value(config, "--loso-quant-batch")),
            "max_quant_drop": parse_max_quant_drop(_value(config, "--loso-max-quant-drop")),
            "quant_per_source": bool(_flag(config, "--loso-quant-per-source"))}


def _flag(config: pytest.Config, option: str) -> bool:
    given = config.getoption(ini_key(option))
    return bool(given if given is not None else _ini(config, ini_key(option)))


def _quantized(config: pytest.Config) -> tuple[tuple[str, Path], ...]:
    """``--loso-quantized [TAG=]INT8_PATH``: each tag once."""
    names, paths = _named_baselines(config, "--loso-quantized")
    for name in dict.fromkeys(n for n in names if names.count(n) > 1):
        raise LosoUsageError(f"--loso-quantized: two quantised models are tagged {name}; name each with TAG=PATH")
    return tuple(zip(names, paths))


def _comparison(config: pytest.Config) -> dict[str, Any]:
    """The accepted report, how this run is compared with it, and whether it replaces it."""
    compare = _path(config, "--loso-compare")
    accept = bool(config.getoption("loso_accept"))
    if config.getoption("loso_accept_force") and not accept:
        raise LosoUsageError("--loso-accept-force only qualifies --loso-accept: give both")
    if accept and compare is None:
        raise LosoUsageError("--loso-accept writes the accepted report to the --loso-compare path: give one")
    bootstrap = _integer(config, "--loso-bootstrap", minimum=0)
    versus = parse_versus(_lines(config, "--loso-versus", "loso_versus"))
    if versus and bootstrap == 0:
        raise LosoUsageError("--loso-versus judges on the paired bootstrap: drop --loso-bootstrap=0")
    return {"versus": versus, "versus_rule": _choice(config, "--loso-versus-rule", VERSUS_RULES),"compare": compare, "accept": accept, "accept_force": bool(config.getoption("loso_accept_force")),
            "max_drop": parse_max_drop(_value_or_default(config, "--loso-max-drop")),
            "compare_mode": _choice(config, "--loso-compare-mode", COMPARE_MODES),
            "bootstrap": bootstrap if bootstrap is not None else (1000 if compare or versus else 0),
            "bootstrap_seed": _integer(config, "--loso-bootstrap-seed", minimum=0) or 0}


def _extraction(config: pytest.Config, example: bool) -> dict[str, Any]:
    """How a cold cache is filled: the extractor, the frame sizes, how many runs at once."""
    return {"extractor": _choice(config, "--loso-extractor", EXTRACTORS),
            "recompute": bool(config.getoption("loso_recompute")),
            "vmaf_bin": _path(config, "--loso-vmaf-bin"),
            "ffmpeg": _path(config, "--loso-ffmpeg"),
            "frame_size": EXAMPLE_FRAME_SIZE if example and config.getoption("loso_frame_size") is None
            else parse_frame_size(_value_or_default(config, "--loso-frame-size"), "--loso-frame-size"),
            "frame_sizes": parse_frame_sizes(_ini(config, "loso_frame_sizes")),
            "jobs": _integer(config, "--loso-jobs", minimum=1) or os.cpu_count() or 1}


def _outputs(config: pytest.Config) -> dict[str, Any]:
    """Where the report and the optional outputs go, and what the report adds."""
    logistic = config.getoption("loso_logistic")
    # Not pytest's rootdir: its guess counts option values, so absolute --loso-dir / --data-root
    # could put the report in /tmp or in another project.
    return {"report_dir": _path(config, "--loso-report") or _ini_base_or_cwd(config) / "runs" / "loso_eval",
            "plot_dir": _path(config, "--loso-plot"),
            "metrics_path": _path(config, "--loso-metrics"),
            "verdict_path": _path(config, "--loso-verdict"),
            "logistic": bool(logistic if logistic is not None else _ini(config, "loso_logistic")),
            "srocc_ranks": _choice(config, "--loso-srocc-ranks", SROCC_RANKS)}


def why_the_gate_is_off(config: pytest.Config) -> str | None:
    """When the gate is off (no ``--loso-dir``) but the command line asks for it (its options, or
    ``-m loso``): why nothing of it ran, for the terminal; ``None`` when nothing asked for it."""
    option_ours, _ = config.stash.get(UNPREFIXED_OURS, (False, False))
    given = [UNPREFIXED_OPTION] * bool(option_ours and config.getoption(UNPREFIXED_DEST, None))
    given += [option for option in ("--loso-data-root", "--loso-table", "--loso-baseline", "--loso-ensemble",
                                    "--loso-compare", "--loso-report", "--loso-arch") if config.getoption(ini_key(option))]
    if "loso" in (config.getoption("markexpr", "") or ""):
        given.append("-m loso")
    if not given:
        return None
    return (f"loso: the gate did not run: {', '.join(given)} given, but no --loso-dir (nor loso_dir in the ini) "
            "and no --loso-predictions: name the fold models' folder with --loso-dir, or a trainer's held-out "
            "predictions with --loso-predictions, or try --loso-example")


def _not_utf8(value: object) -> bool:
    try:
        str(value).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: a byte of a file name that is not UTF-8 (os.fsdecode)
        return True
    return False


def _check_workers_can_read_the_command_line(config: pytest.Config) -> None:
    """pytest-xdist sends the command line to its workers as UTF-8: a path holding a byte that is not
    UTF-8 cannot cross (an INTERNALERROR at start), so it is a usage error naming the option."""
    workers = config.getoption("numprocesses", None)
    if not workers or config.getoption("dist", "no") == "no" or hasattr(config, "workerinput"):
        return
    args = [str(a) for a in config.invocation_params.args]
    for i, arg in enumerate(args):
        if not _not_utf8(arg):
            continue
        if arg.startswith("-"):
            option, _, value = arg.partition("=")
        elif i and args[i - 1].startswith("-") and "=" not in args[i - 1]:
            option, value = args[i - 1], arg
        else:
            option, value = "the path", arg
        break
    else:
        bad = [(dest, value) for dest, value in sorted(vars(config.option).items())
               if _not_utf8(value) or (isinstance(value, list) and any(_not_utf8(v) for v in value))]
        if not bad:
            return
        option, value = "--" + bad[0][0].replace("_", "-"), bad[0][1]
    from .errors import readable

    raise LosoUsageError(
        f"{option} {readable(str(value))}: holds a byte that is not UTF-8, which pytest-xdist cannot pass to its "
        f"workers (-n {workers}); rename the folder (or file) to a UTF-8 name, or run without -n")


def read_options(config: pytest.Config) -> GateOptions | None:
    """The gate's settings, or ``None`` when neither ``--loso-dir`` nor ``--loso-predictions`` is
    configured (the gate is off).

    Read once per process; a bad value or an unusable path is pytest's usage error at start.
    """
    example = bool(config.getoption("loso_example"))
    if not example and not _paths(config, "--loso-dir") and not _paths(config, "--loso-predictions"):
        return None
    from . import preflight

    try:
        _check_workers_can_read_the_command_line(config)
        options = GateOptions(example=example, thresholds=_thresholds(config), **_corpus(config, example),
                              **_models(config, example), **_comparison(config), **_extraction(config, example),
                              **_outputs(config), **_shipping(config))
        preflight.check(options)
    except LosoUsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    return options
