"""What an ACME operation works with: the request as posted, and the ACME server's state
(the CA, the nonces it handed out, the orders being finalized in this process)."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Protocol

import attrs

from engine.acme.effects import Audit
from hosts.service.ca import CA
from hosts.store import AuditEvent

from .nonces import ReplayNonces


@attrs.frozen
class ACMEPost:
    """A POST to an ACME resource: its path (the JWS ``url`` is checked against the base
    URL plus this path), its media type, and its body (a flattened JWS)."""

    path: str
    content_type: str | None
    body: bytes


class ACMEState(Protocol):
    """The ACME server's state an operation uses (``hosts.service.acme.ACMEService``)."""

    ca: CA
    nonces: ReplayNonces

    def finalizing(self, order_id: str) -> AbstractContextManager[None]:
        """Held while *order_id* is being signed here, so a poll does not race it."""
        ...

    def audit_events(self, events: Iterable[Audit]) -> tuple[AuditEvent, ...]:
        """The audit log's events for *events*, to store with the change they record."""
        ...

    def announce(self, events: tuple[Audit, ...], kept: tuple[AuditEvent, ...]) -> None:
        """Log *events*, kept as *kept*, and hand them to the ``devid_audit`` hooks."""
        ...
