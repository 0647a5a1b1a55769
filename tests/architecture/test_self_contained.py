"""The repository is self-contained: tests, fuzz targets and benchmarks read nothing outside it.

Every .py file under tests/, fuzz/ and benchmarks/ is parsed with ``ast`` (nothing is
imported). A file offends when it

* builds a path from ``__file__`` that climbs above the repository root:
  ``Path(__file__).resolve().parents[N]``, ``.parent``, ``os.path.dirname``, a ``".."``
  segment, ``os.path.join``/``joinpath``; names assigned such a path are followed, also
  into the scanned modules that import them (``from tests.conftest import REPO_ROOT``);
* builds a path that starts with ``..`` (relative to the working directory) or in the
  home directory (``Path.home()``, ``~``);
* builds a path from, or opens, an absolute path other than the system locations the
  tests legitimately read (SYSTEM_PATHS);
* names, in any string (docstrings too), a top-level folder where checkouts, home
  folders and shared data live (OUTSIDE_ROOTS), or a sibling ``shared`` folder.

A name bound more than once to different things (a parameter, a loop variable, two
assignments) is not followed, so a path is only reported when it certainly leaves the
repository. Failures list ``file:line: reason`` for each offence.
"""

from __future__ import annotations

import ast
import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("tests", "fuzz", "benchmarks")

#: Absolute locations a test may read or run: system programs, the process and device
#: file systems, the system CA store, and temporary files.
SYSTEM_PATHS = (
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/proc",
    "/sys",
    "/dev",
    "/etc/ssl",
    "/tmp",
)
#: First segments of absolute paths that hold checkouts, home folders and shared data,
#: never system files: a string naming one points outside the repository wherever it is.
OUTSIDE_ROOTS = ("work", "home", "Users", "mnt", "media", "opt", "srv", "Volumes")
OUTSIDE_TEXT = re.compile(
    r"(?<![\w.~/-])/(?:" + "|".join(OUTSIDE_ROOTS) + r")(?![\w.-])[\w./-]*"
    r"|(?<![\w.-])shared/[\w.-][\w./-]*"  # a sibling folder: shared/<something>
)
PATH_CLASSES = frozenset({"Path", "PurePath", "PosixPath", "PurePosixPath"})
#: Calls whose arguments are file names (beyond os.path.*, shutil.* and Path(...)).
FILE_FUNCTIONS = frozenset(
    {
        "open",
        "io.open",
        "os.open",
        "os.listdir",
        "os.scandir",
        "os.walk",
        "os.stat",
        "os.chdir",
        "os.mkdir",
        "os.makedirs",
        "os.remove",
        "os.unlink",
        "os.rmdir",
    }
)


# --- where a path expression points ---------------------------------------------------


@dataclass(frozen=True)
class Inside:
    """A path in the repository, ``depth`` segments below its root (0 is the root)."""

    depth: int


@dataclass(frozen=True)
class Outside:
    """A path that certainly leaves the repository (already reported where it did)."""


@dataclass(frozen=True)
class Absolute:
    path: str


Location = Inside | Outside | Absolute | None  # None: cannot be told from the source


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def _system(path: str) -> bool:
    return any(path == allowed or path.startswith(allowed + "/") for allowed in SYSTEM_PATHS)


def module_name(relative: str) -> tuple[str, bool]:
    """The dotted module name of a repository-relative .py path, and whether it is a package."""
    parts = list(PurePosixPath(relative).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


class FileChecker:
    """Follows the path expressions of one file; collects its offences."""

    def __init__(
        self,
        filename: str,
        tree: ast.Module,
        exports: Mapping[str, Mapping[str, Location]],
    ) -> None:
        self.filename = filename
        self.file_depth = len(PurePosixPath(filename).parts)
        self.module, self.is_package = module_name(filename)
        self.tree = tree
        self.exports = exports
        self.offences: set[tuple[int, str]] = set()
        self._memo: dict[int, Location] = {}
        self._names: dict[str, Location] = {}
        self._resolving: set[str] = set()
        self._sites = self._binding_sites()

    # names ------------------------------------------------------------------------------

    def _binding_sites(self) -> dict[str, list[ast.expr | tuple[str, str] | None]]:
        """Each name's bindings: the assigned expression, (module, name) of an import from
        a scanned module, or None for any other binding (parameter, loop target, ...)."""
        assigned: dict[int, ast.expr] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned[id(target)] = node.value
            elif (
                isinstance(node, ast.AnnAssign)
                and node.value is not None
                and isinstance(node.target, ast.Name)
            ):
                assigned[id(node.target)] = node.value
        sites: dict[str, list[ast.expr | tuple[str, str] | None]] = {}

        def add(name: str, site: ast.expr | tuple[str, str] | None) -> None:
            sites.setdefault(name, []).append(site)

        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                add(node.id, assigned.get(id(node)))
            elif isinstance(node, ast.arg):
                add(node.arg, None)
            elif isinstance(
                node,
                ast.FunctionDef
                | ast.AsyncFunctionDef
                | ast.ClassDef
                | ast.ExceptHandler
                | ast.MatchAs
                | ast.MatchStar,
            ):
                if node.name:
                    add(node.name, None)
            elif isinstance(node, ast.MatchMapping) and node.rest:
                add(node.rest, None)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.asname or alias.name.split(".")[0], None)
            elif isinstance(node, ast.ImportFrom):
                source = self._absolute_module(node)
                for alias in node.names:
                    add(alias.asname or alias.name, (source, alias.name))
        return sites

    def _absolute_module(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = self.module if self.is_package else self.module.rpartition(".")[0]
        parts = package.split(".") if package else []
        parts = parts[: max(len(parts) - (node.level - 1), 0)]
        if node.module:
            parts.append(node.module)
        return ".".join(parts)

    def lookup(self, name: str) -> Location:
        if name in self._names:
            return self._names[name]
        if name in self._resolving:
            return None
        self._resolving.add(name)
        found: set[Location] = set()
        for site in self._sites.get(name, [None]):
            if site is None:
                found.add(None)
            elif isinstance(site, tuple):
                found.add(self.exports.get(site[0], {}).get(site[1]))
            else:
                found.add(self.evaluate(site))
        self._resolving.discard(name)
        location = found.pop() if len(found) == 1 else None
        self._names[name] = location
        return location

    def exported(self) -> dict[str, Location]:
        """The names of this file that point somewhere known, for the modules importing it."""
        names = {name: self.lookup(name) for name in self._sites}
        return {name: location for name, location in names.items() if location is not None}

    # offences ---------------------------------------------------------------------------

    def report(self, node: ast.AST, reason: str) -> None:
        self.offences.add((getattr(node, "lineno", 0), reason))

    def _climb(self, node: ast.expr, location: Location, levels: int) -> Location:
        """``levels`` times the parent of ``location``; reported where it leaves the repo."""
        if isinstance(location, Inside):
            if location.depth - levels >= 0:
                return Inside(location.depth - levels)
            self.report(node, f"{_code(node)} climbs above the repository root")
            return Outside()
        if isinstance(location, Absolute):
            path = location.path
            for _ in range(levels):
                path = posixpath.dirname(path)
            return Absolute(path)
        return location

    def _absolute(self, node: ast.expr, path: str) -> Location:
        path = posixpath.normpath(path)
        if _system(path):
            return Absolute(path)
        self.report(node, f"uses the absolute path {path}, outside the repository")
        return Outside()

    def path_of(self, node: ast.expr) -> Location:
        """Where ``node`` points when it is used as a file name."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if text.startswith("/"):
                return self._absolute(node, text)
            if text == "~" or text.startswith("~/"):
                self.report(node, f"uses {text!r}, in the home directory")
                return Outside()
            if text.split("/")[0] == "..":
                self.report(node, f"uses {text!r}, above the working directory")
                return Outside()
            return None
        if isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                prefix = first.value
                folder = prefix[: prefix.rfind("/")] if "/" in prefix[1:] else ""
                # Reported when no system path can be below or above the known folder.
                if (
                    prefix.startswith("/")
                    and folder
                    and not _system(folder)
                    and not any(allowed.startswith(folder + "/") for allowed in SYSTEM_PATHS)
                ):
                    self.report(node, f"uses an absolute path in {folder}, outside the repository")
                    return Outside()
            return None
        return self.evaluate(node)

    def _join(self, node: ast.expr, base: Location, parts: Iterable[ast.expr]) -> Location:
        for part in parts:
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                if part.value.startswith("/"):
                    base = self._absolute(part, part.value)
                    continue
                for segment in part.value.split("/"):
                    if segment in ("", "."):
                        continue
                    if segment == "..":
                        base = self._climb(node, base, 1)
                    elif isinstance(base, Inside):
                        base = Inside(base.depth + 1)
                    elif isinstance(base, Absolute):
                        base = Absolute(posixpath.join(base.path, segment))
            else:
                self.path_of(part)
                base = Outside() if isinstance(base, Outside) else None
        return base

    # evaluation -------------------------------------------------------------------------

    def evaluate(self, node: ast.expr) -> Location:
        key = id(node)
        if key not in self._memo:
            self._memo[key] = None  # a self-referring expression stays unknown
            self._memo[key] = self._evaluate(node)
        return self._memo[key]

    def _evaluate(self, node: ast.expr) -> Location:
        if isinstance(node, ast.Name):
            return Inside(self.file_depth) if node.id == "__file__" else self.lookup(node.id)
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            return self._climb(node, self.evaluate(node.value), 1)
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "parents"
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, int)
            and node.slice.value >= 0
        ):
            return self._climb(node, self.evaluate(node.value.value), node.slice.value + 1)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            base = self.evaluate(node.left)
            # With an unknown left side this may be any division: only paths are followed.
            return None if base is None else self._join(node, base, [node.right])
        if isinstance(node, ast.Call):
            return self._call(node)
        return None

    def _call(self, node: ast.Call) -> Location:
        func = node.func
        dotted = _dotted(func) or ""
        last = dotted.rpartition(".")[2]
        args = node.args
        if last in PATH_CLASSES and dotted in (last, f"pathlib.{last}"):
            if not args:
                return None
            return self._join(node, self.path_of(args[0]), args[1:])
        if dotted.endswith("Path.home") or dotted == "os.path.expanduser":
            self.report(node, f"{_code(node)} is in the home directory")
            return Outside()
        if dotted.startswith(("os.path.", "posixpath.")):
            if last == "join" and args:
                return self._join(node, self.path_of(args[0]), args[1:])
            located = [self.path_of(arg) for arg in args]
            if last in ("abspath", "realpath", "normpath") and located:
                return located[0]
            if last == "dirname" and located:
                return self._climb(node, located[0], 1)
            return None
        if isinstance(func, ast.Attribute):
            if func.attr in ("resolve", "absolute"):
                return self.evaluate(func.value)
            if func.attr == "joinpath":
                return self._join(node, self.evaluate(func.value), args)
            if func.attr == "expanduser":
                base = func.value
                if isinstance(base, ast.Call) and _dotted(base.func) in PATH_CLASSES and base.args:
                    return self.path_of(base.args[0])
                return None
        if dotted in FILE_FUNCTIONS or dotted.startswith("shutil."):
            for arg in args:
                self.path_of(arg)
        return None

    def check(self) -> list[str]:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.expr):
                self.evaluate(node)
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for match in OUTSIDE_TEXT.finditer(node.value):
                    # The line of the match in a string spanning several (a docstring).
                    line = node.lineno + node.value.count("\n", 0, match.start())
                    place = match.group(0).rstrip(".")
                    self.offences.add((line, f"names {place}, outside the repository"))
        return [f"{self.filename}:{line}: {reason}" for line, reason in sorted(self.offences)]


def _code(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 80 else text[:77] + "..."


def check_sources(sources: Mapping[str, str]) -> list[str]:
    """The offences of a set of files, given as {repository-relative path: source}."""
    trees = {name: ast.parse(source, filename=name) for name, source in sources.items()}
    exports: dict[str, dict[str, Location]] = {}
    # Names a module takes from another can depend on what that one imports: settle first.
    for _ in range(len(trees) + 1):
        settled = {
            module_name(name)[0]: FileChecker(name, tree, exports).exported()
            for name, tree in trees.items()
        }
        if settled == exports:
            break
        exports = settled
    offences: list[str] = []
    for name, tree in sorted(trees.items()):
        offences += FileChecker(name, tree, exports).check()
    return offences


def check_source(source: str, filename: str = "tests/example/test_example.py") -> list[str]:
    return check_sources({filename: source})


def scanned_files() -> Iterator[Path]:
    for folder in SCANNED:
        root = REPO / folder
        if root.is_dir():
            yield from sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


# --- the rule, applied to the tree ----------------------------------------------------


def test_the_scan_reaches_every_folder() -> None:
    files = [p.relative_to(REPO).as_posix() for p in scanned_files()]
    assert "tests/conftest.py" in files
    assert "fuzz/harness.py" in files
    assert "benchmarks/common.py" in files


def test_tests_fuzz_and_benchmarks_refer_to_nothing_outside_the_repository() -> None:
    sources = {p.relative_to(REPO).as_posix(): p.read_text("utf-8") for p in scanned_files()}
    offences = check_sources(sources)
    if offences:
        pytest.fail(
            "paths outside the repository (copy what a test needs into it, e.g. tests/vectors/):"
            "\n  " + "\n  ".join(offences),
            pytrace=False,
        )


# --- the checker itself catches what it should ----------------------------------------

# Assembled at run time, so that this file does not name them itself.
FAR = "/" + "home" + "/someone"
SIBLING = "shar" + "ed"
TPM_TEST = "tests/engine/tpm/test_example.py"


@pytest.mark.parametrize(
    ("source", "filename"),
    [
        (f'V = Path(__file__).resolve().parents[3].parent / "{SIBLING}" / "v"\n', TPM_TEST),
        ("V = Path(__file__).resolve().parents[4]\n", TPM_TEST),
        ("V = Path(__file__).parent.parent.parent.parent.parent\n", TPM_TEST),
        ('V = Path(__file__).parent / ".." / ".." / ".." / ".." / "x"\n', TPM_TEST),
        ('V = Path(__file__).parent / "../../../../x"\n', TPM_TEST),
        ('V = Path(__file__).parent.joinpath("..", "..", "..", "..")\n', TPM_TEST),
        ('V = Path(Path(__file__).parents[2], "..", "..")\n', TPM_TEST),
        ("V = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))\n", "tests/x.py"),
        ('V = os.path.join(os.path.dirname(__file__), "..", "..")\n', "tests/x.py"),
        ('V = Path("../data")\n', "tests/x.py"),
        ('data = open("../data/x.json").read()\n', "tests/x.py"),
        (f'V = Path("{FAR}/vectors")\n', "tests/x.py"),
        (f'V = Path(__file__).parent / "{FAR}"\n', "tests/x.py"),
        ('V = Path("/etc/passwd")\n', "tests/x.py"),
        ('V = Path.home() / ".config"\n', "tests/x.py"),
        ('V = Path("~/x")\n', "tests/x.py"),
        ('V = os.path.expanduser("~/x")\n', "tests/x.py"),
        ('shutil.copy("/var/lib/x", "y")\n', "tests/x.py"),
        ("V = Path(f'" + FAR + "/{name}')\n", "tests/x.py"),
        (f'"""The roots in {SIBLING}/vectors/roots."""\n', "tests/x.py"),
        (f'HELP = "see {FAR}/notes"\n', "benchmarks/x.py"),
    ],
)
def test_checker_catches_a_path_outside_the_repository(source: str, filename: str) -> None:
    offences = check_source(source, filename)
    assert offences
    assert all(o.startswith(f"{filename}:1: ") for o in offences)


def test_checker_follows_names_and_reports_where_the_path_leaves() -> None:
    source = (
        "from pathlib import Path\n"
        "\n"
        "ROOT = Path(__file__).resolve().parents[1]\n"
        "DATA = ROOT / 'data'\n"
        f"OTHER = ROOT.parent / '{SIBLING}' / 'vectors'\n"
    )
    assert check_source(source, "tests/conftest.py") == [
        "tests/conftest.py:5: ROOT.parent climbs above the repository root"
    ]


def test_checker_follows_names_imported_from_a_scanned_module() -> None:
    offences = check_sources(
        {
            "tests/conftest.py": "ROOT = Path(__file__).resolve().parents[1]\n",
            "tests/vectors_path.py": "from .conftest import ROOT\nVECTORS = ROOT / 'tests'\n",
            "tests/a/test_a.py": (
                "from tests.vectors_path import VECTORS\n"
                "OK = VECTORS.parent\n"
                "BAD = VECTORS.parents[2]\n"
            ),
        }
    )
    assert offences == ["tests/a/test_a.py:3: VECTORS.parents[2] climbs above the repository root"]


def test_checker_reports_the_line_of_a_mention_inside_a_docstring() -> None:
    source = f'"""The format tests.\n\nThe roots in {SIBLING}/vectors/roots are real.\n"""\n'
    assert check_source(source, "tests/x.py") == [
        f"tests/x.py:3: names {SIBLING}/vectors/roots, outside the repository"
    ]


@pytest.mark.parametrize(
    "source",
    [
        "REPO = Path(__file__).resolve().parents[3]\n",
        "HERE = Path(__file__).parent\nV = HERE.parent.parent / 'vectors' / 'tpm'\n",
        "V = os.path.join(os.path.dirname(__file__), '..', '..', '..')\n",
        "P = Path('/proc') / str(pid) / 'stat'\n",
        "stats = Path('/proc').glob('[0-9]*/stat')\n",
        "text = open(f'/proc/{pid}/status').read()\n",
        "subprocess.run(['/usr/bin/env', 'true'], env={'PATH': '/usr/bin'})\n",
        "V = tmp_path / '..' / 'x'\n",
        "V = Path('tests/vectors')\n",
        "path.write_text('/acme/new-order')\n",
        "r = validate('x.test', '../etc', KEYAUTH)\n",
        "URL = '/acme/new-order'\nROOTS = '/root/ca.pem'\n",
        "HEALTH = base_url + '/health'\nrate = n / 2\n",
        "def f(ROOT):\n    return ROOT.parent.parent.parent.parent\n"
        "ROOT = Path(__file__).resolve().parents[3]\n",
        "X = Path(__file__).parent\nX = X.parent\n",
        "'''Shared by the workers; /workers/x and ~/notes in prose.'''\n",
    ],
)
def test_checker_allows_paths_inside_the_repository_and_system_paths(source: str) -> None:
    assert check_source(source, TPM_TEST) == []
