"""The architecture, enforced: engine/ is sans-IO, and dependencies point one way.

docs/architecture.md: "No sockets, files, threads, event loops, clocks or randomness
inside engine/" and "hosts, agent -> plugins -> engine. Nothing imports hosts.
hosts.quart and hosts.raw never import each other." Every .py file is parsed
with ``ast`` (nothing is imported), so the check also covers modules that are
being written right now. Failures list ``file:line`` for each offence.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Top-level modules engine/ must not import: I/O, clocks, randomness, concurrency,
# the host frameworks, and ways around this list.
ENGINE_FORBIDDEN_MODULES = frozenset(
    {
        "socket",
        "ssl",
        "os",
        "io",
        "pathlib",
        "subprocess",
        "threading",
        "multiprocessing",
        "concurrent",
        "asyncio",
        "trio",
        "anyio",
        "httpx",
        "requests",
        "sqlite3",
        "quart",
        "quart_trio",
        "hypercorn",
        "h11",
        "tpm2_pytss",
        "time",
        "random",
        "secrets",
        "urllib",
        "http",
        "select",
        "selectors",
        "signal",
        "shutil",
        "tempfile",
        "glob",
        "importlib",
        "builtins",
    }
)
# Reading the clock through datetime: X.now(), X.utcnow(), X.today() where X is
# datetime.datetime or datetime.date.
CLOCK_METHODS = frozenset({"now", "utcnow", "today"})
DATETIME_CLASSES = frozenset({"datetime", "date"})
FORBIDDEN_BUILTINS = frozenset({"open", "__import__", "input"})

# (importing package, package it must not import)
LAYER_RULES = (
    ("engine", "plugins"),
    ("engine", "hosts"),
    ("engine", "agent"),
    ("plugins", "hosts"),
    ("plugins", "agent"),
    ("agent", "hosts"),
    ("hosts.quart", "hosts.raw"),
    ("hosts.raw", "hosts.quart"),
)


# --- the checker ------------------------------------------------------------------------------


def module_name_of(path: Path) -> tuple[str, bool]:
    """The dotted module name of a file under REPO, and whether it is a package."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def imports_of(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """Every module an ``import`` names, made absolute: (line, dotted name).

    ``from a import b`` yields both ``a`` and ``a.b``, since ``b`` may be a module.
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                keep = len(parts) - (node.level - 1)
                base_parts = parts[: max(keep, 0)]
                if node.module:
                    base_parts.append(node.module)
                base = ".".join(base_parts)
            else:
                base = node.module or ""
            if base:
                yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}" if base else alias.name


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def _datetime_aliases(tree: ast.AST) -> set[str]:
    """Names that refer to datetime.datetime / datetime.date (or the datetime module)."""
    names = set(DATETIME_CLASSES)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "datetime" and not node.level:
            for alias in node.names:
                if alias.name in DATETIME_CLASSES:
                    names.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "datetime":
                    names.add(alias.asname or alias.name)
    return names


def engine_offences(source: str, filename: str, module: str = "engine.example") -> list[str]:
    """Why this engine/ source breaks the sans-IO rule, as ``file:line: reason`` strings."""
    tree = ast.parse(source, filename=filename)
    is_package = filename.endswith("__init__.py")
    out: list[str] = []
    for line, name in imports_of(tree, module, is_package):
        top = name.split(".")[0]
        if top in ENGINE_FORBIDDEN_MODULES:
            out.append(f"{filename}:{line}: imports {name} (I/O, clock or randomness)")
    aliases = _datetime_aliases(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in FORBIDDEN_BUILTINS:
            out.append(f"{filename}:{node.lineno}: calls {func.id}()")
        elif isinstance(func, ast.Attribute):
            owner = _dotted(func.value)
            if owner is None:
                continue
            last = owner.split(".")[-1]
            if func.attr in CLOCK_METHODS and (owner in aliases or last in DATETIME_CLASSES):
                out.append(
                    f"{filename}:{node.lineno}: calls {owner}.{func.attr}() (reads the clock)"
                )
            elif owner == "time":
                out.append(f"{filename}:{node.lineno}: calls time.{func.attr}() (reads the clock)")
    return out


def layer_offences(source: str, filename: str, module: str, is_package: bool) -> list[str]:
    """Imports that point the wrong way between engine, plugins, agent and hosts."""
    tree = ast.parse(source, filename=filename)
    out = []
    for line, name in imports_of(tree, module, is_package):
        for importer, forbidden in LAYER_RULES:
            if _within(module, importer) and _within(name, forbidden):
                out.append(f"{filename}:{line}: {importer} must not import {forbidden} ({name})")
    return sorted(set(out))


def python_files(package: str) -> list[Path]:
    root = REPO / package
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*.py") if ".venv" not in p.parts)


def _relative(path: Path) -> str:
    return str(path.relative_to(REPO))


def _fail_with(offences: list[str], rule: str) -> None:
    if offences:
        pytest.fail(f"{rule}:\n  " + "\n  ".join(offences), pytrace=False)


# --- the rules, applied to the tree -------------------------------------------------------------


def test_engine_exists_and_is_checked() -> None:
    files = python_files("engine")
    assert REPO / "engine" / "pipeline.py" in files
    assert REPO / "engine" / "ports.py" in files


def test_engine_performs_no_io_and_reads_no_clock_or_randomness() -> None:
    offences: list[str] = []
    for path in python_files("engine"):
        module, _ = module_name_of(path)
        offences += engine_offences(path.read_text(encoding="utf-8"), _relative(path), module)
    _fail_with(offences, "engine/ must stay sans-IO (docs/architecture.md)")


@pytest.mark.parametrize("package", ["engine", "plugins", "agent", "hosts"])
def test_dependencies_point_one_way(package: str) -> None:
    offences: list[str] = []
    for path in python_files(package):
        module, is_package = module_name_of(path)
        offences += layer_offences(
            path.read_text(encoding="utf-8"), _relative(path), module, is_package
        )
    _fail_with(offences, "hosts, agent -> plugins -> engine; hosts.quart and hosts.raw apart")


# --- the checker itself catches what it should --------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import socket\n",
        "import os.path\n",
        "from os import environ\n",
        "from pathlib import Path\n",
        "import time\n",
        "from secrets import token_bytes\n",
        "import random as r\n",
        "from urllib.request import urlopen\n",
        "def f():\n    import sqlite3\n",
        "import importlib\nimportlib.import_module('socket')\n",
    ],
)
def test_checker_catches_io_imports(source: str) -> None:
    offences = engine_offences(source, "engine/bad.py", "engine.bad")
    assert offences
    assert all(o.startswith("engine/bad.py:") for o in offences)


@pytest.mark.parametrize(
    "source",
    [
        "from datetime import datetime\nx = datetime.now()\n",
        "from datetime import datetime\nx = datetime.utcnow()\n",
        "from datetime import datetime\nx = datetime.today()\n",
        "from datetime import date\nx = date.today()\n",
        "import datetime\nx = datetime.datetime.now()\n",
        "import datetime as dt\nx = dt.datetime.now(dt.UTC)\n",
        "from datetime import datetime as D\nx = D.now()\n",
        "x = time.time()\n",
        "data = open('/etc/passwd').read()\n",
        "m = __import__('socket')\n",
    ],
)
def test_checker_catches_clock_reads_and_file_access(source: str) -> None:
    assert engine_offences(source, "engine/bad.py", "engine.bad")


def test_checker_reports_file_and_line() -> None:
    source = "import hashlib\n\n\nimport socket\n"
    assert engine_offences(source, "engine/bad.py", "engine.bad") == [
        "engine/bad.py:4: imports socket (I/O, clock or randomness)"
    ]


@pytest.mark.parametrize(
    "source",
    [
        "import hashlib\n",
        "def f():\n    import hashlib\n    return hashlib.sha256()\n",
        "from datetime import UTC, datetime, timedelta\nx = datetime(2030, 1, 1, tzinfo=UTC)\n",
        "def f(clock):\n    return clock.now()\n",
        "from datetime import datetime\nx = datetime.fromtimestamp(0)\n",
        "from . import der\nfrom .errors import BadRequest\n",
        "from cryptography import x509\n",
    ],
)
def test_checker_allows_pure_code(source: str) -> None:
    assert engine_offences(source, "engine/ok.py", "engine.ok") == []


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("import hosts.core\n", "engine.x"),
        ("from plugins.manager import PluginManager\n", "engine.x"),
        ("from ..hosts import core\n", "engine.x"),
        ("from ...hosts import core\n", "engine.tpm.x"),
        ("from agent import caclient\n", "plugins.jwk.x"),
        ("from hosts.core.authority import Authority\n", "agent.x"),
        ("from hosts import raw\n", "hosts.quart.app"),
        ("from ..raw.server import serve\n", "hosts.quart.app"),
        ("import hosts.quart.app\n", "hosts.raw.server"),
    ],
)
def test_checker_catches_imports_against_the_layering(source: str, module: str) -> None:
    assert layer_offences(source, "x.py", module, is_package=False)


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("from engine.pipeline import Issuer\n", "plugins.jwk.provisioner"),
        ("from plugins.manager import PluginManager\n", "hosts.core.authority"),
        ("from ..core.authority import Authority\n", "hosts.quart.app"),
        ("from engine.jose import sign_compact\n", "agent.caclient"),
        ("from .ports import Clock\n", "engine.pipeline"),
    ],
)
def test_checker_allows_imports_along_the_layering(source: str, module: str) -> None:
    assert layer_offences(source, "x.py", module, is_package=False) == []


def test_relative_imports_in_a_package_init_resolve_from_the_package() -> None:
    tree = ast.parse("from .jwk import x\nfrom .. import hosts\n")
    names = [name for _, name in imports_of(tree, "plugins", is_package=True)]
    assert "plugins.jwk" in names
    assert "hosts" in names
