"""Device accounts in SQLite (table accounts): each row keeps the engine's record as
JSON, under the account's id and unique name."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from engine.accounts import Account, account_from_store

from .database import Database, timestamp

#: Parsed accounts kept by their stored text (a handful of accounts, read per request).
_PARSED_LIMIT = 1024


class SQLiteAccounts:
    def __init__(self, database: Database) -> None:
        self.database = database
        # Accounts are immutable values: one parsed from a given stored text is the
        # same whenever that text is read again (an update stores another text).
        self._parsed: dict[str, Account] = {}

    def _account(self, record: object) -> Account:
        text = str(record)
        found = self._parsed.get(text)
        if found is None:
            found = account_from_store(json.loads(text))
            if len(self._parsed) >= _PARSED_LIMIT:
                self._parsed.clear()
            self._parsed[text] = found
        return found

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
        return None if row is None else self._account(row[0])

    def list_accounts(self) -> Sequence[Account]:
        rows = self.database.all("SELECT record FROM accounts ORDER BY name")
        return [self._account(r[0]) for r in rows]

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
