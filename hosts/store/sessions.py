"""Pending attestation sessions (between POST /attest and POST /secret)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol


class AttestationSessionStore(Protocol):
    def put_session(
        self,
        session_id: str,
        ek_urn: str,
        session: dict[str, Any],
        expires_at: datetime,
        now: datetime,
    ) -> None:
        """Keep a pending attestation session (and drop expired ones), committed on
        return."""
        ...

    def take_session(self, session_id: str) -> dict[str, Any] | None:
        """Remove and return a pending attestation session; None if there is none.
        Each session is taken at most once, by one caller."""
        ...

    def count_sessions(self) -> int:
        """How many sessions are kept (expired ones until the next put)."""
        ...
