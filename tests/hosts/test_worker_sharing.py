"""What several raw-host workers share: the port (one SO_REUSEPORT socket each) and the
SQLite database (writers queued on an advisory lock, a token still used once)."""

from __future__ import annotations

import os
import select
import socket
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hosts.raw.server import listening_socket, worker_cpus, worker_sockets
from hosts.store import CertificateRecord, Stores, UsedToken, open_sqlite
from hosts.store.sqlite import WRITER_LOCK_SUFFIX

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_each_worker_gets_its_own_socket_on_one_port() -> None:
    sockets = worker_sockets("127.0.0.1:0", 3)
    try:
        assert len({id(s) for s in sockets}) == 3
        ports = {s.getsockname()[1] for s in sockets}
        assert len(ports) == 1
        port = ports.pop()
        for sock in sockets:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        # The kernel spreads connections over the sockets; every one is accepted by one.
        accepted: dict[int, int] = {}
        clients = []
        for _ in range(24):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            clients.append(client)
        pending = 24
        while pending:
            ready, _, _ = select.select(sockets, [], [], 5)
            assert ready, "a connection was not accepted by any worker socket"
            for sock in ready:
                conn, _ = sock.accept()
                conn.close()
                accepted[sockets.index(sock)] = accepted.get(sockets.index(sock), 0) + 1
                pending -= 1
        assert sum(accepted.values()) == 24
        assert len(accepted) >= 2  # 24 connections over 3 queues: not all in one
        for client in clients:
            client.close()
    finally:
        for sock in sockets:
            sock.close()


def test_a_port_in_use_is_refused_as_with_one_socket() -> None:
    taken = listening_socket("127.0.0.1:0")
    try:
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            worker_sockets(f"127.0.0.1:{port}", 2)
    finally:
        taken.close()


def test_one_worker_keeps_a_plain_socket() -> None:
    (sock,) = worker_sockets("127.0.0.1:0", 1)
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
    finally:
        sock.close()


def test_several_workers_get_a_cpu_each_where_there_are_enough() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    assert worker_cpus(1) is None
    assert worker_cpus(len(allowed) + 1) is None
    if len(allowed) >= 2:
        assert worker_cpus(2) == [{allowed[0]}, {allowed[1]}]


def record(serial: str) -> CertificateRecord:
    return CertificateRecord(
        serial=serial,
        issuer="agent",
        subject=f"CN={serial}",
        sans=(f"{serial}.example.com",),
        provisioner_type="JWK",
        provisioner_name="admin",
        not_before=NOW,
        not_after=NOW + timedelta(days=1),
        der=b"\x30\x00",
        evidence={},
        created_at=NOW,
    )


def test_two_stores_on_one_database_use_a_token_once(tmp_path: Path) -> None:
    """Two connections (as two workers have) race to use the same tokens: each token
    is used exactly once, every certificate of a winner is stored, nothing deadlocks."""
    path = tmp_path / "db" / "devid.sqlite"
    stores = [open_sqlite(path), open_sqlite(path)]
    assert (path.parent / (path.name + WRITER_LOCK_SUFFIX)).exists()
    wins: list[list[str]] = [[], []]
    barrier = threading.Barrier(2)

    def worker(index: int) -> None:
        barrier.wait()
        for n in range(150):
            token = UsedToken("admin", f"jti-{n}", NOW + timedelta(minutes=5), NOW)
            serial = f"{index:x}{n:04x}"
            if stores[index].certificates.record_certificate(record(serial), used_token=token):
                wins[index].append(serial)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    try:
        assert len(wins[0]) + len(wins[1]) == 150
        assert stores[0].certificates.count_certificates() == 150
        assert stores[1].tokens.count_used_tokens() == 150
        for serial in wins[0] + wins[1]:
            assert stores[1].certificates.get_certificate(serial) is not None
    finally:
        for store in stores:
            store.close()
        stores[0].close()  # closing twice is harmless


# --- group commit ---------------------------------------------------------------------


def _race(stores: Stores, jobs: list[tuple[CertificateRecord, UsedToken | None]]) -> list[object]:
    """Queue every job behind a held store, then let one batch commit them all."""
    outcomes: list[object] = [None] * len(jobs)
    commits: list[str] = []
    database = stores.certificates.database  # the SQLite backend's
    db = database.connection
    database.connection = _Spy(db, commits)

    def run(index: int) -> None:
        record, token = jobs[index]
        try:
            outcomes[index] = stores.certificates.record_certificate(record, used_token=token)
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    with database.lock:  # the first caller leads, and waits here while all queue
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(database._pending) < len(jobs) and time.monotonic() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()
    database.connection = db
    outcomes.append(commits)
    return outcomes


class _Spy:
    def __init__(self, db: sqlite3.Connection, commits: list[str]) -> None:
        self._db = db
        self._commits = commits

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql in ("COMMIT", "ROLLBACK"):
            self._commits.append(sql)
        return self._db.execute(sql, *args)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)


def token(n: int | str) -> UsedToken:
    return UsedToken("admin", f"jti-{n}", NOW + timedelta(minutes=5), NOW)


def test_waiting_certificates_are_committed_together(tmp_path: Path) -> None:
    stores = open_sqlite(tmp_path / "devid.sqlite")
    try:
        jobs = [(record(f"a{n}"), token(n)) for n in range(12)]
        *outcomes, commits = _race(stores, jobs)
        assert outcomes == [True] * 12
        # All twelve waited for the database, then went in one transaction.
        assert commits == ["COMMIT"]
        for n in range(12):
            assert stores.certificates.get_certificate(f"a{n}") is not None
        # Committed means on disk for every other connection too.
        other = open_sqlite(tmp_path / "devid.sqlite")
        assert other.certificates.count_certificates() == 12
        other.close()
    finally:
        stores.close()


def test_a_token_twice_in_one_batch_is_used_once(tmp_path: Path) -> None:
    stores = open_sqlite(tmp_path / "devid.sqlite")
    try:
        stores.certificates.record_certificate(record("old"), used_token=token("used-before"))
        jobs = [(record(f"b{n}"), token("same")) for n in range(6)]
        jobs.append((record("c"), token("used-before")))
        jobs.append((record("d"), None))
        *outcomes, _ = _race(stores, jobs)
        assert outcomes[:6].count(True) == 1
        assert outcomes[6] is False and outcomes[7] is True
        assert stores.certificates.count_certificates() == 3  # old, one b, d
        assert stores.certificates.get_certificate("c") is None
    finally:
        stores.close()


def test_a_failing_certificate_fails_alone(tmp_path: Path) -> None:
    """A duplicate serial in a batch: that caller gets the error, as a lone commit would
    give it, and its token stays unused; the others are stored."""
    stores = open_sqlite(tmp_path / "devid.sqlite")
    try:
        stores.certificates.record_certificate(record("taken"))
        jobs = [(record(f"e{n}"), token(f"e{n}")) for n in range(4)]
        jobs.insert(2, (record("taken"), token("dup")))
        *outcomes, commits = _race(stores, jobs)
        assert isinstance(outcomes[2], sqlite3.IntegrityError)
        assert [o for i, o in enumerate(outcomes) if i != 2] == [True] * 4
        assert stores.certificates.count_certificates() == 5
        assert stores.tokens.use_token("admin", "jti-dup", NOW + timedelta(minutes=5), NOW)
        assert "ROLLBACK" in commits
    finally:
        stores.close()


def test_a_failure_to_lock_reaches_every_waiter_and_the_next_call_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores = open_sqlite(tmp_path / "devid.sqlite")
    database = stores.certificates.database  # the SQLite backend's
    real = database.writing
    calls = []

    def broken() -> object:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("no lock today")
        return real()

    monkeypatch.setattr(database, "writing", broken)
    try:
        with pytest.raises(OSError, match="no lock today"):
            stores.certificates.record_certificate(record("f1"), used_token=token("f1"))
        assert stores.certificates.record_certificate(record("f2"), used_token=token("f1"))
        assert stores.certificates.count_certificates() == 1
    finally:
        stores.close()
