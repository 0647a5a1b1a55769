"""The device inventory."""

from __future__ import annotations

from datetime import timedelta

import attrs

from engine.inventory import Device, DeviceFilter, DeviceStatus
from hosts.store import Stores

from .records import NOW


def device(n: int, **changes: object) -> Device:
    fields: dict[str, object] = {
        "ek_urn": f"urn:ek:sha256:{n:064x}",
        "serial": f"SN-{n}",
        "name": f"laptop_{n}",
        "owner": "alice" if n % 2 else "bob",
        "tags": ("lab",) if n < 3 else (),
        "created_at": NOW + timedelta(seconds=n),
        "updated_at": NOW + timedelta(seconds=n),
    }
    fields.update(changes)
    return Device(**fields)  # type: ignore[arg-type]


def test_a_device_is_registered_once(stores: Stores) -> None:
    assert stores.devices.add_device(device(1, ek_certificate=b"\x30\x00"))
    assert not stores.devices.add_device(device(1, name="other"))
    assert stores.devices.get_device(device(1).ek_urn) == device(1, ek_certificate=b"\x30\x00")
    assert stores.devices.get_device(device(2).ek_urn) is None


def test_put_inserts_or_updates_and_keeps_the_creation_time(stores: Stores) -> None:
    stores.devices.put_device(device(1))
    later = NOW + timedelta(days=1)
    stores.devices.put_device(
        device(1, status=DeviceStatus.DISABLED, created_at=later, updated_at=later)
    )
    found = stores.devices.get_device(device(1).ek_urn)
    assert found == device(1, status=DeviceStatus.DISABLED, updated_at=later)


def test_filters_pages_and_totals(stores: Stores) -> None:
    for n in range(1, 6):
        stores.devices.add_device(device(n))
    devices, total = stores.devices.list_devices(DeviceFilter(), limit=2, offset=1)
    assert [d.serial for d in devices] == ["SN-2", "SN-3"] and total == 5
    by_owner, total = stores.devices.list_devices(DeviceFilter(owner="alice"))
    assert [d.serial for d in by_owner] == ["SN-1", "SN-3", "SN-5"] and total == 3
    by_tag, _ = stores.devices.list_devices(DeviceFilter(tag="lab"))
    assert [d.serial for d in by_tag] == ["SN-1", "SN-2"]
    # Text matches name or serial as a substring, LIKE's wildcards taken literally.
    assert stores.devices.list_devices(DeviceFilter(text="p_4"))[1] == 1
    assert stores.devices.list_devices(DeviceFilter(text="p%"))[1] == 0
    by_urn, _ = stores.devices.list_devices(DeviceFilter(text=device(5).ek_urn))
    assert [d.serial for d in by_urn] == ["SN-5"]
    stores.devices.put_device(attrs.evolve(device(2), status=DeviceStatus.DISABLED))
    disabled, _ = stores.devices.list_devices(DeviceFilter(status=DeviceStatus.DISABLED))
    assert [d.serial for d in disabled] == ["SN-2"]


def test_a_device_is_deleted_once(stores: Stores) -> None:
    stores.devices.add_device(device(1))
    assert stores.devices.delete_device(device(1).ek_urn)
    assert not stores.devices.delete_device(device(1).ek_urn)
    assert stores.devices.list_devices(DeviceFilter()) == ([], 0)
