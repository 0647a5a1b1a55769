"""Issued certificates and their revocations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

import attrs

from engine.crl import RevokedEntry

from .audit import AuditEvent
from .records import CertificateRecord, Revocation, UsedToken

#: The statuses a query may ask for. A revoked certificate is ``revoked`` whether or not
#: it has expired since; ``expired`` is one that was never revoked and has ended;
#: ``expiring`` an active one that ends within the query's ``expiring_within``.
CERTIFICATE_STATUSES = ("active", "revoked", "expired", "expiring")


@attrs.frozen
class CertificateQuery:
    """Which certificates to read: each filter given must match.

    *device* is an EK URN; *account* an account's name (its certificates come from the
    provisioner ``account:NAME``); *provisioner* and *issuer* are names; *status* one of
    :data:`CERTIFICATE_STATUSES`, judged at the ``now`` the query is run with; *search* a
    substring of the subject or of a SAN (case-insensitive for ASCII); *renewed_from* the
    serial a renewal names in its evidence.
    """

    device: str | None = None
    account: str | None = None
    provisioner: str | None = None
    issuer: str | None = None
    status: str | None = None
    expiring_within: timedelta = timedelta(days=30)
    search: str | None = None
    renewed_from: str | None = None
    limit: int = 100
    offset: int = 0


class CertificateStore(Protocol):
    def record_certificate(
        self,
        record: CertificateRecord,
        used_token: UsedToken | None = None,
        event: AuditEvent | None = None,
    ) -> bool:
        """Persist a newly issued certificate, committed on return.

        With *used_token*, the token is marked used in the same transaction; if it
        was used before, nothing is stored and the result is False. With *event*, the
        audit event of the issuance is appended in the same transaction too.
        """
        ...

    def get_certificate(self, serial: str) -> CertificateRecord | None: ...

    def list_certificates(
        self, *, limit: int = 100, offset: int = 0
    ) -> Sequence[CertificateRecord]:
        """A page of certificates, oldest first."""
        ...

    def count_certificates(self) -> int: ...

    def find_certificates(
        self, query: CertificateQuery, now: datetime
    ) -> tuple[Sequence[CertificateRecord], int]:
        """A page of the certificates matching *query* at *now*, newest first, and how
        many match in all."""
        ...

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

    def get_revocation(self, serial: str) -> Revocation | None:
        """The revocation of the certificate *serial*: when, why and by whom; None if it
        was not revoked."""
        ...

    def revoked_entries(self, issuer: str, now: datetime) -> Sequence[RevokedEntry]:
        """Revocations of still-unexpired certificates of *issuer*, for its CRL."""
        ...

    def revocations_mark(self) -> int:
        """A number that changes whenever a revocation is stored, by any process (a CRL
        built when it had some value lists every revocation while it keeps it)."""
        ...
