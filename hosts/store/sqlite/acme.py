"""ACME state in SQLite (tables acme_accounts, acme_orders, acme_authorizations,
acme_challenges, acme_certificates). Each row keeps the engine's record as JSON, beside
the columns it is looked up by, and the revision it was written at."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from engine.acme import records
from engine.acme.effects import Write

from ..records import CertificateRecord
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
    ) -> bool:
        step = partial(self._write, _rows(write), certificate, link)
        return self.database.transaction(step)

    def _write(
        self,
        rows: list[_Row],
        certificate: CertificateRecord | None,
        link: records.CertificateLink | None,
    ) -> bool:
        """Inside the transaction: every record, then the certificate and its link."""
        for table, record_id, revision, columns, record in rows:
            if not self._put(table, record_id, revision, columns, record):
                return False
        if certificate is not None:
            self._certificates.insert(certificate)
        if link is not None:
            self.database.connection.execute(
                "INSERT INTO acme_certificates (serial, provisioner, account_id, order_id)"
                " VALUES (?, ?, ?, ?)",
                (link.serial, link.provisioner, link.account_id, link.order_id),
            )
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
        if revision == 0:
            names = ["id", *columns, "record", "revision"]
            values = [record_id, *columns.values(), data, 1]
            marks = ", ".join("?" for _ in names)
            try:
                db.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", values)
            except sqlite3.IntegrityError:
                return False
            return True
        assignments = "".join(f"{name} = ?, " for name in columns)
        try:
            cursor = db.execute(
                f"UPDATE {table} SET {assignments}record = ?, revision = revision + 1"
                " WHERE id = ? AND revision = ?",
                (*columns.values(), data, record_id, revision),
            )
        except sqlite3.IntegrityError:
            return False
        return cursor.rowcount == 1
