"""The real clock and randomness handed to the engine."""

from __future__ import annotations

import os
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SystemRandom:
    def bytes(self, n: int) -> bytes:
        return os.urandom(n)
