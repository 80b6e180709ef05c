"""The layers of docs/architecture.md, checked from the source: imports run one way, none hides
in a function, and no module imports another package's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sealed_results"

RANK = {
    "errors": 0,
    "options": 1,
    "pickling": 1,
    "retry": 1,
    "_lazy": 1,
    "_version": 1,
    "format": 2,
    "serializers": 2,
    "keyproviders": 3,
    "stores": 3,
    "handlers": 4,
    "plugins": 5,
    "config": 6,
    # seal/unseal and redaction for orchestrator adapters: over profiles, under the adapters.
    "sealing": 6.5,
    "maintenance": 7,
    "prefect": 7,
    "cli": 8,
    "testing": 8,
}
# format imports nothing of ours but the errors (docs/format.md's promise: pure bytes).
ONLY = {"format": {"errors", "format"}}


def _modules() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE
    )


def _unit(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imports(tree: ast.AST) -> list[tuple[ast.AST, str, list[str], bool]]:
    """(node, module, imported names, inside a function) for every import of ours."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom) and child.module:
                names = [a.name for a in child.names]
                if child.module == "sealed_results":
                    for name in names:
                        found.append((child, f"sealed_results.{name}", [], nested))
                elif child.module.startswith("sealed_results."):
                    found.append((child, child.module, names, nested))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("sealed_results."):
                        found.append((child, alias.name, [], nested))
            visit(child, nested)

    visit(tree, False)
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way(path: Path) -> None:
    unit = _unit(path)
    assert unit in RANK, f"{unit} has no place in docs/architecture.md's layers"
    tree = ast.parse(path.read_text())
    for node, module, names, in_function in _imports(tree):
        target = module.split(".")[1]
        where = f"{path.relative_to(PACKAGE)}:{node.lineno}"  # type: ignore[attr-defined]
        assert not in_function, f"{where}: import of {module} hidden in a function"
        if target == unit:
            continue
        assert target in RANK, f"{where}: {module} has no layer"
        assert RANK[target] < RANK[unit], f"{where}: {unit} imports {module}, a layer above"
        if unit in ONLY:
            assert target in ONLY[unit], f"{where}: {unit} may not import {module}"
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"{where}: imports private {private} of another package"


def test_no_cycles_at_import() -> None:
    import importlib

    for path in _modules():
        if path.name == "__main__.py":
            continue  # a script: importing it runs the command line
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(("sealed_results", *parts))
        importlib.import_module(name)
