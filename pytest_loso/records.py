"""The records that cross processes: what one gate test computed, as plain JSON-able data.

Under pytest-xdist a test's result travels from the worker that scored it to the process
that aggregates and reports (on the test report, serialised by execnet), so these are
``TypedDict``s, not classes: typed for the reader, plain dicts on the wire.
"""

from __future__ import annotations

from typing import TypedDict

from .ids import Kind


class SourceRecord(TypedDict):
    """One source a test read: what its frames were made from."""

    fingerprint: str  # sha256 over the names and bytes of the files read
    cache_files: int
    file_sha256: dict[str, str]
    frames: int
    clips: int
    dropped: dict[str, dict[str, int]]


class ModelRecord(TypedDict, total=False):
    """One model file a test loaded, and how its sidecar says to feed it."""

    sha256: str | None
    data_path: str | None
    data_sha256: str | None
    feed: dict
    registry: dict  # --loso-registry: the entry that pins the file (None: unlisted) and whether it matches


class ExtractionRecord(TypedDict, total=False):
    """What a process computed with libvmaf for the cache (``None`` where the corpus computes nothing)."""

    extractor: dict | None
    computed: list[str]
    recomputed: dict[str, str]  # file -> why (corrupt, stale, forced)
    kept_on_recompute: list[str]


class PredictionsRecord(TypedDict):
    """A test's predictions, kept for a later paired comparison (``predictions.entry``)."""

    pred: bytes  # float32
    targets_sha256: str
    pair_frames: list[int]


class TestResult(TypedDict, total=False):
    """Everything one test computed; a failed test keeps what it got to before it failed."""

    kind: Kind
    name: str  # the test: fold[<run>-<Source>], baseline[<tag>], ensemble[<name>]
    label: str
    run: str | None  # a fold's LOSO run: arch, or arch-seedN
    seed: int | None
    source: str | None  # a fold's held-out source
    model_path: str
    metrics: dict | None  # the script's metrics (plcc, srocc, krcc, rmse, n, ci...), None until scored
    error: str | None  # why the test failed (a bound, unusable input, a bug)
    violations: list[str]
    per_clip: dict[str, dict]  # baselines and ensembles: per source
    members: dict[str, dict]  # ensembles: each member's figures
    parent_path: str  # a quant test's fp32 parent (model_path is the int8 model)
    sources: dict[str, SourceRecord]
    models: dict[str, ModelRecord]
    extraction: ExtractionRecord | None
    predictions: PredictionsRecord
    targets: bytes  # a seeded fold's VMAF targets (float32), for the calibration of its seeds' ensemble
    distribution: bytes  # the bootstrap's resampled metrics (float64), for the aggregate's interval
    paired_distribution: bytes  # the same of new − accepted, in noise mode
    points: dict[str, list[float]]  # a sample of (pred, target), for --loso-plot
    slices: dict[str, dict[str, dict]]  # --loso-slice: {column: {value: {n, plcc, srocc, rmse}}} (None: undefined)


def new_result(kind: Kind, name: str, label: str, run: str | None, seed: int | None, source: str | None,
               model_path: str) -> TestResult:
    """A test's result before anything is computed."""
    return TestResult(kind=kind, name=name, label=label, run=run, seed=seed, source=source,
                      model_path=model_path, metrics=None, error=None, violations=[])


# execnet, pytest-xdist's channel, carries only strings that are UTF-8: a name holding a lone surrogate
# (a non-UTF-8 byte of a file name, or a "\udcff" escape in a table) travels as tagged bytes, exactly.
_WIRE_TAG = "\0pytest-loso:surrogates"


def to_wire(value: object) -> object:
    """``value`` (a result, or any part of one) with every string execnet cannot carry tagged."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return (_WIRE_TAG, value.encode("utf-8", "surrogatepass"))
        return value
    if isinstance(value, dict):
        return {to_wire(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not (value and isinstance(value[0], float)):  # numbers: as they are
        return type(value)(to_wire(v) for v in value)
    return value


def from_wire(value: object) -> object:
    """What :func:`to_wire` sent, as it was."""
    if isinstance(value, tuple) and len(value) == 2 and value[0] == _WIRE_TAG:
        return value[1].decode("utf-8", "surrogatepass")
    if isinstance(value, dict):
        return {from_wire(k): from_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not (value and isinstance(value[0], float)):
        return type(value)(from_wire(v) for v in value)
    return value
