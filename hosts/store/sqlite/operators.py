"""Operator accounts in SQLite (table operators), one row per username."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..operators import Operator
from .database import Database, from_timestamp, timestamp

_COLUMNS = (
    "username, role, password_hash, totp_secret, created_at, updated_at, disabled, last_totp_step"
)


def _operator(row: tuple[Any, ...]) -> Operator:
    return Operator(
        username=str(row[0]),
        role=str(row[1]),
        password_hash=str(row[2]),
        totp_secret=str(row[3]),
        created_at=from_timestamp(row[4]),
        updated_at=from_timestamp(row[5]),
        disabled=bool(row[6]),
        last_totp_step=None if row[7] is None else int(row[7]),
    )


class SQLiteOperators:
    def __init__(self, database: Database) -> None:
        self.database = database

    def add_operator(self, operator: Operator) -> bool:
        with self.database.writing():
            cursor = self.database.connection.execute(
                f"INSERT OR IGNORE INTO operators ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    operator.username,
                    operator.role,
                    operator.password_hash,
                    operator.totp_secret,
                    timestamp(operator.created_at),
                    timestamp(operator.updated_at),
                    int(operator.disabled),
                    operator.last_totp_step,
                ),
            )
            return cursor.rowcount == 1

    def get_operator(self, username: str) -> Operator | None:
        row = self.database.one(f"SELECT {_COLUMNS} FROM operators WHERE username = ?", (username,))
        return None if row is None else _operator(row)

    def list_operators(self) -> Sequence[Operator]:
        rows = self.database.all(f"SELECT {_COLUMNS} FROM operators ORDER BY username")
        return [_operator(row) for row in rows]

    def update_operator(self, operator: Operator) -> bool:
        with self.database.writing():
            cursor = self.database.connection.execute(
                "UPDATE operators SET role = ?, password_hash = ?, updated_at = ?,"
                " disabled = ?,"
                " last_totp_step = CASE WHEN totp_secret = ? THEN last_totp_step END,"
                " totp_secret = ?"
                " WHERE username = ?",
                (
                    operator.role,
                    operator.password_hash,
                    timestamp(operator.updated_at),
                    int(operator.disabled),
                    operator.totp_secret,
                    operator.totp_secret,
                    operator.username,
                ),
            )
            return cursor.rowcount == 1

    def delete_operator(self, username: str) -> bool:
        with self.database.writing():
            cursor = self.database.connection.execute(
                "DELETE FROM operators WHERE username = ?", (username,)
            )
            return cursor.rowcount == 1

    def use_totp_step(self, username: str, step: int) -> bool:
        with self.database.writing():
            cursor = self.database.connection.execute(
                "UPDATE operators SET last_totp_step = ? WHERE username = ? AND disabled = 0"
                " AND (last_totp_step IS NULL OR last_totp_step < ?)",
                (step, username, step),
            )
            return cursor.rowcount == 1
