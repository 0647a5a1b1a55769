"""The audit log's use case: recording who changed what (and what was refused), and
reading it back.

Every service records through one :class:`Auditor`, which keeps the event in the store
and hands it to each plugin's ``devid_audit`` hook with the same fields. Actors are
named as :class:`hosts.store.AuditEvent` describes: ``admin-token``,
``admin-certificate:CN``, ``cli:USER``, ``device:EK-URN``,
``acme:PROVISIONER/ACCOUNT-ID``, ``provisioner:NAME``, ``system``.
"""

from __future__ import annotations

import getpass
import logging
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.durations import parse_duration, parse_time
from engine.errors import BadRequest
from engine.ports import Clock
from hosts.store import AuditEvent, AuditQuery, AuditStore

if TYPE_CHECKING:
    from plugins.manager import PluginManager

log = logging.getLogger("devid.audit")

#: Who acts when nobody in particular does (background work, internal steps).
SYSTEM = "system"
#: An event's result: the change was made, or it was refused.
RESULTS = ("ok", "refused")


def cli_actor() -> str:
    """The actor of a ``devid`` command: the OS user running it."""
    try:
        user = getpass.getuser()
    except Exception:  # no name for this uid (containers): the number is still someone
        user = str(os.getuid())
    return f"cli:{user}"


def device_actor(ek_urn: str) -> str:
    return f"device:{ek_urn}"


def provisioner_actor(name: str) -> str:
    return f"provisioner:{name}"


def acme_actor(provisioner: str, account_id: str) -> str:
    return f"acme:{provisioner}/{account_id}"


class Auditor:
    """Records events in the audit log and tells the ``devid_audit`` hooks."""

    def __init__(self, store: AuditStore, plugins: PluginManager, clock: Clock) -> None:
        self.store = store
        self.plugins = plugins
        self.clock = clock

    def event(
        self, actor: str, action: str, target: str, result: str = "ok", **details: Any
    ) -> AuditEvent:
        """An event of now, not yet kept (for a store that writes it with the change
        itself, as issuance does)."""
        return AuditEvent(self.clock.now(), actor, action, target, result, details)

    def record(
        self, actor: str, action: str, target: str, result: str = "ok", **details: Any
    ) -> AuditEvent:
        """Keep one event and hand it to the hooks (:meth:`announce`).

        The change it records has already happened, so a store that fails is logged,
        not raised: the caller's answer must not deny a change that was made. The hooks
        are still told.
        """
        event = self.event(actor, action, target, result, **details)
        try:
            event = self.store.append(event)
        except Exception:
            log.exception("cannot store the audit event %s %s by %s", action, target, actor)
        self.announce(event)
        return event

    def announce(self, event: AuditEvent) -> None:
        """Hand a kept event to the ``devid_audit`` hooks, whose *fields* are its details
        with ``actor``, ``action``, ``target``, ``result`` and ``time`` added."""
        fields = {
            **event.details,
            "time": event.time.isoformat(),
            "actor": event.actor,
            "action": event.action,
            "target": event.target,
            "result": event.result,
        }
        self.plugins.audit(event.action, fields)

    def find(self, query: AuditQuery) -> tuple[Sequence[AuditEvent], int]:
        """A page of the events matching *query*, newest first, and the total."""
        return self.store.find(query)


# --- reading: the filters the CLI and the admin API take ----------------------------------

#: The most events one page holds.
MAX_PAGE = 1000
_FILTERS = ("actor", "action", "target", "result", "since", "until", "limit", "offset")


def audit_query(params: Mapping[str, str | None], now: datetime) -> AuditQuery:
    """The query that *params* (``actor``, ``action``, ``target``, ``result``, ``since``,
    ``until``, ``limit``, ``offset``; empty ones ignored) asks for. A time is RFC 3339 or
    a duration back from *now* (``since=24h``: the last day). BadRequest names what is
    wrong."""
    unknown = sorted(set(params) - set(_FILTERS))
    if unknown:
        raise BadRequest(f"unknown filter {', '.join(unknown)}; filters: {', '.join(_FILTERS)}")
    text = {k: v.strip() for k, v in params.items() if v is not None and v.strip()}
    result = text.get("result")
    if result is not None and result not in RESULTS:
        raise BadRequest(f"result must be one of {', '.join(RESULTS)}")
    try:
        limit = int(text.get("limit", "100"))
        offset = int(text.get("offset", "0"))
    except ValueError:
        raise BadRequest("limit and offset must be integers") from None
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise BadRequest(f"limit must be 1..{MAX_PAGE} and offset >= 0")
    return AuditQuery(
        actor=text.get("actor"),
        action=text.get("action"),
        target=text.get("target"),
        result=result,
        since=_moment(text.get("since"), "since", now),
        until=_moment(text.get("until"), "until", now),
        limit=limit,
        offset=offset,
    )


def _moment(value: str | None, name: str, now: datetime) -> datetime | None:
    if value is None:
        return None
    if value[:1].isdigit() and ("T" in value or "-" in value[1:]):
        try:
            return parse_time(value)
        except BadRequest:
            raise BadRequest(f"{name} must be an RFC 3339 time or a duration") from None
    try:
        return now - parse_duration(value)
    except (BadRequest, OverflowError):
        raise BadRequest(
            f"{name} must be an RFC 3339 time (2026-03-01T12:00:00Z) or a duration back"
            " from now (24h, 7d)"
        ) from None
