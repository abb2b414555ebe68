"""The gate's settings once resolved: :class:`GateOptions`, the bounds and allowances it holds,
their defaults, and the parsers that turn one option's text into its value.

A leaf: no pytest, and no file is read. ``options`` reads pytest's command line and ini into
these values; ``preflight`` checks the files they name.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from .errors import LosoUsageError

EXTRACTORS = ("auto", "ffmpeg", "vmaf", "none")
COMPARE_MODES = ("bound", "noise")
SROCC_RANKS = ("average", "ordinal")
VERSUS_RULES = ("not-worse", "better")
# --loso-slice on a YUV + cache corpus: the fields of dis/<Source>_<quality>_<height>_<kbps>.yuv
CACHE_SLICE_COLUMNS = ("quality", "height", "kbps")
SLICE_BOUND_KEYS = ("min_mean_plcc", "min_mean_srocc", "max_mean_rmse")
CompareMode = Literal["bound", "noise"]
SroccRanks = Literal["average", "ordinal"]

EXAMPLE_DIR = Path(__file__).parent / "example"
EXAMPLE_FRAME_SIZE = (64, 48)  # of the bundled clips (scripts/build_example.py makes them)

CACHE_ENV = "VMAF_TINY_AI_CACHE"


def default_cache_dir() -> Path:
    """``$VMAF_TINY_AI_CACHE``, else ``~/.cache/vmaf-tiny-ai`` (shared with the training scripts)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "vmaf-tiny-ai"


# Defaults catch a broken model, not a slightly worse one: a team sets its own bar in ini.
DEFAULTS = {
    "min_plcc": 0.75,
    "min_srocc": 0.70,
    "max_rmse": 20.0,
    "min_mean_plcc": 0.85,
    "max_mean_rmse": 12.0,
    # Over seeds (ADR-0303 uses 0.95 and 0.005): off unless a team sets its promotion rule.
    "min_seed_mean_plcc": None,
    "max_seed_spread": None,
}
# Nominal levels (percent) of an ensemble's calibration, as the team's eval_probabilistic_proxy.py reports.
COVERAGE_LEVELS = ("50", "80", "95")
# KRCC has no bootstrap interval (its weighted form is quadratic), so it is compared only when asked.
DEFAULT_MAX_DROP = "plcc=0.005,srocc=0.005,rmse=0.5"


@dataclass(frozen=True)
class Bounds:
    """Bounds on one scored set of frames; ``None`` disables a bound."""

    min_plcc: float | None = None
    min_srocc: float | None = None
    max_rmse: float | None = None


@dataclass(frozen=True)
class Thresholds:
    fold: Bounds
    per_source: dict[str, Bounds] = field(default_factory=dict)
    min_mean_plcc: float | None = None
    max_mean_rmse: float | None = None
    min_seed_mean_plcc: float | None = None  # every seed's mean PLCC over folds
    max_seed_spread: float | None = None  # max - min of the per-seed mean PLCC

    def for_source(self, source: str) -> Bounds:
        return self.per_source.get(source, self.fold)

    @property
    def seed_mean_plcc_bound(self) -> float | None:
        """Every seed's minimum mean PLCC: ``min_seed_mean_plcc``, by default ``min_mean_plcc``."""
        return self.min_mean_plcc if self.min_seed_mean_plcc is None else self.min_seed_mean_plcc

    def for_seed(self) -> Thresholds:
        """The aggregate bounds of one seed's run: its mean PLCC is held to every seed's minimum."""
        return replace(self, min_mean_plcc=self.seed_mean_plcc_bound)

    def to_json(self) -> dict:
        return {
            "fold": asdict(self.fold),
            "per_source": {s: asdict(b) for s, b in sorted(self.per_source.items())},
            "aggregate": {"min_mean_plcc": self.min_mean_plcc, "max_mean_rmse": self.max_mean_rmse},
            "seeds": {"min_seed_mean_plcc": self.min_seed_mean_plcc, "max_seed_spread": self.max_seed_spread},
            "baselines": "fold bounds, applied to the all-sources concatenation",
        }


@dataclass(frozen=True)
class Allowance:
    """How far one metric may slide from the accepted report: absolute, or a fraction of the accepted value."""

    absolute: float | None = None
    relative: float | None = None  # fraction of the accepted value

    def of(self, accepted: float) -> float:
        return max(self.absolute or 0.0, (self.relative or 0.0) * abs(accepted))

    def to_json(self) -> dict:
        return {"absolute": self.absolute, "relative": self.relative}


@dataclass(frozen=True)
class SliceBounds:
    """``--loso-slice-threshold 'encoder=libx264: min_mean_plcc=0.95'``: bounds on one slice's mean over folds."""

    column: str
    value: str  # matched as text, as --loso-where matches
    bounds: tuple[tuple[str, float], ...]  # (key of SLICE_BOUND_KEYS, limit), in the order given

    @property
    def label(self) -> str:
        """``encoder=libx264``."""
        return f"{self.column}={self.value}"

    def to_json(self) -> dict:
        return {"column": self.column, "value": self.value, **dict(self.bounds)}


@dataclass(frozen=True)
class Ensemble:
    """``--loso-ensemble NAME=GLOB``, with the model files its glob matched."""

    name: str
    pattern: str
    members: tuple[Path, ...]


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
    ensembles: tuple[Ensemble, ...] = ()
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
    compare_mode: CompareMode = "bound"
    accept: bool = False
    accept_force: bool = False
    bootstrap: int = 0
    bootstrap_seed: int = 0
    logistic: bool = False
    metrics_path: Path | None = None
    plot_dir: Path | None = None
    verdict_path: Path | None = None
    srocc_ranks: SroccRanks = "average"
    table: Path | None = None  # a per-frame table instead of data_root (table.py)
    target: str = "vmaf"
    where: dict[str, tuple[str, ...]] = field(default_factory=dict)
    held_out: tuple[Path, ...] = ()  # --loso-predictions: held-out predictions tables (held_out.py)
    versus: tuple[tuple[str, str], ...] = ()  # --loso-versus NEW=OLD: (new run, old run)
    versus_rule: str = "not-worse"
    min_coverage: dict[str, float] = field(default_factory=dict)  # nominal level (percent) -> minimum coverage
    registry: Path | None = None  # the team's model registry: pinned sha256 checked before scoring
    quantized: tuple[tuple[str, Path], ...] = ()  # --loso-quantized TAG=INT8_PATH (beside the baselines' own)
    quant_batch: int | None = 1  # frames per run of an int8 model; None: a source's frames in one run
    max_quant_drop: dict[str, float | None] = field(default_factory=dict)  # agreement, plcc, rmse, bias
    quant_per_source: bool = False  # hold every source to --loso-max-quant-drop too
    slices: tuple[str, ...] = ()  # --loso-slice columns (and those --loso-slice-threshold names)
    slice_bounds: tuple[SliceBounds, ...] = ()  # --loso-slice-threshold: one slice[...] test per run each

    @property
    def coverage_levels(self) -> tuple[str, ...]:
        """The nominal levels an ensemble's calibration is measured at: 50, 80, 95 and any a bound names."""
        return tuple(sorted(set(COVERAGE_LEVELS) | set(self.min_coverage), key=float))

    def frame_size_of(self, source: str) -> tuple[int, int]:
        return self.frame_sizes.get(source, self.frame_size)

    @property
    def accepting(self) -> bool:
        """``--loso-accept``: write this run's report as the accepted one (at the ``--loso-compare`` path)."""
        return self.accept and self.compare is not None

    def to_json(self) -> dict:
        return {
            "loso_dirs": [str(p) for p in self.loso_dirs],
            "data_root": str(self.data_root) if self.data_root else None,
            "table": str(self.table) if self.table else None,
            "target": self.target,
            "where": {c: list(v) for c, v in self.where.items()},
            "cache_dir": str(self.cache_dir),
            "baselines": [str(p) for p in self.baselines],
            "ensembles": {e.name: {"glob": e.pattern, "members": [str(p) for p in e.members]}
                          for e in self.ensembles},
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
            "max_drop": {m: a.to_json() for m, a in self.max_drop.items()},
            "accept": self.accept,
            "bootstrap": {"resamples": self.bootstrap, "seed": self.bootstrap_seed},
            "logistic": self.logistic,
            "srocc_ranks": self.srocc_ranks,
            # the newer options only when given: a report without them keeps its shape
            **({"predictions": [str(p) for p in self.held_out]} if self.held_out else {}),
            **({"versus": [f"{new}={old}" for new, old in self.versus], "versus_rule": self.versus_rule}
               if self.versus else {}),
            "min_coverage": dict(self.min_coverage),
            "registry": str(self.registry) if self.registry else None,
            "quantized": {tag: str(path) for tag, path in self.quantized},
            "quant_batch": "source" if self.quant_batch is None else self.quant_batch,
            "max_quant_drop": dict(self.max_quant_drop),
            "quant_per_source": self.quant_per_source,
            **({"slices": list(self.slices), "slice_thresholds": [b.to_json() for b in self.slice_bounds]}
               if self.slices else {}),
        }


# Parsers: one option's text -> its value; ``LosoUsageError`` naming the option when it is not one.

def parse_bound(text: str | float | None, name: str) -> float | None:
    """A bound from the command line or ini: a number, or ``none``/``off`` to disable it."""
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):  # a TOML number
        text = repr(float(text))
    if not isinstance(text, str):  # e.g. a TOML true
        text = repr(text)
    if text.strip().lower() in ("", "none", "off"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value):  # every comparison with NaN is false: the bound would pass everything
        raise LosoUsageError(f"{name}: {text!r} is not a number (use e.g. 0.9, or 'none' to disable)")
    return value


def check_bound_range(key: str, value: float | None, name: str) -> float | None:
    """``value`` as bound ``key`` (e.g. ``min_plcc``), if a figure can meet it: a correlation bound lies in
    [-1, 1], an RMSE bound is at least 0, a seed spread in [0, 2]; else a usage error naming ``name``."""
    if value is None:
        return None
    if "rmse" in key:
        low, high, what = 0.0, math.inf, "an RMSE bound is at least 0 (on the 0-100 VMAF axis)"
    elif "spread" in key:
        low, high, what = 0.0, 2.0, "a spread of mean PLCC lies between 0 and 2"
    else:
        low, high, what = -1.0, 1.0, "a correlation bound lies between -1 and 1 (e.g. 0.9, not 90)"
    if not low <= value <= high:
        raise LosoUsageError(f"{name}: {value:g} can never be met: {what}")
    return value


_OVERRIDE_RE = re.compile(r"^\s*(?P<source>[A-Za-z0-9]+)\s*:(?P<rest>.*)$")


def parse_source_overrides(lines: list[str], base: Bounds) -> dict[str, Bounds]:
    """Parse ``FoxBird: min_plcc=0.92 max_rmse=18`` lines into per-source bounds over ``base``."""
    overrides: dict[str, Bounds] = {}
    keys = set(asdict(base))
    name = "--loso-source-threshold / loso_source_thresholds"  # given either way: the message names both
    for line in lines:
        if not line.strip():
            continue
        match = _OVERRIDE_RE.match(line)
        if not match:
            raise LosoUsageError(f"{name}: {line!r} is not 'Source: key=value ...'")
        bounds = overrides.get(match["source"], base)
        tokens = match["rest"].replace(",", " ").split()
        if not tokens:
            raise LosoUsageError(f"{name}: {line!r} names no bound (keys: {', '.join(sorted(keys))})")
        for token in tokens:
            key, _, value = token.partition("=")
            if key not in keys:
                raise LosoUsageError(f"{name}: {key!r} in {line!r}; known keys: {', '.join(sorted(keys))}")
            if not value:  # parse_bound reads an empty value as "off": here it is a slip, never the way to say so
                raise LosoUsageError(f"{name}: {token!r} in {line!r} has no value: write {key}=<number>, "
                                     f"or {key}=none to turn the bound off for {match['source']}")
            where = f"{name} {match['source']} {key}"
            bound = check_bound_range(key, parse_bound(value, where), where)
            bounds = replace(bounds, **{key: bound})
        overrides[match["source"]] = bounds
    return overrides


_DROP_RE = re.compile(r"^(?P<metric>[a-z_]+)=(?P<value>[0-9.eE+-]+)(?P<pct>%?)$")


def parse_max_drop(text: str) -> dict[str, Allowance]:
    """``plcc=0.005,srocc=0.005,rmse=0.5,rmse=5%`` -> allowances per metric."""
    from .metrics.names import HIGHER_IS_BETTER  # here: the always-loaded options need none of metrics/

    allowances: dict[str, Allowance] = {}
    for token in re.split(r"[,\s]+", text.strip()):
        if not token:
            continue
        match = _DROP_RE.match(token)
        try:
            value = float(match["value"]) if match else math.nan
        except ValueError:
            value = math.nan
        if not match or match["metric"] not in HIGHER_IS_BETTER or not math.isfinite(value) or value < 0:
            raise LosoUsageError(
                f"--loso-max-drop: {token!r} is not metric=number or metric=number% "
                f"with a finite number >= 0 (metrics: {', '.join(HIGHER_IS_BETTER)})"
            )
        current = allowances.get(match["metric"], Allowance())
        if match["pct"]:
            current = Allowance(current.absolute, value / 100)
        else:
            current = Allowance(value, current.relative)
        allowances[match["metric"]] = current
    return allowances


_SIZE_RE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


def parse_frame_size(text: str, where: str) -> tuple[int, int]:
    match = _SIZE_RE.match(text)
    if not match or int(match[1]) % 2 or int(match[2]) % 2 or not int(match[1]) or not int(match[2]):
        raise LosoUsageError(f"{where}: {text!r} is not an even frame size WxH such as 1920x1080")
    return int(match[1]), int(match[2])


def parse_frame_sizes(lines: list[str]) -> dict[str, tuple[int, int]]:
    """``loso_frame_sizes`` lines, ``Source: WxH``."""
    sizes = {}
    for line in lines:
        source, sep, size = line.partition(":")
        if line.strip():
            if not sep:
                raise LosoUsageError(f"loso_frame_sizes: {line!r} is not 'Source: WxH'")
            sizes[source.strip()] = parse_frame_size(size, f"loso_frame_sizes ({source.strip()})")
    return sizes


def parse_where(items: list[str]) -> dict[str, tuple[str, ...]]:
    """``["corpus=netflix", "cq=30"]`` -> ``{column: allowed values}`` (values of one column are OR-ed)."""
    where: dict[str, list[str]] = {}
    for item in items:
        column, sep, value = item.partition("=")
        if not sep or not column.strip():
            raise LosoUsageError(f"--loso-where {item!r}: expected COLUMN=VALUE, e.g. corpus=netflix")
        where.setdefault(column.strip(), []).append(value.strip())
    return {column: tuple(values) for column, values in where.items()}


_ENSEMBLE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def parse_ensemble(spec: str) -> tuple[str, str]:
    """``NAME=GLOB`` -> ``(name, glob)``."""
    name, sep, pattern = spec.partition("=")
    name, pattern = name.strip(), pattern.strip()
    if not sep or not _ENSEMBLE_NAME.fullmatch(name) or not pattern:
        raise LosoUsageError(f"--loso-ensemble / loso_ensemble: {spec!r} is not NAME=GLOB "
                         "(e.g. fr_v2=model/tiny/fr_regressor_v2_ensemble_v1_seed*.onnx)")
    return name, pattern


def parse_versus(items: list[str]) -> tuple[tuple[str, str], ...]:
    """``["v4=v3"]`` -> ``(("v4", "v3"),)``: two runs of this session, the new one first."""
    pairs: list[tuple[str, str]] = []
    for item in (i.strip() for i in items if i.strip()):
        new, sep, old = (part.strip() for part in item.partition("="))
        if not sep or not new or not old or new == old:
            raise LosoUsageError(f"--loso-versus {item!r}: expected NEW=OLD naming two runs of this session, "
                                 "e.g. mlp_small=linear or vmaf_tiny_v4=vmaf_tiny_v3")
        if (new, old) not in pairs:
            pairs.append((new, old))
    return tuple(pairs)
def parse_min_coverage(items: list[str]) -> dict[str, float]:
    """``["95=0.90", "80=0.7"]`` -> ``{"95": 0.9, "80": 0.7}``: per nominal level (percent, 0 < p < 100),
    the minimum share of frames an ensemble's μ ± zσ must hold."""
    found: dict[str, float] = {}
    for item in (i.strip() for i in items):
        if not item:
            continue
        level_text, sep, value_text = (part.strip() for part in item.partition("="))
        try:
            level, value = float(level_text), float(value_text)
        except ValueError:
            level = value = math.nan
        if not sep or not 0 < level < 100 or not 0 <= value <= 1:
            raise LosoUsageError(f"--loso-min-coverage / loso_min_coverage: {item!r} is not LEVEL=COVERAGE with a "
                                 "nominal level in percent (0 < LEVEL < 100) and a coverage fraction in [0, 1], "
                                 "e.g. 95=0.90")
        found[f"{level:g}"] = value
    return found


QUANT_BOUNDS = ("agreement", "plcc", "rmse", "bias")


def parse_max_quant_drop(text: str | None) -> dict[str, float | None]:
    """``agreement=0.01,plcc=0.005,rmse=1.0,bias=0.5`` -> bounds of a quantised model against its
    parent; ``KEY=none`` disables one (``agreement`` is on by default: the registry's budget, else 0.01)."""
    found: dict[str, float | None] = {}
    for token in re.split(r"[,\s]+", (text or "").strip()):
        if not token:
            continue
        key, sep, value = token.partition("=")
        number = None
        if sep and value.strip().lower() not in ("none", "off"):
            try:
                number = float(value)
            except ValueError:
                number = math.nan
        if not sep or key not in QUANT_BOUNDS or (number is not None and (not math.isfinite(number) or number < 0)):
            raise LosoUsageError(f"--loso-max-quant-drop / loso_max_quant_drop: {token!r} is not KEY=NUMBER (a finite "
                                 f"number >= 0, or none) with KEY one of {', '.join(QUANT_BOUNDS)}")
        found[key] = number
    return found


def parse_quant_batch(text: str | int | None) -> int | None:
    """``--loso-quant-batch``: frames per run of an int8 model (default 1), or ``source``: ``None``."""
    if text is None or str(text).strip() == "":
        return 1
    if str(text).strip().lower() == "source":
        return None
    try:
        batch = int(str(text).strip())
    except ValueError:
        batch = 0
    if batch < 1:
        raise LosoUsageError(f"--loso-quant-batch / loso_quant_batch: {text!r} is not a whole number >= 1 or 'source'")
    return batch


_SLICE_COLUMN = re.compile(r"[^\s=:]+")


def parse_slices(items: list[str]) -> tuple[str, ...]:
    """``--loso-slice`` / ``loso_slice`` values: per-frame column names, each once, in the order given."""
    columns: list[str] = []
    for item in (i.strip() for i in items if i.strip()):
        if not _SLICE_COLUMN.fullmatch(item):
            raise LosoUsageError(f"--loso-slice / loso_slice: {item!r} is not a column name "
                                 "(e.g. encoder, codec, corpus, preset; quality, height or kbps on a YUV + cache corpus)")
        if item not in columns:
            columns.append(item)
    return tuple(columns)


def parse_slice_thresholds(lines: list[str]) -> tuple[SliceBounds, ...]:
    """``encoder=libx264: min_mean_plcc=0.95 max_mean_rmse=8`` lines as :class:`SliceBounds` (a slice
    named twice: the later line's bounds are added to, and override, the earlier's)."""
    name = "--loso-slice-threshold / loso_slice_threshold"
    found: dict[tuple[str, str], dict[str, float]] = {}
    for line in (raw.strip() for raw in lines if raw.strip()):
        # the bounds hold no ':', so the last one ends the slice (whose value may hold one)
        slice_, sep, rest = line.rpartition(":")
        column, eq, value = (part.strip() for part in slice_.partition("="))
        if not sep or not eq or not _SLICE_COLUMN.fullmatch(column) or not value:
            raise LosoUsageError(f"{name}: {line!r} is not 'COLUMN=VALUE: key=number ...' "
                                 "(e.g. 'encoder=libx264: min_mean_plcc=0.95 max_mean_rmse=8')")
        bounds = found.setdefault((column, value), {})
        tokens = rest.replace(",", " ").split()
        if not tokens:
            raise LosoUsageError(f"{name}: {line!r} names no bound (keys: {', '.join(SLICE_BOUND_KEYS)})")
        for token in tokens:
            key, eq, number = token.partition("=")
            if key not in SLICE_BOUND_KEYS or not eq or not number:
                raise LosoUsageError(f"{name}: {token!r} in {line!r} is not key=number; "
                                     f"keys: {', '.join(SLICE_BOUND_KEYS)}")
            limit = parse_bound(number, f"{name} ({key} in {line!r})")
            if limit is None:
                bounds.pop(key, None)
            else:
                bounds[key] = limit
    return tuple(SliceBounds(column, value, tuple((k, bounds[k]) for k in SLICE_BOUND_KEYS if k in bounds))
                 for (column, value), bounds in found.items())
