"""Background validation of ACME network challenges (http-01, dns-01, tls-alpn-01).

A challenge the client answered is ``processing``; :class:`ValidationRunner`
validates it as a trio task, retrying with back-off (1 s, 2 s, 4 s... up to
``retry_for``), then records ``valid`` or ``invalid`` with the error through
the engine. Hosts start :meth:`ValidationRunner.run` with their other
background work; challenges a stopped server left ``processing`` are resumed
when it starts again.
"""

from __future__ import annotations

import logging
import math
from typing import Protocol

import trio

from engine.acme import challenges
from engine.acme.effects import Audit, StartValidation
from engine.acme.problems import ACMEProblem
from hosts.service.ca import CA
from hosts.store import AuditEvent
from hosts.validation import ChallengeValidator, ValidationConfig, validate_over_network

log = logging.getLogger("devid.acme")


class Auditing(Protocol):
    """How the runner records a validation's result in the audit log
    (:class:`hosts.service.acme.ACMEService`)."""

    def audit_events(self, events: tuple[Audit, ...]) -> tuple[AuditEvent, ...]: ...

    def announce(self, events: tuple[Audit, ...], kept: tuple[AuditEvent, ...]) -> None: ...


class ValidationRunner:
    """Runs validations as trio tasks; ``validator`` and ``config`` may be replaced."""

    def __init__(
        self,
        ca: CA,
        config: ValidationConfig,
        auditing: Auditing,
    ) -> None:
        self.ca = ca
        self.config = config
        self.validator: ChallengeValidator = validate_over_network
        self._auditing = auditing
        self._send, self._receive = trio.open_memory_channel[StartValidation](math.inf)
        self.in_flight = 0
        # Per authorization and per challenge being validated: set when the attempt under
        # way settles (its result is stored, or it failed and waits to retry).
        self._settling: dict[str, trio.Event] = {}

    def schedule(self, job: StartValidation) -> None:
        """Queue *job*; call from trio (the runner picks it up when it runs)."""
        self._send.send_nowait(job)

    async def settled(self, resource_id: str, patience: float) -> None:
        """Wait up to *patience* seconds while an attempt to validate the authorization or
        challenge *resource_id* is under way, so that a poll can show its result."""
        event = self._settling.get(resource_id)
        if event is not None:
            with trio.move_on_after(patience):
                await event.wait()

    def _attempting(self, job: StartValidation) -> None:
        event = trio.Event()
        for key in (job.authorization_id, job.challenge_id):
            self._settling.setdefault(key, event)

    def _settle(self, job: StartValidation) -> None:
        for key in (job.authorization_id, job.challenge_id):
            event = self._settling.pop(key, None)
            if event is not None:
                event.set()

    async def run(
        self,
        *,
        resume: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Validate challenges as they are answered, until cancelled.

        With *resume*, challenges left ``processing`` by a previous run (a restart)
        are validated again first.
        """
        async with trio.open_nursery() as nursery:
            if resume:
                for job in await trio.to_thread.run_sync(self._resumable):
                    nursery.start_soon(self._validate, job)
            task_status.started()
            async for job in self._receive:
                nursery.start_soon(self._validate, job)

    def _resumable(self) -> list[StartValidation]:
        store = self.ca.stores.acme
        jobs: list[StartValidation] = []
        for challenge in store.acme_processing_challenges():
            name = challenge.provisioner
            provisioner = self.ca.provisioners.get(name)
            if provisioner is None or provisioner.acme() is None:
                continue
            authorization = store.acme_authorization(name, challenge.authorization_id)
            if authorization is None:
                continue
            account = store.acme_account(name, authorization.account_id)
            if account is None:
                continue
            jobs.append(
                StartValidation(
                    provisioner=name,
                    challenge_id=challenge.id,
                    authorization_id=authorization.id,
                    challenge_type=challenge.type,
                    identifier=authorization.identifier,
                    token=challenge.token,
                    key_authorization=challenges.key_authorization(
                        challenge.token, account.thumbprint
                    ),
                )
            )
        return jobs

    async def _validate(self, job: StartValidation) -> None:
        """Try, back off (1 s, 2 s, 4 s... up to the deadline), then record the result."""
        self.in_flight += 1
        try:
            config = self.config
            deadline = trio.current_time() + config.retry_for
            delay = config.first_retry
            attempt = 0
            while True:
                attempt += 1
                self._attempting(job)
                problem: ACMEProblem | None = None
                try:
                    await self.validator(job, config)
                except ACMEProblem as exc:
                    problem = exc
                except Exception:
                    log.exception("validating %s %s failed", job.challenge_type, job.challenge_id)
                    problem = ACMEProblem("serverInternal", "validation failed unexpectedly")
                if problem is None or trio.current_time() + delay > deadline:
                    break
                self._settle(job)  # polls need not wait through the back-off
                log.info(
                    "challenge not met yet; retrying",
                    extra={
                        "challenge": job.challenge_id,
                        "type": job.challenge_type,
                        "attempt": attempt,
                        "retry_in": delay,
                        "error": problem.detail,
                    },
                )
                await trio.sleep(delay)
                delay = min(delay * 2, config.max_retry_delay)
            await trio.to_thread.run_sync(self._record, job, problem)
        except Exception:
            log.exception("recording the validation of %s failed", job.challenge_id)
        finally:
            self._settle(job)
            self.in_flight -= 1

    def _record(self, job: StartValidation, problem: ACMEProblem | None) -> None:
        """Feed the result to the engine and store it with its audit event in one commit;
        re-read and retry if a record changed meanwhile."""
        store = self.ca.stores.acme
        for _ in range(3):
            challenge = store.acme_challenge(job.provisioner, job.challenge_id)
            authorization = store.acme_authorization(job.provisioner, job.authorization_id)
            if challenge is None or authorization is None:
                return
            now = self.ca.clock.now()
            if problem is None:
                result = challenges.validation_succeeded(now, authorization, challenge)
            else:
                result = challenges.validation_failed(now, authorization, challenge, problem)
            if result is None:
                return
            write, audit = result
            events = (audit,)
            kept = self._auditing.audit_events(events)
            if store.acme_write(write, events=kept):
                self._auditing.announce(events, kept)
                return
        log.error("could not record the validation of challenge %s", job.challenge_id)
