"""SCEP's transactions and one-time challenges in SQLite (tables scep_transactions and
scep_challenges).

Every write is committed before the call returns, through the group commit
(:meth:`Database.group_commit`). The writes that decide something are one conditional
statement each: :meth:`SQLiteSCEP.add_transaction` inserts only if the transactionID is
new, :meth:`SQLiteSCEP.update_transaction` changes a transaction only while it is in the
status the caller expects, :meth:`SQLiteSCEP.use_challenge` marks a challenge used only
while it is unused and unexpired. Writers take turns on the database (threads on its
lock, processes on the writer lock), so of two callers racing for the same record,
exactly one changes it and the other is told it did not.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..audit import AuditEvent
from ..records import CertificateRecord, UsedToken
from ..scep import ISSUED, TRANSACTION_STATES, SCEPChallenge, SCEPTransaction
from .certificates import SQLiteCertificates
from .database import Database, from_timestamp, timestamp

_TRANSACTION_COLUMNS = (
    "provisioner, transaction_id, request_sha256, message_type, status, subject, csr_der,"
    " signer_der, created_at, updated_at, serial, decided_by, reason, method"
)
_CHALLENGE_COLUMNS = (
    "provisioner, challenge_sha256, created_at, expires_at, created_by, subject, used_at, used_by"
)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _transaction(row: tuple[Any, ...]) -> SCEPTransaction:
    (
        provisioner,
        transaction_id,
        request_sha256,
        message_type,
        status,
        subject,
        csr_der,
        signer_der,
        created_at,
        updated_at,
        serial,
        decided_by,
        reason,
        method,
    ) = row
    return SCEPTransaction(
        provisioner=str(provisioner),
        transaction_id=str(transaction_id),
        request_sha256=str(request_sha256),
        message_type=int(message_type),
        status=str(status),
        subject=str(subject),
        csr_der=bytes(csr_der),
        signer_der=bytes(signer_der),
        created_at=from_timestamp(float(created_at)),
        updated_at=from_timestamp(float(updated_at)),
        serial=_text(serial),
        decided_by=_text(decided_by),
        reason=_text(reason),
        method=_text(method),
    )


def _row(t: SCEPTransaction) -> tuple[object, ...]:
    """A transaction as the columns of ``_TRANSACTION_COLUMNS``."""
    return (
        t.provisioner,
        t.transaction_id,
        t.request_sha256,
        t.message_type,
        t.status,
        t.subject,
        t.csr_der,
        t.signer_der,
        timestamp(t.created_at),
        timestamp(t.updated_at),
        t.serial,
        t.decided_by,
        t.reason,
        t.method,
    )


def _challenge(row: tuple[Any, ...]) -> SCEPChallenge:
    provisioner, digest, created_at, expires_at, created_by, subject, used_at, used_by = row
    return SCEPChallenge(
        provisioner=str(provisioner),
        challenge_sha256=str(digest),
        created_at=from_timestamp(float(created_at)),
        expires_at=from_timestamp(float(expires_at)),
        created_by=str(created_by),
        subject=_text(subject),
        used_at=None if used_at is None else from_timestamp(float(used_at)),
        used_by=_text(used_by),
    )


def _check_status(status: str) -> None:
    if status not in TRANSACTION_STATES:
        raise ValueError(
            f"unknown SCEP transaction status {status!r} (one of {', '.join(TRANSACTION_STATES)})"
        )


class _NotRecorded(Exception):
    """The transaction row could not take the certificate: roll the commit back."""


class SQLiteSCEP:
    def __init__(self, database: Database, certificates: SQLiteCertificates) -> None:
        self.database = database
        self.certificates = certificates

    def _write(self, sql: str, params: tuple[object, ...]) -> bool:
        """Run one statement in a committed transaction; True if it changed a row."""

        def step() -> bool:
            cursor = self.database.connection.execute(sql, params)
            return cursor.rowcount == 1

        return self.database.group_commit(step)

    # --- transactions ----------------------------------------------------------------

    def get_transaction(self, provisioner: str, transaction_id: str) -> SCEPTransaction | None:
        row = self.database.one(
            f"SELECT {_TRANSACTION_COLUMNS} FROM scep_transactions"
            " WHERE provisioner = ? AND transaction_id = ?",
            (provisioner, transaction_id),
        )
        return None if row is None else _transaction(row)

    def add_transaction(self, transaction: SCEPTransaction) -> bool:
        _check_status(transaction.status)
        t = transaction
        return self._write(
            f"INSERT INTO scep_transactions ({_TRANSACTION_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (provisioner, transaction_id) DO NOTHING",
            _row(t),
        )

    def update_transaction(
        self,
        provisioner: str,
        transaction_id: str,
        *,
        expect_status: str,
        status: str,
        updated_at: datetime,
        serial: str | None = None,
        decided_by: str | None = None,
        reason: str | None = None,
        method: str | None = None,
    ) -> bool:
        _check_status(expect_status)
        _check_status(status)
        return self._write(
            "UPDATE scep_transactions SET status = ?, updated_at = ?,"
            " serial = COALESCE(?, serial), decided_by = COALESCE(?, decided_by),"
            " reason = COALESCE(?, reason), method = COALESCE(?, method)"
            " WHERE provisioner = ? AND transaction_id = ? AND status = ?",
            (
                status,
                timestamp(updated_at),
                serial,
                decided_by,
                reason,
                method,
                provisioner,
                transaction_id,
                expect_status,
            ),
        )

    def record_issued(
        self,
        transaction: SCEPTransaction,
        certificate: CertificateRecord,
        used_token: UsedToken | None,
        event: AuditEvent | None,
        *,
        renewal: bool = False,
    ) -> bool:
        t = transaction
        _check_status(t.status)
        if t.status != ISSUED or t.serial != certificate.serial:
            raise ValueError("the transaction must be issued with the certificate's serial")

        def step() -> bool:
            if not self.certificates.store_in_transaction(certificate, used_token, event):
                return False
            connection = self.database.connection
            if renewal:
                # The transaction now stands for its latest request: a resend of the
                # renewal is recognised by its CSR.
                cursor = connection.execute(
                    "UPDATE scep_transactions SET serial = ?, updated_at = ?, method = ?,"
                    " reason = NULL, request_sha256 = ?, message_type = ?, csr_der = ?,"
                    " signer_der = ? WHERE provisioner = ? AND transaction_id = ?"
                    " AND status = 'issued'",
                    (
                        t.serial,
                        timestamp(t.updated_at),
                        t.method,
                        t.request_sha256,
                        t.message_type,
                        t.csr_der,
                        t.signer_der,
                        t.provisioner,
                        t.transaction_id,
                    ),
                )
            else:
                cursor = connection.execute(
                    f"INSERT INTO scep_transactions ({_TRANSACTION_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (provisioner, transaction_id) DO UPDATE SET"
                    " status = excluded.status, serial = excluded.serial,"
                    " updated_at = excluded.updated_at, decided_by = excluded.decided_by,"
                    " reason = NULL, method = COALESCE(scep_transactions.method, excluded.method)"
                    " WHERE scep_transactions.status = 'pending'",
                    _row(t),
                )
            if cursor.rowcount != 1:
                raise _NotRecorded
            return True

        try:
            return self.database.group_commit(step)
        except _NotRecorded:
            return False

    def transactions(
        self,
        *,
        provisioner: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> Sequence[SCEPTransaction]:
        where: list[str] = []
        params: list[object] = []
        if provisioner is not None:
            where.append("provisioner = ?")
            params.append(provisioner)
        if status is not None:
            _check_status(status)
            where.append("status = ?")
            params.append(status)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self.database.all(
            f"SELECT {_TRANSACTION_COLUMNS} FROM scep_transactions{clause}"
            " ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (*params, max(limit, 0)),
        )
        return [_transaction(row) for row in rows]

    # --- one-time challenges ---------------------------------------------------------

    def add_challenge(self, challenge: SCEPChallenge) -> None:
        c = challenge
        try:
            self._write(
                f"INSERT INTO scep_challenges ({_CHALLENGE_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    c.provisioner,
                    c.challenge_sha256,
                    timestamp(c.created_at),
                    timestamp(c.expires_at),
                    c.created_by,
                    c.subject,
                    None if c.used_at is None else timestamp(c.used_at),
                    c.used_by,
                ),
            )
        except sqlite3.IntegrityError:
            raise ValueError(
                f"the SCEP provisioner {c.provisioner!r} has a challenge with this hash already"
            ) from None

    def get_challenge(self, provisioner: str, challenge_sha256: str) -> SCEPChallenge | None:
        row = self.database.one(
            f"SELECT {_CHALLENGE_COLUMNS} FROM scep_challenges"
            " WHERE provisioner = ? AND challenge_sha256 = ?",
            (provisioner, challenge_sha256),
        )
        return None if row is None else _challenge(row)

    def use_challenge(
        self, provisioner: str, challenge_sha256: str, *, now: datetime, transaction_id: str
    ) -> bool:
        at = timestamp(now)
        return self._write(
            "UPDATE scep_challenges SET used_at = ?, used_by = ?"
            " WHERE provisioner = ? AND challenge_sha256 = ? AND used_at IS NULL"
            " AND expires_at > ?",
            (at, transaction_id, provisioner, challenge_sha256, at),
        )

    def challenges(
        self, *, provisioner: str | None = None, include_used: bool = False
    ) -> Sequence[SCEPChallenge]:
        where: list[str] = []
        params: list[object] = []
        if provisioner is not None:
            where.append("provisioner = ?")
            params.append(provisioner)
        if not include_used:
            where.append("used_at IS NULL")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self.database.all(
            f"SELECT {_CHALLENGE_COLUMNS} FROM scep_challenges{clause}"
            " ORDER BY created_at DESC, provisioner, challenge_sha256",
            params,
        )
        return [_challenge(row) for row in rows]

    def delete_expired_challenges(self, now: datetime) -> int:
        with self.database.writing():
            cursor = self.database.connection.execute(
                "DELETE FROM scep_challenges WHERE used_at IS NULL AND expires_at < ?",
                (timestamp(now),),
            )
            return cursor.rowcount
