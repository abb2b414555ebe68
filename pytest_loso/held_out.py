"""Held-out predictions written by any trainer (``--loso-predictions``): a long table, one row per
(run, seed, frame), as a model kind of its own.

A trainer that scores each fold in memory writes what it predicted for the frames each fold held
out; the gate joins every row to its corpus frame by (source, ``dis_basename``, ``frame_index``)
and scores it exactly as it scores a fold model's output. Targets always come from the corpus.

Columns: ``run`` (the candidate, in the role of the architecture), optional ``seed``, ``source``
(or ``src``; ``_<N>fps`` dropped as in tables), ``dis_basename`` (a table's, or a YUV + cache
corpus's distorted file name, with or without ``.yuv``), ``frame_index`` (0-based, as in the table
or the cache file's ``per_frame`` order) and ``prediction``, taken as float32 like every corpus
value, so predictions equal to a fold model's output give its numbers to the last digit,
whatever the row order.

Whole-file problems (a missing column, a row without its run or source) stop the planning; a
row's bad value, a frame predicted twice, a key the corpus lacks or a corpus frame left without
a prediction fail that fold's test, naming the file, the row and the fix.
"""

from __future__ import annotations

import hashlib
import math
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LosoInputError
from .files import file_sha256
from .frames import SourceData
from .table import CLIP_COLUMN, FRAME_COLUMN, SOURCE_COLUMNS, _Columns, _read_jsonl, _read_parquet, source_name

if TYPE_CHECKING:
    import numpy as np

RUN_COLUMN = "run"
SEED_COLUMN = "seed"
VALUE_COLUMN = "prediction"
HELD_OUT_SUFFIXES = (".jsonl", ".parquet")
_RUN_NAME = re.compile(r"[A-Za-z0-9_.+]+")  # no "-": it separates a run from its seed in test names
BAD_ROW_FIX = "fix the trainer's output so every row is one held-out frame's prediction"


def clip_key(name: object) -> str:
    """A clip's name as joined: ``X.yuv`` and ``X`` are one clip (the cache corpus names files)."""
    text = str(name)
    return text[:-4] if text.endswith(".yuv") else text


@dataclass
class HeldOutFile:
    """One predictions table: its rows grouped by (run, seed, source)."""

    path: Path
    sha256: str
    rows: int
    table: _Columns
    source_column: str
    groups: dict[tuple[str, int | None, str], array] = field(default_factory=dict)  # row indices

    def where(self, row: int) -> str:
        return f"{self.table.row_label} {self.table.row_numbers[row]}"

    def provenance(self) -> dict:
        runs = sorted({(run, -1 if seed is None else seed) for run, seed, _ in self.groups})
        return {"path": str(self.path), "sha256": self.sha256, "rows": self.rows,
                "runs": [run if seed < 0 else f"{run}-seed{seed}" for run, seed in runs]}


def read_held_out(path: Path) -> HeldOutFile:
    """A predictions table, checked for what the plan needs (its columns, runs, seeds and sources)."""
    try:
        if path.suffix == ".parquet":
            sha = file_sha256(path)
            table = _read_parquet(path, lambda c: c in (VALUE_COLUMN, FRAME_COLUMN))
        else:
            digest = hashlib.sha256()
            table = _read_jsonl(path, digest, lambda c: c in (VALUE_COLUMN, FRAME_COLUMN))
            sha = digest.hexdigest()
    except OSError as exc:
        raise LosoInputError(path, f"cannot read the predictions ({exc.strerror})") from None
    source_column = next((c for c in SOURCE_COLUMNS if c in table.values), None)
    missing = [c for c in (RUN_COLUMN, "source", CLIP_COLUMN, FRAME_COLUMN, VALUE_COLUMN)
               if (source_column is None if c == "source" else c not in table.values)]
    if missing:
        raise LosoInputError(path, f"no {', '.join(missing)} column{'s' if len(missing) > 1 else ''} "
                             f"(has: {', '.join(table.names) or 'nothing'})",
                             "write one row per held-out frame with the columns run, source, dis_basename, "
                             "frame_index and prediction (and seed for runs repeated over seeds)")
    if not table.row_numbers:
        raise LosoInputError(path, "the predictions table has no rows", "point --loso-predictions at a filled file")
    held = HeldOutFile(path, sha, len(table.row_numbers), table, source_column)  # type: ignore[arg-type]
    values = table.values
    seeds: Sequence = values.get(SEED_COLUMN) or [None] * held.rows
    for i in range(held.rows):
        run, seed, source = values[RUN_COLUMN][i], seeds[i], values[source_column][i]  # type: ignore[index]
        if not isinstance(run, str) or not _RUN_NAME.fullmatch(run):
            raise LosoInputError(path, f"{held.where(i)}: run {run!r} is not a run name (letters, digits, _ . +)",
                                 "name every row's candidate in the run column, e.g. mlp_small")
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, float)) or not float(seed).is_integer() \
                    or seed < 0:
                raise LosoInputError(path, f"{held.where(i)}: seed {seed!r} is not a whole number >= 0",
                                     "give the training seed as an integer, or leave it empty")
            seed = int(seed)
        if source is None or not str(source).strip():
            raise LosoInputError(path, f"{held.where(i)} has no {source_column}",
                                 f"give every row the source its fold held out in the {source_column} column")
        key = (run, seed, source_name(source))
        rows = held.groups.get(key)
        if rows is None:
            rows = held.groups[key] = array("q")
        rows.append(i)
    return held


class HeldOut:
    """Every ``--loso-predictions`` file, read once per process: which runs they hold and each fold's
    predictions joined to the corpus's frames."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.files = [read_held_out(path) for path in paths]
        self._of: dict[tuple[str, int | None], HeldOutFile] = {}
        for held in self.files:
            for run, seed, _ in held.groups:
                other = self._of.setdefault((run, seed), held)
                if other is not held:
                    name = run if seed is None else f"{run}-seed{seed}"
                    raise LosoInputError(held.path, f"run {name} is also in {other.path}",
                                         "give each run's predictions in one file (or rename one run)")

    @property
    def runs(self) -> list[tuple[str, int | None]]:
        """``(run, seed)`` of every run the files hold."""
        return sorted(self._of, key=lambda r: (r[0], -1 if r[1] is None else r[1]))

    def path_of(self, run: str, seed: int | None) -> Path:
        return self._of[(run, seed)].path

    def sources_of(self, run: str, seed: int | None) -> set[str]:
        return {s for r, sd, s in self._of[(run, seed)].groups if (r, sd) == (run, seed)}

    def sha256_of(self, path: Path) -> str:
        return next(held.sha256 for held in self.files if held.path == path)

    def provenance(self) -> list[dict]:
        return [held.provenance() for held in self.files]

    def predict(self, run: str, seed: int | None, data: SourceData, corpus: str) -> np.ndarray:
        """The run's predictions for ``data``'s frames, in the corpus's frame order (float32)."""
        import numpy as np

        held = self._of[(run, seed)]
        path, values = held.path, held.table.values
        name = run if seed is None else f"{run}-seed{seed}"
        keys = data.frame_keys()
        if keys is None:
            raise LosoInputError(path, f"the {corpus} has no {CLIP_COLUMN} column, so held-out predictions "
                                 "cannot be joined to its frames", f"add {CLIP_COLUMN} to the corpus table")
        position = {(clip_key(clip), frame): i for i, (clip, frame) in enumerate(keys)}
        pred = np.empty(len(keys), dtype=np.float32)
        filled = np.full(len(keys), -1, dtype=np.int64)  # the row that predicted each frame
        clips, frames, predictions = values[CLIP_COLUMN], values[FRAME_COLUMN], values[VALUE_COLUMN]
        for row in held.groups[(run, seed, data.source)]:
            where = held.where(row)
            frame, value = frames[row], predictions[row]
            if isinstance(frame, bool) or not isinstance(frame, (int, float)) or not float(frame).is_integer():
                raise LosoInputError(path, f"{where}: {FRAME_COLUMN} {frame!r} is not a whole number", BAD_ROW_FIX)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise LosoInputError(path, f"{where}: prediction {value!r} of run {name} is not a finite number",
                                     "write a finite prediction for every frame (a NaN is a failed model, "
                                     "not a frame to drop)")
            key = (clip_key(clips[row]), int(frame))
            i = position.get(key)
            if i is None:
                raise LosoInputError(path, f"{where}: {CLIP_COLUMN} {clips[row]!r} {FRAME_COLUMN} {key[1]} is not "
                                     f"a frame of source {data.source} in the {corpus}",
                                     f"join on the corpus's own keys: {CLIP_COLUMN} as the corpus names the clip, "
                                     f"{FRAME_COLUMN} 0-based as in the table (or the cache file's per_frame order)")
            if filled[i] >= 0:
                raise LosoInputError(path, f"{where}: frame {key[1]} of {clips[row]!r} (source {data.source}) is "
                                     f"predicted twice in run {name}, also at {held.where(int(filled[i]))}",
                                     "write each held-out frame once per run and seed")
            pred[i] = value
            filled[i] = row
        missing = np.flatnonzero(filled < 0)
        if missing.size:
            clip, frame = keys[int(missing[0])]
            raise LosoInputError(path, f"run {name}: {missing.size} of {len(keys)} frames of source {data.source} "
                                 f"have no prediction (the first: {CLIP_COLUMN} {clip!r} {FRAME_COLUMN} {frame})",
                                 "write a prediction for every frame the fold held out: the gate never drops "
                                 "frames, n must be the corpus's")
        return pred
