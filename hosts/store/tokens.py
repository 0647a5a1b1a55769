"""One-time tokens already used (each is accepted once per provisioner)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol


class TokenStore(Protocol):
    def use_token(
        self, provisioner: str, token_id: str, expires_at: datetime, now: datetime
    ) -> bool:
        """Record a one-time token as used, committed on return; False if it was used
        before."""
        ...

    def forget_token(self, provisioner: str, token_id: str) -> bool:
        """Forget that a token was used, committed on return, so that it is accepted once
        more (the operator's override of a provisioner's trust on first use); False if it
        was not known."""
        ...

    def used_tokens(self, provisioner: str, prefix: str = "") -> Sequence[tuple[str, datetime]]:
        """The used tokens of *provisioner* whose id starts with *prefix*, with when each
        expires, by id (expired ones until they are pruned)."""
        ...

    def prune_tokens(self, now: datetime) -> int:
        """Forget used tokens that have expired anyway; return how many."""
        ...

    def count_used_tokens(self) -> int:
        """How many used tokens are remembered (expired ones until they are pruned)."""
        ...
