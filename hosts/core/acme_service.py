"""The ACME server on the host: it reads records, calls the engine, executes the outcome.

Every route handler here takes the framework-free :class:`HTTPRequest` and
never raises: errors become ``application/problem+json`` through
:func:`hosts.core.http.error_response`, and every response carries a fresh
``Replay-Nonce`` and ``Link: <directory>;rel="index"``. Blocking work
(SQLite, signing) runs in worker threads. Network challenge validation runs
in the background as trio tasks owned by :meth:`ACMEService.run`, which the
hosts start with their other background work (:mod:`hosts.core.runtime`).

Plugging in: ``hosts/core/api.py`` routes ``/acme/{provisioner}/...`` to the
handler methods and registers :meth:`ACMEService.refuse` for refusals the
router makes itself (404, 405, 413); ``hosts/core/runtime.py`` starts
:meth:`ACMEService.run`. ``validator`` (default
:func:`~hosts.core.acme_settings.validate_over_network`, which calls
``hosts/core/acme_validation.py``) is any async callable
``(StartValidation, ValidationConfig) -> None`` that raises ``ACMEProblem``;
``config`` is the :class:`~hosts.core.acme_settings.ValidationConfig`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import attrs
import trio
from cryptography import x509

from engine.acme.context import Context
from engine.acme.effects import JSON, Audit, Outcome, Respond, StartValidation
from engine.acme.problems import ACMEProblem, as_problem, not_found
from engine.acme.renewal import RETRY_AFTER, parse_cert_id, renewal_info_json, suggested_window
from engine.acme.resources import PREFIX, URLs, directory_json
from engine.errors import ProtocolError
from hosts.store import CertificateStore
from hosts.validation import ChallengeValidator, ValidationConfig
from plugins.base import ACMEIssuing

from . import acme_operations as operations
from .acme_nonces import ReplayNonces
from .acme_runner import ValidationRunner
from .base_urls import own_base_url
from .http import HTTPRequest, HTTPResponse, error_response

if TYPE_CHECKING:
    from .authority import Authority

log = logging.getLogger("devid.acme")

#: How long a poll of an authorization or challenge waits for a validation attempt under
#: way (the response still says ``processing`` with Retry-After if it takes longer).
POLL_PATIENCE = 0.25

_Operation = Callable[..., Outcome]


class ACMEService:
    """ACME for every ACME provisioner of one authority."""

    def __init__(self, authority: Authority) -> None:
        self.authority = authority
        self.nonces = ReplayNonces(authority.clock)
        self._finalizing: set[str] = set()  # orders being signed in this process
        self._finalizing_lock = threading.Lock()
        self.runner = ValidationRunner(
            authority, ValidationConfig.from_table(authority.config.acme), self._audit
        )

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

    async def run(
        self,
        *,
        resume: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The background validations (see :class:`ValidationRunner`); hosts start this."""
        await self.runner.run(resume=resume, task_status=task_status)

    @property
    def certificates(self) -> CertificateStore:
        return self.authority.stores.certificates

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

    @property
    def validations_in_flight(self) -> int:
        return self.runner.in_flight

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

    # --- plumbing ----------------------------------------------------------------------

    def _provisioner(self, name: str) -> ACMEIssuing:
        provisioner = self.authority.provisioners.get(name)
        acme = provisioner.acme() if provisioner is not None else None
        if acme is None:
            raise not_found(f"no ACME provisioner named {name[:64]!r}")
        return acme

    def _base_url(self, request: HTTPRequest) -> str:
        """One of the server's configured base URLs (the Host header only picks which)."""
        return own_base_url(self.authority.base_urls, request.base_url)

    def _context(self, request: HTTPRequest, provisioner: ACMEIssuing) -> Context:
        return Context(
            profile=provisioner.profile,
            urls=URLs(self._base_url(request), provisioner.name),
            now=self.authority.clock.now(),
            random=self.authority.random,
        )

    def _headers(self, directory: str | None, *, nonce: bool) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        if nonce:
            headers.append(("replay-nonce", self.nonces.issue()))
        if directory is not None:
            headers.append(("link", f'<{directory}>;rel="index"'))
        return headers

    def _http(self, urls: URLs, respond: Respond, *, nonce: bool = True) -> HTTPResponse:
        headers = self._headers(urls.directory, nonce=nonce)
        for url, rel in respond.links:
            headers.append(("link", f'<{url}>;rel="{rel}"'))
        if respond.location is not None:
            headers.append(("location", respond.location))
        if respond.retry_after is not None:
            headers.append(("retry-after", str(respond.retry_after)))
        body = b""
        if respond.body is not None:
            body = json.dumps(respond.body).encode()
        elif respond.text is not None:
            body = respond.text.encode()
        if body:
            content_type = respond.content_type
            if content_type == JSON:
                content_type = "application/json; charset=utf-8"
            headers.insert(0, ("content-type", content_type))
        return HTTPResponse(respond.status, body, tuple(headers))

    def _problem(
        self, request: HTTPRequest, name: str | None, problem: ACMEProblem
    ) -> HTTPResponse:
        directory = None
        provisioner = self.authority.provisioners.get(name) if name is not None else None
        if name is not None and provisioner is not None and provisioner.acme() is not None:
            directory = URLs(self._base_url(request), name).directory
        try:
            headers = self._headers(directory, nonce=True)
        except Exception:  # still answer the problem
            log.exception("cannot issue a nonce for an error response")
            headers = []
        return error_response(problem, tuple(headers))

    def _audit(self, events: tuple[Audit, ...]) -> None:
        for event in events:
            log.info(event.event, extra=dict(event.fields))
            self.authority.plugins.audit(event.event, event.fields)

    async def _answer(
        self, request: HTTPRequest, name: str, operation: _Operation, **params: str
    ) -> HTTPResponse:
        """Run *operation* in a thread; schedule its validations; never raise."""

        def work() -> tuple[HTTPResponse, tuple[StartValidation, ...]]:
            provisioner = self._provisioner(name)
            ctx = self._context(request, provisioner)
            outcome = operation(self.authority, ctx, provisioner, request, **params)
            self._audit(outcome.audit)
            return self._http(ctx.urls, outcome.respond), outcome.validations

        try:
            response, validations = await trio.to_thread.run_sync(work)
        except ProtocolError as exc:
            problem = as_problem(exc)
        except Exception:
            log.exception("ACME request failed: %s %s", request.method, request.path)
            problem = ACMEProblem("serverInternal", "internal error")
        else:
            for job in validations:
                self.runner.schedule(job)
            return response
        return self._problem(request, name, problem)

    async def refuse(self, request: HTTPRequest, exc: ProtocolError) -> HTTPResponse:
        """Router refusals under /acme/ (unknown path, wrong method, body too large)."""
        parts = request.path[len(PREFIX) :].split("/")
        name = parts[1] if len(parts) > 1 and parts[1] else None
        return self._problem(request, name, as_problem(exc))

    # --- GET resources -----------------------------------------------------------------

    async def directory(self, request: HTTPRequest, provisioner: str) -> HTTPResponse:
        def work() -> HTTPResponse:
            found = self._provisioner(provisioner)
            urls = URLs(self._base_url(request), found.name)
            profile = found.profile
            body = directory_json(
                urls,
                external_account_required=profile.require_eab,
                website=profile.website,
                terms_of_service=profile.terms_of_service,
            )
            return self._http(urls, Respond(200, body), nonce=False)

        return await self._get(request, provisioner, work)

    async def new_nonce(self, request: HTTPRequest, provisioner: str) -> HTTPResponse:
        """RFC 8555 7.2: HEAD answers 200, GET 204; never cached."""

        def work() -> HTTPResponse:
            found = self._provisioner(provisioner)
            urls = URLs(self._base_url(request), found.name)
            status = 200 if request.method == "HEAD" else 204
            response = self._http(urls, Respond(status))
            return attrs.evolve(
                response, headers=(*response.headers, ("cache-control", "no-store"))
            )

        return await self._get(request, provisioner, work)

    async def renewal_info(
        self, request: HTTPRequest, provisioner: str, cert_id: str
    ) -> HTTPResponse:
        """RFC 9773: GET renewal-info/{certID} -> {"suggestedWindow": {start, end}}."""

        def work() -> HTTPResponse:
            found = self._provisioner(provisioner)
            urls = URLs(self._base_url(request), found.name)
            key_identifier, serial = parse_cert_id(cert_id)
            record = self.certificates.get_certificate(format(serial, "x"))
            if record is None or record.provisioner_name != found.name:
                raise not_found("no certificate of this provisioner has that identifier")
            certificate = x509.load_der_x509_certificate(record.der)
            try:
                aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
            except x509.ExtensionNotFound:
                aki = None
            if aki is None or aki.value.key_identifier != key_identifier:
                raise not_found("no certificate of this provisioner has that identifier")
            start, end = suggested_window(
                record.not_before,
                record.not_after,
                revoked=record.status == "revoked",
                now=self.authority.clock.now(),
            )
            respond = Respond(
                200,
                renewal_info_json(start, end),
                retry_after=int(RETRY_AFTER.total_seconds()),
            )
            return self._http(urls, respond, nonce=False)

        return await self._get(request, provisioner, work, blocking=True)

    async def _get(
        self,
        request: HTTPRequest,
        name: str,
        work: Callable[[], HTTPResponse],
        *,
        blocking: bool = False,
    ) -> HTTPResponse:
        """Answer a GET with *work*, in a worker thread if it is *blocking* (the store)."""
        try:
            if blocking:
                return await trio.to_thread.run_sync(work)
            return work()
        except ProtocolError as exc:
            problem = as_problem(exc)
        except Exception:
            log.exception("ACME request failed: %s %s", request.method, request.path)
            problem = ACMEProblem("serverInternal", "internal error")
        return self._problem(request, name, problem)

    # --- POST resources (route handlers) ---------------------------------------------------

    async def new_account(self, request: HTTPRequest, provisioner: str) -> HTTPResponse:
        return await self._answer(request, provisioner, operations.new_account)

    async def account(
        self, request: HTTPRequest, provisioner: str, account_id: str
    ) -> HTTPResponse:
        return await self._answer(request, provisioner, operations.account, account_id=account_id)

    async def account_orders(
        self, request: HTTPRequest, provisioner: str, account_id: str
    ) -> HTTPResponse:
        return await self._answer(
            request, provisioner, operations.account_orders, account_id=account_id
        )

    async def key_change(self, request: HTTPRequest, provisioner: str) -> HTTPResponse:
        return await self._answer(request, provisioner, operations.key_change)

    async def new_order(self, request: HTTPRequest, provisioner: str) -> HTTPResponse:
        return await self._answer(request, provisioner, operations.new_order)

    async def order(self, request: HTTPRequest, provisioner: str, order_id: str) -> HTTPResponse:
        return await self._answer(request, provisioner, operations.order, order_id=order_id)

    async def finalize(self, request: HTTPRequest, provisioner: str, order_id: str) -> HTTPResponse:
        return await self._answer(request, provisioner, operations.finalize, order_id=order_id)

    async def authorization(
        self, request: HTTPRequest, provisioner: str, authorization_id: str
    ) -> HTTPResponse:
        # A poll while its validation is under way waits briefly for the result: one poll
        # shows it instead of several.
        await self.runner.settled(authorization_id, POLL_PATIENCE)
        return await self._answer(
            request, provisioner, operations.authorization, authorization_id=authorization_id
        )

    async def challenge(
        self, request: HTTPRequest, provisioner: str, challenge_id: str
    ) -> HTTPResponse:
        await self.runner.settled(challenge_id, POLL_PATIENCE)
        return await self._answer(
            request, provisioner, operations.challenge, challenge_id=challenge_id
        )

    async def certificate(
        self, request: HTTPRequest, provisioner: str, serial: str
    ) -> HTTPResponse:
        return await self._answer(request, provisioner, operations.certificate, serial=serial)

    async def revoke_cert(self, request: HTTPRequest, provisioner: str) -> HTTPResponse:
        return await self._answer(request, provisioner, operations.revoke_cert)
