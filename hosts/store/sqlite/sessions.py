"""Pending attestation sessions in SQLite (table attestation_sessions).

A session lives for the challenge's lifetime (a minute by default) and is
written without waiting for the disk: with ``synchronous=FULL`` each commit
would otherwise cost an fsync, two per enrolment. Losing one to a power cut
only makes the device attest again (its answer then finds no session and is
refused). The removal by :meth:`SQLiteSessions.take_session` is atomic (``DELETE
... RETURNING`` under the writer lock), so a session is still taken at most once
by the running server; and in WAL mode the next durable commit (the AK
certificate's, right after) writes the log up to and including that removal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from .database import Database, timestamp

#: PRAGMA synchronous values (SQLite's numbering): 1 NORMAL, 2 FULL, 3 EXTRA.
_NORMAL = 1


class SQLiteSessions:
    def __init__(self, database: Database) -> None:
        self.database = database

    @contextmanager
    def _ephemeral(self) -> Iterator[None]:
        """Write under the writer lock with at most ``synchronous=NORMAL`` (no fsync at
        commit in WAL mode), the connection's own setting restored afterwards."""
        db = self.database
        with db.writing():
            connection = db.connection
            level = int(connection.execute("PRAGMA synchronous").fetchone()[0])
            if level <= _NORMAL:
                yield
                return
            connection.execute(f"PRAGMA synchronous={_NORMAL}")
            try:
                yield
            finally:
                connection.execute(f"PRAGMA synchronous={level}")

    def put_session(
        self,
        session_id: str,
        ek_urn: str,
        session: dict[str, Any],
        expires_at: datetime,
        now: datetime,
    ) -> None:
        connection = self.database.connection
        with self._ephemeral():
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute(
                    "DELETE FROM attestation_sessions WHERE expires_at < ?", (timestamp(now),)
                )
                connection.execute(
                    "INSERT INTO attestation_sessions (id, ek_urn, session, expires_at)"
                    " VALUES (?, ?, ?, ?)",
                    (session_id, ek_urn, json.dumps(session), timestamp(expires_at)),
                )
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    def take_session(self, session_id: str) -> dict[str, Any] | None:
        """Remove and return a session: each one can be answered once."""
        with self._ephemeral():
            rows = self.database.connection.execute(
                "DELETE FROM attestation_sessions WHERE id = ? RETURNING session", (session_id,)
            ).fetchall()  # stepped to the end: committed before the setting is restored
        if not rows:
            return None
        value = json.loads(str(rows[0][0]))
        assert isinstance(value, dict)
        return value

    def count_sessions(self) -> int:
        return self.database.count("SELECT COUNT(*) FROM attestation_sessions")
