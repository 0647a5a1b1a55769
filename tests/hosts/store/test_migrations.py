"""A database written by an older devid is upgraded when it is opened, and ends up
exactly as a new one: the same tables, columns and indexes (the DDL in sqlite_master),
with every record it held still there.

Each past schema is written here as it was, DDL and rows alike: schema 1 as its first
and its last release left it (its tables were added with CREATE TABLE IF NOT EXISTS as
devid grew, and ACME nonces were a table for a while), and schema 2. The step to 2 adds
``certificates.device`` and fills it from each certificate's evidence or its
PermanentIdentifier, so that disabling a device revokes certificates issued before the
upgrade too. The step to 3 adds the audit log (``audit_events``), empty. The step to 4
rebuilds ``used_tokens`` without its rowid (its rows kept), indexes only the certificates
that have a device, and drops the audit log's indexes by actor and by action. The step
to 5 adds SCEP's tables (``scep_transactions``, ``scep_challenges``), empty. A database
from a newer devid is refused; a failed upgrade leaves the database as it was.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.acme.records import AccountStatus, ChallengeStatus, Identifier, OrderStatus
from engine.attestation.akcert import permanent_identifier_name
from engine.errors import ConfigurationError
from engine.inventory import DeviceFilter, ek_urn_from_digest, permanent_identifier_value
from hosts.store import (
    PENDING,
    AuditEvent,
    AuditQuery,
    SCEPChallenge,
    SCEPTransaction,
    Stores,
    open_sqlite,
)
from hosts.store.sqlite import SCHEMA_VERSION, migrations

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# --- the past schemas, as devid wrote them ----------------------------------------------

# Schema 1 as first released: three tables.
SCHEMA_1_FIRST = """
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    sans TEXT NOT NULL,
    provisioner_type TEXT NOT NULL,
    provisioner_name TEXT NOT NULL,
    not_before REAL NOT NULL,
    not_after REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    der BLOB NOT NULL,
    evidence TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS certificates_by_provisioner ON certificates(provisioner_name);
CREATE TABLE IF NOT EXISTS used_tokens (
    provisioner TEXT NOT NULL,
    token_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (provisioner, token_id)
);
CREATE INDEX IF NOT EXISTS used_tokens_by_expiry ON used_tokens(expires_at);
CREATE TABLE IF NOT EXISTS revocations (
    serial TEXT PRIMARY KEY REFERENCES certificates(serial),
    issuer TEXT NOT NULL,
    revoked_at REAL NOT NULL,
    reason_code INTEGER NOT NULL,
    reason TEXT NOT NULL,
    revoked_by TEXT NOT NULL
);
"""

# What schema 1 gained while it lasted: the inventory, attestation, ACME and accounts.
SCHEMA_1_LATER_TABLES = """
CREATE TABLE IF NOT EXISTS devices (
    ek_urn TEXT PRIMARY KEY,
    ek_certificate BLOB,
    serial TEXT,
    name TEXT,
    owner TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL DEFAULT 'active',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS devices_by_owner ON devices(owner);
CREATE TABLE IF NOT EXISTS attestation_sessions (
    id TEXT PRIMARY KEY,
    ek_urn TEXT NOT NULL,
    session TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS attestation_sessions_by_expiry ON attestation_sessions(expires_at);
CREATE TABLE IF NOT EXISTS acme_accounts (
    id TEXT PRIMARY KEY,
    provisioner TEXT NOT NULL,
    thumbprint TEXT NOT NULL,
    record TEXT NOT NULL,
    revision INTEGER NOT NULL,
    UNIQUE (provisioner, thumbprint)
);
CREATE TABLE IF NOT EXISTS acme_orders (
    id TEXT PRIMARY KEY,
    provisioner TEXT NOT NULL,
    account_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    record TEXT NOT NULL,
    revision INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS acme_orders_by_account ON acme_orders(account_id, created_at);
CREATE TABLE IF NOT EXISTS acme_authorizations (
    id TEXT PRIMARY KEY,
    provisioner TEXT NOT NULL,
    account_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    record TEXT NOT NULL,
    revision INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS acme_challenges (
    id TEXT PRIMARY KEY,
    provisioner TEXT NOT NULL,
    authorization_id TEXT NOT NULL,
    status TEXT NOT NULL,
    record TEXT NOT NULL,
    revision INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS acme_challenges_by_status ON acme_challenges(status);
CREATE TABLE IF NOT EXISTS acme_certificates (
    serial TEXT PRIMARY KEY REFERENCES certificates(serial),
    provisioner TEXT NOT NULL,
    account_id TEXT NOT NULL,
    order_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""

# ACME nonces, kept in the database until they moved to memory (late in schema 1).
ACME_NONCES = """
CREATE TABLE IF NOT EXISTS acme_nonces (
    value TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS acme_nonces_by_expiry ON acme_nonces(expires_at);
"""

SCHEMA_1_WITH_NONCES = SCHEMA_1_FIRST + ACME_NONCES + SCHEMA_1_LATER_TABLES
SCHEMA_1_LAST = SCHEMA_1_FIRST + SCHEMA_1_LATER_TABLES

# Schema 2 as its first release created it: schema 1's last tables with
# certificates.device, then the index the upgrade step adds.
SCHEMA_2 = (
    SCHEMA_1_FIRST.replace(
        "    created_at REAL NOT NULL\n);", "    created_at REAL NOT NULL,\n    device TEXT\n);", 1
    )
    + SCHEMA_1_LATER_TABLES
    + "CREATE INDEX IF NOT EXISTS certificates_by_device ON certificates(device);\n"
)

# Schema 3: schema 2 and the audit log.
SCHEMA_3 = (
    SCHEMA_2
    + """
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    result TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_by_time ON audit_events(time);
CREATE INDEX audit_events_by_actor ON audit_events(actor, time);
CREATE INDEX audit_events_by_action ON audit_events(action, time);
CREATE INDEX audit_events_by_target ON audit_events(target, time);
"""
)

# Schema 4 as a new database got it.
SCHEMA_4 = """
CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    sans TEXT NOT NULL,
    provisioner_type TEXT NOT NULL,
    provisioner_name TEXT NOT NULL,
    not_before REAL NOT NULL,
    not_after REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    der BLOB NOT NULL,
    evidence TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    device TEXT,
    audit_id INTEGER,
    audit_actor TEXT,
    audit_action TEXT,
    audit_details TEXT
);
CREATE INDEX certificates_by_provisioner ON certificates(provisioner_name);
CREATE INDEX certificates_by_time ON certificates(created_at);
CREATE INDEX certificates_by_device ON certificates(device) WHERE device IS NOT NULL;
CREATE TABLE used_tokens (
    provisioner TEXT NOT NULL,
    token_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (provisioner, token_id)
) WITHOUT ROWID;
CREATE INDEX used_tokens_by_expiry ON used_tokens(expires_at);
CREATE TABLE devices (
    ek_urn TEXT PRIMARY KEY,
    ek_certificate BLOB,
    serial TEXT,
    name TEXT,
    owner TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL DEFAULT 'active',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX devices_by_owner ON devices(owner);
CREATE TABLE attestation_sessions (
    id TEXT PRIMARY KEY,
    ek_urn TEXT NOT NULL,
    session TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX attestation_sessions_by_expiry ON attestation_sessions(expires_at);
CREATE TABLE revocations (
    serial TEXT PRIMARY KEY REFERENCES certificates(serial),
    issuer TEXT NOT NULL,
    revoked_at REAL NOT NULL,
    reason_code INTEGER NOT NULL,
    reason TEXT NOT NULL,
    revoked_by TEXT NOT NULL
);
CREATE TABLE acme_accounts (
    id TEXT PRIMARY KEY,
    provisioner TEXT NOT NULL,
    thumbprint TEXT NOT NULL,
    record TEXT NOT NULL,
    revision INTEGER NOT NULL,
    UNIQUE (provisioner, thumbprint)
);
CREATE TABLE acme_orders (
    id TEXT PRIMARY KEY,
    provisioner TEXT NOT NULL,
    account_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    record TEXT NOT NULL,
    revision INTEGER NOT NULL
);
CREATE INDEX acme_orders_by_account ON acme_orders(account_id, created_at);
CREATE TABLE acme_authorizations (
    id TEXT PRIMARY KEY,
    provisioner TEXT NOT NULL,
    account_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    record TEXT NOT NULL,
    revision INTEGER NOT NULL
);
CREATE TABLE acme_challenges (
    id TEXT PRIMARY KEY,
    provisioner TEXT NOT NULL,
    authorization_id TEXT NOT NULL,
    status TEXT NOT NULL,
    record TEXT NOT NULL,
    revision INTEGER NOT NULL
);
CREATE INDEX acme_challenges_by_status ON acme_challenges(status);
CREATE TABLE acme_certificates (
    serial TEXT PRIMARY KEY REFERENCES certificates(serial),
    provisioner TEXT NOT NULL,
    account_id TEXT NOT NULL,
    order_id TEXT NOT NULL
);
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    result TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_by_time ON audit_events(time);
CREATE INDEX audit_events_by_target ON audit_events(target, time);
"""

PAST = {
    "1-first": (1, SCHEMA_1_FIRST),
    "1-with-acme-nonces": (1, SCHEMA_1_WITH_NONCES),
    "1-last": (1, SCHEMA_1_LAST),
    "2": (2, SCHEMA_2),
    "3": (3, SCHEMA_3),
    "4": (4, SCHEMA_4),
}


# --- the rows written into them ---------------------------------------------------------


def digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def ek(label: str) -> str:
    return ek_urn_from_digest(digest(label))


def certificate(serial: int, *, device_label: str | None = None) -> bytes:
    """A DER certificate; with *device_label*, it binds that device's EK the way
    device-attest-01 does (a PermanentIdentifier with devid's EK-digest assigner)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, f"cert {serial}")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - timedelta(minutes=1))
        .not_valid_after(NOW + timedelta(days=1))
    )
    if device_label is not None:
        value = permanent_identifier_value(digest(device_label))
        builder = builder.add_extension(
            x509.SubjectAlternativeName([permanent_identifier_name(value)]), critical=False
        )
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.DER)


# serial, issuer, provisioner, evidence, the device the upgrade finds (None: none)
CERTIFICATES = [
    ("a1", "account", "account:corp-wifi", {"device": ek("account-device")}, "account-device"),
    ("a2", "attestation", "tpm", {"ek": ek("ak-device")}, "ak-device"),
    ("a3", "agent", "devices", {"method": "acme"}, "attested"),
    ("a4", "tls", "admin", {"method": "jwk-token"}, None),
]

ACME_ACCOUNT = {
    "jwk": {"kty": "EC", "crv": "P-256", "x": "eA", "y": "eQ"},
    "status": "valid",
    "created_at": NOW.timestamp(),
    "contact": ["mailto:ops@example.com"],
    "terms_agreed": True,
    "eab_kid": None,
}
ACME_ORDER = {
    "status": "valid",
    "identifiers": [{"type": "dns", "value": "a3.example.com"}],
    "authorizations": ["authz-1"],
    "created_at": NOW.timestamp(),
    "expires_at": (NOW + timedelta(days=1)).timestamp(),
    "not_before": None,
    "not_after": None,
    "certificate": "a3",
    "error": None,
    "replaces": None,
}
ACME_AUTHORIZATION = {
    "identifier": {"type": "dns", "value": "a3.example.com"},
    "status": "valid",
    "expires_at": (NOW + timedelta(days=1)).timestamp(),
    "challenges": ["chall-1"],
    "wildcard": False,
    "attested_key": None,
    "attestation": None,
}
ACME_CHALLENGE = {
    "type": "http-01",
    "token": "tok",
    "status": "processing",
    "validated_at": None,
    "error": None,
    "started_at": NOW.timestamp(),
}
DEVICE_ACCOUNT = {
    "id": "0123456789abcdef0123456789abcdef",
    "name": "corp-wifi",
    "type": "wifi",
    "description": None,
    "commonName": "{device.ek}",
    "sans": ["{device.ek}"],
    "eku": ["clientAuth"],
    "keyType": "P-256",
    "validity": "1d",
    "tpmKey": True,
    "pkcs12": False,
    "devices": [],
    "tags": ["lab"],
    "status": "active",
    "provisioner": "account:corp-wifi",
    "createdAt": NOW.isoformat(),
    "updatedAt": NOW.isoformat(),
}


def tables(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def past_database(path: Path, version: int, ddl: str) -> None:
    """A database as devid wrote it at *version* with *ddl*, with a row in every table."""
    t = NOW.timestamp()
    with sqlite3.connect(path) as db:
        db.executescript(ddl)
        db.execute(f"PRAGMA user_version={version}")
        has_device = version >= 2
        for serial, issuer, provisioner, evidence, device in CERTIFICATES:
            der = certificate(int(serial, 16), device_label=device if serial == "a3" else None)
            columns = (
                "serial, issuer, subject, sans, provisioner_type, provisioner_name,"
                " not_before, not_after, status, der, evidence, created_at"
            )
            values: list[object] = [
                serial,
                issuer,
                f"CN={serial}",
                json.dumps([f"{serial}.example.com"]),
                "X",
                provisioner,
                t - 60,
                t + 86400,
                "revoked" if serial == "a4" else "active",
                der,
                json.dumps(evidence),
                t,
            ]
            if has_device:
                columns += ", device"
                values.append(None if device is None else ek(device))
            marks = ", ".join("?" for _ in values)
            db.execute(f"INSERT INTO certificates ({columns}) VALUES ({marks})", values)
        db.execute("INSERT INTO used_tokens VALUES ('admin', 'jti-1', ?)", (t + 300,))
        db.execute(
            "INSERT INTO revocations VALUES ('a4', 'tls', ?, 4, 'superseded', 'admin')", (t,)
        )
        if "acme_nonces" in tables(db):
            db.execute("INSERT INTO acme_nonces VALUES ('nonce', ?)", (t + 60,))
        if "audit_events" in tables(db):
            db.execute(
                "INSERT INTO audit_events (time, actor, action, target, result, details)"
                " VALUES (?, 'cli:alice', 'device.added', ?, 'ok', '{\"name\": \"laptop-1\"}')",
                (t, ek("attested")),
            )
        if "devices" not in tables(db):
            return
        db.execute(
            "INSERT INTO devices VALUES (?, NULL, 'SN-1', 'laptop-1', 'alice', '[\"lab\"]',"
            " 'active', ?, ?)",
            (ek("attested"), t, t),
        )
        db.execute(
            "INSERT INTO attestation_sessions VALUES ('session-1', ?, '{\"nonce\": \"n\"}', ?)",
            (ek("attested"), t + 300),
        )
        db.execute(
            "INSERT INTO acme_accounts VALUES ('acct-1', 'acme', 'thumb', ?, 3)",
            (json.dumps(ACME_ACCOUNT),),
        )
        db.execute(
            "INSERT INTO acme_orders VALUES ('order-1', 'acme', 'acct-1', ?, ?, 2)",
            (t, json.dumps(ACME_ORDER)),
        )
        db.execute(
            "INSERT INTO acme_authorizations VALUES ('authz-1', 'acme', 'acct-1', 'order-1', ?, 1)",
            (json.dumps(ACME_AUTHORIZATION),),
        )
        db.execute(
            "INSERT INTO acme_challenges VALUES ('chall-1', 'acme', 'authz-1', 'processing', ?, 5)",
            (json.dumps(ACME_CHALLENGE),),
        )
        db.execute("INSERT INTO acme_certificates VALUES ('a3', 'acme', 'acct-1', 'order-1')")
        db.execute(
            "INSERT INTO accounts VALUES (?, 'corp-wifi', ?, ?, ?)",
            (DEVICE_ACCOUNT["id"], json.dumps(DEVICE_ACCOUNT), t, t),
        )
    db.close()


# --- what is compared -------------------------------------------------------------------


def schema_of(path: Path) -> dict[tuple[str, str], str | None]:
    """Every table and index, with its DDL as sqlite_master keeps it, whitespace aside
    (``ALTER TABLE ... ADD COLUMN`` appends ``, device TEXT`` to the stored text)."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    db.close()
    return {(kind, name): None if sql is None else normalized(sql) for kind, name, sql in rows}


def normalized(sql: str) -> str:
    return re.sub(r"\s*([(),])\s*", r"\1", re.sub(r"\s+", " ", sql)).strip()


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
    db.close()
    return version


def fresh_schema(tmp_path: Path) -> dict[tuple[str, str], str | None]:
    path = tmp_path / "fresh.sqlite"
    open_sqlite(path).close()
    return schema_of(path)


def check_records(stores: Stores, *, later_tables: bool) -> None:
    """Every row past_database wrote, read back through the stores."""
    certificates = stores.certificates
    assert [r.serial for r in certificates.list_certificates()] == ["a1", "a2", "a3", "a4"]
    for serial, issuer, provisioner, evidence, device in CERTIFICATES:
        record = certificates.get_certificate(serial)
        assert record is not None
        assert (record.issuer, record.provisioner_name, record.evidence) == (
            issuer,
            provisioner,
            evidence,
        )
        assert record.sans == (f"{serial}.example.com",)
        assert record.not_after == NOW + timedelta(days=1)
        assert record.device == (None if device is None else ek(device))
        assert x509.load_der_x509_certificate(record.der).serial_number == int(serial, 16)
    assert [r.serial for r in certificates.certificates_of_device(ek("attested"), NOW)] == ["a3"]
    assert [(e.serial, e.reason_code) for e in certificates.revoked_entries("tls", NOW)] == [
        (0xA4, 4)
    ]
    assert stores.tokens.count_used_tokens() == 1
    assert not stores.tokens.use_token("admin", "jti-1", NOW + timedelta(minutes=5), NOW)
    check_scep(stores)
    if not later_tables:
        # The tables schema 1 gained later are there, empty and working.
        assert stores.devices.list_devices(DeviceFilter()) == ([], 0)
        assert stores.accounts.list_accounts() == []
        assert stores.acme.acme_processing_challenges() == []
        assert stores.sessions.take_session("session-1") is None
        return
    device = stores.devices.get_device(ek("attested"))
    assert device is not None
    assert (device.serial, device.name, device.owner, device.tags) == (
        "SN-1",
        "laptop-1",
        "alice",
        ("lab",),
    )
    assert device.created_at == NOW
    account = stores.acme.acme_account("acme", "acct-1")
    assert account is not None and account == stores.acme.acme_account_by_thumbprint(
        "acme", "thumb"
    )
    assert (account.status, account.contact, account.revision) == (
        AccountStatus.VALID,
        ("mailto:ops@example.com",),
        3,
    )
    order = stores.acme.acme_order("acme", "order-1")
    assert order is not None
    assert (order.status, order.identifiers, order.certificate_serial, order.revision) == (
        OrderStatus.VALID,
        (Identifier("dns", "a3.example.com"),),
        "a3",
        2,
    )
    assert stores.acme.acme_orders_of("acme", "acct-1") == [order]
    (authorization,) = stores.acme.acme_authorizations("acme", ["authz-1"])
    assert authorization.challenge_ids == ("chall-1",) and authorization.revision == 1
    (challenge,) = stores.acme.acme_processing_challenges()
    assert (challenge.id, challenge.status, challenge.revision) == (
        "chall-1",
        ChallengeStatus.PROCESSING,
        5,
    )
    link = stores.acme.acme_certificate("a3")
    assert link is not None and (link.account_id, link.order_id) == ("acct-1", "order-1")
    wifi = stores.accounts.get_account("corp-wifi")
    assert wifi is not None
    assert (wifi.id, wifi.tags, wifi.created_at) == (DEVICE_ACCOUNT["id"], ("lab",), NOW)
    assert stores.sessions.take_session("session-1") == {"nonce": "n"}


def check_scep(stores: Stores) -> None:
    """SCEP's tables (schema 5) are there, empty, and take records."""
    assert stores.scep.transactions() == [] and stores.scep.challenges(include_used=True) == []
    transaction = SCEPTransaction(
        provisioner="scep",
        transaction_id="t-1",
        request_sha256=hashlib.sha256(b"csr").hexdigest(),
        message_type=19,
        status=PENDING,
        subject="CN=printer",
        csr_der=b"csr",
        signer_der=b"signer",
        created_at=NOW,
        updated_at=NOW,
    )
    assert stores.scep.add_transaction(transaction)
    assert stores.scep.transactions(status=PENDING) == [transaction]
    digest = hashlib.sha256(b"challenge").hexdigest()
    stores.scep.add_challenge(
        SCEPChallenge("scep", digest, NOW, NOW + timedelta(hours=1), created_by="cli:alice")
    )
    assert stores.scep.use_challenge("scep", digest, now=NOW, transaction_id="t-1")


# --- the tests --------------------------------------------------------------------------


@pytest.mark.parametrize("past", PAST, ids=list(PAST))
def test_a_past_database_becomes_a_current_one_with_every_record(tmp_path: Path, past: str) -> None:
    version, ddl = PAST[past]
    path = tmp_path / "devid.sqlite"
    past_database(path, version, ddl)
    stores = open_sqlite(path)
    try:
        check_records(stores, later_tables="devices" in ddl)
        # The audit log is there (empty before schema 3), and takes events.
        earlier = [("device.added", ek("attested"))] if version >= 3 else []
        events, total = stores.audit.find(AuditQuery())
        assert [(e.action, e.target) for e in events] == earlier and total == len(earlier)
        if earlier:
            found, _ = stores.audit.find(AuditQuery(actor="cli:alice", action="device."))
            assert [e.details for e in found] == [{"name": "laptop-1"}]
        stores.audit.append(
            AuditEvent(NOW + timedelta(seconds=1), "system", "database.upgraded", past)
        )
    finally:
        stores.close()
    assert user_version(path) == SCHEMA_VERSION == 6
    assert schema_of(path) == fresh_schema(tmp_path)
    # Opened again, there is nothing left to do and nothing changes.
    before = schema_of(path)
    again = open_sqlite(path)
    try:
        record = again.certificates.get_certificate("a3")
        assert record is not None and record.device == ek("attested")
        events, total = again.audit.find(AuditQuery())
        assert [(e.action, e.target) for e in events] == [("database.upgraded", past), *earlier]
        assert total == 1 + len(earlier)
    finally:
        again.close()
    assert schema_of(path) == before and user_version(path) == SCHEMA_VERSION


def test_a_new_database_has_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    open_sqlite(path).close()
    assert user_version(path) == SCHEMA_VERSION
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(certificates)")}
        indexes = {row[1] for row in db.execute("PRAGMA index_list(certificates)")}
        audit = {row[1] for row in db.execute("PRAGMA table_info(audit_events)")}
        scep = {
            table: [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            for table in ("scep_transactions", "scep_challenges")
        }
        scep_indexes = {row[1] for row in db.execute("PRAGMA index_list(scep_transactions)")}
    db.close()
    assert "device" in columns and "certificates_by_device" in indexes
    assert audit == {"id", "time", "actor", "action", "target", "result", "details"}
    assert scep["scep_transactions"][:2] == ["provisioner", "transaction_id"]
    assert scep["scep_challenges"][:2] == ["provisioner", "challenge_sha256"]
    assert "scep_transactions_by_status" in scep_indexes


def test_a_database_from_a_newer_devid_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.sqlite"
    open_sqlite(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(ConfigurationError, match="newer devid") as refused:
        open_sqlite(path)
    # Both versions are named: the database's and the newest this devid reads.
    assert f"schema {SCHEMA_VERSION + 1}" in str(refused.value)
    assert f"schema {SCHEMA_VERSION} " in str(refused.value)
    assert user_version(path) == SCHEMA_VERSION + 1


def test_a_failed_upgrade_leaves_the_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "devid.sqlite"
    past_database(path, 1, SCHEMA_1_LAST)
    before = schema_of(path)
    real: Callable[[sqlite3.Connection], None] = migrations.MIGRATIONS[2]

    def failing(db: sqlite3.Connection) -> None:
        real(db)  # every change made, then the disk fails before the commit
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setitem(migrations.MIGRATIONS, 2, failing)
    with pytest.raises(ConfigurationError, match=r"cannot upgrade .*disk I/O error"):
        open_sqlite(path)
    assert user_version(path) == 1 and schema_of(path) == before
    monkeypatch.setitem(migrations.MIGRATIONS, 2, real)
    stores = open_sqlite(path)
    try:
        check_records(stores, later_tables=True)
    finally:
        stores.close()


def test_processes_opening_an_old_database_at_once_upgrade_it_once(tmp_path: Path) -> None:
    """Each opener has its own connection (as each worker process has); one upgrades,
    the others wait for it and find the work done."""
    path = tmp_path / "devid.sqlite"
    past_database(path, 1, SCHEMA_1_LAST)
    opened: list[Stores] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_it() -> None:
        barrier.wait()
        try:
            opened.append(open_sqlite(path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert not errors and len(opened) == 4
        check_records(opened[0], later_tables=True)
    finally:
        for stores in opened:
            stores.close()
    assert schema_of(path) == fresh_schema(tmp_path)
