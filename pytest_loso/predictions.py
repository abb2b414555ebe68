"""The predictions file: each test's per-frame predictions, kept beside the report for a paired comparison.

(Messages call it the "predictions sidecar", as the README does; in the code a *sidecar* is only a
model's ``.json``.)

``loso_eval.json`` holds metrics; a paired comparison needs the accepted model's predictions
on the same frames. ``loso_eval.predictions.npz`` (``loso_eval.partial.predictions.npz`` for
a partial run; ``<accepted>.predictions.npz`` beside an accepted report) holds, per test,
the predictions as float32, the clip boundaries, and the sha256 of the targets, so the
frames can be proved identical before two runs' predictions are paired. The report records
the file's sha256; a file that does not match it is not used.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import write_atomically
from .ids import predictions_path
from .records import PredictionsRecord

if TYPE_CHECKING:
    import numpy as np

def targets_digest(target: np.ndarray, pair_frames: tuple[int, ...]) -> str:
    """sha256 of the targets (float32) and the clip boundaries: equal digests, the same frames in the same clips."""
    import numpy as np

    digest = hashlib.sha256(np.ascontiguousarray(target, dtype=np.float32).tobytes())
    digest.update(np.asarray(pair_frames, dtype=np.int64).tobytes())
    return digest.hexdigest()


def entry(pred: np.ndarray, target: np.ndarray, pair_frames: tuple[int, ...]) -> PredictionsRecord:
    """One test's part of the predictions file, as plain bytes and strings (it travels from xdist workers)."""
    import numpy as np

    return {"pred": np.ascontiguousarray(pred, dtype=np.float32).tobytes(),
            "targets_sha256": targets_digest(target, pair_frames), "pair_frames": list(pair_frames)}


def write_predictions(path: Path, entries: dict[str, PredictionsRecord]) -> str:
    """Write ``{test: entry}`` as one ``.npz`` (atomically); return its sha256."""
    data = predictions_bytes(entries)
    write_atomically(path, data)
    return hashlib.sha256(data).hexdigest()


def predictions_bytes(entries: dict[str, PredictionsRecord]) -> bytes:
    """``{test: entry}`` as the bytes of one ``.npz`` (written beside the report it belongs to)."""
    import numpy as np

    index = {test: {"key": f"t{i}", "targets_sha256": e["targets_sha256"]} for i, (test, e) in enumerate(entries.items())}
    arrays = {"index": np.array(json.dumps(index))}
    for test, e in entries.items():
        key = index[test]["key"]
        arrays[f"{key}_pred"] = np.frombuffer(e["pred"], dtype=np.float32)
        arrays[f"{key}_pair_frames"] = np.asarray(e["pair_frames"], dtype=np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)  # numbers and text only: nothing to pickle
    return buffer.getvalue()


MAX_PREDICTIONS_BYTES = 1 << 30  # the file as stored; each member is capped again as it is inflated
MAX_INDEX_BYTES = 64 << 20  # the index: a test name and two digests per test


def _member(npz: object, name: str, limit: int = MAX_INDEX_BYTES) -> np.ndarray:
    """One member of an ``.npz``, read only when its inflated size is within ``limit`` bytes (plus the
    .npy header): a small file that inflates to gigabytes is refused, not inflated."""
    info = npz.zip.getinfo(f"{name}.npy")  # type: ignore[attr-defined]  # KeyError when absent
    if info.file_size > limit + 4096:
        raise ValueError(f"member {name} inflates to {info.file_size} bytes, more than the {limit} it can hold")
    return npz[name]  # type: ignore[index]


@dataclass
class AcceptedPredictions:
    """The accepted run's predictions, or why there are none (then the comparison is unpaired)."""

    path: Path
    arrays: Any = None  # the .npz (an NpzFile, members read lazily), when its sha256 matches the report's
    index: dict | None = None
    problem: str | None = None

    @classmethod
    def load(cls, report_path: Path, accepted: dict) -> AcceptedPredictions:
        import numpy as np

        path = predictions_path(report_path)
        record = accepted.get("predictions")
        expected = record.get("sha256") if isinstance(record, dict) else None
        if not isinstance(expected, str):
            return cls(path, problem="the accepted report names no predictions sidecar")
        if not path.is_file():
            return cls(path, problem=f"no predictions sidecar {path}" if not path.exists()
                       else f"predictions sidecar {path} is not a regular file")
        try:
            size = path.stat().st_size
            if size > MAX_PREDICTIONS_BYTES:
                return cls(path, problem=f"predictions sidecar {path} is larger than {MAX_PREDICTIONS_BYTES} bytes")
            data = path.read_bytes()
        except OSError as exc:
            return cls(path, problem=f"predictions sidecar {path} unreadable ({exc.strerror or exc})")
        if hashlib.sha256(data).hexdigest() != expected:
            return cls(path, problem=f"predictions sidecar {path} does not match the sha256 the accepted report "
                                     "records (changed or replaced)")
        try:
            arrays = np.load(io.BytesIO(data), allow_pickle=False)
            if not isinstance(arrays, np.lib.npyio.NpzFile):
                return cls(path, problem=f"predictions sidecar {path} is not an .npz archive")
            index = json.loads(str(_member(arrays, "index")))
        except Exception as exc:  # a hand-edited or truncated zip raises zipfile's, numpy's or json's errors
            return cls(path, problem=f"predictions sidecar {path} unreadable ({type(exc).__name__}: {exc})")
        if not isinstance(index, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("key"), str) for v in index.values()):
            return cls(path, problem=f"predictions sidecar {path} has an index that is not "
                                     "{test: {\"key\": ..., \"targets_sha256\": ...}}")
        return cls(path, arrays, index)

    def lookup(self, test: str, target: np.ndarray, pair_frames: tuple[int, ...]) -> tuple[np.ndarray | None, str]:
        """The accepted predictions of ``test`` on these very frames, else ``None`` and why not."""
        import numpy as np

        if self.arrays is None or self.index is None:
            return None, str(self.problem)
        known = self.index.get(test)
        if known is None:
            return None, f"the accepted predictions sidecar has no {test}"
        if known.get("targets_sha256") != targets_digest(target, pair_frames):
            return None, "the frames differ from the accepted run's (other targets or clips)"
        try:
            pred = _member(self.arrays, f"{known['key']}_pred", limit=4 * target.size)
        except Exception as exc:  # missing, oversized or corrupt member: this test is unpaired, not an error
            return None, f"the accepted predictions of {test} are unreadable ({type(exc).__name__}: {exc})"
        if pred.dtype != np.float32 or pred.shape != target.shape:
            return None, f"the accepted predictions of {test} do not fit its frames"
        return pred, "paired"
