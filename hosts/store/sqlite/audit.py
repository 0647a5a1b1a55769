"""The audit log in SQLite (table audit_events): appended to, never changed. Appends
are group-committed with the certificates (see :meth:`.Database.group_commit`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs

from ..audit import AuditEvent, AuditQuery
from .database import Database, from_timestamp, timestamp

_COLUMNS = "id, time, actor, action, target, result, details"


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
                json.dumps(dict(event.details), sort_keys=True, default=str),
            ),
        )
        return int(cursor.lastrowid or 0)

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
        where: list[str] = []
        params: list[object] = []
        for column in ("actor", "target", "result"):
            value = getattr(query, column)
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.action is not None:
            if query.action.endswith("."):
                where.append("action LIKE ? ESCAPE '\\'")
                params.append(_like(query.action))
            else:
                where.append("action = ?")
                params.append(query.action)
        if query.since is not None:
            where.append("time >= ?")
            params.append(timestamp(query.since))
        if query.until is not None:
            where.append("time < ?")
            params.append(timestamp(query.until))
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        db = self.database
        with db.lock:  # the count and the page from one moment
            total = int(
                db.connection.execute(
                    f"SELECT COUNT(*) FROM audit_events{clause}", params
                ).fetchone()[0]
            )
            rows = db.connection.execute(
                f"SELECT {_COLUMNS} FROM audit_events{clause}"
                " ORDER BY time DESC, id DESC LIMIT ? OFFSET ?",
                [*params, query.limit, query.offset],
            ).fetchall()
        return [_event(r) for r in rows], total
