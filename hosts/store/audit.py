"""The audit log: who changed what, and what was refused, one event per change."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import attrs


def _details(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return dict(value)


@attrs.frozen
class AuditEvent:
    """One change to the CA's data, or one refusal worth keeping.

    *actor* names who: ``admin-token``, ``admin-certificate:CN``, ``cli:USER``,
    ``device:EK-URN``, ``acme:PROVISIONER/ACCOUNT-ID``, ``provisioner:NAME`` or
    ``system``. *action* is what, as ``kind.verb`` (``device.added``,
    ``certificate.revoked``, ``attestation.refused``); *target* what it was done to (an
    EK URN, a serial, an account name); *result* ``ok`` or ``refused``; *details*
    whatever else is worth keeping (JSON values only).
    """

    time: datetime
    actor: str
    action: str
    target: str
    result: str = "ok"
    details: Mapping[str, Any] = attrs.field(factory=dict, converter=_details)
    #: Given by the store when the event is appended; None before.
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "result": self.result,
            "details": dict(self.details),
        }


@attrs.frozen
class AuditQuery:
    """Which events to read: each filter given must match (``action`` also matches a
    prefix ending in a dot: ``device.`` is every device action); *since* is inclusive,
    *until* exclusive."""

    actor: str | None = None
    action: str | None = None
    target: str | None = None
    result: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    offset: int = 0


class AuditStore(Protocol):
    def append(self, event: AuditEvent) -> AuditEvent:
        """Keep *event*, committed on return; the event with its id."""
        ...

    def find(self, query: AuditQuery) -> tuple[Sequence[AuditEvent], int]:
        """A page of the events matching *query*, newest first, and how many match in
        all."""
        ...
