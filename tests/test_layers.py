"""The package's layers, as docs/design.md's table states them: every import in harness/ (at the
top of a module, inside a function, under `if TYPE_CHECKING:`) points to a lower layer or
within its own folder, and no modules import each other in a circle."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "harness"

# Top to bottom (docs/design.md, "Layers and imports"): a module may import its own folder and
# the folders after its own. The root holds only the package face and the command line (top)
# and the error types (bottom).
LAYERS = ("cli", "api", "report", "measure", "runtime", "patterns", "strategies", "policy", "analysis",
          "work", "workload", "errors")
ROOT_MODULES = {"harness": "cli", "harness.__main__": "cli", "harness.cli": "cli", "harness.errors": "errors"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _layer(module: str) -> str:
    if module in ROOT_MODULES:
        return ROOT_MODULES[module]
    folder = module.split(".")[1]
    assert folder in LAYERS, f"{module}: harness/{folder}/ is in no layer of docs/design.md"
    return folder


def _imports(module: str, path: Path) -> set[str]:
    """The harness modules `module` imports anywhere in its text (a `from package import name`
    counts the submodule when `name` is one)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def test_every_folder_is_a_layer():
    assert {_layer(module) for module in MODULES} <= set(LAYERS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    rank = LAYERS.index(_layer(module))
    upward = sorted(dep for dep in GRAPH[module] if LAYERS.index(_layer(dep)) < rank)
    assert upward == [], f"{module} ({_layer(module)}) imports a layer above it: {upward}"


def test_no_import_cycle():
    # A package's __init__ is imported with any of its submodules: only the edges a module
    # names count, so a package that re-exports its submodules is not a cycle by itself.
    try:
        tuple(TopologicalSorter(GRAPH).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_every_layer_folder_says_its_job():
    for folder in LAYERS:
        init = PACKAGE / folder / "__init__.py"
        if init.exists():
            assert ast.get_docstring(ast.parse(init.read_text())), f"harness/{folder}/__init__.py has no docstring"
