"""The device inventory: devices keyed by EK URN."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from engine.inventory import Device, DeviceFilter


class DeviceStore(Protocol):
    def add_device(self, device: Device) -> bool:
        """Register a device; False if its EK is already registered."""
        ...

    def put_device(self, device: Device) -> None:
        """Insert or update a device (imports, inventory sync, edits), keeping the
        creation time of one already stored."""
        ...

    def get_device(self, ek_urn: str) -> Device | None: ...

    def list_devices(
        self, filter: DeviceFilter, *, limit: int = 100, offset: int = 0
    ) -> tuple[Sequence[Device], int]:
        """A page of devices matching *filter*, and how many match in all."""
        ...

    def delete_device(self, ek_urn: str) -> bool:
        """Remove a device; False if there was none."""
        ...
