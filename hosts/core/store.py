"""The store interface and its records.

Hosts call a store from worker threads (never on the event loop). Each write
is committed before the call returns, so a record the caller has seen written
survives the process being killed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import attrs

from engine.crl import RevokedEntry
from engine.inventory import Device, DeviceFilter


@attrs.frozen
class CertificateRecord:
    serial: str  # lowercase hex, no leading zeros
    issuer: str
    subject: str
    sans: tuple[str, ...]
    provisioner_type: str
    provisioner_name: str
    not_before: datetime
    not_after: datetime
    der: bytes
    evidence: dict[str, Any] = attrs.field(factory=dict)
    status: str = "active"
    created_at: datetime | None = None


@attrs.frozen
class UsedToken:
    """A one-time token to mark used together with the certificate it authorized."""

    provisioner: str
    token_id: str
    expires_at: datetime
    now: datetime


@attrs.frozen
class Revocation:
    serial: str
    issuer: str
    revoked_at: datetime
    reason_code: int
    reason: str
    revoked_by: str


class Store(Protocol):
    def record_certificate(
        self, record: CertificateRecord, used_token: UsedToken | None = None
    ) -> bool:
        """Persist a newly issued certificate, committed on return.

        With *used_token*, the token is marked used in the same transaction; if it
        was used before, nothing is stored and the result is False.
        """
        ...

    def get_certificate(self, serial: str) -> CertificateRecord | None: ...

    def list_certificates(
        self, *, limit: int = 100, offset: int = 0
    ) -> Sequence[CertificateRecord]: ...

    def count_certificates(self) -> int: ...

    def use_token(
        self, provisioner: str, token_id: str, expires_at: datetime, now: datetime
    ) -> bool:
        """Record a one-time token as used; False if it was used before."""
        ...

    def prune_tokens(self, now: datetime) -> int:
        """Forget used tokens that have expired anyway; return how many."""
        ...

    def revoke(self, revocation: Revocation) -> bool:
        """Mark a certificate revoked; False if it already was."""
        ...

    def revoked_entries(self, issuer: str, now: datetime) -> Sequence[RevokedEntry]:
        """Revocations of still-unexpired certificates of *issuer*, for its CRL."""
        ...

    def add_device(self, device: Device) -> bool:
        """Register a device; False if its EK is already registered."""
        ...

    def put_device(self, device: Device) -> None:
        """Insert or update a device (imports, inventory sync, edits)."""
        ...

    def get_device(self, ek_urn: str) -> Device | None: ...

    def list_devices(
        self, filter: DeviceFilter, *, limit: int = 100, offset: int = 0
    ) -> tuple[Sequence[Device], int]:
        """A page of devices matching *filter*, and how many match in all."""
        ...

    def delete_device(self, ek_urn: str) -> bool: ...

    def put_session(
        self,
        session_id: str,
        ek_urn: str,
        session: dict[str, Any],
        expires_at: datetime,
        now: datetime,
    ) -> None:
        """Keep a pending attestation session (and drop expired ones)."""
        ...

    def take_session(self, session_id: str) -> dict[str, Any] | None:
        """Remove and return a pending attestation session; None if there is none."""
        ...

    def close(self) -> None: ...
