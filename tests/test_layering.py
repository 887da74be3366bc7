"""The one-way house (docs: architecture): data flows cli -> server -> train -> evaluate ->
pipelines -> weights -> models -> nn, with small shared helpers at the bottom. A module may
import only modules of its own layer or below, at the top of the file or inside a function."""
from __future__ import annotations

import ast
from pathlib import Path

import annorm_cli

PACKAGE = Path(annorm_cli.__file__).parent
LAYERS = {   # first component below annorm_cli -> height
    "errors": 0, "files": 0, "device": 0, "images": 0, "masks": 0, "synthesis": 0, "visualize": 0,
    "datasets": 0, "data": 0,
    "nn": 1, "models": 2, "weights": 3, "pipelines": 4, "evaluate": 5, "bench": 5, "train": 6,
    "server": 7, "cli": 8, "__init__": 9, "__main__": 9,
}


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[1] if "." in module else "__init__"]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("annorm_cli"):
            found |= {f"{node.module}.{alias.name}" if node.module == "annorm_cli" else node.module
                      for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("annorm_cli")}
    return {name for name in found if name != "annorm_cli.__version__"}


def test_every_module_has_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
            if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert tops <= set(LAYERS), tops - set(LAYERS)


def test_imports_flow_down_only():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts)
        height = _layer(module) if path.name != "__init__.py" or relative.parts[1:] else 9
        for imported in _imports(path):
            if _layer(imported) > height:
                upward.append(f"{module} imports {imported}")
    assert not upward, "\n".join(upward)


def test_library_code_never_prints_or_exits():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] in ("cli", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("print", "exit"):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.func.id}()")
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    (node.value.id, node.attr) in (("sys", "exit"), ("typer", "echo"), ("typer", "Exit")):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value.id}.{node.attr}")
    assert not offenders, "\n".join(offenders)
