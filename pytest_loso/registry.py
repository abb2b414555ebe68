"""The model registry (the team's ``model/tiny/registry.json``): the digests it pins, checked
before a model is scored.

Its shape, as the team ships it::

    {"schema_version": 1,
     "models": [{"id": "vmaf_tiny_v3", "onnx": "vmaf_tiny_v3.onnx", "sha256": "<64 hex>",
                 "quant_mode": "dynamic", "int8_sha256": "<64 hex>",
                 "quant_accuracy_budget_plcc": 0.01, ...}, ...]}

A scored model is matched to an entry by its file name: ``onnx`` pins ``sha256``, and its
``.int8.onnx`` sibling (``vmaf_tiny_v3.int8.onnx``) pins ``int8_sha256``. Other keys are the
registry's own business and are not read.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import LosoInputError

INT8_SUFFIX = ".int8.onnx"
_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_FIX = "give the team's model/tiny/registry.json ({\"models\": [{\"id\", \"onnx\", \"sha256\"...}]})"


def int8_name(onnx_name: str) -> str:
    """``vmaf_tiny_v3.onnx`` -> ``vmaf_tiny_v3.int8.onnx``: the quantised sibling's file name."""
    name = Path(onnx_name).name
    return (name[: -len(".onnx")] if name.endswith(".onnx") else name) + INT8_SUFFIX


@dataclass(frozen=True)
class RegistryEntry:
    id: str
    onnx: str  # the fp32 model's file name
    sha256: str | None
    int8_sha256: str | None
    quant_budget_plcc: float | None  # quant_accuracy_budget_plcc: the allowed 1 - PLCC(fp32, int8)


@dataclass(frozen=True)
class Pin:
    """What the registry says of one model file: its entry, and the key and digest it pins (``None``
    when the entry lists the file but pins no digest for it)."""

    entry: RegistryEntry
    key: str  # "sha256" or "int8_sha256"
    digest: str | None


@dataclass(frozen=True)
class Registry:
    path: Path
    sha256: str
    entries: tuple[RegistryEntry, ...]

    def pin(self, model_path: Path) -> Pin | None:
        """The entry whose ``onnx`` (or its ``.int8.onnx`` sibling) is ``model_path``'s file name."""
        for entry in self.entries:
            if model_path.name == Path(entry.onnx).name:
                return Pin(entry, "sha256", entry.sha256)
            if model_path.name == int8_name(entry.onnx):
                return Pin(entry, "int8_sha256", entry.int8_sha256)
        return None

    def check(self, model_path: Path, sha256: str) -> tuple[dict, LosoInputError | None]:
        """The registry's word on one loaded model, for the report (``entry`` None: unlisted;
        ``matches`` None: listed without a pin for this file), and the error that fails its test
        when the file's digest is not the pinned one (nothing is scored from it)."""
        pin = self.pin(model_path)
        if pin is None:
            return {"entry": None}, None
        pinned = pin.digest.lower() if pin.digest else None
        record = {"entry": pin.entry.id, "pin": pin.key, "pinned": pinned,
                  "matches": None if pinned is None else pinned == sha256}
        if record["matches"] is not False:
            return record, None
        return record, LosoInputError(
            model_path,
            f"sha256 {sha256} does not match registry entry {pin.entry.id} ({self.path}), whose {pin.key} "
            f"pins {pinned}; nothing was scored from this file",
            f"restore the pinned {model_path.name}, or update the entry's {pin.key} if the change is meant")

    def quant_budget(self, parent: Path) -> float | None:
        """``quant_accuracy_budget_plcc`` of the entry of the fp32 model ``parent``."""
        pin = self.pin(parent)
        return pin.entry.quant_budget_plcc if pin is not None else None

    def to_json(self) -> dict:
        return {"path": str(self.path), "sha256": self.sha256, "entries": len(self.entries)}


def load_registry(path: Path) -> Registry:
    """The registry at ``path``; :class:`LosoInputError` naming the key when it is not JSON or not
    in the registry's shape."""
    try:
        raw = path.read_bytes()
        document = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise LosoInputError(path, "registry not found", _FIX) from None
    except IsADirectoryError:
        raise LosoInputError(path, "is a folder, not a registry file", _FIX) from None
    except (OSError, ValueError, RecursionError) as exc:
        raise LosoInputError(path, f"not a readable JSON registry ({exc})", _FIX) from None
    if not isinstance(document, dict) or not isinstance(document.get("models"), list):
        raise LosoInputError(path, "not a model registry: expected an object with a 'models' list", _FIX)
    entries: list[RegistryEntry] = []
    seen: dict[str, str] = {}  # file name -> the entry that pins it
    for index, item in enumerate(document["models"]):
        where = f"models[{index}]"
        if not isinstance(item, dict):
            raise LosoInputError(path, f"{where} should be an object, not {type(item).__name__}", _FIX)
        onnx = item.get("onnx")
        if not isinstance(onnx, str) or not onnx.strip():
            raise LosoInputError(path, f"{where}.onnx should be the model's file name, not {onnx!r}", _FIX)
        entry_id = item.get("id", Path(onnx).stem)
        if not isinstance(entry_id, str):
            raise LosoInputError(path, f"{where}.id should be text, not {entry_id!r}", _FIX)
        for key in ("sha256", "int8_sha256"):
            value = item.get(key)
            if value is not None and (not isinstance(value, str) or not _DIGEST.fullmatch(value)):
                raise LosoInputError(path, f"{where}.{key} ({entry_id}) should be a sha256 (64 hex digits), "
                                     f"not {value!r}", _FIX)
        budget = item.get("quant_accuracy_budget_plcc")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                                   or not math.isfinite(budget) or budget < 0):
            raise LosoInputError(path, f"{where}.quant_accuracy_budget_plcc ({entry_id}) should be a number "
                                 f">= 0, not {budget!r}", _FIX)
        name = Path(onnx).name
        if name in seen:
            raise LosoInputError(path, f"{where} ({entry_id}) and {seen[name]} both name {name}: a file is "
                                 "pinned once", _FIX)
        seen[name] = entry_id
        entries.append(RegistryEntry(entry_id, onnx, item.get("sha256"), item.get("int8_sha256"),
                                     None if budget is None else float(budget)))
    return Registry(path, hashlib.sha256(raw).hexdigest(), tuple(entries))
