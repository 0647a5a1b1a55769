"""Bringing a database to the current schema when it is opened.

A new (empty) database gets the current schema at once. One written by an older devid
is upgraded a version at a time, each step in a transaction of its own that also
records the version reached; a process that opens the database meanwhile waits for
the step, then finds it done. A database written by a newer devid is refused.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from engine.errors import ConfigurationError

from ..records import certificate_device
from .database import Database
from .schema import OPERATORS, SCEP, SCHEMA_VERSION, STATEMENTS

# --- 1 -> 2 --------------------------------------------------------------------------

# Schema 1 as its last release wrote it. Its tables were created with IF NOT EXISTS at
# every start, so a database from an early release lacks the later ones: they are
# completed here before the step to 2 (which is what every start of the last release
# did, acme_nonces included).
_SCHEMA_1 = (
    """CREATE TABLE IF NOT EXISTS devices (
    ek_urn TEXT PRIMARY KEY,
    ek_certificate BLOB,
    serial TEXT,
    name TEXT,
    owner TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL DEFAULT 'active',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS devices_by_owner ON devices(owner)",
    """CREATE TABLE IF NOT EXISTS attestation_sessions (
    id TEXT PRIMARY KEY,
    ek_urn TEXT NOT NULL,
    session TEXT NOT NULL,
    expires_at REAL NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS attestation_sessions_by_expiry ON attestation_sessions(expires_at)",
    # ACME nonces live in memory (hosts/service/acme/nonces.py) since late in schema 1.
    "DROP TABLE IF EXISTS acme_nonces",
    """CREATE TABLE IF NOT EXISTS acme_accounts (
    id TEXT PRIMARY KEY,
    provisioner TEXT NOT NULL,
    thumbprint TEXT NOT NULL,
    record TEXT NOT NULL,
    revision INTEGER NOT NULL,
    UNIQUE (provisioner, thumbprint)
)""",
    """CREATE TABLE IF NOT EXISTS acme_orders (
    id TEXT PRIMARY KEY,
    provisioner TEXT NOT NULL,
    account_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    record TEXT NOT NULL,
    revision INTEGER NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS acme_orders_by_account ON acme_orders(account_id, created_at)",
    """CREATE TABLE IF NOT EXISTS acme_authorizations (
    id TEXT PRIMARY KEY,
    provisioner TEXT NOT NULL,
    account_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    record TEXT NOT NULL,
    revision INTEGER NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS acme_challenges (
    id TEXT PRIMARY KEY,
    provisioner TEXT NOT NULL,
    authorization_id TEXT NOT NULL,
    status TEXT NOT NULL,
    record TEXT NOT NULL,
    revision INTEGER NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS acme_challenges_by_status ON acme_challenges(status)",
    """CREATE TABLE IF NOT EXISTS acme_certificates (
    serial TEXT PRIMARY KEY REFERENCES certificates(serial),
    provisioner TEXT NOT NULL,
    account_id TEXT NOT NULL,
    order_id TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
)""",
)


def _to_2(db: sqlite3.Connection) -> None:
    """certificates.device and its index, filled for the certificates stored so far."""
    for statement in _SCHEMA_1:
        db.execute(statement)
    db.execute("ALTER TABLE certificates ADD COLUMN device TEXT")
    _fill_certificate_devices(db)
    db.execute("CREATE INDEX certificates_by_device ON certificates(device)")


def _fill_certificate_devices(db: sqlite3.Connection) -> None:
    last = 0
    while True:  # a page at a time: the table may be large
        rows = db.execute(
            "SELECT rowid, evidence, der FROM certificates WHERE rowid > ?"
            " ORDER BY rowid LIMIT 1000",
            (last,),
        ).fetchall()
        if not rows:
            return
        for rowid, evidence, der in rows:
            last = rowid
            try:
                facts = json.loads(str(evidence))
            except ValueError:
                facts = {}
            device = certificate_device(facts if isinstance(facts, dict) else {}, bytes(der))
            if device is not None:
                db.execute("UPDATE certificates SET device = ? WHERE rowid = ?", (device, rowid))


# --- 2 -> 3 --------------------------------------------------------------------------


# The audit log as schema 3 created it.
_AUDIT_EVENTS_3 = (
    """CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    result TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
)""",
    "CREATE INDEX audit_events_by_time ON audit_events(time)",
    "CREATE INDEX audit_events_by_actor ON audit_events(actor, time)",
    "CREATE INDEX audit_events_by_action ON audit_events(action, time)",
    "CREATE INDEX audit_events_by_target ON audit_events(target, time)",
)


def _to_3(db: sqlite3.Connection) -> None:
    """The audit log: table audit_events and its indexes, empty."""
    for statement in _AUDIT_EVENTS_3:
        db.execute(statement)


# --- 3 -> 4 --------------------------------------------------------------------------


def _to_4(db: sqlite3.Connection) -> None:
    """Fewer pages written per issued certificate: used_tokens without its rowid (its
    rows copied), the device index over certificates that have one, the audit log's
    indexes by actor and by action dropped, and the columns that keep a certificate's
    issuance event in its row (empty for the certificates stored so far, whose events
    stay in audit_events), with the index by time."""
    db.execute("ALTER TABLE used_tokens RENAME TO used_tokens_3")
    db.execute("DROP INDEX used_tokens_by_expiry")
    db.execute(
        """CREATE TABLE used_tokens (
    provisioner TEXT NOT NULL,
    token_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (provisioner, token_id)
) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX used_tokens_by_expiry ON used_tokens(expires_at)")
    db.execute(
        "INSERT INTO used_tokens (provisioner, token_id, expires_at)"
        " SELECT provisioner, token_id, expires_at FROM used_tokens_3"
    )
    db.execute("DROP TABLE used_tokens_3")
    db.execute("DROP INDEX certificates_by_device")
    db.execute(
        "CREATE INDEX certificates_by_device ON certificates(device) WHERE device IS NOT NULL"
    )
    db.execute("DROP INDEX audit_events_by_actor")
    db.execute("DROP INDEX audit_events_by_action")
    for column in (
        "audit_id INTEGER",
        "audit_actor TEXT",
        "audit_action TEXT",
        "audit_details TEXT",
    ):
        db.execute(f"ALTER TABLE certificates ADD COLUMN {column}")
    db.execute("CREATE INDEX certificates_by_time ON certificates(created_at)")


# --- 4 -> 5 --------------------------------------------------------------------------


def _to_5(db: sqlite3.Connection) -> None:
    """SCEP: its transactions and one-time challenges, both tables empty."""
    for statement in SCEP:
        db.execute(statement)


# --- 5 -> 6 --------------------------------------------------------------------------


def _to_6(db: sqlite3.Connection) -> None:
    """The operator UI's local accounts: table operators, empty."""
    for statement in OPERATORS:
        db.execute(statement)


#: The step to each version from the one before it.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    2: _to_2,
    3: _to_3,
    4: _to_4,
    5: _to_5,
    6: _to_6,
}

# Every version from the first to the current one has its step.
assert sorted(MIGRATIONS) == list(range(2, SCHEMA_VERSION + 1))


# --- running them ----------------------------------------------------------------------


def upgrade(database: Database) -> None:
    """Bring *database* to SCHEMA_VERSION: create it if it is new, migrate it if it is
    older; ConfigurationError if it is newer than this devid, or an upgrade fails."""
    try:
        version = _version(database.connection)
    except sqlite3.DatabaseError as exc:
        raise ConfigurationError(f"cannot open the database {database.path}: {exc}") from None
    _refuse_newer(database, version)
    while version < SCHEMA_VERSION:
        try:
            version = _step(database)
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(
                f"cannot upgrade the database {database.path}: {exc}"
            ) from None


def _step(database: Database) -> int:
    """One transaction: the schema of a new database, or the next migration; the
    version the database is at afterwards."""
    db = database.connection
    with database.writing():
        db.execute("BEGIN IMMEDIATE")
        try:
            version = _version(db)  # another process may have upgraded it meanwhile
            _refuse_newer(database, version)
            if version == 0 and not _has_tables(db):
                for statement in STATEMENTS:
                    db.execute(statement)
                version = SCHEMA_VERSION
            elif version < SCHEMA_VERSION:
                # Version 0 with tables: written before the version was recorded,
                # which schema 1 already was.
                version = max(version, 1) + 1
                MIGRATIONS[version](db)
            db.execute(f"PRAGMA user_version={version}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    return version


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _has_tables(db: sqlite3.Connection) -> bool:
    row = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' LIMIT 1"
    ).fetchone()
    return row is not None


def _refuse_newer(database: Database, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"{database.path} was written by a newer devid (schema {version}); this devid"
            f" reads schema {SCHEMA_VERSION} and older"
        )
