"""Imports and inventory syncs change only what a row says."""

from __future__ import annotations

import base64
import os

from engine.inventory import DeviceStatus
from hosts.core.authority import Authority


def _urn() -> str:
    return "urn:ek:sha256:" + base64.b64encode(os.urandom(32)).decode()


def test_a_row_without_status_does_not_re_enable_a_disabled_device(authority: Authority) -> None:
    inventory = authority.inventory
    urn = _urn()
    inventory.add({"ek": urn, "name": "stolen-laptop", "owner": "alice", "tags": ["wifi"]})
    inventory.disable(urn)
    report = inventory.upsert_many([{"ek": urn, "serial": "SN-1"}])
    assert report.count("updated") == 1
    device = inventory.get(urn)
    assert device.status is DeviceStatus.DISABLED
    assert (device.name, device.owner, device.tags, device.serial) == (
        "stolen-laptop",
        "alice",
        ("wifi",),
        "SN-1",
    )


def test_an_explicit_status_is_applied(authority: Authority) -> None:
    inventory = authority.inventory
    urn = _urn()
    inventory.add({"ek": urn})
    inventory.upsert_many([{"ek": urn, "status": "disabled"}])
    assert inventory.get(urn).status is DeviceStatus.DISABLED


def test_a_row_repeating_the_record_is_unchanged(authority: Authority) -> None:
    inventory = authority.inventory
    urn = _urn()
    inventory.add({"ek": urn, "name": "a"})
    assert inventory.upsert_many([{"ek": urn, "name": "a"}]).count("unchanged") == 1
