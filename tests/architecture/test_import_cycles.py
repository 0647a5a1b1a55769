"""No import cycles among the modules of engine, plugins, hosts and agent.

Every module is parsed with ``ast`` (nothing is imported). Every import counts,
wherever it is: at the top, inside a function, under ``if TYPE_CHECKING:``. A
dependency the interpreter does not follow at load time is still a dependency of
the design, and two modules that need each other are one module in two files.

An import names the module it loads: ``import a.b`` and ``from a import b`` (``b``
a submodule) depend on ``a.b``, ``from a.b import name`` on ``a.b``, and importing
a package depends on its ``__init__``. Relative imports (``from . import x``,
``from ..core import y``) resolve against the importing module's package. The
package ``__init__`` that Python also runs on the way to a submodule is not
counted: a package re-exporting its submodules would otherwise be in a cycle with
each of them that imports a sibling.

Cycles are the strongly connected components of that graph (Tarjan's algorithm);
a failure lists each one with a path around it, ``file:line`` for each import.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "plugins", "hosts", "agent")


@dataclass(frozen=True)
class Import:
    """One module depending on another: where the import statement is."""

    target: str
    filename: str
    line: int


@dataclass(frozen=True)
class Cycle:
    modules: tuple[str, ...]  # sorted
    path: tuple[Import, ...]  # imports leading from modules[0] around and back to it

    def render(self) -> str:
        lines = [
            f"cycle of {len(self.modules)} modules: {', '.join(self.modules)}",
            "  one way around it:",
        ]
        source = self.modules[0]
        for step in self.path:
            lines.append(f"    {source} -> {step.target}  ({step.filename}:{step.line})")
            source = step.target
        return "\n".join(lines)


# --- the graph ------------------------------------------------------------------------


def module_name(filename: str) -> tuple[str, bool]:
    """The dotted name of a repository-relative .py path, and whether it is a package."""
    parts = list(PurePosixPath(filename).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _known(name: str, modules: Mapping[str, object]) -> str | None:
    """``name`` if it is a module of the graph, else its nearest enclosing one."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _from_base(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    parts = package.split(".") if package else []
    parts = parts[: max(len(parts) - (node.level - 1), 0)]
    if node.module:
        parts.append(node.module)
    return ".".join(parts)


def imports_of(
    tree: ast.AST, module: str, is_package: bool, modules: Mapping[str, object]
) -> Iterator[tuple[str, int]]:
    """(module of the graph, line) for every import in ``tree``, wherever it is."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _known(alias.name, modules)
                if target:
                    yield target, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, module, is_package)
            for alias in node.names:
                submodule = f"{base}.{alias.name}" if base else alias.name
                # A name that is a submodule loads that module; any other name, its module.
                target = submodule if submodule in modules else _known(base, modules)
                if target:
                    yield target, node.lineno


def import_graph(sources: Mapping[str, str]) -> dict[str, dict[str, Import]]:
    """{module: {module it imports: the first such import}} for {filename: source}."""
    names = {filename: module_name(filename) for filename in sources}
    modules = {name: filename for filename, (name, _) in names.items()}
    graph: dict[str, dict[str, Import]] = {}
    for filename, source in sorted(sources.items()):
        module, is_package = names[filename]
        edges = graph.setdefault(module, {})
        tree = ast.parse(source, filename=filename)
        for target, line in sorted(imports_of(tree, module, is_package, modules), key=_by_line):
            if target != module and target not in edges:
                edges[target] = Import(target, filename, line)
    return graph


def _by_line(item: tuple[str, int]) -> tuple[int, str]:
    return item[1], item[0]


def strongly_connected(graph: Mapping[str, Mapping[str, object]]) -> list[list[str]]:
    """Tarjan's strongly connected components, without recursion."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    work: list[tuple[str, Iterator[str]]] = []  # the depth-first path, with what is left

    def enter(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        work.append((node, iter(sorted(graph.get(node, ())))))

    for root in sorted(graph):
        if root in index:
            continue
        enter(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    enter(successor)
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def _path_around(graph: Mapping[str, Mapping[str, Import]], members: list[str]) -> list[Import]:
    """A shortest path of imports from members[0] back to itself, inside the component."""
    start, inside = members[0], set(members)
    reached: dict[str, tuple[str, Import]] = {}  # module: (the module importing it, how)
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target, step in sorted(graph[node].items()):
            if target == start:
                path = [step]
                while node != start:
                    node, step = reached[node]
                    path.append(step)
                return path[::-1]
            if target in inside and target not in reached:
                reached[target] = (node, step)
                queue.append(target)
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def find_cycles(sources: Mapping[str, str]) -> list[Cycle]:
    """The import cycles among {repository-relative filename: source}."""
    graph = import_graph(sources)
    return [
        Cycle(tuple(members), tuple(_path_around(graph, members)))
        for members in sorted(strongly_connected(graph))
        if len(members) > 1
    ]


def package_sources() -> dict[str, str]:
    sources = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                sources[path.relative_to(REPO).as_posix()] = path.read_text("utf-8")
    return sources


# --- the rule, applied to the tree ----------------------------------------------------


def test_every_package_is_scanned() -> None:
    graph = import_graph(package_sources())
    assert all(package in graph for package in PACKAGES)
    assert "plugins.attestation.tpm" in graph
    assert len(graph) > 100


def test_no_import_cycles() -> None:
    cycles = find_cycles(package_sources())
    if cycles:
        pytest.fail(
            f"{len(cycles)} import cycle(s) among {', '.join(PACKAGES)}"
            " (type-only and function-level imports count):\n"
            + "\n".join(cycle.render() for cycle in cycles),
            pytrace=False,
        )


# --- the checker itself ---------------------------------------------------------------


def test_a_cycle_through_a_package_init_and_a_relative_import() -> None:
    sources = {
        "pkg/__init__.py": "from .fmt import Format\n",
        "pkg/base.py": "class Base: ...\n",
        "pkg/fmt.py": "from . import helper\nfrom .base import Base\n",
    }
    [cycle] = find_cycles(sources)
    assert cycle.modules == ("pkg", "pkg.fmt")
    assert cycle.render() == (
        "cycle of 2 modules: pkg, pkg.fmt\n"
        "  one way around it:\n"
        "    pkg -> pkg.fmt  (pkg/__init__.py:1)\n"
        "    pkg.fmt -> pkg  (pkg/fmt.py:1)"
    )


def test_type_only_and_function_level_imports_count() -> None:
    sources = {
        "app/a.py": (
            "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from app.b import B\n"
        ),
        "app/b.py": "def f():\n    from . import c\n",
        "app/c.py": "import app.a\n",
    }
    [cycle] = find_cycles(sources)
    assert cycle.modules == ("app.a", "app.b", "app.c")
    assert [(step.target, step.filename, step.line) for step in cycle.path] == [
        ("app.b", "app/a.py", 4),
        ("app.c", "app/b.py", 2),
        ("app.a", "app/c.py", 1),
    ]


def test_imports_resolve_to_the_module_they_load() -> None:
    sources = {
        "hosts/__init__.py": "",
        "hosts/core/__init__.py": "",
        "hosts/core/authority.py": "import json\nfrom engine.pipeline import Issuer\n",
        "hosts/quart/__init__.py": "from . import app\n",
        "hosts/quart/app.py": (
            "from ..core import authority\n"
            "from ..core.authority import Authority\n"
            "from hosts import core\n"
            "import hosts.quart\n"
        ),
        "engine/__init__.py": "",
        "engine/pipeline.py": "",
    }
    graph = import_graph(sources)
    assert set(graph["hosts.quart.app"]) == {"hosts.core.authority", "hosts.core", "hosts.quart"}
    assert set(graph["hosts.core.authority"]) == {"engine.pipeline"}
    assert set(graph["hosts.quart"]) == {"hosts.quart.app"}
    assert graph["hosts"] == {}
    [cycle] = find_cycles(sources)
    assert cycle.modules == ("hosts.quart", "hosts.quart.app")


def test_siblings_and_a_re_exporting_package_are_no_cycle() -> None:
    sources = {
        "pkg/__init__.py": "from .common import helper\nfrom .fmt import Format\n",
        "pkg/common.py": "from .base import Base\n",
        "pkg/base.py": "",
        "pkg/fmt.py": "from .common import helper\nfrom pkg.base import Base\n",
    }
    assert find_cycles(sources) == []


def test_separate_cycles_are_reported_apart() -> None:
    sources = {
        "a/x.py": "from a import y\n",
        "a/y.py": "from a import x\n",
        "b/p.py": "import b.q\n",
        "b/q.py": "import b.r\n",
        "b/r.py": "import b.p\nimport a.x\n",
    }
    assert [cycle.modules for cycle in find_cycles(sources)] == [
        ("a.x", "a.y"),
        ("b.p", "b.q", "b.r"),
    ]
