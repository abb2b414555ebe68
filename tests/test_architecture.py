"""The package's shape (docs/architecture.md): imports go one way, only the wiring knows pytest,
and with the gate off the plugin imports a handful of modules.

Every import counts, the ones inside functions and under ``TYPE_CHECKING`` too: a function-level
import that points upward is a cycle waiting for someone to move it to the top.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_loso"

# Bottom to top: a module imports only from the layers below its own. Kept in step with
# docs/architecture.md, which says what each layer is for.
LAYERS = [
    ["__init__", "errors"],
    ["ids", "files", "features", "metrics.names", "metrics.clip_statistic", "metrics.calibration"],
    ["settings", "records", "made_by", "metrics.correlations", "metrics.aggregate", "metrics.intervals"],
    ["metrics", "metrics.slices", "thresholds", "compare", "predictions", "cache_files", "frames"],
    ["accepted", "extract", "sidecar", "table", "registry"],
    ["cache_corpus", "models", "preflight", "held_out", "quantized"],
    ["corpus"],
    ["plan"],
    ["scoring", "results"],
    ["judging"],
    ["gate", "acceptance"],
    ["report", "report.render", "report.provenance", "ci", "verdict", "plots"],
    ["report.build", "report.outputs"],
    ["session"],
    ["options"],
    ["items"],
    ["plugin", "ini"],
]
KNOWS_PYTEST = {"options", "items", "plugin", "ini"}  # ini: the entry point that registers the ini keys alone
GATE_OFF = {"pytest_loso", "pytest_loso.errors", "pytest_loso.ini", "pytest_loso.options", "pytest_loso.plugin",
            "pytest_loso.settings"}


@functools.cache  # the package does not change during a session; _imports asks for every name imported
def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1]) if parts[-1] == "__init__" and len(parts) > 1 else ".".join(parts)
        found[name] = path
    return found


@functools.cache
def _imports(name: str, path: Path) -> tuple[set[str], set[str]]:
    """The package modules ``name`` imports (anywhere in the file), and the outside top-level packages."""
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    if name == "__init__":
        package = []
    inside, outside = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - node.level + 1] if node.level > 1 else package
            target = ".".join(base + ([node.module] if node.module else []))
            if node.module:
                inside.add(target or "__init__")
            for alias in node.names:  # `from . import made_by` imports a module
                candidate = f"{target}.{alias.name}" if target else alias.name
                if candidate in _modules():
                    inside.add(candidate)
            if not node.module:
                inside.add(target or "__init__")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("pytest_loso"):
                inside.add(node.module.removeprefix("pytest_loso").lstrip(".") or "__init__")
            else:
                outside.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                outside.add(alias.name.split(".")[0])
    return inside, outside


def test_every_module_has_a_layer():
    placed = [name for layer in LAYERS for name in layer]
    assert len(placed) == len(set(placed)), "a module is placed twice"
    assert sorted(_modules()) == sorted(placed), "place new modules in LAYERS (and docs/architecture.md)"


def test_imports_go_one_way_down():
    layer_of = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    upward = []
    for name, path in _modules().items():
        inside, _ = _imports(name, path)
        for target in inside:
            owner = target if target in layer_of else target.rsplit(".", 1)[0]
            if layer_of[owner] >= layer_of[name] and owner != name:
                upward.append(f"{name} (layer {layer_of[name]}) imports {owner} (layer {layer_of[owner]})")
    assert not upward, "\n".join(sorted(upward))


def test_only_the_wiring_knows_pytest():
    knowing = {name for name, path in _modules().items() if {"pytest", "_pytest"} & _imports(name, path)[1]}
    assert knowing == KNOWS_PYTEST


def test_the_gate_off_imports_a_handful_of_modules(tmp_path):
    """Installed, the plugin loads in every pytest session: without --loso-dir it reads its options
    and stops there (no numpy, scipy or onnxruntime either)."""
    (tmp_path / "test_a.py").write_text("def test_a():\n    pass\n")
    code = ("import sys, pytest; code = pytest.main(['-q', '-p', 'no:cacheprovider', '.']); "
            "print(sorted(m for m in sys.modules if m.startswith(('pytest_loso', 'numpy', 'scipy', 'onnx')))); "
            "sys.exit(code)")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    loaded = set(ast.literal_eval(run.stdout.strip().splitlines()[-1]))
    assert loaded == GATE_OFF
