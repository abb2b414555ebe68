"""The tests the gate makes: one pytest item per :class:`~pytest_loso.gate.Check`.

Modelled on pytest's "non-python tests" example: a collector builds items from data,
``reportinfo`` points at the model file, and ``repr_failure`` prints the domain sentence
instead of a traceback.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .errors import LosoInputError
from .gate import Check, Gate, LosoDataWarning, ThresholdFailure


class LosoCollector(pytest.Collector):
    """The gate's node: ``loso::fold[<arch>-<Source>]`` and ``loso::baseline[<tag>]``."""

    def __init__(self, *, gate: Gate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    def collect(self) -> Iterator[LosoItem]:
        checks = self.gate.plan()
        for warning in self.gate.corpus_warnings():  # once, at collection (the report lists them too)
            warnings.warn(LosoDataWarning(warning), stacklevel=1)
        for check in checks:
            # The node id given as a string, like pytest's own parametrized ids: pytest 9 parses
            # "loso::fold[a-S]" into path/names/params, and --lf/--ff compare ids in that form.
            yield LosoItem.from_parent(self, name=check.name, nodeid=f"{self.nodeid}::{check.name}", check=check)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, LosoInputError):  # bad input, not a bug: the message, no traceback
            return f"the gate cannot make its tests:\n{excinfo.value}"
        return super().repr_failure(excinfo)  # type: ignore[return-value]


class LosoItem(pytest.Item):
    def __init__(self, *, check: Check, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.add_marker("loso")
        self.loso_result: dict = self._fresh_result()

    def _fresh_result(self) -> dict:
        check = self.check
        return {
            "kind": check.kind,
            "name": check.name,
            "label": check.label,
            "arch": check.arch,
            "source": check.source,
            "model_path": str(check.model_path),
            "metrics": None,
            "error": None,
            "violations": [],
        }

    def runtest(self) -> None:
        gate: Gate = self.parent.gate  # type: ignore[union-attr]
        self.loso_result = self._fresh_result()  # a re-run (e.g. pytest-rerunfailures) starts clean
        try:
            gate.run(self.check, self.loso_result)
        except (LosoInputError, ThresholdFailure) as exc:
            self.loso_result["error"] = str(exc)
            raise
        except Exception as exc:  # a bug of ours: keep the report honest, let pytest show the traceback
            self.loso_result["error"] = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._record_properties()

    def _record_properties(self) -> None:
        """Metrics as test properties, so ``--junitxml`` carries them."""
        for key, value in (self.loso_result["metrics"] or {}).items():
            if key == "ci":
                for metric, interval in value.items():
                    if interval:
                        self.user_properties += [(f"loso_{metric}_ci_low", interval[0]),
                                                 (f"loso_{metric}_ci_high", interval[1])]
            elif key == "ci_method":
                self.user_properties += [(f"loso_{metric}_ci_method", method) for metric, method in value.items()]
            else:
                self.user_properties.append((f"loso_{key}", value))
        self.user_properties.append(("loso_model", self.loso_result["model_path"]))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ThresholdFailure):
            return str(excinfo.value)
        if isinstance(excinfo.value, LosoInputError):
            return f"{self.check.name} could not be scored:\n{excinfo.value}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.check.model_path, None, self.check.name
