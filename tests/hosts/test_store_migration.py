"""A database written by an older devid (schema 1: no ``certificates.device``) is upgraded
when it is opened: the column and its index appear, and each stored certificate gets the
device it was issued to, from its evidence or its PermanentIdentifier, so that disabling
a device revokes certificates issued before the upgrade too."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.attestation.akcert import permanent_identifier_name
from engine.errors import ConfigurationError
from engine.inventory import ek_urn_from_digest, permanent_identifier_value
from hosts.core.sqlite_store import SCHEMA_VERSION, SQLiteStore

# The certificates table as devid wrote it at schema version 1.
SCHEMA_1 = """
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
    created_at REAL NOT NULL
);
CREATE INDEX certificates_by_provisioner ON certificates(provisioner_name);
PRAGMA user_version=1;
"""

NOW = datetime.now(UTC).replace(microsecond=0)


def digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


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


def old_database(path: Path) -> None:
    rows = [
        # serial, issuer, provisioner, der, evidence
        ("a1", "account", "account:wifi", certificate(0xA1), {"device": ek("account-device")}),
        ("a2", "attestation", "tpm", certificate(0xA2), {"ek": ek("ak-device")}),
        ("a3", "agent", "devices", certificate(0xA3, device_label="attested"), {"method": "acme"}),
        ("a4", "tls", "admin", certificate(0xA4), {"method": "jwk-token"}),
    ]
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_1)
        for serial, issuer, provisioner, der, evidence in rows:
            db.execute(
                "INSERT INTO certificates (serial, issuer, subject, sans, provisioner_type,"
                " provisioner_name, not_before, not_after, der, evidence, created_at)"
                " VALUES (?, ?, ?, '[]', 'X', ?, ?, ?, ?, ?, ?)",
                (
                    serial,
                    issuer,
                    f"CN={serial}",
                    provisioner,
                    (NOW - timedelta(minutes=1)).timestamp(),
                    (NOW + timedelta(days=1)).timestamp(),
                    der,
                    json.dumps(evidence),
                    NOW.timestamp(),
                ),
            )
    db.close()


def ek(label: str) -> str:
    return ek_urn_from_digest(digest(label))


def test_an_old_database_gets_the_device_of_each_certificate(tmp_path: Path) -> None:
    path = tmp_path / "devid.sqlite"
    old_database(path)
    store = SQLiteStore(path)
    try:
        devices = {s: store.get_certificate(s) for s in ("a1", "a2", "a3", "a4")}
        assert {s: r.device if r else "missing" for s, r in devices.items()} == {
            "a1": ek("account-device"),
            "a2": ek("ak-device"),
            "a3": ek("attested"),
            "a4": None,
        }
        assert [r.serial for r in store.certificates_of_device(ek("attested"), NOW)] == ["a3"]
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        indexes = {row[1] for row in db.execute("PRAGMA index_list(certificates)")}
        assert "certificates_by_device" in indexes
    db.close()
    # Opening it again finds nothing left to do and changes nothing.
    again = SQLiteStore(path)
    try:
        record = again.get_certificate("a3")
        assert record is not None and record.device == ek("attested")
    finally:
        again.close()


def test_a_new_database_has_the_column_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = {row[1] for row in db.execute("PRAGMA table_info(certificates)")}
        assert "device" in columns
    db.close()


def test_a_database_from_a_newer_devid_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.sqlite"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(ConfigurationError, match="newer devid"):
        SQLiteStore(path)
