"""The ACME replay nonces of one server process, kept in memory (no write per nonce).

:class:`ReplayNonces` holds the engine's :class:`~engine.acme.nonces.NonceBook`
behind a lock (worker threads mint and redeem). Its key comes from the OS at
first use in each process: a ``--workers`` worker, or the server after a
restart, has a key of its own, so the nonces of any other process are refused
as ``badNonce`` (and the client retries with the nonce of the refusal). A book
inherited through ``fork`` is never used: the first call in the child makes a
new one.
"""

from __future__ import annotations

import os
import secrets
import threading
from datetime import datetime, timedelta

from engine.acme.nonces import KEY_BYTES, NONCE_LIFETIME, NONCE_WINDOW, NonceBook
from engine.ports import Clock


class ReplayNonces:
    def __init__(
        self,
        clock: Clock,
        *,
        lifetime: timedelta = NONCE_LIFETIME,
        window: int = NONCE_WINDOW,
    ) -> None:
        self._clock = clock
        self._lifetime = lifetime
        self._window = window
        self._lock = threading.Lock()
        self._book: NonceBook | None = None
        self._pid = -1

    def _current(self) -> NonceBook:
        """This process's book (call with the lock held)."""
        pid = os.getpid()
        if self._book is None or self._pid != pid:
            key = secrets.token_bytes(KEY_BYTES)
            self._book = NonceBook(key, lifetime=self._lifetime, window=self._window)
            self._pid = pid
        return self._book

    def issue(self, now: datetime | None = None) -> str:
        """A fresh nonce for a Replay-Nonce header."""
        when = self._clock.now() if now is None else now
        with self._lock:
            return self._current().mint(when)

    def redeem(self, value: str, now: datetime) -> None:
        """Accept *value* once; raises ``badNonce`` (ACMEProblem) otherwise."""
        with self._lock:
            self._current().redeem(value, now)

    @property
    def issued(self) -> int:
        """Nonces this process minted since its book was made."""
        with self._lock:
            return 0 if self._book is None else self._book.issued
