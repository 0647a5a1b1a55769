"""Issued certificates and revocations in SQLite (tables certificates, revocations)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from engine.accounts import PROVISIONER_PREFIX
from engine.crl import RevokedEntry

from ..audit import AuditEvent
from ..certificates import CERTIFICATE_STATUSES, CertificateQuery
from ..records import CertificateRecord, Revocation, UsedToken, certificate_device
from .audit import SQLiteAudit, details_json, inline_event
from .database import Database, from_timestamp, timestamp
from .tokens import SQLiteTokens

_COLUMNS = (
    "serial, issuer, subject, sans, provisioner_type, provisioner_name,"
    " not_before, not_after, status, der, evidence, created_at, device"
)


def _record(row: tuple[Any, ...]) -> CertificateRecord:
    (serial, issuer, subject, sans, ptype, pname, nb, na, status, der, evidence, created,
     device) = row  # fmt: skip
    return CertificateRecord(
        serial=str(serial),
        issuer=str(issuer),
        subject=str(subject),
        sans=tuple(json.loads(str(sans))),
        provisioner_type=str(ptype),
        provisioner_name=str(pname),
        not_before=from_timestamp(float(nb)),
        not_after=from_timestamp(float(na)),
        status=str(status),
        der=bytes(der),
        evidence=json.loads(str(evidence)),
        created_at=from_timestamp(float(created)),
        device=None if device is None else str(device),
    )


def _like(text: str) -> str:
    """*text* as a LIKE pattern matching it anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _where(query: CertificateQuery, now: datetime) -> tuple[str, list[Any]]:
    """The WHERE clause of *query* at *now*, and its parameters. The device and the
    provisioner (an account's too) have indexes; the other filters narrow what those,
    or the whole table, give."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.device is not None:
        clauses.append("device = ?")
        params.append(query.device)
    if query.account is not None:
        clauses.append("provisioner_name = ?")
        params.append(PROVISIONER_PREFIX + query.account)
    if query.provisioner is not None:
        clauses.append("provisioner_name = ?")
        params.append(query.provisioner)
    if query.issuer is not None:
        clauses.append("issuer = ?")
        params.append(query.issuer)
    at = timestamp(now)
    if query.status is None:
        pass
    elif query.status == "active":
        clauses.append("status != 'revoked' AND not_after > ?")
        params.append(at)
    elif query.status == "revoked":
        clauses.append("status = 'revoked'")
    elif query.status == "expired":
        clauses.append("status != 'revoked' AND not_after <= ?")
        params.append(at)
    elif query.status == "expiring":
        clauses.append("status != 'revoked' AND not_after > ? AND not_after <= ?")
        params.extend((at, timestamp(now + query.expiring_within)))
    else:
        raise ValueError(f"status must be one of {', '.join(CERTIFICATE_STATUSES)}")
    if query.search:
        # The SANs are kept as a JSON list: look for the text as JSON writes it there.
        clauses.append("(subject LIKE ? ESCAPE '\\' OR sans LIKE ? ESCAPE '\\')")
        params.extend((_like(query.search), _like(json.dumps(query.search)[1:-1])))
    if query.renewed_from is not None:
        clauses.append("json_extract(evidence, '$.renewed_from') = ?")
        params.append(query.renewed_from)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


class SQLiteCertificates:
    def __init__(self, database: Database, tokens: SQLiteTokens, audit: SQLiteAudit) -> None:
        self.database = database
        self._tokens = tokens
        self._audit = audit

    def insert(self, record: CertificateRecord, event: AuditEvent | None = None) -> bool:
        """Insert *record* inside the caller's transaction (also the ACME store's), with
        *event* in its row if that is the record's issuance event
        (:func:`.audit.inline_event`): True if it was kept so, False if the caller must
        append *event* (if any) to the audit log itself."""
        created = record.created_at or datetime.now(UTC)
        inline = inline_event(event, record.serial)
        audit: tuple[int | None, str | None, str | None, str | None] = (None, None, None, None)
        if inline:
            assert event is not None
            created = event.time  # one time for the certificate and its event
            audit = (self._audit.next_id(), event.actor, event.action, details_json(event))
        self.database.connection.execute(
            "INSERT INTO certificates (serial, issuer, subject, sans, provisioner_type,"
            " provisioner_name, not_before, not_after, status, der, evidence,"
            " created_at, device, audit_id, audit_actor, audit_action, audit_details)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.serial,
                record.issuer,
                record.subject,
                json.dumps(list(record.sans)),
                record.provisioner_type,
                record.provisioner_name,
                timestamp(record.not_before),
                timestamp(record.not_after),
                record.status,
                record.der,
                json.dumps(record.evidence, default=str) if record.evidence else "{}",
                timestamp(created),
                record.device or certificate_device(record.evidence, record.der),
                *audit,
            ),
        )
        return inline

    def insert_with_events(self, record: CertificateRecord, events: Sequence[AuditEvent]) -> None:
        """Insert *record* and append *events* inside the caller's transaction; the
        record's issuance event, if among them, is kept in its row."""
        kept = next((e for e in events if inline_event(e, record.serial)), None)
        self.insert(record, kept)
        for event in events:
            if event is not kept:
                self._audit.insert(event)

    def record_certificate(
        self,
        record: CertificateRecord,
        used_token: UsedToken | None = None,
        event: AuditEvent | None = None,
    ) -> bool:
        """Store *record* (and claim *used_token*) in a transaction committed on return.

        Group commit (:meth:`Database.group_commit`): certificates issued while another
        thread commits go in one transaction together; a refused token stores nothing
        for its caller, and the others in the group are unaffected.
        """
        return self.database.group_commit(partial(self._store, record, used_token, event))

    def store_in_transaction(
        self, record: CertificateRecord, used_token: UsedToken | None, event: AuditEvent | None
    ) -> bool:
        """:meth:`record_certificate`'s writes inside a transaction another store opened
        (SCEP stores its transaction in the same commit); False if the token was used."""
        return self._store(record, used_token, event)

    def _store(
        self, record: CertificateRecord, used_token: UsedToken | None, event: AuditEvent | None
    ) -> bool:
        """Inside the caller's transaction: claim the token, insert the certificate and
        append its audit event."""
        if used_token is not None and not self._tokens.claim(used_token):
            return False
        if not self.insert(record, event) and event is not None:
            self._audit.insert(event)
        return True

    def get_certificate(self, serial: str) -> CertificateRecord | None:
        row = self.database.one(f"SELECT {_COLUMNS} FROM certificates WHERE serial = ?", (serial,))
        return _record(row) if row else None

    def list_certificates(
        self, *, limit: int = 100, offset: int = 0
    ) -> Sequence[CertificateRecord]:
        rows = self.database.all(
            f"SELECT {_COLUMNS} FROM certificates ORDER BY created_at, serial LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [_record(r) for r in rows]

    def count_certificates(self) -> int:
        return self.database.count("SELECT COUNT(*) FROM certificates")

    def find_certificates(
        self, query: CertificateQuery, now: datetime
    ) -> tuple[Sequence[CertificateRecord], int]:
        where, params = _where(query, now)
        rows = self.database.all(
            f"SELECT {_COLUMNS} FROM certificates{where}"
            " ORDER BY created_at DESC, serial DESC LIMIT ? OFFSET ?",
            (*params, query.limit, query.offset),
        )
        total = self.database.count(f"SELECT COUNT(*) FROM certificates{where}", tuple(params))
        return [_record(r) for r in rows], total

    def certificates_of_device(self, ek_urn: str, now: datetime) -> Sequence[CertificateRecord]:
        rows = self.database.all(
            f"SELECT {_COLUMNS} FROM certificates WHERE device = ?"
            " AND status = 'active' AND not_after > ? ORDER BY created_at, serial",
            (ek_urn, timestamp(now)),
        )
        return [_record(r) for r in rows]

    def certificates_of_provisioner(
        self, provisioner: str, now: datetime
    ) -> Sequence[CertificateRecord]:
        rows = self.database.all(
            f"SELECT {_COLUMNS} FROM certificates WHERE provisioner_name = ?"
            " AND status = 'active' AND not_after > ? ORDER BY created_at, serial",
            (provisioner, timestamp(now)),
        )
        return [_record(r) for r in rows]

    # --- revocation --------------------------------------------------------------------

    def revoke(self, revocation: Revocation) -> bool:
        return self.database.transaction(partial(self._revoke, revocation))

    def _revoke(self, revocation: Revocation) -> bool:
        db = self.database.connection
        cursor = db.execute(
            "UPDATE certificates SET status = 'revoked' WHERE serial = ? AND status != 'revoked'",
            (revocation.serial,),
        )
        if cursor.rowcount != 1:
            return False
        db.execute(
            "INSERT INTO revocations (serial, issuer, revoked_at, reason_code, reason,"
            " revoked_by) VALUES (?, ?, ?, ?, ?, ?)",
            (
                revocation.serial,
                revocation.issuer,
                timestamp(revocation.revoked_at),
                revocation.reason_code,
                revocation.reason,
                revocation.revoked_by,
            ),
        )
        return True

    def get_revocation(self, serial: str) -> Revocation | None:
        row = self.database.one(
            "SELECT serial, issuer, revoked_at, reason_code, reason, revoked_by"
            " FROM revocations WHERE serial = ?",
            (serial,),
        )
        if row is None:
            return None
        serial_, issuer, at, code, reason, by = row
        return Revocation(
            str(serial_), str(issuer), from_timestamp(float(at)), int(code), str(reason), str(by)
        )

    def revocations_mark(self) -> int:
        # Revocations are only ever added (never deleted or changed): the last rowid
        # grows with each one, and reading it is one step down the table's b-tree.
        row = self.database.one("SELECT COALESCE(MAX(rowid), 0) FROM revocations")
        return int(row[0]) if row else 0

    def revoked_entries(self, issuer: str, now: datetime) -> Sequence[RevokedEntry]:
        rows = self.database.all(
            "SELECT r.serial, r.revoked_at, r.reason_code FROM revocations r"
            " JOIN certificates c ON c.serial = r.serial"
            " WHERE r.issuer = ? AND c.not_after > ? ORDER BY r.revoked_at",
            (issuer, timestamp(now)),
        )
        return [RevokedEntry(int(s, 16), from_timestamp(t), int(code)) for s, t, code in rows]
