"""Device accounts (Wi-Fi, VPN, web: what devices get certificates for), the records of
``engine.accounts``. ACME accounts are another thing, kept by ``hosts.store.acme``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from engine.accounts import Account


class DeviceAccountStore(Protocol):
    def add_account(self, account: Account) -> bool:
        """Create an account, committed on return; False if its name (or id) is taken."""
        ...

    def get_account(self, name: str) -> Account | None: ...

    def list_accounts(self) -> Sequence[Account]:
        """Every account, by name."""
        ...

    def update_account(self, account: Account) -> bool:
        """Replace the stored account with this id and name, committed on return; False
        if there is none."""
        ...

    def delete_account(self, name: str) -> bool:
        """Remove an account, committed on return; False if there was none."""
        ...
