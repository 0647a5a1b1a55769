"""Used one-time tokens in SQLite (table used_tokens)."""

from __future__ import annotations

import sys
from datetime import datetime

from ..records import UsedToken
from .database import Database, from_timestamp, timestamp

#: Every this many tokens used, those that have expired are forgotten as well.
PRUNE_EVERY = 1000


class SQLiteTokens:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._writes_since_prune = 0

    def claim(self, token: UsedToken) -> bool:
        """Insert a used token inside the caller's transaction (or as a statement of its
        own, inside :meth:`Database.writing`); False if it is known."""
        db = self.database.connection
        self._writes_since_prune += 1
        if self._writes_since_prune >= PRUNE_EVERY:
            self._writes_since_prune = 0
            db.execute("DELETE FROM used_tokens WHERE expires_at < ?", (timestamp(token.now),))
        cursor = db.execute(
            "INSERT OR IGNORE INTO used_tokens (provisioner, token_id, expires_at)"
            " VALUES (?, ?, ?)",
            (token.provisioner, token.token_id, timestamp(token.expires_at)),
        )
        return cursor.rowcount == 1

    def use_token(
        self, provisioner: str, token_id: str, expires_at: datetime, now: datetime
    ) -> bool:
        with self.database.writing():
            return self.claim(UsedToken(provisioner, token_id, expires_at, now))

    def forget_token(self, provisioner: str, token_id: str) -> bool:
        with self.database.writing():
            cursor = self.database.connection.execute(
                "DELETE FROM used_tokens WHERE provisioner = ? AND token_id = ?",
                (provisioner, token_id),
            )
            return cursor.rowcount == 1

    def used_tokens(self, provisioner: str, prefix: str = "") -> list[tuple[str, datetime]]:
        sql = "SELECT token_id, expires_at FROM used_tokens WHERE provisioner = ?"
        params: tuple[str, ...] = (provisioner,)
        if prefix:
            # A range of the primary key (LIKE would read a prefix's % and _ as wildcards):
            # the ids from the prefix up to the prefix with its last character's successor.
            sql += " AND token_id >= ?"
            params += (prefix,)
            if ord(prefix[-1]) < sys.maxunicode:
                sql += " AND token_id < ?"
                params += (prefix[:-1] + chr(ord(prefix[-1]) + 1),)
        rows = self.database.all(sql + " ORDER BY token_id", params)
        return [
            (str(token_id), from_timestamp(expires_at))
            for token_id, expires_at in rows
            if str(token_id).startswith(prefix)
        ]

    def prune_tokens(self, now: datetime) -> int:
        with self.database.writing():
            cursor = self.database.connection.execute(
                "DELETE FROM used_tokens WHERE expires_at < ?", (timestamp(now),)
            )
            return cursor.rowcount

    def count_used_tokens(self) -> int:
        return self.database.count("SELECT COUNT(*) FROM used_tokens")
