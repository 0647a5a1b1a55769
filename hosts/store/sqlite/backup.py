"""Copying the database while the CA runs, and checking a copy before it is restored.

:func:`snapshot` uses SQLite's online backup API in a single step: it reads one
consistent state of the database (a read transaction, which in WAL mode never holds up
the server's writers) and writes it to a new file in rollback-journal mode, so the copy
is one self-contained file. :func:`inspect_database` opens such a copy read-only and reports what
a restore needs to know before it trusts it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import attrs

from engine.errors import ConfigurationError

from .schema import SCHEMA_VERSION

#: The tables :func:`inspect_database` counts, and the name it reports each under.
_COUNTED = {
    "certificates": "certificates",
    "devices": "devices",
    "accounts": "accounts",
    "scep_transactions": "scep_transactions",
    "scep_challenges": "scep_challenges",
}


@attrs.frozen
class DatabaseReport:
    """What :func:`inspect_database` found in a database file."""

    schema_version: int
    #: What ``PRAGMA integrity_check`` answered: ``("ok",)`` for a sound file.
    integrity: tuple[str, ...]
    #: Rows of the certificates, devices, accounts, scep_transactions and scep_challenges
    #: tables (0 for a missing table).
    counts: dict[str, int]

    @property
    def sound(self) -> bool:
        return self.integrity == ("ok",)

    @property
    def openable(self) -> bool:
        """True if this devid can open the database (upgrading it if it is older)."""
        return 1 <= self.schema_version <= SCHEMA_VERSION


def snapshot(db_path: Path, out_path: Path) -> int:
    """Copy the database at *db_path* to the new file *out_path* (mode 0600), consistent
    as of one instant, while other connections go on writing; the copy's schema version.

    Raises ConfigurationError if the database is missing or unreadable, or *out_path*
    exists.
    """
    if not db_path.is_file():
        raise ConfigurationError(f"the database {db_path} does not exist")
    try:
        fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigurationError(f"{out_path} exists") from None
    os.close(fd)
    try:
        source = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=rw", uri=True, timeout=30)
        try:
            target = sqlite3.connect(out_path, isolation_level=None)
            try:
                source.backup(target)  # pages=-1: the whole database in one step
                target.execute("PRAGMA journal_mode=DELETE")
                version = int(target.execute("PRAGMA user_version").fetchone()[0])
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        out_path.unlink(missing_ok=True)
        raise ConfigurationError(f"cannot copy the database {db_path}: {exc}") from None
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    os.chmod(out_path, 0o600)
    return version


def inspect_database(db_path: Path) -> DatabaseReport:
    """Open the database file *db_path* read-only and check it: its integrity, its schema
    version and how many certificates, devices, accounts, SCEP transactions and SCEP
    one-time challenges it holds. Raises
    ConfigurationError if it cannot be opened as an SQLite database at all."""
    if not db_path.is_file():
        raise ConfigurationError(f"the database {db_path} does not exist")
    try:
        db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ConfigurationError(f"cannot open the database {db_path}: {exc}") from None
    try:
        integrity = tuple(str(row[0]) for row in db.execute("PRAGMA integrity_check"))
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {
            str(row[0]) for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        counts = {
            label: int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            if table in tables
            else 0
            for table, label in _COUNTED.items()
        }
    except sqlite3.Error as exc:
        raise ConfigurationError(f"{db_path} is not a readable SQLite database: {exc}") from None
    finally:
        db.close()
    return DatabaseReport(schema_version=version, integrity=integrity, counts=counts)
