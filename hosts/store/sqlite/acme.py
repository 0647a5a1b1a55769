"""ACME state in SQLite (tables acme_accounts, acme_orders, acme_authorizations,
acme_challenges, acme_certificates). Each row keeps the engine's record as JSON, beside
the columns it is looked up by, and the revision it was written at.

Writes are group-committed (:meth:`.Database.group_commit`): the steps of an order
that arrive together from several requests share one commit (one fsync), each under
a savepoint of its own so that a step refused for a conflict leaves the others
untouched. The audit events of a change are written in the change's own commit."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any, TypeVar

from engine.acme import records
from engine.acme.effects import Write

from ..audit import AuditEvent
from ..records import CertificateRecord
from .audit import SQLiteAudit
from .certificates import SQLiteCertificates
from .database import Database, timestamp

_R = TypeVar("_R")

_ACCOUNT = "SELECT id, provisioner, thumbprint, record, revision FROM acme_accounts"
_ORDER = "SELECT id, provisioner, account_id, record, revision FROM acme_orders"
_AUTHORIZATION = (
    "SELECT id, provisioner, account_id, order_id, record, revision FROM acme_authorizations"
)
_CHALLENGE = "SELECT id, provisioner, authorization_id, record, revision FROM acme_challenges"

# (table, id, revision read at, looked-up columns, record)
_Row = tuple[str, str, int, dict[str, Any], dict[str, Any]]

_SAVEPOINT = "acme_write"


@functools.cache
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(("id", *columns, "record", "revision"))
    marks = ", ".join("?" for _ in range(len(columns) + 3))
    return f"INSERT INTO {table} ({names}) VALUES ({marks})"


@functools.cache
def _update_sql(table: str, columns: tuple[str, ...]) -> str:
    assignments = "".join(f"{name} = ?, " for name in columns)
    return (
        f"UPDATE {table} SET {assignments}record = ?, revision = revision + 1"
        " WHERE id = ? AND revision = ?"
    )


def _account(row: tuple[Any, ...]) -> records.Account:
    id, provisioner, thumbprint, record, revision = row
    return records.Account.from_store(
        id, provisioner, thumbprint, json.loads(record), int(revision)
    )


def _order(row: tuple[Any, ...]) -> records.Order:
    id, provisioner, account_id, record, revision = row
    return records.Order.from_store(id, provisioner, account_id, json.loads(record), int(revision))


def _authorization(row: tuple[Any, ...]) -> records.Authorization:
    id, provisioner, account_id, order_id, record, revision = row
    return records.Authorization.from_store(
        id, provisioner, account_id, order_id, json.loads(record), int(revision)
    )


def _challenge(row: tuple[Any, ...]) -> records.Challenge:
    id, provisioner, authorization_id, record, revision = row
    return records.Challenge.from_store(
        id, provisioner, authorization_id, json.loads(record), int(revision)
    )


def _rows(write: Write) -> list[_Row]:
    rows: list[_Row] = []
    columns: dict[str, Any]
    for a in write.accounts:
        columns = {"provisioner": a.provisioner, "thumbprint": a.thumbprint}
        rows.append(("acme_accounts", a.id, a.revision, columns, a.to_store()))
    for o in write.orders:
        columns = {
            "provisioner": o.provisioner,
            "account_id": o.account_id,
            "created_at": timestamp(o.created_at),
        }
        rows.append(("acme_orders", o.id, o.revision, columns, o.to_store()))
    for z in write.authorizations:
        columns = {"provisioner": z.provisioner, "account_id": z.account_id, "order_id": z.order_id}
        rows.append(("acme_authorizations", z.id, z.revision, columns, z.to_store()))
    for c in write.challenges:
        columns = {
            "provisioner": c.provisioner,
            "authorization_id": c.authorization_id,
            "status": c.status.value,
        }
        rows.append(("acme_challenges", c.id, c.revision, columns, c.to_store()))
    return rows


class SQLiteACME:
    def __init__(self, database: Database, certificates: SQLiteCertificates) -> None:
        self.database = database
        self._certificates = certificates
        self._audit = SQLiteAudit(database)

    def acme_account(self, provisioner: str, account_id: str) -> records.Account | None:
        row = self.database.one(
            f"{_ACCOUNT} WHERE provisioner = ? AND id = ?", (provisioner, account_id)
        )
        return None if row is None else _account(row)

    def acme_account_by_thumbprint(
        self, provisioner: str, thumbprint: str
    ) -> records.Account | None:
        row = self.database.one(
            f"{_ACCOUNT} WHERE provisioner = ? AND thumbprint = ?", (provisioner, thumbprint)
        )
        return None if row is None else _account(row)

    def acme_order(self, provisioner: str, order_id: str) -> records.Order | None:
        row = self.database.one(
            f"{_ORDER} WHERE provisioner = ? AND id = ?", (provisioner, order_id)
        )
        return None if row is None else _order(row)

    def acme_orders_of(
        self, provisioner: str, account_id: str, *, limit: int = 1000
    ) -> Sequence[records.Order]:
        rows = self.database.all(
            f"{_ORDER} WHERE provisioner = ? AND account_id = ? ORDER BY created_at DESC LIMIT ?",
            (provisioner, account_id, limit),
        )
        return [_order(r) for r in rows]

    def acme_authorization(
        self, provisioner: str, authorization_id: str
    ) -> records.Authorization | None:
        row = self.database.one(
            f"{_AUTHORIZATION} WHERE provisioner = ? AND id = ?", (provisioner, authorization_id)
        )
        return None if row is None else _authorization(row)

    def acme_authorizations(
        self, provisioner: str, ids: Sequence[str]
    ) -> Sequence[records.Authorization]:
        found = {a.id: a for a in self._many(_AUTHORIZATION, provisioner, ids, _authorization)}
        return [found[i] for i in ids if i in found]

    def acme_challenge(self, provisioner: str, challenge_id: str) -> records.Challenge | None:
        row = self.database.one(
            f"{_CHALLENGE} WHERE provisioner = ? AND id = ?", (provisioner, challenge_id)
        )
        return None if row is None else _challenge(row)

    def acme_challenges(self, provisioner: str, ids: Sequence[str]) -> Sequence[records.Challenge]:
        found = {c.id: c for c in self._many(_CHALLENGE, provisioner, ids, _challenge)}
        return [found[i] for i in ids if i in found]

    def acme_processing_challenges(self) -> Sequence[records.Challenge]:
        rows = self.database.all(f"{_CHALLENGE} WHERE status = 'processing'")
        return [_challenge(r) for r in rows]

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
        rows = self.database.all(
            f"{select} WHERE provisioner = ? AND id IN ({marks})", (provisioner, *ids)
        )
        return [make(r) for r in rows]

    def acme_certificate(self, serial: str) -> records.CertificateLink | None:
        row = self.database.one(
            "SELECT serial, provisioner, account_id, order_id FROM acme_certificates"
            " WHERE serial = ?",
            (serial,),
        )
        return None if row is None else records.CertificateLink(*map(str, row))

    def acme_write(
        self,
        write: Write,
        *,
        certificate: CertificateRecord | None = None,
        link: records.CertificateLink | None = None,
        events: Sequence[AuditEvent] = (),
    ) -> bool:
        rows = _rows(write)
        return self.database.group_commit(
            lambda: self._step(rows, certificate, link, tuple(events))
        )

    def _step(
        self,
        rows: list[_Row],
        certificate: CertificateRecord | None,
        link: records.CertificateLink | None,
        events: tuple[AuditEvent, ...],
    ) -> bool:
        """Inside the (group's) transaction, under a savepoint: all of it or nothing."""
        db = self.database.connection
        db.execute(f"SAVEPOINT {_SAVEPOINT}")
        try:
            stored = self._write(rows, certificate, link, events)
        except BaseException:
            if db.in_transaction:  # an I/O error may have ended the transaction already
                with suppress(sqlite3.Error):
                    db.execute(f"ROLLBACK TO {_SAVEPOINT}")
                    db.execute(f"RELEASE {_SAVEPOINT}")
            raise
        if not stored:
            db.execute(f"ROLLBACK TO {_SAVEPOINT}")
        db.execute(f"RELEASE {_SAVEPOINT}")
        return stored

    def _write(
        self,
        rows: list[_Row],
        certificate: CertificateRecord | None,
        link: records.CertificateLink | None,
        events: tuple[AuditEvent, ...],
    ) -> bool:
        """Every record, then the certificate and its link, then the audit events (the
        certificate's issuance event kept in its row)."""
        for table, record_id, revision, columns, record in rows:
            if not self._put(table, record_id, revision, columns, record):
                return False
        if certificate is not None:
            self._certificates.insert_with_events(certificate, events)
            events = ()
        if link is not None:
            self.database.connection.execute(
                "INSERT INTO acme_certificates (serial, provisioner, account_id, order_id)"
                " VALUES (?, ?, ?, ?)",
                (link.serial, link.provisioner, link.account_id, link.order_id),
            )
        for event in events:
            self._audit.insert(event)
        return True

    def _put(
        self,
        table: str,
        record_id: str,
        revision: int,
        columns: dict[str, Any],
        record: dict[str, Any],
    ) -> bool:
        """Insert (revision 0) or replace at the expected revision; False on a conflict."""
        db = self.database.connection
        data = json.dumps(record, default=str)
        names = tuple(columns)
        if revision == 0:
            try:
                db.execute(_insert_sql(table, names), (record_id, *columns.values(), data, 1))
            except sqlite3.IntegrityError:
                return False
            return True
        try:
            cursor = db.execute(
                _update_sql(table, names), (*columns.values(), data, record_id, revision)
            )
        except sqlite3.IntegrityError:
            return False
        return cursor.rowcount == 1
