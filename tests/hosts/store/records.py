"""Records the store tests write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hosts.store import CertificateRecord, UsedToken

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def record(serial: str, **changes: Any) -> CertificateRecord:
    fields: dict[str, Any] = {
        "serial": serial,
        "issuer": "agent",
        "subject": f"CN={serial}",
        "sans": (f"{serial}.example.com",),
        "provisioner_type": "JWK",
        "provisioner_name": "admin",
        "not_before": NOW,
        "not_after": NOW + timedelta(days=1),
        "der": b"\x30\x00",
        "created_at": NOW,
    }
    fields.update(changes)
    return CertificateRecord(**fields)


def token(name: str, provisioner: str = "admin") -> UsedToken:
    return UsedToken(provisioner, name, NOW + timedelta(minutes=5), NOW)
