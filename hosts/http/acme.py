"""ACME over HTTP: every route handler takes the framework-free :class:`HTTPRequest`,
runs an ACME operation (:mod:`hosts.service.acme.operations`) in a worker thread and
answers with its outcome, and never raises: errors become ``application/problem+json``
through :func:`hosts.http.routing.error_response`, and every response carries a fresh
``Replay-Nonce`` and ``Link: <directory>;rel="index"``.

Plugging in: ``hosts/http/api.py`` routes ``/acme/{provisioner}/...`` to the handler
methods and registers :meth:`ACMEHandlers.refuse` for refusals the router makes itself
(404, 405, 413); ``hosts/core/runtime.py`` starts the validations
(:meth:`hosts.service.acme.ACMEService.run`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import attrs
import trio
from cryptography import x509

from engine.acme.effects import JSON, Outcome, Respond, StartValidation
from engine.acme.problems import ACMEProblem, as_problem, not_found
from engine.acme.renewal import RETRY_AFTER, parse_cert_id, renewal_info_json, suggested_window
from engine.acme.resources import PREFIX, URLs, directory_json
from engine.errors import ProtocolError
from hosts.service.acme import ACMEPost, ACMEService, operations
from hosts.service.ca import serial_hex
from hosts.service.endpoints import Endpoints

from .routing import HTTPRequest, HTTPResponse, error_response

log = logging.getLogger("devid.acme")

#: How long a poll of an authorization or challenge waits for a validation attempt under
#: way (the response still says ``processing`` with Retry-After if it takes longer).
POLL_PATIENCE = 0.25

_Operation = Callable[..., Outcome]


class ACMEHandlers:
    """The HTTP side of ACME for every ACME provisioner of one CA."""

    def __init__(self, acme: ACMEService, endpoints: Endpoints) -> None:
        self.acme = acme
        self.endpoints = endpoints
        self.nonces = acme.nonces

    # --- plumbing ----------------------------------------------------------------------

    def _base_url(self, request: HTTPRequest) -> str:
        """One of the server's configured base URLs (the Host header only picks which)."""
        return self.endpoints.base_url(request.base_url)

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
        if name is not None and self.acme.ca.provisioners.acme(name) is not None:
            directory = URLs(self._base_url(request), name).directory
        try:
            headers = self._headers(directory, nonce=True)
        except Exception:  # still answer the problem
            log.exception("cannot issue a nonce for an error response")
            headers = []
        return error_response(problem, tuple(headers))

    async def _answer(
        self, request: HTTPRequest, name: str, operation: _Operation, **params: str
    ) -> HTTPResponse:
        """Run *operation* in a thread; schedule its validations; never raise."""

        post = ACMEPost(
            path=request.path, content_type=request.header("content-type"), body=request.body
        )

        def work() -> tuple[HTTPResponse, tuple[StartValidation, ...]]:
            provisioner = self.acme.provisioner(name)
            ctx = self.acme.context(provisioner, self._base_url(request))
            outcome = operation(self.acme, ctx, provisioner, post, **params)
            self.acme.audit(outcome.audit)
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
                self.acme.schedule(job)
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
            found = self.acme.provisioner(provisioner)
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
            found = self.acme.provisioner(provisioner)
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
            found = self.acme.provisioner(provisioner)
            urls = URLs(self._base_url(request), found.name)
            key_identifier, serial = parse_cert_id(cert_id)
            record = self.acme.ca.stores.certificates.get_certificate(serial_hex(serial))
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
                now=self.acme.ca.clock.now(),
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
        await self.acme.settled(authorization_id, POLL_PATIENCE)
        return await self._answer(
            request, provisioner, operations.authorization, authorization_id=authorization_id
        )

    async def challenge(
        self, request: HTTPRequest, provisioner: str, challenge_id: str
    ) -> HTTPResponse:
        await self.acme.settled(challenge_id, POLL_PATIENCE)
        return await self._answer(
            request, provisioner, operations.challenge, challenge_id=challenge_id
        )

    async def certificate(
        self, request: HTTPRequest, provisioner: str, serial: str
    ) -> HTTPResponse:
        return await self._answer(request, provisioner, operations.certificate, serial=serial)

    async def revoke_cert(self, request: HTTPRequest, provisioner: str) -> HTTPResponse:
        return await self._answer(request, provisioner, operations.revoke_cert)
