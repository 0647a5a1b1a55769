"""The embedded default store: SQLite in WAL mode.

One connection shared by worker threads behind a lock. WAL with
``synchronous=FULL`` makes every commit durable before the call returns,
against process death and power loss alike.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from engine.accounts import Account as DeviceAccount
from engine.accounts import account_from_store
from engine.acme.effects import Write
from engine.acme.records import Account, Authorization, CertificateLink, Challenge, Order
from engine.crl import RevokedEntry
from engine.errors import ConfigurationError
from engine.inventory import Device, DeviceFilter, DeviceStatus

from .store import CertificateRecord, Revocation, UsedToken, certificate_device

# 1: the first versioned schema. 2: certificates.device, the EK URN of the device a
# certificate was issued to (to revoke all of them when the device is disabled).
SCHEMA_VERSION = 2
SCHEMA = """
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
    created_at REAL NOT NULL,
    device TEXT
);
CREATE INDEX IF NOT EXISTS certificates_by_provisioner ON certificates(provisioner_name);
CREATE TABLE IF NOT EXISTS used_tokens (
    provisioner TEXT NOT NULL,
    token_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (provisioner, token_id)
);
CREATE INDEX IF NOT EXISTS used_tokens_by_expiry ON used_tokens(expires_at);
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
CREATE TABLE IF NOT EXISTS revocations (
    serial TEXT PRIMARY KEY REFERENCES certificates(serial),
    issuer TEXT NOT NULL,
    revoked_at REAL NOT NULL,
    reason_code INTEGER NOT NULL,
    reason TEXT NOT NULL,
    revoked_by TEXT NOT NULL
);
-- ACME nonces live in memory now (hosts/core/acme_nonces.py); drop the old table.
DROP TABLE IF EXISTS acme_nonces;
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

PRUNE_EVERY = 1000
WRITER_LOCK_SUFFIX = "-writer.lock"
_R = TypeVar("_R")


class _PendingCertificate:
    """A certificate waiting for the group commit, and what became of it."""

    __slots__ = ("done", "error", "lead", "record", "stored", "used_token")

    def __init__(self, record: CertificateRecord, used_token: UsedToken | None) -> None:
        self.record = record
        self.used_token = used_token
        self.done = threading.Event()
        self.lead = False
        self.stored: bool | None = None
        self.error: BaseException | None = None


def _ts(value: datetime) -> float:
    return value.timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class SQLiteStore:
    def __init__(self, path: Path, *, synchronous: str = "full") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigurationError(f"{path} was written by a newer devid (schema {version})")
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(f"cannot open the database {path}: {exc}") from None
        self._lock = threading.Lock()
        # Group commit of issued certificates (record_certificate).
        self._pending_lock = threading.Lock()
        self._pending: list[_PendingCertificate] = []
        self._leading = False
        # Writers in other processes (devid serve --workers N, the CLI) are queued on
        # an advisory lock next to the database instead of in SQLite's busy handler,
        # which polls with sleeps of 1 ms and more while this process's store is held.
        lock_path = path.with_name(path.name + WRITER_LOCK_SUFFIX)
        self._writer_lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._writes_since_prune = 0
        self.path = path
        if version < SCHEMA_VERSION:
            try:
                self._migrate()
            except sqlite3.DatabaseError as exc:
                self.close()
                raise ConfigurationError(f"cannot upgrade the database {path}: {exc}") from None

    def _migrate(self) -> None:
        """Bring a database written by an older devid up to SCHEMA_VERSION, in one
        transaction (another process opening it meanwhile waits, then finds it done)."""
        with self._writing():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(certificates)")}
                if "device" not in columns:
                    self._db.execute("ALTER TABLE certificates ADD COLUMN device TEXT")
                    self._fill_certificate_devices()
                self._db.execute(
                    "CREATE INDEX IF NOT EXISTS certificates_by_device ON certificates(device)"
                )
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _fill_certificate_devices(self) -> None:
        """certificates.device for rows stored before the column existed."""
        last = 0
        while True:  # a page at a time: the table may be large
            rows = self._db.execute(
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
                    self._db.execute(
                        "UPDATE certificates SET device = ? WHERE rowid = ?", (device, rowid)
                    )

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._writer_lock >= 0:
                os.close(self._writer_lock)
                self._writer_lock = -1

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """This thread alone (the connection is shared), and this process alone among
        the writers of the database: SQLite's write lock is then free at once."""
        with self._lock:
            fcntl.flock(self._writer_lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._writer_lock, fcntl.LOCK_UN)

    # --- certificates --------------------------------------------------------

    def _insert_certificate(self, record: CertificateRecord) -> None:
        created = record.created_at or datetime.now(UTC)
        self._db.execute(
            "INSERT INTO certificates (serial, issuer, subject, sans, provisioner_type,"
            " provisioner_name, not_before, not_after, status, der, evidence,"
            " created_at, device) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.serial,
                record.issuer,
                record.subject,
                json.dumps(list(record.sans)),
                record.provisioner_type,
                record.provisioner_name,
                _ts(record.not_before),
                _ts(record.not_after),
                record.status,
                record.der,
                json.dumps(record.evidence, default=str) if record.evidence else "{}",
                _ts(created),
                record.device or certificate_device(record.evidence, record.der),
            ),
        )

    def record_certificate(
        self, record: CertificateRecord, used_token: UsedToken | None = None
    ) -> bool:
        """Store *record* (and claim *used_token*) in a transaction committed on return.

        Group commit: issuances that arrive while another thread commits wait, and the
        next of them commits all that are waiting in one transaction (one fsync). Each
        caller returns only after the commit that holds its certificate; a refused token
        stores nothing for that caller, and the others in the batch are unaffected.
        """
        item = _PendingCertificate(record, used_token)
        with self._pending_lock:
            self._pending.append(item)
            lead = not self._leading
            self._leading = True
        if not lead:
            item.done.wait()
            lead = item.lead  # the previous batch's committer passed the lead on to us
        if lead:
            self._lead_batch()
        if item.error is not None:
            raise item.error
        assert item.stored is not None
        return item.stored

    def _lead_batch(self) -> None:
        """Commit what is waiting once the database is ours (this thread's own certificate
        among it), then hand the lead to the first certificate that arrived meanwhile."""
        batch: list[_PendingCertificate] | None = None
        try:
            with self._writing():
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                self._commit_batch(batch)
        except BaseException as exc:
            if batch is None:
                with self._pending_lock:
                    batch, self._pending = self._pending, []
            for item in batch:
                if item.stored is None and item.error is None:
                    item.error = exc
        finally:
            for item in batch or ():
                item.done.set()
            with self._pending_lock:
                if self._pending:
                    successor = self._pending[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._leading = False

    def _commit_batch(self, batch: list[_PendingCertificate]) -> None:
        """One transaction for the whole batch; each item gets its outcome."""
        if len(batch) > 1:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                stored = [self._store_pending(item) for item in batch]
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if not isinstance(exc, Exception):
                    raise
                # Rare (a duplicate serial, an I/O error): redo each alone, so that
                # every caller gets exactly what a lone commit would have given it.
            else:
                for item, result in zip(batch, stored, strict=True):
                    item.stored = result
                return
        for item in batch:
            self._commit_alone(item)

    def _store_pending(self, item: _PendingCertificate) -> bool:
        """Inside the caller's transaction: claim the token, then insert the certificate."""
        if item.used_token is not None and not self._claim_token(item.used_token):
            return False
        self._insert_certificate(item.record)
        return True

    def _commit_alone(self, item: _PendingCertificate) -> None:
        """One certificate in a transaction of its own; the outcome goes to *item*."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self._store_pending(item):
                self._db.execute("COMMIT")
                item.stored = True
            else:
                self._db.execute("ROLLBACK")
                item.stored = False
        except BaseException as exc:
            if self._db.in_transaction:  # a failed COMMIT may have rolled back already
                self._db.execute("ROLLBACK")
            item.error = exc

    def _row(self, row: tuple[object, ...]) -> CertificateRecord:
        (serial, issuer, subject, sans, ptype, pname, nb, na, status, der, evidence, created,
         device) = row  # fmt: skip
        return CertificateRecord(
            serial=str(serial),
            issuer=str(issuer),
            subject=str(subject),
            sans=tuple(json.loads(str(sans))),
            provisioner_type=str(ptype),
            provisioner_name=str(pname),
            not_before=_dt(float(nb)),  # type: ignore[arg-type]
            not_after=_dt(float(na)),  # type: ignore[arg-type]
            status=str(status),
            der=bytes(der),  # type: ignore[call-overload]
            evidence=json.loads(str(evidence)),
            created_at=_dt(float(created)),  # type: ignore[arg-type]
            device=None if device is None else str(device),
        )

    _COLUMNS = (
        "serial, issuer, subject, sans, provisioner_type, provisioner_name,"
        " not_before, not_after, status, der, evidence, created_at, device"
    )

    def get_certificate(self, serial: str) -> CertificateRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLUMNS} FROM certificates WHERE serial = ?", (serial,)
            ).fetchone()
        return self._row(row) if row else None

    def list_certificates(
        self, *, limit: int = 100, offset: int = 0
    ) -> Sequence[CertificateRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._COLUMNS} FROM certificates ORDER BY created_at, serial"
                " LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
        return [self._row(r) for r in rows]

    def count_certificates(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM certificates").fetchone()[0])

    def certificates_of_device(self, ek_urn: str, now: datetime) -> Sequence[CertificateRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._COLUMNS} FROM certificates WHERE device = ?"
                " AND status = 'active' AND not_after > ? ORDER BY created_at, serial",
                (ek_urn, _ts(now)),
            ).fetchall()
        return [self._row(r) for r in rows]

    def certificates_of_provisioner(
        self, provisioner: str, now: datetime
    ) -> Sequence[CertificateRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._COLUMNS} FROM certificates WHERE provisioner_name = ?"
                " AND status = 'active' AND not_after > ? ORDER BY created_at, serial",
                (provisioner, _ts(now)),
            ).fetchall()
        return [self._row(r) for r in rows]

    # --- one-time tokens ---------------------------------------------------

    def _claim_token(self, token: UsedToken) -> bool:
        """Insert a used token inside the caller's transaction; False if it is known."""
        self._writes_since_prune += 1
        if self._writes_since_prune >= PRUNE_EVERY:
            self._writes_since_prune = 0
            self._db.execute("DELETE FROM used_tokens WHERE expires_at < ?", (_ts(token.now),))
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO used_tokens (provisioner, token_id, expires_at)"
            " VALUES (?, ?, ?)",
            (token.provisioner, token.token_id, _ts(token.expires_at)),
        )
        return cursor.rowcount == 1

    def use_token(
        self, provisioner: str, token_id: str, expires_at: datetime, now: datetime
    ) -> bool:
        with self._writing():
            return self._claim_token(UsedToken(provisioner, token_id, expires_at, now))

    def prune_tokens(self, now: datetime) -> int:
        with self._writing():
            cursor = self._db.execute("DELETE FROM used_tokens WHERE expires_at < ?", (_ts(now),))
            return cursor.rowcount

    def count_used_tokens(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM used_tokens").fetchone()[0])

    # --- revocation ----------------------------------------------------------

    def revoke(self, revocation: Revocation) -> bool:
        with self._writing():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(
                    "UPDATE certificates SET status = 'revoked'"
                    " WHERE serial = ? AND status != 'revoked'",
                    (revocation.serial,),
                )
                if cursor.rowcount != 1:
                    self._db.execute("ROLLBACK")
                    return False
                self._db.execute(
                    "INSERT INTO revocations (serial, issuer, revoked_at, reason_code, reason,"
                    " revoked_by) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        revocation.serial,
                        revocation.issuer,
                        _ts(revocation.revoked_at),
                        revocation.reason_code,
                        revocation.reason,
                        revocation.revoked_by,
                    ),
                )
                self._db.execute("COMMIT")
                return True
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def revoked_entries(self, issuer: str, now: datetime) -> Sequence[RevokedEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT r.serial, r.revoked_at, r.reason_code FROM revocations r"
                " JOIN certificates c ON c.serial = r.serial"
                " WHERE r.issuer = ? AND c.not_after > ? ORDER BY r.revoked_at",
                (issuer, _ts(now)),
            ).fetchall()
        return [RevokedEntry(int(s, 16), _dt(t), int(code)) for s, t, code in rows]

    # --- device inventory ------------------------------------------------------

    _DEVICE_COLUMNS = (
        "ek_urn, ek_certificate, serial, name, owner, tags, status, created_at, updated_at"
    )

    @staticmethod
    def _device(row: tuple[object, ...]) -> Device:
        urn, cert, serial, name, owner, tags, status, created, updated = row
        return Device(
            ek_urn=str(urn),
            ek_certificate=bytes(cert) if cert is not None else None,  # type: ignore[call-overload]
            serial=None if serial is None else str(serial),
            name=None if name is None else str(name),
            owner=None if owner is None else str(owner),
            tags=tuple(json.loads(str(tags))),
            status=DeviceStatus(str(status)),
            created_at=_dt(float(created)),  # type: ignore[arg-type]
            updated_at=_dt(float(updated)),  # type: ignore[arg-type]
        )

    def _device_values(self, device: Device) -> tuple[object, ...]:
        created = device.created_at or datetime.now(UTC)
        updated = device.updated_at or created
        return (
            device.ek_urn,
            device.ek_certificate,
            device.serial,
            device.name,
            device.owner,
            json.dumps(list(device.tags)),
            device.status.value,
            _ts(created),
            _ts(updated),
        )

    def add_device(self, device: Device) -> bool:
        with self._lock:
            cursor = self._db.execute(
                f"INSERT OR IGNORE INTO devices ({self._DEVICE_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self._device_values(device),
            )
            return cursor.rowcount == 1

    def put_device(self, device: Device) -> None:
        """Insert or replace, keeping the original creation time."""
        with self._lock:
            self._db.execute(
                f"INSERT INTO devices ({self._DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(ek_urn) DO UPDATE SET ek_certificate = excluded.ek_certificate,"
                " serial = excluded.serial, name = excluded.name, owner = excluded.owner,"
                " tags = excluded.tags, status = excluded.status,"
                " updated_at = excluded.updated_at",
                self._device_values(device),
            )

    def get_device(self, ek_urn: str) -> Device | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._DEVICE_COLUMNS} FROM devices WHERE ek_urn = ?", (ek_urn,)
            ).fetchone()
        return self._device(row) if row else None

    def list_devices(
        self, filter: DeviceFilter, *, limit: int = 100, offset: int = 0
    ) -> tuple[Sequence[Device], int]:
        where: list[str] = []
        params: list[object] = []
        if filter.status is not None:
            where.append("status = ?")
            params.append(filter.status.value)
        if filter.owner is not None:
            where.append("owner = ?")
            params.append(filter.owner)
        if filter.tag is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(devices.tags) WHERE value = ?)")
            params.append(filter.tag)
        if filter.text:
            where.append("(name LIKE ? ESCAPE '\\' OR serial LIKE ? ESCAPE '\\' OR ek_urn = ?)")
            pattern = (
                "%"
                + filter.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                + "%"
            )
            params.extend([pattern, pattern, filter.text])
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        with self._lock:
            total = int(
                self._db.execute(f"SELECT COUNT(*) FROM devices{clause}", params).fetchone()[0]
            )
            rows = self._db.execute(
                f"SELECT {self._DEVICE_COLUMNS} FROM devices{clause}"
                " ORDER BY created_at, ek_urn LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        return [self._device(r) for r in rows], total

    def delete_device(self, ek_urn: str) -> bool:
        with self._lock:
            cursor = self._db.execute("DELETE FROM devices WHERE ek_urn = ?", (ek_urn,))
            return cursor.rowcount == 1

    # --- attestation sessions ----------------------------------------------

    def put_session(
        self,
        session_id: str,
        ek_urn: str,
        session: dict[str, Any],
        expires_at: datetime,
        now: datetime,
    ) -> None:
        with self._writing():
            self._db.execute("DELETE FROM attestation_sessions WHERE expires_at < ?", (_ts(now),))
            self._db.execute(
                "INSERT INTO attestation_sessions (id, ek_urn, session, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (session_id, ek_urn, json.dumps(session), _ts(expires_at)),
            )

    def take_session(self, session_id: str) -> dict[str, Any] | None:
        """Remove and return a session: each one can be answered once."""
        with self._writing():
            row = self._db.execute(
                "DELETE FROM attestation_sessions WHERE id = ? RETURNING session", (session_id,)
            ).fetchone()
        if row is None:
            return None
        value = json.loads(str(row[0]))
        assert isinstance(value, dict)
        return value

    def count_sessions(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM attestation_sessions").fetchone()[0])

    # --- ACME ------------------------------------------------------------------------

    @staticmethod
    def _account(row: tuple[Any, ...]) -> Account:
        id, provisioner, thumbprint, record, revision = row
        return Account.from_store(id, provisioner, thumbprint, json.loads(record), int(revision))

    def acme_account(self, provisioner: str, account_id: str) -> Account | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, provisioner, thumbprint, record, revision FROM acme_accounts"
                " WHERE provisioner = ? AND id = ?",
                (provisioner, account_id),
            ).fetchone()
        return None if row is None else self._account(row)

    def acme_account_by_thumbprint(self, provisioner: str, thumbprint: str) -> Account | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, provisioner, thumbprint, record, revision FROM acme_accounts"
                " WHERE provisioner = ? AND thumbprint = ?",
                (provisioner, thumbprint),
            ).fetchone()
        return None if row is None else self._account(row)

    @staticmethod
    def _order(row: tuple[Any, ...]) -> Order:
        id, provisioner, account_id, record, revision = row
        return Order.from_store(id, provisioner, account_id, json.loads(record), int(revision))

    def acme_order(self, provisioner: str, order_id: str) -> Order | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, provisioner, account_id, record, revision FROM acme_orders"
                " WHERE provisioner = ? AND id = ?",
                (provisioner, order_id),
            ).fetchone()
        return None if row is None else self._order(row)

    def acme_orders_of(
        self, provisioner: str, account_id: str, *, limit: int = 1000
    ) -> Sequence[Order]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, provisioner, account_id, record, revision FROM acme_orders"
                " WHERE provisioner = ? AND account_id = ? ORDER BY created_at DESC LIMIT ?",
                (provisioner, account_id, limit),
            ).fetchall()
        return [self._order(r) for r in rows]

    @staticmethod
    def _authorization(row: tuple[Any, ...]) -> Authorization:
        id, provisioner, account_id, order_id, record, revision = row
        return Authorization.from_store(
            id, provisioner, account_id, order_id, json.loads(record), int(revision)
        )

    _AUTHZ = (
        "SELECT id, provisioner, account_id, order_id, record, revision FROM acme_authorizations"
    )

    def acme_authorization(self, provisioner: str, authorization_id: str) -> Authorization | None:
        with self._lock:
            row = self._db.execute(
                f"{self._AUTHZ} WHERE provisioner = ? AND id = ?", (provisioner, authorization_id)
            ).fetchone()
        return None if row is None else self._authorization(row)

    def acme_authorizations(self, provisioner: str, ids: Sequence[str]) -> Sequence[Authorization]:
        found = {a.id: a for a in self._many(self._AUTHZ, provisioner, ids, self._authorization)}
        return [found[i] for i in ids if i in found]

    @staticmethod
    def _challenge(row: tuple[Any, ...]) -> Challenge:
        id, provisioner, authorization_id, record, revision = row
        return Challenge.from_store(
            id, provisioner, authorization_id, json.loads(record), int(revision)
        )

    _CHALLENGE = "SELECT id, provisioner, authorization_id, record, revision FROM acme_challenges"

    def acme_challenge(self, provisioner: str, challenge_id: str) -> Challenge | None:
        with self._lock:
            row = self._db.execute(
                f"{self._CHALLENGE} WHERE provisioner = ? AND id = ?", (provisioner, challenge_id)
            ).fetchone()
        return None if row is None else self._challenge(row)

    def acme_challenges(self, provisioner: str, ids: Sequence[str]) -> Sequence[Challenge]:
        found = {c.id: c for c in self._many(self._CHALLENGE, provisioner, ids, self._challenge)}
        return [found[i] for i in ids if i in found]

    def acme_processing_challenges(self) -> Sequence[Challenge]:
        with self._lock:
            rows = self._db.execute(f"{self._CHALLENGE} WHERE status = 'processing'").fetchall()
        return [self._challenge(r) for r in rows]

    def _many(
        self,
        select: str,
        provisioner: str,
        ids: Sequence[str],
        make: Callable[[tuple[Any, ...]], _R],
    ) -> list[_R]:
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        with self._lock:
            rows = self._db.execute(
                f"{select} WHERE provisioner = ? AND id IN ({marks})", (provisioner, *ids)
            ).fetchall()
        return [make(r) for r in rows]

    def acme_certificate(self, serial: str) -> CertificateLink | None:
        with self._lock:
            row = self._db.execute(
                "SELECT serial, provisioner, account_id, order_id FROM acme_certificates"
                " WHERE serial = ?",
                (serial,),
            ).fetchone()
        return None if row is None else CertificateLink(*map(str, row))

    def _put(
        self,
        table: str,
        record_id: str,
        revision: int,
        columns: dict[str, Any],
        record: dict[str, Any],
    ) -> bool:
        """Insert (revision 0) or replace at the expected revision; False on a conflict."""
        data = json.dumps(record, default=str)
        if revision == 0:
            names = ["id", *columns, "record", "revision"]
            values = [record_id, *columns.values(), data, 1]
            marks = ", ".join("?" for _ in names)
            try:
                self._db.execute(
                    f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", values
                )
            except sqlite3.IntegrityError:
                return False
            return True
        assignments = "".join(f"{name} = ?, " for name in columns)
        try:
            cursor = self._db.execute(
                f"UPDATE {table} SET {assignments}record = ?, revision = revision + 1"
                " WHERE id = ? AND revision = ?",
                (*columns.values(), data, record_id, revision),
            )
        except sqlite3.IntegrityError:
            return False
        return cursor.rowcount == 1

    def acme_write(
        self,
        write: Write,
        *,
        certificate: CertificateRecord | None = None,
        link: CertificateLink | None = None,
    ) -> bool:
        rows: list[tuple[str, str, int, dict[str, Any], dict[str, Any]]] = []
        columns: dict[str, Any]
        for a in write.accounts:
            columns = {"provisioner": a.provisioner, "thumbprint": a.thumbprint}
            rows.append(("acme_accounts", a.id, a.revision, columns, a.to_store()))
        for o in write.orders:
            columns = {
                "provisioner": o.provisioner,
                "account_id": o.account_id,
                "created_at": _ts(o.created_at),
            }
            rows.append(("acme_orders", o.id, o.revision, columns, o.to_store()))
        for z in write.authorizations:
            columns = {
                "provisioner": z.provisioner,
                "account_id": z.account_id,
                "order_id": z.order_id,
            }
            rows.append(("acme_authorizations", z.id, z.revision, columns, z.to_store()))
        for c in write.challenges:
            columns = {
                "provisioner": c.provisioner,
                "authorization_id": c.authorization_id,
                "status": c.status.value,
            }
            rows.append(("acme_challenges", c.id, c.revision, columns, c.to_store()))
        with self._writing():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for table, record_id, revision, columns, record in rows:
                    if not self._put(table, record_id, revision, columns, record):
                        self._db.execute("ROLLBACK")
                        return False
                if certificate is not None:
                    self._insert_certificate(certificate)
                if link is not None:
                    self._db.execute(
                        "INSERT INTO acme_certificates (serial, provisioner, account_id, order_id)"
                        " VALUES (?, ?, ?, ?)",
                        (link.serial, link.provisioner, link.account_id, link.order_id),
                    )
                self._db.execute("COMMIT")
                return True
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # --- accounts (Wi-Fi, VPN, web: what devices get certificates for) ----------------

    def _account_values(self, account: DeviceAccount) -> tuple[object, ...]:
        created = account.created_at or datetime.now(UTC)
        updated = account.updated_at or created
        return (account.id, account.name, json.dumps(account.to_json()), _ts(created), _ts(updated))

    def add_account(self, account: DeviceAccount) -> bool:
        with self._writing():
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO accounts (id, name, record, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                self._account_values(account),
            )
            return cursor.rowcount == 1

    def get_account(self, name: str) -> DeviceAccount | None:
        with self._lock:
            row = self._db.execute("SELECT record FROM accounts WHERE name = ?", (name,)).fetchone()
        return None if row is None else account_from_store(json.loads(str(row[0])))

    def list_accounts(self) -> Sequence[DeviceAccount]:
        with self._lock:
            rows = self._db.execute("SELECT record FROM accounts ORDER BY name").fetchall()
        return [account_from_store(json.loads(str(r[0]))) for r in rows]

    def update_account(self, account: DeviceAccount) -> bool:
        with self._writing():
            cursor = self._db.execute(
                "UPDATE accounts SET record = ?, updated_at = ? WHERE id = ? AND name = ?",
                (
                    json.dumps(account.to_json()),
                    _ts(account.updated_at or datetime.now(UTC)),
                    account.id,
                    account.name,
                ),
            )
            return cursor.rowcount == 1

    def delete_account(self, name: str) -> bool:
        with self._writing():
            cursor = self._db.execute("DELETE FROM accounts WHERE name = ?", (name,))
            return cursor.rowcount == 1
