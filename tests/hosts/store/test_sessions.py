"""Pending attestation sessions."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hosts.store import Stores
from hosts.store.sqlite import open_sqlite
from hosts.store.sqlite.sessions import SQLiteSessions

from .records import NOW

EK = "urn:ek:sha256:" + "a" * 64


def test_a_session_is_taken_once(stores: Stores) -> None:
    stores.sessions.put_session("s1", EK, {"nonce": "n", "n": [1]}, NOW + timedelta(minutes=5), NOW)
    assert stores.sessions.take_session("s1") == {"nonce": "n", "n": [1]}
    assert stores.sessions.take_session("s1") is None
    assert stores.sessions.take_session("unknown") is None


def test_putting_a_session_drops_the_expired_ones(stores: Stores) -> None:
    stores.sessions.put_session("old", EK, {}, NOW + timedelta(minutes=1), NOW)
    stores.sessions.put_session("s2", EK, {}, NOW + timedelta(minutes=5), NOW)
    assert stores.sessions.count_sessions() == 2
    later = NOW + timedelta(minutes=2)
    stores.sessions.put_session("s3", EK, {}, later + timedelta(minutes=5), later)
    assert stores.sessions.count_sessions() == 2
    assert stores.sessions.take_session("old") is None
    assert stores.sessions.take_session("s2") == {}


def test_sessions_leave_the_durable_setting_as_it_was(tmp_path: Path) -> None:
    """Sessions are written without an fsync, and every other commit stays synchronous=FULL."""
    stores = open_sqlite(tmp_path / "full.sqlite", synchronous="full")
    try:
        sessions = stores.sessions
        assert isinstance(sessions, SQLiteSessions)
        sessions.put_session("s1", EK, {"n": 1}, NOW + timedelta(minutes=5), NOW)
        assert sessions.database.synchronous() == "full"
        assert sessions.take_session("s1") == {"n": 1}
        assert sessions.take_session("s1") is None
        assert sessions.database.synchronous() == "full"
    finally:
        stores.close()
