"""Device accounts in SQLite (table accounts): each row keeps the engine's record as
JSON, under the account's id and unique name."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from engine.accounts import Account, account_from_store

from .database import Database, timestamp


class SQLiteAccounts:
    def __init__(self, database: Database) -> None:
        self.database = database

    def add_account(self, account: Account) -> bool:
        created = account.created_at or datetime.now(UTC)
        updated = account.updated_at or created
        with self.database.writing():
            cursor = self.database.connection.execute(
                "INSERT OR IGNORE INTO accounts (id, name, record, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    account.id,
                    account.name,
                    json.dumps(account.to_json()),
                    timestamp(created),
                    timestamp(updated),
                ),
            )
            return cursor.rowcount == 1

    def get_account(self, name: str) -> Account | None:
        row = self.database.one("SELECT record FROM accounts WHERE name = ?", (name,))
        return None if row is None else account_from_store(json.loads(str(row[0])))

    def list_accounts(self) -> Sequence[Account]:
        rows = self.database.all("SELECT record FROM accounts ORDER BY name")
        return [account_from_store(json.loads(str(r[0]))) for r in rows]

    def update_account(self, account: Account) -> bool:
        with self.database.writing():
            cursor = self.database.connection.execute(
                "UPDATE accounts SET record = ?, updated_at = ? WHERE id = ? AND name = ?",
                (
                    json.dumps(account.to_json()),
                    timestamp(account.updated_at or datetime.now(UTC)),
                    account.id,
                    account.name,
                ),
            )
            return cursor.rowcount == 1

    def delete_account(self, name: str) -> bool:
        with self.database.writing():
            cursor = self.database.connection.execute(
                "DELETE FROM accounts WHERE name = ?", (name,)
            )
            return cursor.rowcount == 1
