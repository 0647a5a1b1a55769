"""Operator accounts: the people who sign in to the operator UI, each with a role, an
argon2id password hash and a TOTP secret. Device accounts are another thing, kept by
``hosts.store.accounts``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import attrs

#: The roles an operator can have, from the least to the most it may do: a viewer reads,
#: an operator also acts on devices, accounts and certificates, an admin also manages
#: provisioners and operators.
ROLES = ("viewer", "operator", "admin")


@attrs.frozen
class Operator:
    username: str
    role: str
    #: The PHC string of the password's argon2id hash (``$argon2id$...``).
    password_hash: str
    #: The base32 TOTP secret (RFC 6238) the operator's authenticator app holds.
    totp_secret: str
    created_at: datetime
    updated_at: datetime
    disabled: bool = False
    #: The TOTP time step of the last code accepted, so that no code is accepted twice.
    last_totp_step: int | None = None


class OperatorStore(Protocol):
    def add_operator(self, operator: Operator) -> bool:
        """Create an operator, committed on return; False if the username is taken."""
        ...

    def get_operator(self, username: str) -> Operator | None: ...

    def list_operators(self) -> Sequence[Operator]:
        """Every operator, by username."""
        ...

    def update_operator(self, operator: Operator) -> bool:
        """Replace the role, password hash, TOTP secret, disabled flag and update time of
        the operator with this username (``last_totp_step`` is kept when the secret is
        the same, cleared with a new one), committed on return; False if there is none."""
        ...

    def delete_operator(self, username: str) -> bool:
        """Remove an operator, committed on return; False if there was none."""
        ...

    def use_totp_step(self, username: str, step: int) -> bool:
        """Record *step* as the operator's last accepted TOTP step, committed on return,
        only if it is later than the one recorded and the operator is not disabled; False
        otherwise (a replayed code, or a code older than one already used)."""
        ...
