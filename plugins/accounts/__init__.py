"""The account provisioner plugin: one X5C provisioner per device account.

Each account ``NAME`` (Wi-Fi, VPN, …; ``devid account add``) has a provisioner
``account:NAME`` on the Account CA. The host builds them from its stored accounts
(the type is not configurable in devid.toml) and hands each the read-only
:class:`plugins.api.Lookup`, through which it reads the account, the device and the
device certificate at every request.
"""

from __future__ import annotations

from collections.abc import Sequence

from plugins.api import Provisioner, hookimpl

from .provisioner import AccountProvisioner

__all__ = ["AccountProvisioner"]


@hookimpl
def devid_provisioner_types() -> Sequence[type[Provisioner]]:
    return [AccountProvisioner]
