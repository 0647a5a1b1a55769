"""Ports through which the caller hands the engine time and randomness.

The engine never reads the wall clock or the OS random source itself; hosts
pass a :class:`Clock` and a :class:`Random`, and tests pass deterministic ones.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """A source of the current time."""

    def now(self) -> datetime:
        """Return the current time as a timezone-aware UTC datetime."""
        ...


class Random(Protocol):
    """A source of cryptographically strong random bytes."""

    def bytes(self, n: int) -> bytes:
        """Return *n* random bytes."""
        ...


class FrozenClock:
    """A clock that only moves when told to; for tests and replays."""

    def __init__(self, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware datetime")
        self._now = now.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, now: datetime) -> None:
        self._now = now.astimezone(UTC)


class CountingRandom:
    """Deterministic, non-secret bytes for tests: a counter run through SHA-256."""

    def __init__(self, seed: bytes = b"devid") -> None:
        self._seed = seed
        self._counter = 0

    def bytes(self, n: int) -> bytes:
        import hashlib

        out = b""
        while len(out) < n:
            self._counter += 1
            out += hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
        return out[:n]
