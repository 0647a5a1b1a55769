"""The bad-JWS corpus, through each real host (SECURITY.md, "Tokens and JWS").

Every case is one hostile or broken ACME request. Each must be answered with
the RFC 8555 problem type and status it deserves, as application/problem+json
with a fresh Replay-Nonce (clients retry badNonce with it), never with a 500,
and must change nothing: no order is created.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import attrs
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from engine.acme.jws import sign_flattened
from engine.acme.nonces import NONCE_LIFETIME
from engine.jose import b64url_decode, b64url_encode, jwk_from_public_key
from hosts.service.acme.nonces import ReplayNonces
from tests.conftest import RunningServer

from .acme_helpers import (
    JOSE,
    ACMEClient,
    acme_client,
    acme_server_fixture,  # noqa: F401
    assert_problem,
    new_key,
)

ORDER = {"identifiers": [{"type": "dns", "value": "corpus.example.com"}]}


@attrs.frozen
class Case:
    name: str
    send: Callable[[ACMEClient, RunningServer], Awaitable[httpx.Response]]
    status: int
    problem: str


def _b64json(value: Any) -> str:
    return b64url_encode(json.dumps(value).encode())


async def _new_order_with(acme: ACMEClient, header: dict[str, Any], **kw: Any) -> httpx.Response:
    url = acme.directory["newOrder"]
    return await acme.send(url, await acme.custom(url, ORDER, header, **kw))


async def _kid_header(acme: ACMEClient, **changes: Any) -> dict[str, Any]:
    header: dict[str, Any] = {
        "nonce": await acme.nonce(),
        "url": acme.directory["newOrder"],
        "kid": acme.kid,
    }
    header.update(changes)
    return {k: v for k, v in header.items() if v is not None}


async def unknown_nonce(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    return await _new_order_with(acme, await _kid_header(acme, nonce=b64url_encode(b"x" * 16)))


async def reused_nonce(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    nonce = await acme.nonce()
    first = await acme.post(acme.directory["newOrder"], ORDER, nonce=nonce)
    assert first.status_code == 201, first.text
    server.authority.stores  # noqa: B018 - the first use consumed it
    return await acme.post(acme.directory["newOrder"], ORDER, nonce=nonce)


async def expired_nonce(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    now = server.authority.clock.now()
    stale = server.authority.acme.nonces.issue(now - NONCE_LIFETIME - timedelta(seconds=1))
    return await _new_order_with(acme, await _kid_header(acme, nonce=stale))


async def nonce_of_another_process(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    """Another --workers worker, or this server before a restart: another key."""
    foreign = ReplayNonces(server.authority.clock).issue()
    return await _new_order_with(acme, await _kid_header(acme, nonce=foreign))


async def tampered_nonce(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    raw = bytearray(b64url_decode(await acme.nonce()))
    raw[3] ^= 0x40  # another counter, the same tag
    return await _new_order_with(acme, await _kid_header(acme, nonce=b64url_encode(bytes(raw))))


async def malformed_nonce(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    return await _new_order_with(acme, await _kid_header(acme, nonce="not a nonce!"))


async def missing_nonce(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    header = await _kid_header(acme)
    del header["nonce"]
    return await _new_order_with(acme, header)


async def wrong_url(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    return await _new_order_with(acme, await _kid_header(acme, url=acme.directory["revokeCert"]))


async def hmac_outside_eab(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    url = acme.directory["newOrder"]
    header = await _kid_header(acme)
    protected = _b64json({"alg": "HS256", **header})
    payload = _b64json(ORDER)
    body = {"protected": protected, "payload": payload, "signature": b64url_encode(b"\0" * 32)}
    return await acme.send(url, body)


async def alg_none(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    url = acme.directory["newOrder"]
    header = await _kid_header(acme)
    body = {"protected": _b64json({"alg": "none", **header}), "payload": _b64json(ORDER)}
    body["signature"] = ""
    return await acme.send(url, body)


async def es384_on_p256(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    """The signature is even valid ECDSA-SHA-384 over P-256: the key still dictates ES256."""
    url = acme.directory["newOrder"]
    header = await _kid_header(acme)
    key = acme.key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    protected, payload = _b64json({"alg": "ES384", **header}), _b64json(ORDER)
    der = key.sign(f"{protected}.{payload}".encode(), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    signature = b64url_encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    return await acme.send(
        url, {"protected": protected, "payload": payload, "signature": signature}
    )


async def both_kid_and_jwk(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    header = await _kid_header(acme, jwk=jwk_from_public_key(acme.key.public_key()))
    return await _new_order_with(acme, header)


async def neither_kid_nor_jwk(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    header = await _kid_header(acme)
    del header["kid"]
    return await _new_order_with(acme, header)


async def unknown_kid(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    kid = acme.kid.rsplit("/", 1)[0] + "/no-such-account"  # type: ignore[union-attr]
    return await _new_order_with(acme, await _kid_header(acme, kid=kid))


async def kid_of_another_provisioner(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    kid = acme.kid.replace("/acme/acme/", "/acme/devices/")  # type: ignore[union-attr]
    return await _new_order_with(acme, await _kid_header(acme, kid=kid))


async def unprotected_header(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    url = acme.directory["newOrder"]
    body: dict[str, Any] = await acme.signed(url, ORDER)
    body["header"] = {"kid": acme.kid}
    return await acme.send(url, body)


async def two_signatures(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    url = acme.directory["newOrder"]
    one = await acme.signed(url, ORDER)
    two = await acme.signed(url, ORDER)
    body = {
        "payload": one["payload"],
        "signatures": [
            {"protected": one["protected"], "signature": one["signature"]},
            {"protected": two["protected"], "signature": two["signature"]},
        ],
    }
    return await acme.send(url, body)


async def oversized_body(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    url = acme.directory["newOrder"]
    limit = server.authority.config.server.max_body_bytes
    body = await acme.signed(url, {**ORDER, "padding": "x" * (limit + 1)})
    return await acme.send(url, body)


async def non_json(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    return await acme.send(acme.directory["newOrder"], b"this is not JSON {")


async def json_array(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    return await acme.send(acme.directory["newOrder"], b"[1, 2, 3]")


async def wrong_content_type(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    url = acme.directory["newOrder"]
    body = await acme.signed(url, ORDER)
    return await acme.send(url, body, headers={"content-type": "application/json"})


async def tampered_payload(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    url = acme.directory["newOrder"]
    body = await acme.signed(url, ORDER)
    body["payload"] = _b64json({"identifiers": [{"type": "dns", "value": "evil.example.com"}]})
    return await acme.send(url, body)


async def forged_signature(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    """Signed by another key under the account's kid."""
    return await _new_order_with(acme, await _kid_header(acme), key=new_key())


async def jwk_where_kid_is_required(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    return await acme.post(acme.directory["newOrder"], ORDER, use_jwk=True)


async def kid_on_new_account(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    url = acme.directory["newAccount"]
    return await acme.send(url, await acme.signed(url, {"termsOfServiceAgreed": True}))


async def protected_not_base64url(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    url = acme.directory["newOrder"]
    body = await acme.signed(url, ORDER)
    body["protected"] = "eyJ+/=="
    return await acme.send(url, body)


async def duplicate_header_member(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    url = acme.directory["newOrder"]
    nonce = await acme.nonce()
    raw = (
        f'{{"alg":"ES256","nonce":"{nonce}","url":"{url}","kid":"{acme.kid}",'
        f'"url":"{acme.directory["revokeCert"]}"}}'
    )
    body = await acme.signed(url, ORDER)
    body["protected"] = b64url_encode(raw.encode())
    return await acme.send(url, body)


async def critical_header(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    return await _new_order_with(acme, await _kid_header(acme, crit=["exp"], exp=1))


async def small_rsa_key(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    numbers = key.public_key().public_numbers()
    jwk = {
        "kty": "RSA",
        "n": b64url_encode(numbers.n.to_bytes(128, "big")),
        "e": b64url_encode(numbers.e.to_bytes(3, "big")),
    }
    url = acme.directory["newAccount"]
    header = {"nonce": await acme.nonce(), "url": url, "jwk": jwk}
    protected, payload = _b64json({"alg": "RS256", **header}), _b64json({})
    return await acme.send(url, {"protected": protected, "payload": payload, "signature": "AA"})


async def private_jwk(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    url = acme.directory["newAccount"]
    key = new_key()
    jwk = {**jwk_from_public_key(key.public_key()), "d": b64url_encode(b"\1" * 32)}
    header = {"nonce": await acme.nonce(), "url": url, "jwk": jwk}
    return await acme.send(url, sign_flattened(key, {}, header))


async def get_on_a_post_resource(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    return await acme.http.get(acme.directory["newOrder"])


async def unknown_acme_path(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    url = f"{server.url}/acme/acme/no-such-resource"
    return await acme.send(url, await acme.signed(url, {}))


async def unknown_provisioner(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    url = f"{server.url}/acme/nobody/new-order"
    return await acme.send(url, await acme.signed(url, ORDER))


async def jwk_provisioner_is_no_acme(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    return await acme.http.get(f"{server.url}/acme/admin/directory")


async def deactivated_account(acme: ACMEClient, server: RunningServer) -> httpx.Response:
    r = await acme.post(acme.kid, {"status": "deactivated"})  # type: ignore[arg-type]
    assert r.status_code == 200 and r.json()["status"] == "deactivated", r.text
    return await acme.post(acme.directory["newOrder"], ORDER)


CASES = [
    Case("unknown nonce", unknown_nonce, 400, "badNonce"),
    Case("reused nonce", reused_nonce, 400, "badNonce"),
    Case("expired nonce", expired_nonce, 400, "badNonce"),
    Case("nonce of another server process", nonce_of_another_process, 400, "badNonce"),
    Case("tampered nonce", tampered_nonce, 400, "badNonce"),
    Case("malformed nonce", malformed_nonce, 400, "badNonce"),
    Case("missing nonce", missing_nonce, 400, "badNonce"),
    Case("wrong url", wrong_url, 403, "unauthorized"),
    Case("HS256 outside EAB", hmac_outside_eab, 400, "badSignatureAlgorithm"),
    Case("alg none", alg_none, 400, "badSignatureAlgorithm"),
    Case("ES384 on a P-256 key", es384_on_p256, 400, "badSignatureAlgorithm"),
    Case("both kid and jwk", both_kid_and_jwk, 400, "malformed"),
    Case("neither kid nor jwk", neither_kid_nor_jwk, 400, "malformed"),
    Case("unknown kid", unknown_kid, 400, "accountDoesNotExist"),
    Case("kid of another provisioner", kid_of_another_provisioner, 400, "accountDoesNotExist"),
    Case("unprotected header", unprotected_header, 400, "malformed"),
    Case("two signatures", two_signatures, 400, "malformed"),
    Case("oversized body", oversized_body, 413, "malformed"),
    Case("non-JSON body", non_json, 400, "malformed"),
    Case("JSON array body", json_array, 400, "malformed"),
    Case("wrong content type", wrong_content_type, 415, "malformed"),
    Case("tampered payload", tampered_payload, 400, "malformed"),
    Case("signed by another key", forged_signature, 400, "malformed"),
    Case("jwk where kid is required", jwk_where_kid_is_required, 400, "malformed"),
    Case("kid on newAccount", kid_on_new_account, 400, "malformed"),
    Case("protected header not base64url", protected_not_base64url, 400, "malformed"),
    Case("duplicate header member", duplicate_header_member, 400, "malformed"),
    Case("critical header", critical_header, 400, "malformed"),
    Case("RSA-1024 jwk", small_rsa_key, 400, "badPublicKey"),
    Case("jwk with private members", private_jwk, 400, "badPublicKey"),
    Case("GET on a POST resource", get_on_a_post_resource, 405, "malformed"),
    Case("unknown ACME path", unknown_acme_path, 404, "malformed"),
    Case("unknown provisioner", unknown_provisioner, 404, "malformed"),
    Case("JWK provisioner has no ACME", jwk_provisioner_is_no_acme, 404, "malformed"),
    Case("deactivated account", deactivated_account, 403, "unauthorized"),
]


def _orders(server: RunningServer) -> int:
    db = server.authority.stores.acme.database.connection  # the test looks, it does not touch
    return int(db.execute("SELECT COUNT(*) FROM acme_orders").fetchone()[0])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_jws_is_refused_with_a_problem_and_a_nonce(
    acme_server: RunningServer, case: Case
) -> None:
    async with acme_client(acme_server) as acme:
        r = await acme.new_account()
        assert r.status_code == 201, r.text
        before = _orders(acme_server) + (1 if case.send is reused_nonce else 0)
        response = await case.send(acme, acme_server)
        body = assert_problem(response, case.status, case.problem)
    assert _orders(acme_server) == before
    if case.problem == "badSignatureAlgorithm":
        assert body["algorithms"], body
    if case.send is es384_on_p256:
        assert body["algorithms"] == ["ES256"]


async def test_the_nonce_in_a_refusal_works_for_the_retry(acme_server: RunningServer) -> None:
    """What certbot and lego do after badNonce: retry once with the nonce it came with."""
    async with acme_client(acme_server) as acme:
        await acme.new_account()
        refused = await unknown_nonce(acme, acme_server)
        assert_problem(refused, 400, "badNonce")
        retry = await acme.post(
            acme.directory["newOrder"], ORDER, nonce=refused.headers["replay-nonce"]
        )
        assert retry.status_code == 201, retry.text


async def test_new_nonce_answers_head_200_and_get_204_uncached(
    acme_server: RunningServer,
) -> None:
    async with acme_client(acme_server) as acme:
        head = await acme.http.head(acme.directory["newNonce"])
        get = await acme.http.get(acme.directory["newNonce"])
    for response, status in ((head, 200), (get, 204)):
        assert response.status_code == status
        assert response.headers["cache-control"] == "no-store"
        assert len(response.headers["replay-nonce"]) >= 16
        assert 'rel="index"' in response.headers["link"]
    assert head.headers["replay-nonce"] != get.headers["replay-nonce"]


async def test_every_post_response_carries_a_new_nonce(acme_server: RunningServer) -> None:
    async with acme_client(acme_server) as acme:
        responses = [await acme.new_account(), await acme.new_order(("dns", "n.example.com"))]
        responses.append(await acme.get(responses[1].headers["location"]))
    nonces = [r.headers["replay-nonce"] for r in responses]
    assert len(set(nonces)) == len(nonces)
    assert all('rel="index"' in r.headers["link"] for r in responses)


async def test_garbage_bodies_never_cause_a_500(acme_server: RunningServer) -> None:
    bodies: list[bytes] = [
        b"",
        b"{}",
        b'{"protected": 1, "payload": 2, "signature": 3}',
        b'{"protected": "", "payload": "", "signature": ""}',
        b"[" * 50_000,
        json.dumps({"protected": _b64json([1]), "payload": "", "signature": ""}).encode(),
        json.dumps(
            {"protected": _b64json({"alg": "ES256"}), "payload": "", "signature": ""}
        ).encode(),
        "é".encode() * 10,
    ]
    async with acme_client(acme_server) as acme:
        for body in bodies:
            for url in (acme.directory["newOrder"], acme.directory["newAccount"]):
                r = await acme.http.post(url, content=body, headers=JOSE)
                assert 400 <= r.status_code < 500, (body[:40], r.status_code, r.text)
                assert r.headers["content-type"].startswith("application/problem+json")
                assert r.headers.get("replay-nonce")
