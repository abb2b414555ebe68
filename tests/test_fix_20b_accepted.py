"""Issue 20, item 16: a hand-edited accepted report or predictions file falls back to the unpaired
rule with a reason, never a traceback; a small .npz that inflates to gigabytes is not inflated.

The report every damage starts from is accepted once (a run on the template in place); each
test damages its own copy of it and compares with that (a run of its own).
"""

from __future__ import annotations

import hashlib
import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest
from compare_helpers import accepted_file, compare_with, fold

from pytest_loso.predictions import AcceptedPredictions
from shared_runs import ACCEPT_NOISE, accepted_once, template_gate  # noqa: F401  (template_gate: a fixture)

NOISE = ACCEPT_NOISE  # ("--loso-compare-mode=noise", "--loso-bootstrap=100")


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _replace_predictions(gate, accepted: dict, data: bytes) -> dict:
    """The predictions file replaced by ``data``, and the report edited to record its sha256."""
    accepted_file(gate).with_name("accepted.predictions.npz").write_bytes(data)
    accepted["predictions"]["sha256"] = hashlib.sha256(data).hexdigest()
    return accepted


def _damaged(gate, accepted: dict, damage: str) -> dict:
    stored = accepted_file(gate).with_name("accepted.predictions.npz")
    if damage == "ensembles null":
        accepted["ensembles"] = None
    elif damage == "predictions [1]":
        accepted["predictions"] = [1]
    elif damage == "index a list":
        accepted = _replace_predictions(gate, accepted, _npz(index=np.array(json.dumps([1, 2]))))
    elif damage == "entry without key":
        with np.load(stored) as npz:
            arrays = {name: npz[name] for name in npz.files}
        index = json.loads(str(arrays["index"]))
        del index["fold[linear-Src0001]"]["key"]  # its targets still match: the entry is used
        arrays["index"] = np.array(json.dumps(index))
        accepted = _replace_predictions(gate, accepted, _npz(**arrays))
    elif damage == "truncated zip":
        accepted = _replace_predictions(gate, accepted, stored.read_bytes()[:-200])
    elif damage == "bare npy":
        buffer = io.BytesIO()
        np.save(buffer, np.arange(5.0))
        accepted = _replace_predictions(gate, accepted, buffer.getvalue())
    return accepted


@pytest.mark.parametrize("damage", ["ensembles null", "predictions [1]", "index a list", "entry without key",
                                    "truncated zip", "bare npy"])
def test_a_hand_edited_accepted_report_or_predictions_file_is_unpaired_with_a_reason(template_gate, damage):
    gate = template_gate
    report, predictions = accepted_once(gate, *NOISE)
    accepted_file(gate).with_name("accepted.predictions.npz").write_bytes(predictions)
    accepted = _damaged(gate, json.loads(report), damage)
    run = compare_with(gate, accepted, *NOISE)
    assert "Traceback" not in run.output and "INTERNALERROR" not in run.output, run.output
    assert run.report is not None and run.result.ret == 0, run.output
    paired = fold(run.report, "linear", "Src0001")["paired"]
    if damage == "ensembles null":
        assert paired["rule"] == "paired"
    else:
        assert paired["rule"] == "unpaired" and paired["reason"], paired


def test_a_member_that_inflates_beyond_its_frames_is_not_inflated(tmp_path):
    report = tmp_path / "accepted.json"
    target, clips = np.arange(120, dtype=np.float32), (30,) * 4
    from pytest_loso.predictions import targets_digest

    index = {"fold[a-S]": {"key": "t0", "targets_sha256": targets_digest(target, clips)}}
    data = _npz(index=np.array(json.dumps(index)), t0_pred=np.zeros(16 << 20, dtype=np.float32))  # 64 MiB inflated
    assert len(data) < 1 << 20
    report.with_name("accepted.predictions.npz").write_bytes(data)
    accepted = {"predictions": {"sha256": hashlib.sha256(data).hexdigest()}}
    tracemalloc.start()
    try:
        predictions = AcceptedPredictions.load(report, accepted)
        pred, reason = predictions.lookup("fold[a-S]", target, clips)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pred is None and "inflates to" in reason, reason
    assert peak < 16 << 20, peak


def test_a_zip_member_is_read_only_when_asked(tmp_path):
    """Members are read lazily: the index alone is inflated when the file is loaded."""
    report = tmp_path / "accepted.json"
    data = _npz(index=np.array(json.dumps({})), big=np.zeros(16 << 20, dtype=np.float32))
    report.with_name("accepted.predictions.npz").write_bytes(data)
    tracemalloc.start()
    try:
        loaded = AcceptedPredictions.load(report, {"predictions": {"sha256": hashlib.sha256(data).hexdigest()}})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert loaded.problem is None and peak < 16 << 20, peak
    assert zipfile.is_zipfile(io.BytesIO(data))
