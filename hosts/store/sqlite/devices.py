"""The device inventory in SQLite (table devices)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from engine.inventory import Device, DeviceFilter, DeviceStatus

from .database import Database, from_timestamp, timestamp

_COLUMNS = "ek_urn, ek_certificate, serial, name, owner, tags, status, created_at, updated_at"


def _device(row: tuple[Any, ...]) -> Device:
    urn, cert, serial, name, owner, tags, status, created, updated = row
    return Device(
        ek_urn=str(urn),
        ek_certificate=bytes(cert) if cert is not None else None,
        serial=None if serial is None else str(serial),
        name=None if name is None else str(name),
        owner=None if owner is None else str(owner),
        tags=tuple(json.loads(str(tags))),
        status=DeviceStatus(str(status)),
        created_at=from_timestamp(float(created)),
        updated_at=from_timestamp(float(updated)),
    )


def _values(device: Device) -> tuple[object, ...]:
    created = device.created_at or datetime.now(UTC)
    updated = device.updated_at or created
    return (
        device.ek_urn,
        device.ek_certificate,
        device.serial,
        device.name,
        device.owner,
        json.dumps(list(device.tags)),
        device.status.value,
        timestamp(created),
        timestamp(updated),
    )


class SQLiteDevices:
    def __init__(self, database: Database) -> None:
        self.database = database

    def add_device(self, device: Device) -> bool:
        with self.database.lock:
            cursor = self.database.connection.execute(
                f"INSERT OR IGNORE INTO devices ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _values(device),
            )
            return cursor.rowcount == 1

    def put_device(self, device: Device) -> None:
        with self.database.lock:
            self.database.connection.execute(
                f"INSERT INTO devices ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(ek_urn) DO UPDATE SET ek_certificate = excluded.ek_certificate,"
                " serial = excluded.serial, name = excluded.name, owner = excluded.owner,"
                " tags = excluded.tags, status = excluded.status,"
                " updated_at = excluded.updated_at",
                _values(device),
            )

    def get_device(self, ek_urn: str) -> Device | None:
        row = self.database.one(f"SELECT {_COLUMNS} FROM devices WHERE ek_urn = ?", (ek_urn,))
        return _device(row) if row else None

    def list_devices(
        self, filter: DeviceFilter, *, limit: int = 100, offset: int = 0
    ) -> tuple[Sequence[Device], int]:
        where: list[str] = []
        params: list[object] = []
        if filter.status is not None:
            where.append("status = ?")
            params.append(filter.status.value)
        if filter.owner is not None:
            where.append("owner = ?")
            params.append(filter.owner)
        if filter.tag is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(devices.tags) WHERE value = ?)")
            params.append(filter.tag)
        if filter.text:
            where.append("(name LIKE ? ESCAPE '\\' OR serial LIKE ? ESCAPE '\\' OR ek_urn = ?)")
            pattern = (
                "%"
                + filter.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                + "%"
            )
            params.extend([pattern, pattern, filter.text])
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        db = self.database
        with db.lock:  # the count and the page from one moment
            total = int(
                db.connection.execute(f"SELECT COUNT(*) FROM devices{clause}", params).fetchone()[0]
            )
            rows = db.connection.execute(
                f"SELECT {_COLUMNS} FROM devices{clause}"
                " ORDER BY created_at, ek_urn LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        return [_device(r) for r in rows], total

    def delete_device(self, ek_urn: str) -> bool:
        with self.database.lock:
            cursor = self.database.connection.execute(
                "DELETE FROM devices WHERE ek_urn = ?", (ek_urn,)
            )
            return cursor.rowcount == 1
