"""The embedded default backend: one SQLite database in WAL mode.

:class:`Database` is the connection and how it is shared and committed; the schema and
its upgrades are in :mod:`.schema` and :mod:`.migrations`; each kind of data has a class
of its own over the one database. The kinds call each other only where one transaction
spans two of them: a certificate with its used token, an ACME write with its certificate.
"""

from __future__ import annotations

from pathlib import Path

from ..bundle import Stores
from .accounts import SQLiteAccounts
from .acme import SQLiteACME
from .audit import SQLiteAudit
from .backup import DatabaseReport, inspect_database, snapshot
from .certificates import SQLiteCertificates
from .database import WRITER_LOCK_SUFFIX, Database
from .devices import SQLiteDevices
from .migrations import upgrade
from .operators import SQLiteOperators
from .scep import SQLiteSCEP
from .schema import SCHEMA_VERSION
from .sessions import SQLiteSessions
from .tokens import SQLiteTokens

__all__ = [
    "SCHEMA_VERSION",
    "WRITER_LOCK_SUFFIX",
    "Database",
    "DatabaseReport",
    "SQLiteACME",
    "SQLiteAccounts",
    "SQLiteAudit",
    "SQLiteCertificates",
    "SQLiteDevices",
    "SQLiteOperators",
    "SQLiteSCEP",
    "SQLiteSessions",
    "SQLiteTokens",
    "inspect_database",
    "open_sqlite",
    "snapshot",
]


def open_sqlite(path: Path, *, synchronous: str = "full") -> Stores:
    """Open (creating or upgrading it first) the SQLite database at *path*, and the
    stores of every kind over it.

    *synchronous* is ``"full"`` (the default: every commit survives power loss) or
    ``"normal"`` (commits survive the process dying, not the machine). Raises
    ConfigurationError if the database cannot be opened or upgraded, or was written
    by a newer devid. Close the result when done with it.
    """
    database = Database(path, synchronous=synchronous)
    try:
        upgrade(database)
    except BaseException:
        database.close()
        raise
    tokens = SQLiteTokens(database)
    audit = SQLiteAudit(database)
    certificates = SQLiteCertificates(database, tokens, audit)
    return Stores(
        certificates=certificates,
        tokens=tokens,
        devices=SQLiteDevices(database),
        sessions=SQLiteSessions(database),
        acme=SQLiteACME(database, certificates),
        accounts=SQLiteAccounts(database),
        audit=audit,
        scep=SQLiteSCEP(database, certificates),
        operators=SQLiteOperators(database),
        closer=database.close,
    )
