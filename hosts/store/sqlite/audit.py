"""The audit log in SQLite: appended to, never changed. Appends are group-committed with
the certificates (see :meth:`.Database.group_commit`).

Two tables hold it. ``audit_events`` keeps every event but one kind: the event of a
certificate's issuance (``certificate.issued``, ``certificate.renewed``), written in the
certificate's own commit, is kept in the certificate's row (``certificates.audit_*``):
one row and no index entries of its own, where a row of ``audit_events`` would touch
three b-trees per issuance. Reading the log merges both, newest first; ids come from one
sequence (``audit_events``'s), so they stay unique and in the order events were kept.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs

from ..audit import AuditEvent, AuditQuery
from .database import Database, from_timestamp, timestamp

_COLUMNS = "id, time, actor, action, target, result, details"
# The same columns read from the certificates that keep their issuance event.
_CERTIFICATE_COLUMNS = (
    "audit_id, created_at, audit_actor, audit_action, serial, 'ok', audit_details"
)
#: Events kept in the row of the certificate they are about, when written with it.
INLINE_ACTIONS = frozenset({"certificate.issued", "certificate.renewed"})


def inline_event(event: AuditEvent | None, serial: str) -> bool:
    """Whether *event*, written with the certificate *serial*, is kept in its row."""
    return (
        event is not None
        and event.action in INLINE_ACTIONS
        and event.target == serial
        and event.result == "ok"
    )


def details_json(event: AuditEvent) -> str:
    return json.dumps(dict(event.details), sort_keys=True, default=str)


def _event(row: tuple[Any, ...]) -> AuditEvent:
    id_, time, actor, action, target, result, details = row
    facts = json.loads(str(details))
    return AuditEvent(
        id=int(id_),
        time=from_timestamp(float(time)),
        actor=str(actor),
        action=str(action),
        target=str(target),
        result=str(result),
        details=facts if isinstance(facts, dict) else {},
    )


def _like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _filters(query: AuditQuery, columns: dict[str, str]) -> tuple[str, list[object]]:
    """The WHERE conditions of *query* over a table whose columns are named *columns*
    (a column of None: the table's rows all have ``result`` ok)."""
    where: list[str] = []
    params: list[object] = []
    for field in ("actor", "target"):
        value = getattr(query, field)
        if value is not None:
            where.append(f"{columns[field]} = ?")
            params.append(value)
    if query.result is not None:
        where.append(f"{columns['result']} = ?")
        params.append(query.result)
    if query.action is not None:
        if query.action.endswith("."):
            where.append(f"{columns['action']} LIKE ? ESCAPE '\\'")
            params.append(_like(query.action))
        else:
            where.append(f"{columns['action']} = ?")
            params.append(query.action)
    if query.since is not None:
        where.append(f"{columns['time']} >= ?")
        params.append(timestamp(query.since))
    if query.until is not None:
        where.append(f"{columns['time']} < ?")
        params.append(timestamp(query.until))
    return " AND ".join(where), params


_EVENTS = {n: n for n in ("actor", "action", "target", "result", "time")}
_CERTIFICATES = {
    "actor": "audit_actor",
    "action": "audit_action",
    "target": "serial",
    "result": "'ok'",
    "time": "created_at",
}


class SQLiteAudit:
    def __init__(self, database: Database) -> None:
        self.database = database

    def insert(self, event: AuditEvent) -> int:
        """Append *event* inside the caller's transaction (also the certificates'); its id."""
        cursor = self.database.connection.execute(
            "INSERT INTO audit_events (time, actor, action, target, result, details)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                timestamp(event.time),
                event.actor,
                event.action,
                event.target,
                event.result,
                details_json(event),
            ),
        )
        return int(cursor.lastrowid or 0)

    def next_id(self) -> int:
        """Take the next event id, inside the caller's transaction, for an event kept
        outside ``audit_events`` (a certificate's issuance, in its row)."""
        db = self.database.connection
        row = db.execute(
            "UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'audit_events' RETURNING seq"
        ).fetchone()
        if row is not None:
            return int(row[0])
        # No event was ever appended: the sequence starts here (past any row kept).
        first = int(db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM audit_events").fetchone()[0])
        db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('audit_events', ?)", (first,))
        return first

    def append(self, event: AuditEvent) -> AuditEvent:
        ids: list[int] = []

        def step() -> bool:
            ids[:] = [self.insert(event)]
            return True

        # Events come with each issuance: they share commits (one fsync) with the
        # certificates and events of other threads that arrive meanwhile.
        self.database.group_commit(step)
        return attrs.evolve(event, id=ids[0])

    def find(self, query: AuditQuery) -> tuple[Sequence[AuditEvent], int]:
        events, events_params = _filters(query, _EVENTS)
        kept, kept_params = _filters(query, _CERTIFICATES)
        events_where = f" WHERE {events}" if events else ""
        kept_where = " WHERE audit_id IS NOT NULL" + (f" AND {kept}" if kept else "")
        params = [*events_params, *kept_params]
        db = self.database
        with db.lock:  # the count and the page from one moment
            total = int(
                db.connection.execute(
                    f"SELECT (SELECT COUNT(*) FROM audit_events{events_where})"
                    f" + (SELECT COUNT(*) FROM certificates{kept_where})",
                    params,
                ).fetchone()[0]
            )
            rows = db.connection.execute(
                f"SELECT {_COLUMNS} FROM audit_events{events_where}"
                f" UNION ALL SELECT {_CERTIFICATE_COLUMNS} FROM certificates{kept_where}"
                " ORDER BY 2 DESC, 1 DESC LIMIT ? OFFSET ?",
                [*params, query.limit, query.offset],
            ).fetchall()
        return [_event(r) for r in rows], total
