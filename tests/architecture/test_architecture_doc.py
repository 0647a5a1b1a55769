"""docs/architecture.md matches the tree: every package is described, every path it names
exists, and the dependency rules it states hold for the packages inside ``hosts``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "architecture.md"

# `hosts/http/routing.py`, `plugins/api.py`, `tests/vectors/`, `pipeline.py`, ...
_CODE = re.compile(r"`([^`\s]+)`")


def _named_paths(text: str) -> list[str]:
    return [
        token
        for token in _CODE.findall(text)
        if token.endswith((".py", "/")) and not token.startswith(("/", "-", "."))
    ]


def _packages() -> list[str]:
    """Every package one or two levels below engine/, plugins/, hosts/ and agent/."""
    found = []
    for top in ("engine", "plugins", "hosts", "agent"):
        for init in sorted((REPO / top).glob("*/__init__.py")):
            found.append(init.parent.relative_to(REPO).as_posix())
    return found


def test_every_package_is_described() -> None:
    text = DOC.read_text()
    missing = [
        p for p in _packages() if f"`{p}/`" not in text and f"`{p.split('/')[-1]}/`" not in text
    ]
    assert missing == [], f"describe these packages in docs/architecture.md: {missing}"


def test_every_path_it_names_exists() -> None:
    missing = []
    every_file = {p.name for p in REPO.rglob("*.py") if ".venv" not in p.parts}
    for token in _named_paths(DOC.read_text()):
        if "/" in token.rstrip("/"):
            found = (REPO / token).exists()
        elif token.endswith(".py"):
            found = token in every_file
        else:
            found = any(REPO.rglob(token.rstrip("/")))
        if not found:
            missing.append(token)
    assert missing == [], f"docs/architecture.md names paths the tree does not have: {missing}"


def _imports(package: str) -> set[str]:
    """The hosts sub-packages the modules of hosts/<package> import."""
    found: set[str] = set()
    for path in (REPO / "hosts" / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "hosts" and len(parts) > 1 and parts[1] != package:
                    found.add(parts[1])
    return found


def test_dependencies_inside_hosts_point_down_as_documented() -> None:
    # The servers run http; http serves the CA core assembles and calls its services;
    # core builds the services and the remote key cache; the services use the stores and
    # validation, which, like the remote key cache, use nothing else of hosts.
    allowed = {
        "store": set(),
        "validation": set(),
        "remote": set(),
        "service": {"store", "validation"},
        "core": {"service", "store", "validation", "remote"},
        "http": {"core", "service", "store"},
    }
    offences = {
        package: sorted(_imports(package) - permitted)
        for package, permitted in allowed.items()
        if _imports(package) - permitted
    }
    assert offences == {}


def test_every_source_folder_is_a_regular_package() -> None:
    """setuptools' package discovery (pyproject.toml) ships only folders with an
    ``__init__.py``: a module in any other folder would be missing from the wheel."""
    missing = sorted(
        folder.relative_to(REPO).as_posix()
        for top in ("engine", "plugins", "hosts", "agent")
        for folder in [REPO / top, *(p for p in (REPO / top).rglob("*") if p.is_dir())]
        if any(folder.glob("*.py")) and not (folder / "__init__.py").is_file()
    )
    assert missing == []
