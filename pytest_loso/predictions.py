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
from typing import TYPE_CHECKING

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
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@dataclass
class AcceptedPredictions:
    """The accepted run's predictions, or why there are none (then the comparison is unpaired)."""

    path: Path
    arrays: dict | None = None  # the loaded .npz, when its sha256 matches the accepted report's
    index: dict | None = None
    problem: str | None = None

    @classmethod
    def load(cls, report_path: Path, accepted: dict) -> AcceptedPredictions:
        import numpy as np

        path = predictions_path(report_path)
        expected = (accepted.get("predictions") or {}).get("sha256")
        if expected is None:
            return cls(path, problem="the accepted report names no predictions sidecar")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return cls(path, problem=f"no predictions sidecar {path}")
        except OSError as exc:
            return cls(path, problem=f"predictions sidecar {path} unreadable ({exc.strerror or exc})")
        if hashlib.sha256(data).hexdigest() != expected:
            return cls(path, problem=f"predictions sidecar {path} does not match the sha256 the accepted report "
                                     "records (changed or replaced)")
        try:
            arrays = dict(np.load(io.BytesIO(data), allow_pickle=False))
            index = json.loads(str(arrays["index"]))
        except (OSError, ValueError, KeyError) as exc:
            return cls(path, problem=f"predictions sidecar {path} unreadable ({exc})")
        return cls(path, arrays, index)

    def lookup(self, test: str, target: np.ndarray, pair_frames: tuple[int, ...]) -> tuple[np.ndarray | None, str]:
        """The accepted predictions of ``test`` on these very frames, else ``None`` and why not."""
        if self.arrays is None or self.index is None:
            return None, str(self.problem)
        known = self.index.get(test)
        if known is None:
            return None, f"the accepted predictions sidecar has no {test}"
        if known.get("targets_sha256") != targets_digest(target, pair_frames):
            return None, "the frames differ from the accepted run's (other targets or clips)"
        pred = self.arrays.get(f"{known['key']}_pred")
        if pred is None or pred.shape != target.shape:
            return None, f"the accepted predictions of {test} do not fit its frames"
        return pred, "paired"
