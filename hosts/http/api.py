"""devid's HTTP API as one route table, served identically by every host.

Each handler parses the request with :mod:`hosts.http.wire`, calls one service of the
:class:`~hosts.core.authority.Authority` in a worker thread, and writes the result back
as JSON; errors become responses in one place (:mod:`hosts.http.routing`)."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import outcome
import trio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.errors import NotFound, ProtocolError
from hosts.core.authority import Authority
from hosts.service.audit import audit_query
from hosts.service.ca import serial_hex
from hosts.service.certificates import certificate_query

from . import wire
from .acme import ACMEHandlers
from .ratelimit import limiter_for
from .routing import Access, HTTPRequest, HTTPResponse, Router, error_response
from .scep import add_scep_admin_routes, add_scep_routes

PEM = "application/x-pem-file"
#: The OpenAPI document of this route table (tests/hosts/test_openapi.py keeps the two equal).
OPENAPI = resources.files("hosts.http").joinpath("openapi.json").read_bytes()


_Job = tuple[trio.lowlevel.TrioToken, trio.lowlevel.Task, Callable[..., Any], tuple[Any, ...]]


class RequestThreads:
    """The threads that run the blocking part of requests (signing, SQLite commits).

    What ``trio.to_thread.run_sync`` does, without what a request does not need: a job
    goes to an idle thread through one C-level queue, and its result comes back with
    one ``run_sync_soon``. trio's version also names the thread, copies the context and
    runs several Python layers around each job (about 35 µs of CPU per hand-off under
    load, against about 10 here). As with trio's, at most the default thread limiter's
    tokens of jobs run at once (``[server]`` request threads, hosts/core/runtime.py), a
    task waiting for a token can be cancelled, and one whose job runs waits for it.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # Also in a forked child: the parent's threads do not exist there.
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._busy = 0

    def _work(self, jobs: queue.SimpleQueue[_Job]) -> None:
        reschedule = trio.lowlevel.reschedule
        while True:
            token, task, fn, args = jobs.get()
            result = outcome.capture(fn, *args)
            token.run_sync_soon(reschedule, task, result)
            del token, task, fn, args, result  # hold nothing while idle

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in one of the threads; its result, or what it raised."""
        await trio.lowlevel.checkpoint_if_cancelled()
        task = trio.lowlevel.current_task()
        limiter = trio.to_thread.current_default_thread_limiter()
        try:
            # A free token is taken at once: no trip through the scheduler for it.
            limiter.acquire_on_behalf_of_nowait(task)
        except trio.WouldBlock:
            await limiter.acquire_on_behalf_of(task)
        try:
            with self._lock:
                self._busy += 1
                if self._busy > self._threads:
                    self._threads += 1
                    threading.Thread(
                        target=self._work, args=(self._jobs,), name="devid-request", daemon=True
                    ).start()
            try:
                self._jobs.put((trio.lowlevel.current_trio_token(), task, fn, args))
                return await trio.lowlevel.wait_task_rescheduled(_not_cancellable)
            finally:
                with self._lock:
                    self._busy -= 1
        finally:
            limiter.release_on_behalf_of(task)


def _not_cancellable(_: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


_REQUEST_POOL = RequestThreads()


async def _run(fn: Callable[..., Any], *args: Any) -> Any:
    """Blocking work (signing, SQLite commits) runs off the event loop."""
    return await _REQUEST_POOL.run(fn, *args)


# --- the blocking part of each /1.0 request: wire in, service, wire out --------------------


def sign_body(authority: Authority, body: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /1.0/sign``: {csr, ott, notBefore?, notAfter?} -> {crt, ca, certChain}."""
    issued = authority.signing.sign(wire.sign_request(body, authority.clock.now()))
    return wire.chain_json(issued)


def renew_body(authority: Authority, peer_der: bytes | None) -> dict[str, Any]:
    """``POST /1.0/renew`` with *peer_der* as the TLS client certificate."""
    return wire.chain_json(authority.renewal.renew(peer_der))


def revoke_body(
    authority: Authority,
    body: Mapping[str, Any],
    peer_der: bytes | None,
    bearer: str | None = None,
) -> dict[str, Any]:
    """``POST /1.0/revoke``: {serial, ott?, reasonCode?, reason?}."""
    authority.revocation.revoke(wire.revoke_request(body), peer_der, bearer)
    return {"status": "ok"}


def build_plain_router(authority: Authority) -> Router:
    """What the plain-HTTP listener (``[server] scep_http_listen``) serves: SCEP and
    nothing else; any other path is 404 with a JSON body saying so."""
    server = authority.config.server
    router = Router(
        server.max_body_bytes,
        limiter=limiter_for(server.rate_limit_per_second, server.rate_limit_burst),
    )
    add_scep_routes(router, authority.scep, _run)

    async def https_only(request: HTTPRequest, exc: ProtocolError) -> HTTPResponse:
        if isinstance(exc, NotFound) and not request.path.startswith("/scep/"):
            exc = NotFound(
                "only SCEP (/scep/...) is served over plain HTTP; use the CA's https:// URL"
            )
        return error_response(exc)

    router.on_refusal("/", https_only)
    return router


def build_router(authority: Authority) -> Router:
    server = authority.config.server
    router = Router(
        server.max_body_bytes,
        limiter=limiter_for(server.rate_limit_per_second, server.rate_limit_burst),
    )
    route = router.route
    # Routes that need no credential are Access.ANONYMOUS: each request takes a token of
    # its client's rate limit (hosts/http/ratelimit.py, docs/api.md "Limits").
    inventory = authority.inventory

    @route("GET", "/health", access=Access.UNLIMITED)
    async def health(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.json({"status": "ok"})

    @route("GET", "/roots.pem", access=Access.ANONYMOUS)
    async def roots(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.data(authority.root_pem, PEM)

    @route("GET", "/root/{sha256}", access=Access.ANONYMOUS)
    async def root(request: HTTPRequest, sha256: str) -> HTTPResponse:
        return HTTPResponse.json({"ca": authority.root_by_fingerprint(sha256)})

    @route("GET", "/provisioners", access=Access.ANONYMOUS)
    async def provisioners(request: HTTPRequest) -> HTTPResponse:
        view = authority.ca.provisioners.view()
        return HTTPResponse.json({"provisioners": view, "nextCursor": ""})

    @route("GET", "/openapi.json", access=Access.ANONYMOUS)
    async def openapi(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.data(OPENAPI, "application/json")

    def sign_json(body: dict[str, Any]) -> dict[str, Any]:
        issued = authority.signing.sign(wire.sign_request(body, authority.clock.now()))
        return wire.chain_json(issued)

    @route("POST", "/1.0/sign")
    async def sign(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.json(await _run(sign_json, request.json_object()), 201)

    def renew_json(peer: bytes | None) -> dict[str, Any]:
        return wire.chain_json(authority.renewal.renew(peer))

    @route("POST", "/1.0/renew")
    async def renew(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.json(await _run(renew_json, request.peer_certificate), 201)

    def revoke_json(body: dict[str, Any], peer: bytes | None, bearer: str | None) -> dict[str, Any]:
        authority.revocation.revoke(wire.revoke_request(body), peer, bearer)
        return {"status": "ok"}

    @route("POST", "/1.0/revoke")
    async def revoke(request: HTTPRequest) -> HTTPResponse:
        body = request.json_object()
        return HTTPResponse.json(
            await _run(revoke_json, body, request.peer_certificate, request.bearer)
        )

    def attest_json(body: dict[str, Any]) -> dict[str, Any]:
        challenge = authority.attestation.attest(wire.attest_request(body))
        return challenge.to_json()

    @route("POST", "/attest", access=Access.ANONYMOUS)
    async def attest(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.json(await _run(attest_json, request.json_object()))

    def secret_json(body: dict[str, Any]) -> dict[str, Any]:
        issued = authority.attestation.activate(wire.activation_secret(body))
        return wire.ak_chain_json(issued)

    @route("POST", "/secret", access=Access.ANONYMOUS)
    async def secret(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.json(await _run(secret_json, request.json_object()))

    async def crl_response(request: HTTPRequest, issuer: str) -> HTTPResponse:
        der: bytes = await _run(authority.revocation.crl, issuer)
        if request.query.get("format") == "pem":
            text = x509.load_der_x509_crl(der).public_bytes(Encoding.PEM)
            return HTTPResponse.data(text, PEM)
        return HTTPResponse.data(der, "application/pkix-crl")

    @route("GET", "/crl", access=Access.ANONYMOUS)
    async def crl(request: HTTPRequest) -> HTTPResponse:
        return await crl_response(request, "agent")

    @route("GET", "/crl/{issuer}", access=Access.ANONYMOUS)
    async def crl_of(request: HTTPRequest, issuer: str) -> HTTPResponse:
        return await crl_response(request, issuer)

    # --- admin API -----------------------------------------------------------------

    async def admin(request: HTTPRequest) -> str:
        who: str = await _run(authority.admin.check, request.bearer, request.peer_certificate)
        return who

    def admin_collection(path: str, key: str, service: Any, *, key_has_slashes: bool) -> None:
        """Admin CRUD over one collection: list, create, get, change and delete by *key*.

        *service* offers list(query), add(body, actor), get(key), update(key, changes,
        actor) and remove(key, actor); what it returns has to_json(). The actor is the
        admin who asked, for the audit log.
        """
        item = f"{path}/{{{key}:path}}" if key_has_slashes else f"{path}/{{{key}}}"

        async def list_items(request: HTTPRequest) -> HTTPResponse:
            await admin(request)
            return HTTPResponse.json(await _run(service.list, dict(request.query)))

        async def add_item(request: HTTPRequest) -> HTTPResponse:
            who = await admin(request)
            added = await _run(service.add, request.json(), who)
            return HTTPResponse.json(added.to_json(), 201)

        async def get_item(request: HTTPRequest, **params: str) -> HTTPResponse:
            await admin(request)
            return HTTPResponse.json((await _run(service.get, params[key])).to_json())

        async def update_item(request: HTTPRequest, **params: str) -> HTTPResponse:
            who = await admin(request)
            changed = await _run(service.update, params[key], request.json(), who)
            return HTTPResponse.json(changed.to_json())

        async def delete_item(request: HTTPRequest, **params: str) -> HTTPResponse:
            who = await admin(request)
            await _run(service.remove, params[key], who)
            return HTTPResponse(204)

        router.add("GET", path, list_items)
        router.add("POST", path, add_item)
        router.add("GET", item, get_item)
        router.add("PATCH", item, update_item)
        router.add("DELETE", item, delete_item)

    # Before the collection's routes: {ek:path} would otherwise swallow "/disable".
    @route("POST", "/api/v1/devices/{ek:path}/disable")
    async def disable_device(request: HTTPRequest, ek: str) -> HTTPResponse:
        who = await admin(request)
        return HTTPResponse.json((await _run(inventory.disable, ek, who)).to_json())

    admin_collection("/api/v1/devices", "ek", inventory, key_has_slashes=True)

    # --- certificates: the inventory, and revocation by an operator ---------------------

    def certificates_json(query: dict[str, str]) -> dict[str, Any]:
        page = authority.certificates.list(certificate_query(query))
        return wire.certificate_page_json(page)

    @route("GET", "/api/v1/certificates")
    async def list_certificates(request: HTTPRequest) -> HTTPResponse:
        await admin(request)
        return HTTPResponse.json(await _run(certificates_json, dict(request.query)))

    def certificate_json(serial_text: str) -> dict[str, Any]:
        serial = serial_hex(wire.parse_serial(serial_text))
        return wire.certificate_detail_json(authority.certificates.show(serial))

    @route("GET", "/api/v1/certificates/{serial}")
    async def show_certificate(request: HTTPRequest, serial: str) -> HTTPResponse:
        await admin(request)
        return HTTPResponse.json(await _run(certificate_json, serial))

    def admin_revoke_json(serial_text: str, body: dict[str, Any], who: str) -> dict[str, Any]:
        serial = wire.parse_serial(serial_text)
        reason_code, reason = wire.parse_reason(body)
        record = authority.revocation.admin_revoke(serial, reason_code, reason, who)
        return wire.admin_revocation_json(record, serial, reason_code, who)

    @route("POST", "/api/v1/certificates/{serial}/revoke")
    async def revoke_certificate(request: HTTPRequest, serial: str) -> HTTPResponse:
        who = await admin(request)
        body = request.json_object() if request.body.strip() else {}
        return HTTPResponse.json(await _run(admin_revoke_json, serial, body, who))

    # --- accounts: admin API, and the device-facing listing (mTLS or x5c token) ---------

    admin_collection("/api/v1/accounts", "name", authority.accounts, key_has_slashes=False)

    @route("GET", "/api/v1/device/accounts")
    async def device_accounts(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.json(
            await _run(
                authority.device_accounts,
                request.peer_certificate,
                request.base_url,
                request.bearer,
            )
        )

    # --- the audit log ----------------------------------------------------------------

    def audit_json(query: dict[str, str]) -> dict[str, Any]:
        wanted = audit_query(query, authority.clock.now())
        events, total = authority.auditor.find(wanted)
        return wire.audit_page_json(events, total, wanted)

    @route("GET", "/api/v1/audit")
    async def audit_log(request: HTTPRequest) -> HTTPResponse:
        await admin(request)
        return HTTPResponse.json(await _run(audit_json, dict(request.query)))

    # --- ACME (RFC 8555), one server per ACME provisioner ----------------------------------
    # Handlers never raise: errors are problem documents with a Replay-Nonce, and so are
    # the router's own refusals under /acme/ (unknown path, wrong method, body too large).

    # --- SCEP (RFC 8894), one server per SCEP provisioner, and its operators' side ----------

    add_scep_routes(router, authority.scep, _run)
    add_scep_admin_routes(router, authority.scep, _run, admin)

    acme = ACMEHandlers(authority.acme, authority.ca.endpoints)
    router.on_refusal("/acme/", acme.refuse)
    base = "/acme/{provisioner}"
    router.add("GET", f"{base}/directory", acme.directory, access=Access.ANONYMOUS)
    router.add("GET", f"{base}/new-nonce", acme.new_nonce, access=Access.ANONYMOUS)
    router.add("POST", f"{base}/new-account", acme.new_account, access=Access.ANONYMOUS)
    router.add("POST", f"{base}/acct/{{account_id}}", acme.account)
    router.add("POST", f"{base}/acct/{{account_id}}/orders", acme.account_orders)
    router.add("POST", f"{base}/key-change", acme.key_change)
    router.add("POST", f"{base}/new-order", acme.new_order)
    router.add("POST", f"{base}/order/{{order_id}}", acme.order)
    router.add("POST", f"{base}/order/{{order_id}}/finalize", acme.finalize)
    router.add("POST", f"{base}/authz/{{authorization_id}}", acme.authorization)
    router.add("POST", f"{base}/chall/{{challenge_id}}", acme.challenge)
    router.add("POST", f"{base}/cert/{{serial}}", acme.certificate)
    router.add("POST", f"{base}/revoke-cert", acme.revoke_cert)
    router.add(
        "GET", f"{base}/renewal-info/{{cert_id}}", acme.renewal_info, access=Access.ANONYMOUS
    )

    return router
