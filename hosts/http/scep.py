"""SCEP's HTTP binding (RFC 8894 section 4): ``/scep/{provisioner}``, GET and POST.

``?operation=`` names the operation: GetCACaps (text), GetCACert (the RA and CA chain
as a degenerate PKCS#7), GetNextCACert, and PKIOperation, whose message is the POST
body (DER; base64 is accepted too) or the GET parameter ``message`` (base64). Clients
that append ``/pkiclient.exe`` to the URL are served the same. Every PKIOperation gets
a CertRep (``application/x-pki-message``), FAILURE with a failInfo when refused; a
request that names no operation, an unknown one or no provisioner gets a 4xx with a
JSON body. The routes take a token of the client's rate limit each (they need no
credential).
"""

from __future__ import annotations

import binascii
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from engine.durations import parse_duration
from engine.errors import BadRequest
from hosts.service.scep import CreatedChallenge, SCEPService
from hosts.store import SCEPTransaction

from .routing import Access, HTTPRequest, HTTPResponse, Router

PKI_MESSAGE = "application/x-pki-message"
CA_RA_CERT = "application/x-x509-ca-ra-cert"
NEXT_CA_CERT = "application/x-x509-next-ca-cert"
OPERATIONS = ("GetCACaps", "GetCACert", "GetNextCACert", "PKIOperation")

Run = Callable[..., Awaitable[Any]]


def message_bytes(text: str) -> bytes:
    """A base64 message as GET carries it (``+`` may arrive as a space); b"" if it is not
    base64, which the service answers with FAILURE badRequest."""
    compact = "".join(text.replace(" ", "+").split())
    compact += "=" * (-len(compact) % 4)
    try:
        return binascii.a2b_base64(compact.encode("ascii", "replace"), strict_mode=False)
    except (binascii.Error, ValueError):
        return b""


def post_body(body: bytes) -> bytes:
    """A POSTed message: DER as RFC 8894 asks, or base64 as some old clients send."""
    if body[:1] == b"\x30":
        return body
    text = body.strip()
    if text and all(
        c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n" for c in text
    ):
        return message_bytes(text.decode("ascii"))
    return body


def add_scep_routes(router: Router, scep: SCEPService, run: Run) -> None:
    """``/scep/{provisioner}`` (and ``/pkiclient.exe`` below it), GET and POST."""

    async def answer(request: HTTPRequest, provisioner: str) -> HTTPResponse:
        operation = request.query.get("operation")
        if not operation:
            raise BadRequest(
                "a SCEP request names its operation: ?operation=" + ", ".join(OPERATIONS)
            )
        if operation == "GetCACaps":
            return HTTPResponse.data(await run(scep.ca_caps, provisioner), "text/plain")
        if operation == "GetCACert":
            return HTTPResponse.data(await run(scep.ca_cert, provisioner), CA_RA_CERT)
        if operation == "GetNextCACert":
            return HTTPResponse.data(await run(scep.next_ca_cert, provisioner), NEXT_CA_CERT)
        if operation == "PKIOperation":
            if request.method == "POST":
                message = post_body(request.body)
            else:
                text = request.query.get("message")
                if text is None:
                    raise BadRequest("PKIOperation over GET carries its message in ?message=")
                message = message_bytes(text)
            # Single DES is accepted over HTTPS only (where a provisioner allows it).
            secure = request.base_url.startswith("https://")
            reply = await run(lambda: scep.pki_operation(provisioner, message, secure=secure))
            return HTTPResponse.data(reply, PKI_MESSAGE)
        raise BadRequest(
            f"unknown SCEP operation {operation[:40]!r}; expected one of {', '.join(OPERATIONS)}"
        )

    async def answer_exe(request: HTTPRequest, provisioner: str) -> HTTPResponse:
        return await answer(request, provisioner)

    for method in ("GET", "POST"):
        router.add(method, "/scep/{provisioner}", answer, access=Access.ANONYMOUS)
        router.add(method, "/scep/{provisioner}/pkiclient.exe", answer_exe, access=Access.ANONYMOUS)


def transaction_json(transaction: SCEPTransaction) -> dict[str, Any]:
    """A SCEP request as the admin API and ``devid scep`` show it."""
    return {
        "provisioner": transaction.provisioner,
        "transactionID": transaction.transaction_id,
        "status": transaction.status,
        "messageType": transaction.message_type,
        "subject": transaction.subject,
        "requestSHA256": transaction.request_sha256,
        "createdAt": transaction.created_at.isoformat(),
        "updatedAt": transaction.updated_at.isoformat(),
        "serial": transaction.serial,
        "decidedBy": transaction.decided_by,
        "reason": transaction.reason or None,
        "challenge": transaction.method,
    }


def challenge_json(created: CreatedChallenge) -> dict[str, Any]:
    record = created.record
    return {
        "provisioner": record.provisioner,
        "challenge": created.challenge,
        "subject": record.subject,
        "expiresAt": record.expires_at.isoformat(),
        "id": record.challenge_sha256[:16],
    }


def challenge_request(body: Any) -> tuple[str | None, timedelta]:
    """``POST /api/v1/scep/{provisioner}/challenges`` body: {subject?, expires?}."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    unknown = sorted(set(body) - {"subject", "expires"})
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; expected subject, expires")
    subject = body.get("subject")
    if subject is not None and (not isinstance(subject, str) or not subject):
        raise BadRequest("subject must be a non-empty string (the common name to bind)")
    expires = body.get("expires", "24h")
    if not isinstance(expires, str):
        raise BadRequest('expires must be a duration such as "24h" or "7d"')
    return subject, parse_duration(expires)


def add_scep_admin_routes(
    router: Router, scep: SCEPService, run: Run, admin: Callable[[HTTPRequest], Awaitable[str]]
) -> None:
    """The operator's side: pending requests, approval, rejection, one-time challenges."""

    async def list_requests(request: HTTPRequest, provisioner: str) -> HTTPResponse:
        await admin(request)
        status = request.query.get("status", "pending")
        if status not in ("pending", "issued", "rejected", "all"):
            raise BadRequest("status must be pending, issued, rejected or all")

        def listing() -> list[dict[str, Any]]:
            found = scep.requests(provisioner, status=None if status == "all" else status)
            return [transaction_json(t) for t in found]

        return HTTPResponse.json({"requests": await run(listing)})

    async def approve(request: HTTPRequest, provisioner: str, transaction_id: str) -> HTTPResponse:
        who = await admin(request)
        done = await run(scep.approve, provisioner, transaction_id, who)
        return HTTPResponse.json(transaction_json(done))

    async def reject(request: HTTPRequest, provisioner: str, transaction_id: str) -> HTTPResponse:
        who = await admin(request)
        body = request.json_object() if request.body.strip() else {}
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise BadRequest("reason must be a string")
        done = await run(scep.reject, provisioner, transaction_id, who, reason)
        return HTTPResponse.json(transaction_json(done))

    async def new_challenge(request: HTTPRequest, provisioner: str) -> HTTPResponse:
        who = await admin(request)
        subject, lifetime = challenge_request(request.json() if request.body.strip() else {})
        created = await run(
            lambda: scep.create_challenge(provisioner, who, subject=subject, lifetime=lifetime)
        )
        return HTTPResponse.json(challenge_json(created), 201)

    base = "/api/v1/scep/{provisioner}"
    router.add("GET", f"{base}/requests", list_requests)
    router.add("POST", f"{base}/requests/{{transaction_id:path}}/approve", approve)
    router.add("POST", f"{base}/requests/{{transaction_id:path}}/reject", reject)
    router.add("POST", f"{base}/challenges", new_challenge)
