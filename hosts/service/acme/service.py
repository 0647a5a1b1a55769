"""The ACME server's state for every ACME provisioner of one CA: the nonces it issued,
the orders being finalized here, and the background validations.

The HTTP layer (``hosts.http.acme``) turns requests into :class:`ACMEPost`, runs an
operation of :mod:`hosts.service.acme.operations` with this object, and answers with
its outcome; validations the outcome names are handed to :meth:`ACMEService.schedule`.
``validator`` (default :func:`hosts.validation.validate_over_network`) is any async
callable ``(StartValidation, ValidationConfig) -> None`` that raises ``ACMEProblem``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import trio

from engine.acme.context import Context
from engine.acme.effects import Audit, StartValidation
from engine.acme.problems import ACMEProblem, not_found
from engine.acme.resources import URLs
from hosts.service.audit import SYSTEM, acme_actor
from hosts.service.ca import CA
from hosts.store import AuditEvent
from hosts.validation import ChallengeValidator, ValidationConfig
from plugins.base import ACMEIssuing

from .nonces import ReplayNonces
from .runner import ValidationRunner

log = logging.getLogger("devid.acme")


class ACMEService:
    """ACME for every ACME provisioner of one CA."""

    def __init__(self, ca: CA, config: ValidationConfig) -> None:
        self.ca = ca
        self.nonces = ReplayNonces(ca.clock)
        self._finalizing: set[str] = set()  # orders being signed in this process
        self._finalizing_lock = threading.Lock()
        self.runner = ValidationRunner(ca, config, self)

    # --- configuration ---------------------------------------------------------------------

    @property
    def config(self) -> ValidationConfig:
        """How challenges are validated (``[acme]``, then the ``devid serve`` flags)."""
        return self.runner.config

    @config.setter
    def config(self, config: ValidationConfig) -> None:
        self.runner.config = config

    @property
    def validator(self) -> ChallengeValidator:
        """Validates one network challenge; tests and embedders may replace it."""
        return self.runner.validator

    @validator.setter
    def validator(self, validator: ChallengeValidator) -> None:
        self.runner.validator = validator

    def configure(
        self,
        *,
        http01_port: int | None = None,
        tlsalpn01_port: int | None = None,
        dns_resolver: str | tuple[str, int] | None = None,
    ) -> None:
        """Override validation settings from the command line (``devid serve --acme-*``)."""
        self.config = self.config.with_overrides(
            http01_port=http01_port, tlsalpn01_port=tlsalpn01_port, dns_resolver=dns_resolver
        )

    # --- background validations ------------------------------------------------------------

    async def run(
        self,
        *,
        resume: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The background validations (see :class:`ValidationRunner`); hosts start this."""
        await self.runner.run(resume=resume, task_status=task_status)

    def schedule(self, job: StartValidation) -> None:
        """Queue a validation an operation asked for; call from trio."""
        self.runner.schedule(job)

    async def settled(self, resource_id: str, patience: float) -> None:
        """Wait up to *patience* seconds for an attempt under way on *resource_id*."""
        await self.runner.settled(resource_id, patience)

    @property
    def validations_in_flight(self) -> int:
        return self.runner.in_flight

    # --- what operations use ----------------------------------------------------------------

    @contextmanager
    def finalizing(self, order_id: str) -> Iterator[None]:
        """Hold *order_id* while it is signed and stored; orderNotReady if it is held."""
        with self._finalizing_lock:
            if order_id in self._finalizing:
                raise ACMEProblem("orderNotReady", "the order is being finalized already")
            self._finalizing.add(order_id)
        try:
            yield
        finally:
            with self._finalizing_lock:
                self._finalizing.discard(order_id)

    def provisioner(self, name: str) -> ACMEIssuing:
        """The ACME provisioner *name*; 404 (an ACME problem) if there is none."""
        acme = self.ca.provisioners.acme(name)
        if acme is None:
            raise not_found(f"no ACME provisioner named {name[:64]!r}")
        return acme

    def context(self, provisioner: ACMEIssuing, base_url: str) -> Context:
        """The engine's view of one request to *provisioner* at *base_url*."""
        return Context(
            profile=provisioner.profile,
            urls=URLs(base_url, provisioner.name),
            now=self.ca.clock.now(),
            random=self.ca.random,
        )

    def audit(self, events: tuple[Audit, ...]) -> None:
        """Log the events an operation produced without a store write, and keep them in
        the audit log (which also hands them to the ``devid_audit`` hooks)."""
        for event in events:
            log.info(event.event, extra=dict(event.fields))
            actor, target, result = _audit_names(event)
            self.ca.auditor.record(actor, event.event, target, result, **event.fields)

    def audit_events(self, events: Iterable[Audit]) -> tuple[AuditEvent, ...]:
        """The audit log's events for the engine's *events*, not kept yet: the ACME store
        writes them in the commit of the change they record (no commit of their own)."""
        made = []
        for event in events:
            actor, target, result = _audit_names(event)
            made.append(self.ca.auditor.event(actor, event.event, target, result, **event.fields))
        return tuple(made)

    def announce(self, events: tuple[Audit, ...], kept: tuple[AuditEvent, ...]) -> None:
        """Log *events* once the store kept them (as *kept*, from :meth:`audit_events`)
        and hand them to the ``devid_audit`` hooks."""
        for event, stored in zip(events, kept, strict=True):
            log.info(event.event, extra=dict(event.fields))
            self.ca.auditor.announce(stored)


def _audit_names(event: Audit) -> tuple[str, str, str]:
    """The actor, target and result of one of the engine's ACME events."""
    fields = event.fields
    provisioner = str(fields.get("provisioner", ""))
    account = fields.get("account")
    if event.event == "certificate.revoked":
        return str(fields.get("by", SYSTEM)), str(fields.get("serial", "")), "ok"
    if event.event.startswith("acme.challenge."):
        # The CA validated the challenge in the background: nobody asked at that moment.
        result = "refused" if event.event == "acme.challenge.invalid" else "ok"
        return SYSTEM, str(fields.get("challenge", "")), result
    actor = acme_actor(provisioner, str(account)) if account is not None else SYSTEM
    target = fields.get("order", account)
    return actor, str(target if target is not None else provisioner), "ok"
