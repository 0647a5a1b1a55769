"""One SQLite database (WAL mode), shared by the stores of every kind.

One connection is shared by worker threads behind a lock. WAL with
``synchronous=FULL`` makes every commit durable before the call returns, against
process death and power loss alike. Writers in other processes (``devid serve
--workers N``, the CLI) queue on an advisory lock beside the database rather than in
SQLite's busy handler, and issued certificates are committed in groups (one fsync for
all that arrived while the previous group committed).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.errors import ConfigurationError

WRITER_LOCK_SUFFIX = "-writer.lock"

#: Runs inside a transaction the caller opened; True if it stored what it was given,
#: False if it stored nothing (a refused token).
Step = Callable[[], bool]


def timestamp(value: datetime) -> float:
    """How the database keeps a time: seconds since the epoch."""
    return value.timestamp()


def from_timestamp(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class _Pending:
    """A step waiting for the group commit, and what became of it."""

    __slots__ = ("done", "error", "lead", "step", "stored")

    def __init__(self, step: Step) -> None:
        self.step = step
        self.done = threading.Event()
        self.lead = False
        self.stored: bool | None = None
        self.error: BaseException | None = None


class Database:
    """The connection, who may use it when, and how writes are committed.

    ``connection`` is used only under ``lock`` (reads) or inside :meth:`writing`
    (writes). Stores read it from here at each call, never keep their own reference.
    """

    def __init__(self, path: Path, *, synchronous: str = "full") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=30
            )
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(f"cannot open the database {path}: {exc}") from None
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(
                f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}"
            )
            connection.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise ConfigurationError(f"cannot open the database {path}: {exc}") from None
        self.path = path
        self.connection = connection
        self.lock = threading.Lock()
        # Group commit (see group_commit).
        self._pending_lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._leading = False
        lock_path = path.with_name(path.name + WRITER_LOCK_SUFFIX)
        try:
            self._writer_lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except BaseException:
            connection.close()
            raise

    def close(self) -> None:
        """Close the connection and the writer lock; closing twice is harmless."""
        with self.lock:
            self.connection.close()
            if self._writer_lock >= 0:
                os.close(self._writer_lock)
                self._writer_lock = -1

    def synchronous(self) -> str:
        """What SQLite reports for ``PRAGMA synchronous`` on this connection."""
        with self.lock:
            value = int(self.connection.execute("PRAGMA synchronous").fetchone()[0])
        return {0: "off", 1: "normal", 2: "full", 3: "extra"}.get(value, str(value))

    # --- reading ---------------------------------------------------------------------

    def one(self, sql: str, params: Any = ()) -> tuple[Any, ...] | None:
        """The first row *sql* returns, if any."""
        with self.lock:
            row: tuple[Any, ...] | None = self.connection.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Every row *sql* returns."""
        with self.lock:
            return self.connection.execute(sql, params).fetchall()

    def count(self, sql: str, params: Any = ()) -> int:
        """The single number a ``SELECT COUNT(*)`` returns."""
        row = self.one(sql, params)
        assert row is not None
        return int(row[0])

    # --- writing ---------------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator[None]:
        """This thread alone (the connection is shared), and this process alone among
        the writers of the database: SQLite's write lock is then free at once."""
        with self.lock:
            fcntl.flock(self._writer_lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._writer_lock, fcntl.LOCK_UN)

    def transaction(self, step: Step) -> bool:
        """Run *step* in a transaction of its own, committed on return if it gives True,
        rolled back if it gives False or raises."""
        with self.writing():
            return self._run(step)

    def _run(self, step: Step) -> bool:
        """One transaction around *step*; the caller is :meth:`writing`."""
        db = self.connection
        db.execute("BEGIN IMMEDIATE")
        try:
            if step():
                db.execute("COMMIT")
                return True
            db.execute("ROLLBACK")
            return False
        except BaseException:
            if db.in_transaction:  # a failed COMMIT may have rolled back already
                db.execute("ROLLBACK")
            raise

    def group_commit(self, step: Step) -> bool:
        """Run *step* in a transaction committed on return, as :meth:`transaction` does,
        sharing the transaction with the steps of other threads that wait meanwhile.

        Steps that arrive while another thread commits wait, and the next of them
        commits all that are waiting in one transaction (one fsync). Each caller returns
        only after the commit that holds its step; a step that stores nothing (False)
        leaves the others in the group unaffected. If a step raises, the group is rolled
        back and each step redone alone, so every caller gets exactly what a lone
        transaction would have given it.
        """
        item = _Pending(step)
        with self._pending_lock:
            self._pending.append(item)
            lead = not self._leading
            self._leading = True
        if not lead:
            item.done.wait()
            lead = item.lead  # the previous group's committer passed the lead on to us
        if lead:
            self._lead_group()
        if item.error is not None:
            raise item.error
        assert item.stored is not None
        return item.stored

    def _lead_group(self) -> None:
        """Commit what is waiting once the database is ours (this thread's own step
        among it), then hand the lead to the first step that arrived meanwhile."""
        group: list[_Pending] | None = None
        try:
            with self.writing():
                with self._pending_lock:
                    group, self._pending = self._pending, []
                self._commit_group(group)
        except BaseException as exc:
            if group is None:
                with self._pending_lock:
                    group, self._pending = self._pending, []
            for item in group:
                if item.stored is None and item.error is None:
                    item.error = exc
        finally:
            for item in group or ():
                item.done.set()
            with self._pending_lock:
                if self._pending:
                    successor = self._pending[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._leading = False

    def _commit_group(self, group: list[_Pending]) -> None:
        """One transaction for the whole group; each item gets its outcome."""
        if len(group) > 1:
            db = self.connection
            try:
                db.execute("BEGIN IMMEDIATE")
                stored = [item.step() for item in group]
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if not isinstance(exc, Exception):
                    raise
                # Rare (a duplicate serial, an I/O error): redo each alone, so that
                # every caller gets exactly what a lone commit would have given it.
            else:
                for item, result in zip(group, stored, strict=True):
                    item.stored = result
                return
        for item in group:
            try:
                item.stored = self._run(item.step)
            except BaseException as exc:
                item.error = exc
