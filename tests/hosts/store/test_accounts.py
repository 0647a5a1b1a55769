"""Device accounts (engine.accounts.Account)."""

from __future__ import annotations

from datetime import timedelta

import attrs

from engine.accounts import Account, AccountStatus, account_from_input
from hosts.store import Stores

from .records import NOW


def account(name: str, id: str | None = None) -> Account:
    return account_from_input(
        {"name": name, "type": "wifi", "tags": ["lab"]},
        id=id or name.encode().hex().ljust(32, "0"),
        now=NOW,
    )


def test_an_account_reads_back_and_names_are_unique(stores: Stores) -> None:
    wifi = account("corp-wifi")
    assert stores.accounts.add_account(wifi)
    assert stores.accounts.get_account("corp-wifi") == wifi
    assert not stores.accounts.add_account(account("corp-wifi", id="f" * 32))
    assert not stores.accounts.add_account(attrs.evolve(account("vpn"), id=wifi.id))
    assert stores.accounts.get_account("vpn") is None


def test_accounts_are_listed_by_name(stores: Stores) -> None:
    for name in ("vpn", "corp-wifi", "web"):
        stores.accounts.add_account(account(name))
    assert [a.name for a in stores.accounts.list_accounts()] == ["corp-wifi", "vpn", "web"]


def test_an_update_needs_the_same_id_and_name(stores: Stores) -> None:
    wifi = account("corp-wifi")
    stores.accounts.add_account(wifi)
    later = NOW + timedelta(hours=1)
    disabled = attrs.evolve(wifi, status=AccountStatus.DISABLED, updated_at=later)
    assert stores.accounts.update_account(disabled)
    assert stores.accounts.get_account("corp-wifi") == disabled
    # Removed and re-created under the same name: an update of the old one finds nothing.
    assert not stores.accounts.update_account(attrs.evolve(disabled, id="e" * 32))
    assert not stores.accounts.update_account(account("vpn"))


def test_an_account_is_deleted_once(stores: Stores) -> None:
    stores.accounts.add_account(account("corp-wifi"))
    assert stores.accounts.delete_account("corp-wifi")
    assert not stores.accounts.delete_account("corp-wifi")
    assert stores.accounts.list_accounts() == []
