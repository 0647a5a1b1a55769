"""Issued certificates and their revocations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from engine.crl import RevokedEntry

from .records import CertificateRecord, Revocation, UsedToken


class CertificateStore(Protocol):
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
    ) -> Sequence[CertificateRecord]:
        """A page of certificates, oldest first."""
        ...

    def count_certificates(self) -> int: ...

    def certificates_of_device(self, ek_urn: str, now: datetime) -> Sequence[CertificateRecord]:
        """The active, unexpired certificates issued to the device *ek_urn*."""
        ...

    def certificates_of_provisioner(
        self, provisioner: str, now: datetime
    ) -> Sequence[CertificateRecord]:
        """The active, unexpired certificates the provisioner named *provisioner* issued."""
        ...

    def revoke(self, revocation: Revocation) -> bool:
        """Mark a certificate revoked, committed on return; False if it already was
        (or is unknown), storing nothing."""
        ...

    def revoked_entries(self, issuer: str, now: datetime) -> Sequence[RevokedEntry]:
        """Revocations of still-unexpired certificates of *issuer*, for its CRL."""
        ...
