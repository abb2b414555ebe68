"""A per-frame table (JSONL or parquet) as the corpus: one row per frame, sources in a column.

The team's contracts (lusoris/vmaf): ``scripts/dev/hw_encoder_corpus.py`` writes JSONL rows
``{src: "BigBuckBunny_25fps", encoder, cq, frame_index, vmaf, adm2, ...}``;
``ai/scripts/extract_full_features.py`` writes a parquet with ``source, dis_basename,
frame_index, codec, vmaf`` and the features, read by ``eval_loso_vmaf_tiny_v3.py``.

The source is ``source`` (else ``src``) without a ``_<N>fps`` suffix. A clip (the bootstrap's
unit) is ``dis_basename`` when the table has it, else the (source, encoder, preset, cq) combination.
Clips are ordered like the YUV + cache corpus orders its pairs (sorted names) and frames by
``frame_index`` inside a clip, and values go straight to float32 as the cache reader does,
so a table holding a cache's data gives the same numbers to the last digit.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .frames import SourceData
from .errors import LosoInputError
from .files import file_sha256
from .features import FEATURE_NAMES, canonical, columns_for

if TYPE_CHECKING:
    import numpy as np

SOURCE_COLUMNS = ("source", "src")
CLIP_COLUMN = "dis_basename"
FRAME_COLUMN = "frame_index"
# Per-frame metadata handed to codec-aware models through SourceData.columns.
METADATA_COLUMNS = ("encoder", "codec", "cq", "crf", "preset")
_FPS_SUFFIX = re.compile(r"_\d+fps$")
TABLE_EXTRA_HINT = "pip install pyarrow"


MAX_LINE_BYTES = 256 * 1024 * 1024  # as a cache file's cap: far above any real row
_FLOAT_LIMIT = 2 ** 1024  # an int this large has no float: it is named as a bad value, never an OverflowError


def _beyond_floats(value: object) -> bool:
    return type(value) is int and not -_FLOAT_LIMIT < value < _FLOAT_LIMIT


def _shown(value: object) -> str:
    """A value for a message: a 400-digit number is said as such, not printed whole."""
    if _beyond_floats(value):
        return f"a {len(str(abs(value)))}-digit number"  # type: ignore[arg-type]
    return repr(value)


def source_name(raw: object) -> str:
    """``BigBuckBunny_25fps`` -> ``BigBuckBunny`` (the fold ``fold_BigBuckBunny``)."""
    return _FPS_SUFFIX.sub("", str(raw))


@dataclass
class _Columns:
    """The table's columns, plus where each row came from. Columns the gate reads as numbers
    (features, target) are doubles while every value is a number (8 bytes a value instead of a
    Python float's 32); any other value turns such a column back into a list, whose bad value
    the source's test then names."""

    names: list[str]  # every column the table has
    values: Mapping[str, Sequence]
    row_label: str  # "line" (JSONL) or "row" (parquet)
    row_numbers: Sequence[int] = field(default_factory=list)


def _read_jsonl(path: Path, digest: hashlib._Hash, numeric: Callable[[str], bool]) -> _Columns:
    """The rows, read a line at a time (and hashed into ``digest`` as they go): holding the
    file's bytes and a list of its lines besides the parsed values more than doubled the peak."""
    with open(path, "rb") as file:
        return _parse_jsonl(path, _hashed(_bounded_lines(path, file), digest), numeric)


def _bounded_lines(path: Path, file: BinaryIO) -> Iterator[bytes]:
    """The file's lines, each refused once it passes ``MAX_LINE_BYTES``: before it is held whole."""
    number = 0
    while line := file.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise LosoInputError(path, f"line {number} is longer than {MAX_LINE_BYTES} bytes (a table row is a few "
                                 "hundred); refusing to read it", "fix the table: one JSON object per line")
        yield line


def _hashed(lines: Iterable[bytes], digest: hashlib._Hash) -> Iterator[bytes]:
    for line in lines:
        digest.update(line)
        yield line


def _parse_jsonl(path: Path, lines: Iterable[bytes], numeric: Callable[[str], bool]) -> _Columns:
    names: dict[str, None] = {}
    values: dict[str, array | list] = {}
    numbers = array("q")  # line numbers, for messages: 8 bytes a row, not a Python int each
    strings: dict[str, str] = {}  # one object per distinct text (a source's name repeats on every frame)
    count = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except RecursionError:
            raise LosoInputError(path, f"line {number} is not valid JSON (values nested too deep)",
                                 "fix or delete that line (one JSON object per line)") from None
        except ValueError as exc:  # also an integer of more than 4,300 digits (sys.int_max_str_digits)
            raise LosoInputError(path, f"line {number} is not valid JSON ({exc})",
                                 "fix or delete that line (one JSON object per line)") from None
        if not isinstance(row, dict):
            raise LosoInputError(path, f"line {number} is not a JSON object", "one JSON object per line")
        for key in row:
            if key not in names:
                names[key] = None
                # rows before this one lack the column
                values[key] = array("d") if numeric(key) and not count else [None] * count
        for key, column in values.items():
            value = row.get(key)
            if type(column) is array:
                if type(value) is float or (type(value) is int and -_FLOAT_LIMIT < value < _FLOAT_LIMIT):
                    column.append(value)  # not bool: it is no number here; nor an int beyond any float
                    continue
                values[key] = column = column.tolist()
            column.append(strings.setdefault(value, value) if type(value) is str else value)
        numbers.append(number)
        count += 1
    return _Columns(list(names), values, "line", numbers)


def _read_parquet(path: Path, numeric: Callable[[str], bool]) -> _Columns:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # options.py refuses this earlier; kept for direct use
        raise LosoInputError(path, "reading a parquet table needs pyarrow", TABLE_EXTRA_HINT) from None
    try:
        # A column at a time: only one column's Arrow buffers live beside the Python values.
        import pyarrow as pa

        schema = pq.read_schema(path)
        texts = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        # Text columns read as dictionaries: each distinct text once, not a string per row.
        file = pq.ParquetFile(path, read_dictionary=texts)
        names = list(file.schema_arrow.names)
        values = {name: _parquet_column(file.read(columns=[name]).column(0), numeric(name)) for name in names}
    except Exception as exc:  # pyarrow raises several types for a file that is not parquet
        raise LosoInputError(path, f"unreadable parquet ({type(exc).__name__}: {exc})",
                             "regenerate the table, or point --loso-table at a .parquet or .jsonl file") from None
    rows = file.metadata.num_rows
    return _Columns(names, values, "row", range(1, rows + 1))


def _parquet_column(column: object, numeric: bool) -> Sequence:
    """A column of numbers without nulls as float64 (as JSON numbers are read), else as Python values."""
    import numpy as np
    import pyarrow as pa

    kind = column.type  # type: ignore[attr-defined]
    if numeric and column.null_count == 0 and (pa.types.is_floating(kind) or pa.types.is_integer(kind)):  # type: ignore[attr-defined]
        return column.to_numpy().astype(np.float64, copy=False)  # type: ignore[attr-defined]
    if pa.types.is_dictionary(kind):  # each distinct text made once (to_pylist makes a str per row)
        values: list = []
        for chunk in column.chunks:  # type: ignore[attr-defined]
            texts = chunk.dictionary.to_pylist()
            values += [None if i is None else texts[i] for i in chunk.indices.to_pylist()]
        return values
    return _shared_strings(column.to_pylist())  # type: ignore[attr-defined]


def _shared_strings(column: list) -> list:
    """``column`` with equal texts as one object: a source's or clip's name repeats on each of
    its frames, and 1.2M copies of it cost ~75 MB a column."""
    strings: dict[str, str] = {}
    return [strings.setdefault(v, v) if type(v) is str else v for v in column]


class TableCorpus:
    """A per-frame table read once per process; each source's frames built on demand."""

    kind = "table"

    def __init__(self, path: Path, target: str = "vmaf", where: dict[str, tuple[str, ...]] | None = None,
                 slices: tuple[str, ...] = ()) -> None:
        import numpy as np

        self.path = path
        self.target = target
        self.where = dict(where or {})
        self.slices = slices
        def numeric(column: str) -> bool:  # read as numbers: the target and the features
            return column == target or canonical(column) in FEATURE_NAMES

        try:
            if path.suffix == ".parquet":
                self.sha256 = file_sha256(path)
                table = _read_parquet(path, numeric)
            else:
                digest = hashlib.sha256()
                table = _read_jsonl(path, digest, numeric)
                self.sha256 = digest.hexdigest()
        except OSError as exc:
            raise LosoInputError(path, f"cannot read the table ({exc.strerror})") from None
        self._table = table
        self.rows_read = len(table.row_numbers)
        source_column = next((c for c in SOURCE_COLUMNS if c in table.values), None)
        if source_column is None:
            raise LosoInputError(path, f"no source column (expected one of {', '.join(SOURCE_COLUMNS)}; "
                                 f"has: {', '.join(table.names)})",
                                 f"give every row of {path.name} its source clip's name in a "
                                 f"{' or '.join(SOURCE_COLUMNS)} column")
        if target not in table.values:
            raise LosoInputError(path, f"no target column {target!r} (has: {', '.join(table.names)})",
                                 "pass --loso-target COLUMN naming the column that holds the target score")
        columns = columns_for(table.names, FEATURE_NAMES, path=path,
                              fix="export every libvmaf feature the models take (bare or integer_ names)")
        self.feature_columns = tuple(table.names[i] for i in columns)
        keep = np.ones(self.rows_read, dtype=bool)
        for column, allowed in self.where.items():
            if column not in table.values:
                raise LosoInputError(path, f"--loso-where names column {column!r}, which the table lacks "
                                     f"(has: {', '.join(table.names)})", "fix the --loso-where column name")
            keep &= np.isin(np.array([str(v) for v in table.values[column]], dtype=object),
                            np.array(allowed, dtype=object))
        for column in slices:
            if column not in table.values:
                raise LosoInputError(path, f"--loso-slice names column {column!r}, which the table lacks "
                                     f"(has: {', '.join(table.names)})",
                                     "fix the --loso-slice (or --loso-slice-threshold) column name")
        self.rows_filtered = int(self.rows_read - keep.sum())
        if not keep.any():
            wanted = " and ".join(f"{c} in {{{', '.join(v)}}}" for c, v in self.where.items())
            raise LosoInputError(path, f"no rows left: {self.rows_read} rows read, none with {wanted}"
                                 if self.where else "the table has no rows",
                                 "check the --loso-where values against the table" if self.where
                                 else "point --loso-table at a filled table")
        self._rows: dict[str, array] = {}  # a source's row indices, 8 bytes each (not a Python int's 36)
        sources = table.values[source_column]
        of_text: dict[str, array] = {}  # a source column's text -> its source's rows (named once per text)
        for i in itertools.compress(range(self.rows_read), keep.tolist()):
            text = "" if sources[i] is None else str(sources[i])
            rows = of_text.get(text)
            if rows is None:
                if not text.strip():
                    raise LosoInputError(path, f"{table.row_label} {table.row_numbers[i]} has no {source_column}",
                                         f"give every row its {source_column}, or filter it out with --loso-where")
                rows = of_text[text] = self._rows.setdefault(source_name(text), array("q"))
            rows.append(i)
        self._source_column = source_column

    @property
    def sources(self) -> list[str]:
        return sorted(self._rows)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the table has."""
        return tuple(self._table.names)

    def describe(self) -> str:
        return f"table {self.path}"

    def warnings(self) -> list[str]:
        return []

    def missing_source(self, source: str) -> str:
        return f"the table {self.path} (no rows with source {source}{' after --loso-where' if self.where else ''})"

    def no_sources(self) -> LosoInputError:
        return LosoInputError(self.path, "the table has no rows")  # refused when read: kept for the interface

    def prefill(self, sources: set[str] | None, progress: Callable[[str], None] | None) -> None:
        """Nothing to compute: a table holds the features already."""

    def extraction(self) -> None:
        return None  # a table is read as it is: no cache, nothing computed

    def provenance(self) -> dict:
        return {"path": str(self.path), "sha256": self.sha256, "rows_read": self.rows_read,
                "rows_filtered_out": self.rows_filtered, "target": self.target,
                "where": {c: list(v) for c, v in self.where.items()}}

    def _clip_order(self, rows: Iterable[int], source: str) -> list[list[int]]:
        """The source's rows grouped by clip, clips in sorted-name order, frames by frame_index."""
        values = self._table.values
        clips: dict[tuple, list[int]] = {}
        if CLIP_COLUMN in values:
            for i in rows:
                clips.setdefault((str(values[CLIP_COLUMN][i]),), []).append(i)
        else:
            encoder = values.get("encoder") or values.get("codec")
            preset = values.get("preset")
            cq = values.get("cq") or values.get("crf")
            for i in rows:
                key = (str(values[self._source_column][i]), str(encoder[i]) if encoder else "",
                       str(preset[i]) if preset else "", _sortable(cq[i]) if cq else (0, 0.0))
                clips.setdefault(key, []).append(i)
        frame = values.get(FRAME_COLUMN)
        ordered = []
        for key in sorted(clips):
            members = clips[key]
            if frame is not None:
                members = sorted(members, key=lambda i: self._frame_number(frame[i], i, source))
                for before, after in zip(members, members[1:]):
                    if frame[before] == frame[after]:  # two frames at one place: their order would be a guess
                        raise LosoInputError(
                            self.path, f"source {source}: {FRAME_COLUMN} {frame[after]!r} twice in one clip "
                            f"({self._where(before)} and {self._where(after)})",
                            f"give each frame of a clip its own {FRAME_COLUMN}, or tell the clips apart with a "
                            f"{CLIP_COLUMN} column")
            ordered.append(members)
        return ordered

    def _where(self, row: int) -> str:
        return f"{self._table.row_label} {self._table.row_numbers[row]}"

    def _frame_number(self, value: object, row: int, source: str) -> float:
        """A frame_index as a number; anything else would put the frame in a made-up place."""
        if _beyond_floats(value):
            raise LosoInputError(self.path, f"source {source}: {FRAME_COLUMN} value {_shown(value)} at "
                                 f"{self._where(row)} is beyond any frame number",
                                 "fix or drop that source's bad rows (or filter them with --loso-where)")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
            return float(value)
        raise LosoInputError(self.path, f"source {source}: {FRAME_COLUMN} value {value!r} at {self._where(row)} is "
                             "not a whole number", "fix or drop that source's bad rows (or filter them with --loso-where)")

    def load(self, source: str) -> SourceData:
        """One source's frames; bad values fail this source only, naming the first bad row."""
        import numpy as np

        if source not in self._rows:
            raise LosoInputError(self.path, f"source {source} has no rows in the table"
                                 + (" after --loso-where" if self.where else ""))
        clips = self._clip_order(self._rows[source], source)
        order = [i for clip in clips for i in clip]
        values = self._table.values
        features = np.empty((len(order), len(self.feature_columns)), dtype=np.float32)
        for k, column in enumerate(self.feature_columns):
            features[:, k] = self._numeric(column, order, source)
        scores = self._numeric(self.target, order, source)
        columns = {name: _metadata([values[name][i] for i in order]) for name in METADATA_COLUMNS if name in values}
        digest = hashlib.sha256(f"{self.sha256}\0{source}\0".encode("utf-8", "surrogatepass"))
        digest.update(np.asarray(order, dtype=np.int64).tobytes())
        return SourceData(
            source=source,
            features=features,
            scores=scores,
            feature_names=FEATURE_NAMES,
            pair_frames=tuple(len(clip) for clip in clips),
            cache_files=(self.path,),
            fingerprint=digest.hexdigest(),
            file_sha256={self.path.name: self.sha256},
            columns=columns,
            slice_values={name: _as_text([values[name][i] for i in order]) for name in self.slices},
            clip_names=tuple(str(values[CLIP_COLUMN][clip[0]]) for clip in clips) if CLIP_COLUMN in values else None,
            frame_indices=(np.array([self._frame_number(values[FRAME_COLUMN][i], i, source) for i in order],
                                    dtype=np.int64) if FRAME_COLUMN in values else None),
        )

    def _numeric(self, column: str, order: list[int], source: str) -> np.ndarray:
        """A column's values as float32, converted as the cache reader converts JSON floats."""
        import numpy as np

        raw = self._table.values[column]
        if not isinstance(raw, list):  # every value a number: doubles, checked at once
            picked_numbers = np.asarray(raw, dtype=np.float64)[np.asarray(order, dtype=np.int64)]
            bad = np.flatnonzero(~np.isfinite(picked_numbers))
            if bad.size:
                i = order[int(bad[0])]
                raise LosoInputError(self.path, f"source {source}: non-finite {column} value {float(raw[i])!r} at "
                                     f"{self._where(i)}",
                                     "fix or drop that source's bad rows (or filter them with --loso-where)")
            return picked_numbers.astype(np.float32)
        picked = [raw[i] for i in order]
        for i, value in zip(order, picked):
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or _beyond_floats(value)
                    or not math.isfinite(value)):
                problem = "non-finite" if isinstance(value, float) or _beyond_floats(value) else "non-numeric"
                raise LosoInputError(self.path, f"source {source}: {problem} {column} value {_shown(value)} at "
                                     f"{self._where(i)}",
                                     "fix or drop that source's bad rows (or filter them with --loso-where)")
        return np.asarray(picked, dtype=np.float32)


def _metadata(values: list) -> np.ndarray:
    """A per-frame metadata column: numbers as numbers, texts as the shared str objects (a fixed-width
    unicode array would copy every frame's text into each source's data, all held by the store)."""
    import numpy as np

    if any(isinstance(v, (list, dict)) or _beyond_floats(v) for v in values):
        # an array or object (or a number beyond floats) in a frame's cell stays that one value: the
        # column is not made 2-D nor refused here; a model that reads the column names it
        column = np.empty(len(values), dtype=object)
        column[:] = values
        return column
    array_ = np.asarray(values)
    return np.array(values, dtype=object) if array_.dtype.kind == "U" else array_


def _as_text(values: list) -> np.ndarray:
    """A slice column's values as text, as --loso-where compares them (``30`` is "30", ``30.0`` is "30.0")."""
    import numpy as np

    texts: dict[tuple, str] = {}  # one str per distinct value, not one per frame (1, 1.0 and True apart)
    column = np.empty(len(values), dtype=object)
    column[:] = [texts.setdefault((type(v), v), str(v)) if isinstance(v, (str, int, float, type(None))) else str(v)
                 for v in values]
    return column


def _sortable(value: object) -> tuple[int, float | str]:
    """Numbers in numeric order, anything else after them as text (never compares a number with text)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not _beyond_floats(value):
        return (0, float(value))
    return (1, str(value))
