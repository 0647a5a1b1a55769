"""ACME (RFC 8555) state: accounts, orders, authorizations, challenges, and which
order each ACME certificate came from.

The records are the engine's (``engine.acme.records``); each carries the revision it
was read at, and a write replaces a record only at the revision it was read at.
ACME accounts are ``records.Account``, not the device accounts of
``hosts.store.accounts``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from engine.acme import records
from engine.acme.effects import Write

from .audit import AuditEvent
from .records import CertificateRecord


class ACMEStore(Protocol):
    def acme_account(self, provisioner: str, account_id: str) -> records.Account | None: ...

    def acme_account_by_thumbprint(
        self, provisioner: str, thumbprint: str
    ) -> records.Account | None: ...

    def acme_order(self, provisioner: str, order_id: str) -> records.Order | None: ...

    def acme_orders_of(
        self, provisioner: str, account_id: str, *, limit: int = 1000
    ) -> Sequence[records.Order]:
        """An account's orders, newest first."""
        ...

    def acme_authorization(
        self, provisioner: str, authorization_id: str
    ) -> records.Authorization | None: ...

    def acme_authorizations(
        self, provisioner: str, ids: Sequence[str]
    ) -> Sequence[records.Authorization]:
        """The authorizations with these ids that exist, in the order of *ids*."""
        ...

    def acme_challenge(self, provisioner: str, challenge_id: str) -> records.Challenge | None: ...

    def acme_challenges(self, provisioner: str, ids: Sequence[str]) -> Sequence[records.Challenge]:
        """The challenges with these ids that exist, in the order of *ids*."""
        ...

    def acme_processing_challenges(self) -> Sequence[records.Challenge]:
        """Challenges whose validation was started and has not finished (to resume them)."""
        ...

    def acme_certificate(self, serial: str) -> records.CertificateLink | None:
        """Which account and order an ACME certificate came from."""
        ...

    def acme_write(
        self,
        write: Write,
        *,
        certificate: CertificateRecord | None = None,
        link: records.CertificateLink | None = None,
        events: Sequence[AuditEvent] = (),
    ) -> bool:
        """Store ACME records (and an issued certificate with its link, and the audit
        log's *events* about the change) in one transaction, committed on return.

        A record with revision 0 is inserted; any other replaces the stored one only if
        that is still at the same revision. False, storing nothing, on any conflict (a
        newer revision, or a key thumbprint another account of the provisioner uses).
        """
        ...
