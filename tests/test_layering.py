"""The package's shape (docs/architecture.md): no command imports another command or the CLI, nothing below
the commands imports them, errors.py imports nothing from cnnbench, and no function is longer than 80 lines."""
from __future__ import annotations

import ast

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "cnnbench"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _imports(path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path):
    imports = _imports(path)
    relative = path.relative_to(PACKAGE)
    if relative.name in ("cli.py", "__main__.py"):
        return
    assert not [m for m in imports if m.startswith("cnnbench.commands.")], f"{relative} imports a command"
    assert "cnnbench.cli" not in imports, f"{relative} imports the CLI"
    if relative.name == "errors.py":
        assert not [m for m in imports if m.startswith("cnnbench")], f"errors.py imports {imports}"


def test_no_function_longer_than_80_lines():
    long = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert not long
