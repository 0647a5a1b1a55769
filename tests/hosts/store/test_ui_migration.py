"""A database of schema 5 (SCEP's tables the last added) is upgraded to 6 when opened:
the operator accounts' table is added, empty, and every record it held is still there;
the result is exactly a new database's schema."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hosts.store import AuditQuery, Operator, open_sqlite
from hosts.store.sqlite import SCHEMA_VERSION

from .test_migrations import (
    NOW,
    SCHEMA_4,
    check_records,
    ek,
    fresh_schema,
    past_database,
    schema_of,
    user_version,
)

# Schema 5 as devid wrote it: schema 4 and SCEP's two tables.
SCHEMA_5 = (
    SCHEMA_4
    + """
CREATE TABLE scep_transactions (
    provisioner TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    message_type INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'issued', 'rejected')),
    subject TEXT NOT NULL,
    csr_der BLOB NOT NULL,
    signer_der BLOB NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    serial TEXT,
    decided_by TEXT,
    reason TEXT,
    method TEXT,
    PRIMARY KEY (provisioner, transaction_id)
);
CREATE INDEX scep_transactions_by_status ON scep_transactions(status, created_at);
CREATE TABLE scep_challenges (
    provisioner TEXT NOT NULL,
    challenge_sha256 TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    subject TEXT,
    used_at REAL,
    used_by TEXT,
    PRIMARY KEY (provisioner, challenge_sha256)
) WITHOUT ROWID;
"""
)


def test_a_schema_5_database_gains_the_operators_and_keeps_every_record(tmp_path: Path) -> None:
    path = tmp_path / "devid.sqlite"
    past_database(path, 5, SCHEMA_5)
    stores = open_sqlite(path)
    try:
        check_records(stores, later_tables=True)
        events, total = stores.audit.find(AuditQuery())
        assert [(e.action, e.target) for e in events] == [("device.added", ek("attested"))]
        assert total == 1
        assert stores.operators.list_operators() == []
        operator = Operator(
            username="alice",
            role="admin",
            password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
            totp_secret="JBSWY3DPEHPK3PXP",
            created_at=NOW,
            updated_at=NOW + timedelta(seconds=1),
        )
        assert stores.operators.add_operator(operator)
    finally:
        stores.close()
    assert user_version(path) == SCHEMA_VERSION == 6
    assert schema_of(path) == fresh_schema(tmp_path)
    again = open_sqlite(path)
    try:
        assert again.operators.list_operators() == [operator]
        assert again.operators.use_totp_step("alice", 10)
        assert not again.operators.use_totp_step("alice", 10)
    finally:
        again.close()
