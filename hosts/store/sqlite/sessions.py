"""Pending attestation sessions in SQLite (table attestation_sessions)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .database import Database, timestamp


class SQLiteSessions:
    def __init__(self, database: Database) -> None:
        self.database = database

    def put_session(
        self,
        session_id: str,
        ek_urn: str,
        session: dict[str, Any],
        expires_at: datetime,
        now: datetime,
    ) -> None:
        db = self.database
        with db.writing():
            db.connection.execute(
                "DELETE FROM attestation_sessions WHERE expires_at < ?", (timestamp(now),)
            )
            db.connection.execute(
                "INSERT INTO attestation_sessions (id, ek_urn, session, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (session_id, ek_urn, json.dumps(session), timestamp(expires_at)),
            )

    def take_session(self, session_id: str) -> dict[str, Any] | None:
        """Remove and return a session: each one can be answered once."""
        with self.database.writing():
            row = self.database.connection.execute(
                "DELETE FROM attestation_sessions WHERE id = ? RETURNING session", (session_id,)
            ).fetchone()
        if row is None:
            return None
        value = json.loads(str(row[0]))
        assert isinstance(value, dict)
        return value

    def count_sessions(self) -> int:
        return self.database.count("SELECT COUNT(*) FROM attestation_sessions")
