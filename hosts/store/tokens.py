"""One-time tokens already used (each is accepted once per provisioner)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class TokenStore(Protocol):
    def use_token(
        self, provisioner: str, token_id: str, expires_at: datetime, now: datetime
    ) -> bool:
        """Record a one-time token as used, committed on return; False if it was used
        before."""
        ...

    def prune_tokens(self, now: datetime) -> int:
        """Forget used tokens that have expired anyway; return how many."""
        ...

    def count_used_tokens(self) -> int:
        """How many used tokens are remembered (expired ones until they are pruned)."""
        ...
