"""devid's HTTP API as one route table, served identically by every host."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .authority import Authority
from .http import HTTPRequest, HTTPResponse, Router

PEM = "application/x-pem-file"


async def _run(fn: Callable[..., Any], *args: Any) -> Any:
    """Blocking work (signing, SQLite commits) runs off the event loop."""
    return await trio.to_thread.run_sync(fn, *args)


def build_router(authority: Authority) -> Router:
    router = Router(authority.config.server.max_body_bytes)
    route = router.route
    inventory = authority.inventory

    @route("GET", "/health")
    async def health(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.json({"status": "ok"})

    @route("GET", "/roots.pem")
    async def roots(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.data(authority.root_pem, PEM)

    @route("GET", "/root/{sha256}")
    async def root(request: HTTPRequest, sha256: str) -> HTTPResponse:
        return HTTPResponse.json({"ca": authority.root_by_fingerprint(sha256)})

    @route("GET", "/provisioners")
    async def provisioners(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.json({"provisioners": authority.provisioners_view(), "nextCursor": ""})

    @route("POST", "/1.0/sign")
    async def sign(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.json(await _run(authority.sign, request.json_object()), 201)

    @route("POST", "/1.0/renew")
    async def renew(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.json(await _run(authority.renew, request.peer_certificate), 201)

    @route("POST", "/1.0/revoke")
    async def revoke(request: HTTPRequest) -> HTTPResponse:
        body = request.json_object()
        return HTTPResponse.json(await _run(authority.revoke, body, request.peer_certificate))

    @route("POST", "/attest")
    async def attest(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.json(await _run(authority.attest, request.json_object()))

    @route("POST", "/secret")
    async def secret(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.json(await _run(authority.activate, request.json_object()))

    async def crl_response(request: HTTPRequest, issuer: str) -> HTTPResponse:
        der: bytes = await _run(authority.crl, issuer)
        if request.query.get("format") == "pem":
            text = x509.load_der_x509_crl(der).public_bytes(Encoding.PEM)
            return HTTPResponse.data(text, PEM)
        return HTTPResponse.data(der, "application/pkix-crl")

    @route("GET", "/crl")
    async def crl(request: HTTPRequest) -> HTTPResponse:
        return await crl_response(request, "agent")

    @route("GET", "/crl/{issuer}")
    async def crl_of(request: HTTPRequest, issuer: str) -> HTTPResponse:
        return await crl_response(request, issuer)

    # --- admin API -----------------------------------------------------------------

    async def admin(request: HTTPRequest) -> None:
        await _run(authority.check_admin, request.bearer, request.peer_certificate)

    @route("GET", "/api/v1/devices")
    async def list_devices(request: HTTPRequest) -> HTTPResponse:
        await admin(request)
        return HTTPResponse.json(await _run(inventory.list, dict(request.query)))

    @route("POST", "/api/v1/devices")
    async def add_device(request: HTTPRequest) -> HTTPResponse:
        await admin(request)
        device = await _run(inventory.add, request.json())
        return HTTPResponse.json(device.to_json(), 201)

    @route("POST", "/api/v1/devices/{ek:path}/disable")
    async def disable_device(request: HTTPRequest, ek: str) -> HTTPResponse:
        await admin(request)
        return HTTPResponse.json((await _run(inventory.disable, ek)).to_json())

    @route("GET", "/api/v1/devices/{ek:path}")
    async def get_device(request: HTTPRequest, ek: str) -> HTTPResponse:
        await admin(request)
        return HTTPResponse.json((await _run(inventory.get, ek)).to_json())

    @route("PATCH", "/api/v1/devices/{ek:path}")
    async def update_device(request: HTTPRequest, ek: str) -> HTTPResponse:
        await admin(request)
        return HTTPResponse.json((await _run(inventory.update, ek, request.json())).to_json())

    @route("DELETE", "/api/v1/devices/{ek:path}")
    async def delete_device(request: HTTPRequest, ek: str) -> HTTPResponse:
        await admin(request)
        await _run(inventory.remove, ek)
        return HTTPResponse(204)

    # --- accounts: admin API, and the device-facing listing (mTLS, device certificate) ---

    accounts = authority.accounts

    @route("GET", "/api/v1/accounts")
    async def list_accounts(request: HTTPRequest) -> HTTPResponse:
        await admin(request)
        return HTTPResponse.json(await _run(accounts.list, dict(request.query)))

    @route("POST", "/api/v1/accounts")
    async def add_account(request: HTTPRequest) -> HTTPResponse:
        await admin(request)
        account = await _run(accounts.add, request.json())
        return HTTPResponse.json(account.to_json(), 201)

    @route("GET", "/api/v1/accounts/{name}")
    async def get_account(request: HTTPRequest, name: str) -> HTTPResponse:
        await admin(request)
        return HTTPResponse.json((await _run(accounts.get, name)).to_json())

    @route("PATCH", "/api/v1/accounts/{name}")
    async def update_account(request: HTTPRequest, name: str) -> HTTPResponse:
        await admin(request)
        return HTTPResponse.json((await _run(accounts.update, name, request.json())).to_json())

    @route("DELETE", "/api/v1/accounts/{name}")
    async def delete_account(request: HTTPRequest, name: str) -> HTTPResponse:
        await admin(request)
        await _run(accounts.remove, name)
        return HTTPResponse(204)

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

    # --- ACME (RFC 8555), one server per ACME provisioner ----------------------------------
    # Handlers never raise: errors are problem documents with a Replay-Nonce, and so are
    # the router's own refusals under /acme/ (unknown path, wrong method, body too large).

    acme = authority.acme
    router.on_refusal("/acme/", acme.refuse)
    base = "/acme/{provisioner}"
    router.add("GET", f"{base}/directory", acme.directory)
    router.add("GET", f"{base}/new-nonce", acme.new_nonce)
    router.add("POST", f"{base}/new-account", acme.new_account)
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
    router.add("GET", f"{base}/renewal-info/{{cert_id}}", acme.renewal_info)

    return router
