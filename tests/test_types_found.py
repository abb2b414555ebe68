"""Defects that type checking (`mypy pytest_loso`) pointed at: each a None or a wrong type that
reached a line on some input. One test per defect, each failing on the code before its fix."""

from __future__ import annotations

import shutil

from loso_helpers import SOURCES, GateEnv


def test_a_fold_model_named_only_final_onnx_is_an_input_error_not_an_internal_error(gate: GateEnv) -> None:
    # "_final.onnx" names no architecture: its folds had no run, and the report crashed sorting runs
    # (INTERNALERROR) after every test had passed
    nameless = gate.fold_path("linear", SOURCES[0]).with_name("_final.onnx")
    shutil.copy(gate.fold_path("linear", SOURCES[0]), nameless)
    run = gate.run()
    assert "INTERNALERROR" not in run.output
    assert run.result.ret != 0
    assert str(nameless) in run.output
    assert "<arch>_final.onnx" in run.output

