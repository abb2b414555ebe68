"""Issue 20 items 7 and 8: a report that cannot be written is a failed test (loso::report) and
leaves the old report and its predictions file a consistent pair; a collection error never
replaces the last whole run's report."""

from __future__ import annotations

import errno
import hashlib
import json
import os


from loso_helpers import GateEnv
from shared_runs import template_gate  # noqa: F401  (a fixture: the runs write only their report)
from pytest_loso import files
from pytest_loso.report.outputs import write_report


def _report(partial=None, failures=()) -> dict:
    return {"partial": partial, "failures": list(failures), "archs": {}, "baselines": {}, "ensembles": {}}


def test_a_failed_json_write_leaves_the_old_report_and_predictions_pair(tmp_path, monkeypatch):
    results = {"fold[a-S]": {"predictions": {"pred": b"\0\0\0\0", "pair_frames": [1], "targets_sha256": "x"}}}
    old_json, old_npz = tmp_path / "loso_eval.json", tmp_path / "loso_eval.predictions.npz"
    old_npz.write_bytes(b"old predictions")
    old_json.write_text(json.dumps({"predictions": {"sha256": hashlib.sha256(b"old predictions").hexdigest()}}))
    real_fdopen, calls = os.fdopen, []

    def fdopen(fd, *args, **kwargs):  # the disk fills while the JSON is written, after the predictions
        calls.append(fd)
        if len(calls) == 2:
            os.close(fd)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr("pytest_loso.report.outputs.render_markdown", lambda report: "# report\n")
    monkeypatch.setattr(files.os, "fdopen", fdopen)
    notes, error = write_report(_report(), results, tmp_path)  # type: ignore[arg-type]
    monkeypatch.undo()
    assert error is not None and error.startswith(f"report NOT written: {old_json}: No space left on device")
    assert old_npz.read_bytes() == b"old predictions"
    assert json.loads(old_json.read_text())["predictions"]["sha256"] == hashlib.sha256(b"old predictions").hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loso_eval.json", "loso_eval.predictions.npz"]  # no temporaries


def test_a_collection_error_does_not_replace_the_whole_report(template_gate: GateEnv):
    gate = template_gate
    first = gate.run()
    assert first.result.ret == 0, first.output
    whole = gate.report_dir / "loso_eval.json"
    before = whole.read_bytes(), (gate.report_dir / "loso_eval.predictions.npz").read_bytes()
    result = gate.pytester.runpytest(*gate.args("--loso-arch=mlp_smal"))
    assert result.ret != 0
    assert (whole.read_bytes(), (gate.report_dir / "loso_eval.predictions.npz").read_bytes()) == before
    kept_apart = json.loads((gate.report_dir / "loso_eval.partial.json").read_text())
    assert [f["test"] for f in kept_apart["failures"]] == ["loso"]
    assert "mlp_smal" in kept_apart["failures"][0]["message"]
    result.stdout.fnmatch_lines(["*could not make its tests*left as it was*"])
