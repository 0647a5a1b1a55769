"""What a source file imports, read with ``ast`` (nothing is imported): the shared reader
of the tests that keep a module away from another (the backend, the plugin layer, the kit)."""

from __future__ import annotations

import ast
from pathlib import Path


def absolute_imports(path: Path) -> list[str]:
    """Every module *path* names in an absolute ``import`` or ``from ... import``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found
