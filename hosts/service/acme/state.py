"""What an ACME operation works with: the request as posted, and the ACME server's state
(the CA, the nonces it handed out, the orders being finalized in this process)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

import attrs

from hosts.service.ca import CA

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
