"""The backend stays behind hosts.store: nothing else imports sqlite3 or the SQLite
classes, so that a second backend needs no change elsewhere."""

from __future__ import annotations

from pathlib import Path

from tests.imports import absolute_imports

REPO = Path(__file__).resolve().parents[3]
BACKEND = REPO / "hosts" / "store" / "sqlite"


def imported(path: Path) -> set[str]:
    return set(absolute_imports(path))


def test_only_the_sqlite_backend_imports_sqlite3() -> None:
    offenders = []
    for package in ("engine", "plugins", "hosts", "agent"):
        for path in sorted((REPO / package).rglob("*.py")):
            if BACKEND in path.parents:
                continue
            names = imported(path)
            if "sqlite3" in names or any(n.startswith("hosts.store.sqlite") for n in names):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
