"""Device inventory operations shared by the REST API, the CLI and inventory-source plugins.

A change that disables or removes a device, or takes it out of an account's assignment
(its tags), revokes the certificates it is no longer entitled to at once, whichever way
it comes (API, CLI, import, sync): see :mod:`hosts.service.revocation`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from engine.errors import BadRequest, Conflict, NotFound, ProtocolError
from engine.inventory import (
    Device,
    DeviceFilter,
    DeviceStatus,
    check_tags,
    check_text,
    device_ek_urn,
    device_from_input,
    looks_like_ek_identifier,
)
from engine.ports import Clock
from hosts.store import Stores

from .audit import SYSTEM, Auditor
from .revocation import Audit, CertificateRevoker

log = logging.getLogger("devid.inventory")

MAX_PAGE = 500
REVOKED_BY = "device-inventory"


@attrs.frozen
class RowResult:
    row: int
    ek: str | None
    outcome: str  # "added", "updated", "unchanged", "error"
    message: str = ""


@attrs.frozen
class ImportReport:
    rows: tuple[RowResult, ...]

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.rows if r.outcome == outcome)

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.count("added"),
            "updated": self.count("updated"),
            "unchanged": self.count("unchanged"),
            "errors": self.count("error"),
            "rows": [attrs.asdict(r) for r in self.rows],
        }


def parse_import(text: str, fmt: str) -> list[dict[str, Any]]:
    """Rows of a CSV (header: ek, ekCertificate, serial, name, owner, tags) or JSON list."""
    return parse_import_numbered(text, fmt)[0]


def parse_import_numbered(text: str, fmt: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The rows of :func:`parse_import` and the number each is reported under: for CSV the
    line of the file where the row starts (the header is line 1), for JSON the position in
    the list (from 1)."""
    if fmt == "json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise BadRequest(f"import file is not JSON: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("devices"), list):
            data = data["devices"]
        if not isinstance(data, list):
            raise BadRequest("a JSON import is a list of device objects")
        return data, list(range(1, len(data) + 1))
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        rows: list[dict[str, Any]] = []
        lines: list[int] = []
        for raw in reader:
            # line_num is the row's last line; a quoted value may span several.
            spanned = sum(v.count("\n") for v in raw.values() if isinstance(v, str))
            lines.append(reader.line_num - spanned)
            row: dict[str, Any] = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
            if "tags" in row:
                row["tags"] = [t for t in row["tags"].replace(";", ",").split(",") if t.strip()]
                row["tags"] = [t.strip() for t in row["tags"]]
            rows.append({k: v for k, v in row.items() if v not in ("", [])})
        return rows, lines
    raise BadRequest(f"unknown import format {fmt!r}; use csv or json")


def _search_text(text: str | None) -> str | None:
    """A search for a device's identifier, in any form devid prints, finds it by its URN."""
    if text and looks_like_ek_identifier(text):
        return device_ek_urn(text)
    return text


# Row keys and the Device fields they set.
_ROW_FIELDS = {
    "ekCertificate": "ek_certificate",
    "serial": "serial",
    "name": "name",
    "owner": "owner",
    "tags": "tags",
    "status": "status",
}


def _merge(existing: Device, incoming: Device, *, given: set[str]) -> Device:
    """Apply only the fields a row actually carries.

    A row that leaves out ``status`` never re-enables a device an operator
    disabled, and absent names, owners or tags are kept, not wiped.
    """
    changes = {
        field: getattr(incoming, field) for key, field in _ROW_FIELDS.items() if key in given
    }
    return attrs.evolve(existing, **changes)


class Inventory:
    """The device inventory's operations. Each change is audited under the *actor* the
    call names, else the one the inventory was made with (the CLI's user, ``system``)."""

    def __init__(
        self,
        stores: Stores,
        clock: Clock,
        *,
        audit: Auditor | Audit | None = None,
        actor: str = SYSTEM,
    ) -> None:
        self.stores = stores
        self.clock = clock
        self.audit = audit
        self.actor = actor
        self.revoker = CertificateRevoker(stores, clock, audit)

    def _record(self, actor: str | None, action: str, ek_urn: str, **details: Any) -> None:
        if isinstance(self.audit, Auditor):  # a bare Audit callable sees revocations only
            self.audit.record(actor or self.actor, action, ek_urn, **details)

    def _changed(self, before: Device, after: Device, actor: str | None = None) -> tuple[str, ...]:
        """After an update: revoke what a new status or new tags no longer entitle."""
        if after.status == before.status and after.tags == before.tags:
            return ()
        return self._withdraw(after, after.ek_urn, actor)

    def _withdraw(
        self, device: Device | None, ek_urn: str, actor: str | None = None
    ) -> tuple[str, ...]:
        """Revoke what the device (None: removed) is no longer entitled to; the serials."""
        revoked = tuple(self.revoker.device_changed(ek_urn, REVOKED_BY, actor or self.actor))
        if revoked:
            state = "removed" if device is None else device.status.value
            log.info(
                "device certificates revoked",
                extra={"ek": ek_urn, "device_status": state, "count": len(revoked)},
            )
        return revoked

    def add(self, data: Any, actor: str | None = None) -> Device:
        device = device_from_input(data, now=self.clock.now())
        if not self.stores.devices.add_device(device):
            raise Conflict(f"device {device.ek_urn} is already registered")
        log.info("device added", extra={"ek": device.ek_urn, "device_name": device.name})
        self._record(actor, "device.added", device.ek_urn, **_audited(device))
        return device

    def get(self, ek: str) -> Device:
        urn = device_ek_urn(ek)
        device = self.stores.devices.get_device(urn)
        if device is None:
            raise NotFound(f"no device {urn}")
        return device

    def list(self, query: Mapping[str, str]) -> dict[str, Any]:
        status = query.get("status")
        try:
            status_value = DeviceStatus(status) if status else None
        except ValueError:
            raise BadRequest("status must be 'active' or 'disabled'") from None
        try:
            limit = int(query.get("limit", "100"))
            offset = int(query.get("offset", "0"))
        except ValueError:
            raise BadRequest("limit and offset must be integers") from None
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise BadRequest(f"limit must be 1..{MAX_PAGE} and offset >= 0")
        filt = DeviceFilter(
            status=status_value,
            owner=check_text(query.get("owner"), "owner"),
            tag=query.get("tag") or None,
            text=_search_text(check_text(query.get("q"), "q")),
        )
        devices, total = self.stores.devices.list_devices(filt, limit=limit, offset=offset)
        next_offset = offset + limit if offset + limit < total else None
        return {
            "devices": [d.to_json() for d in devices],
            "total": total,
            "limit": limit,
            "offset": offset,
            "nextOffset": next_offset,
        }

    def update(self, ek: str, changes: Any, actor: str | None = None) -> Device:
        return self.change(ek, changes, actor)[0]

    def change(
        self, ek: str, changes: Any, actor: str | None = None
    ) -> tuple[Device, tuple[str, ...]]:
        """Update a device; the serials of the certificates this revoked come with it."""
        if not isinstance(changes, dict):
            raise BadRequest("changes must be a JSON object")
        allowed = {"serial", "name", "owner", "tags", "status"}
        unknown = set(changes) - allowed
        if unknown:
            names = ", ".join(sorted(unknown))
            raise BadRequest(f"cannot change {names}; changeable: {', '.join(sorted(allowed))}")
        device = self.get(ek)
        updates: dict[str, Any] = {"updated_at": self.clock.now()}
        for field in ("serial", "name", "owner"):
            if field in changes:
                updates[field] = check_text(changes[field], field)
        if "tags" in changes:
            updates["tags"] = check_tags(changes["tags"])
        if "status" in changes:
            try:
                updates["status"] = DeviceStatus(changes["status"])
            except ValueError:
                raise BadRequest("status must be 'active' or 'disabled'") from None
        updated = attrs.evolve(device, **updates)
        self.stores.devices.put_device(updated)
        log.info("device updated", extra={"ek": updated.ek_urn, "fields": sorted(changes)})
        # The audit event comes before the revocations it causes, as it happened.
        self._record(
            actor,
            _update_action(device, updated),
            updated.ek_urn,
            changes={k: _jsonable(getattr(updated, k)) for k in sorted(changes)},
        )
        return updated, self._changed(device, updated, actor)

    def disable(self, ek: str, actor: str | None = None) -> Device:
        return self.update(ek, {"status": "disabled"}, actor)

    def remove(self, ek: str, actor: str | None = None) -> tuple[str, ...]:
        """Remove a device and revoke every certificate issued to it; their serials."""
        urn = device_ek_urn(ek)
        if not self.stores.devices.delete_device(urn):
            raise NotFound(f"no device {urn}")
        log.info("device removed", extra={"ek": urn})
        self._record(actor, "device.removed", urn)
        return self._withdraw(None, urn, actor)

    def upsert_many(
        self,
        rows: Iterable[Any],
        *,
        progress: Callable[[int], None] | None = None,
        numbers: Sequence[int] | None = None,
        actor: str | None = None,
    ) -> ImportReport:
        """Add or update each row; one bad row is reported, not fatal. A row is reported
        under its entry in *numbers* (e.g. its line in a CSV file), else its position."""
        results: list[RowResult] = []
        for index, row in enumerate(rows, start=1):
            number = numbers[index - 1] if numbers is not None else index
            if isinstance(row, Mapping) and not isinstance(row, dict):
                row = dict(row)  # inventory-source plugins may return any Mapping
            ek = row.get("ek") if isinstance(row, dict) else None
            try:
                device = device_from_input(row, now=self.clock.now())
                existing = self.stores.devices.get_device(device.ek_urn)
                if existing is None:
                    self.stores.devices.put_device(device)
                    outcome = "added"
                    self._record(
                        actor, "device.added", device.ek_urn, via="import", **_audited(device)
                    )
                else:
                    merged = _merge(existing, device, given=set(row))
                    if merged == existing:
                        outcome = "unchanged"
                    else:
                        self.stores.devices.put_device(
                            attrs.evolve(merged, updated_at=self.clock.now())
                        )
                        outcome = "updated"
                        self._record(
                            actor,
                            _update_action(existing, merged),
                            device.ek_urn,
                            via="import",
                            changes={
                                f: _jsonable(getattr(merged, f))
                                for f in sorted(set(_ROW_FIELDS.values()))
                                if getattr(merged, f) != getattr(existing, f)
                            },
                        )
                        self._changed(existing, merged, actor)
                results.append(RowResult(number, device.ek_urn, outcome))
            except ProtocolError as exc:
                results.append(
                    RowResult(number, ek if isinstance(ek, str) else None, "error", exc.detail)
                )
            if progress is not None:
                progress(index)
        return ImportReport(tuple(results))


def _update_action(before: Device, after: Device) -> str:
    """``device.disabled`` or ``device.enabled`` when the status changed, else
    ``device.updated``."""
    if after.status != before.status:
        return "device.enabled" if after.active else "device.disabled"
    return "device.updated"


def _audited(device: Device) -> dict[str, Any]:
    """What the audit log keeps of a device added: its descriptive fields, where set."""
    return {
        k: _jsonable(getattr(device, k))
        for k in ("serial", "name", "owner", "tags", "status")
        if getattr(device, k)
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, DeviceStatus):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, bytes):
        return "(set)"
    return value
