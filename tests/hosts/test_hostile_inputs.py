"""Every malformed input of issue 11's finding 6, through each real host, over HTTP/1.1 and
(on the quart host) HTTP/2.

A CSR of version 6 or with an unknown key algorithm or curve (at ``/1.0/sign`` and at
ACME finalize), an EK of an unknown algorithm at ``/attest``, X5C tokens whose
certificate has an unknown key algorithm, a malformed issuer or version 4 (at
``/1.0/sign`` and ``GET /api/v1/device/accounts``), JOSE nested 5,000 deep, an ACME
newAccount whose ``jwk`` has a member of the wrong JSON type. Each must be answered
with a 4xx in the protocol's own form (ACME: ``application/problem+json`` with an ACME
error type; elsewhere ``{"status", "error", "message"}``), must leave no traceback in
the server's log, and the server must still answer ``/health`` afterwards.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import attrs
import httpx
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from engine.acme.jws import sign_flattened
from engine.jose import b64url_encode, create_signature, jwk_from_public_key
from hosts.service.accounts import DEVICE_API, DEVICE_API_PROVISIONER
from tests.attestation_fakes import b64, make_device
from tests.conftest import CA, HOSTS, RunningServer, new_csr
from tests.hostile import (
    EC_PUBLIC_KEY,
    HOSTILE_CSRS,
    P256_CURVE,
    UNKNOWN_CURVE,
    UNKNOWN_KEY_ALGORITHM,
    certificate_v4,
    certificate_with_duplicate_extension,
    certificate_with_malformed_issuer,
    certificate_with_unknown_key_algorithm,
    compact_with,
    deep_header,
    deep_json,
    pem_csr,
    spki_with,
    wrong_type_jwks,
)
from tests.plugins.test_x5c_security import (
    NAME as X5C_PROVISIONER,
)
from tests.plugins.test_x5c_security import (
    USER,
    add_x5c_provisioner,
    agent_ca,
    agent_signer,
    claims_for,
    make_certificate,
    signed_with_header,
)

from .acme_helpers import ACME_ERROR, PROBLEM, ACMEClient, acme_server_for
from .helpers import ERROR_KEYS, client
from .test_acme_flows import accept_all, authorize, ordered

KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(params=HOSTS)
async def hostile_server(
    ca: CA, nursery: trio.Nursery, request: pytest.FixtureRequest
) -> AsyncIterator[RunningServer]:
    """Each host in turn (quart, raw), with an X5C provisioner trusting the Agent CA and the `acme`
    provisioner allowing loopback names."""
    add_x5c_provisioner(ca)
    running, stop = await acme_server_for(ca, nursery, request.param)
    accept_all(running)
    yield running
    await stop.close()


@attrs.define
class Session:
    """One client connection (HTTP/1.1 or HTTP/2) to the server under attack."""

    server: RunningServer
    http: httpx.AsyncClient
    acme: ACMEClient
    finalize_url: str = ""


Send = Callable[[Session], Awaitable[httpx.Response]]


@attrs.frozen
class Case:
    name: str
    send: Send
    status: int
    problem: str | None = None  # the ACME error type, for ACME resources


# --- /1.0/sign and ACME finalize: CSRs ----------------------------------------------------------


def _sign_with_csr(der: bytes) -> Send:
    async def send(s: Session) -> httpx.Response:
        ott = s.server.token("svc.example.com")
        return await s.http.post("/1.0/sign", json={"csr": pem_csr(der), "ott": ott})

    return send


def _finalize_with_csr(der: bytes) -> Send:
    async def send(s: Session) -> httpx.Response:
        if not s.finalize_url:
            await s.acme.new_account()
            url, order = await ordered(s.acme, ("dns", "svc.example.com"))
            await authorize(s.acme, order)
            await s.acme.wait_for(url, ["ready"])
            s.finalize_url = order["finalize"]
        return await s.acme.post(s.finalize_url, {"csr": b64url_encode(der)})

    return send


def csr_cases() -> list[Case]:
    cases = []
    for kind, make in HOSTILE_CSRS.items():
        der = make()
        cases.append(Case(f"/1.0/sign, CSR {kind}", _sign_with_csr(der), 400))
        cases.append(Case(f"ACME finalize, CSR {kind}", _finalize_with_csr(der), 400, "badCSR"))
    return cases


# --- /attest: the EK --------------------------------------------------------------------------


def _attest(change: Callable[[dict[str, Any]], None]) -> Send:
    async def send(s: Session) -> httpx.Response:
        body = make_device("ecc", "ecc").attest_body()
        change(body)
        return await s.http.post("/attest", json=body)

    return send


def _ek(old: bytes, new: bytes) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        body["ek"] = b64(spki_with(old, new))

    return change


def _ek_certificate(spoil: Callable[..., bytes], send_ek: bool) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        issuer = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        vendor = make_certificate(None, cn="Hostile EK Vendor", now=now, ca=True, key=issuer)
        ek = make_certificate(vendor, cn="ek", now=now)
        body["ekCerts"] = [b64(spoil(ek.certificate, vendor.key))]
        if not send_ek:
            del body["ek"]

    return change


SPOILERS: dict[str, Callable[..., bytes]] = {
    "version 4": certificate_v4,
    "malformed issuer": certificate_with_malformed_issuer,
    "unknown key algorithm": certificate_with_unknown_key_algorithm,
}
# x5c certificates are also refused for extensions that cannot be read (401).
X5C_SPOILERS = {**SPOILERS, "duplicate extension": certificate_with_duplicate_extension}


def attest_cases() -> list[Case]:
    cases = [
        Case(
            "/attest, EK of an unknown algorithm",
            _attest(_ek(EC_PUBLIC_KEY, UNKNOWN_KEY_ALGORITHM)),
            400,
        ),
        Case("/attest, EK on an unknown curve", _attest(_ek(P256_CURVE, UNKNOWN_CURVE)), 400),
    ]
    for kind, spoil in SPOILERS.items():
        for send_ek in (True, False):
            label = "with ek" if send_ek else "certificate only"
            cases.append(
                Case(
                    f"/attest, EK certificate {kind} ({label})",
                    _attest(_ek_certificate(spoil, send_ek)),
                    400,
                )
            )
    return cases


# --- X5C tokens -------------------------------------------------------------------------------


def _b64(der: bytes) -> str:
    return base64.b64encode(der).decode()


def _x5c_token(s: Session, kind: str, where: str, issuer: str, path: str) -> str:
    authority = s.server.authority
    signer = agent_signer(authority)
    now = authority.clock.now()
    spoil = X5C_SPOILERS[kind]
    if where == "leaf":
        holder = make_certificate(signer, cn="odd-device.example.com", now=now)
        x5c = [
            _b64(spoil(holder.certificate, signer.key)),
            _b64(agent_ca(authority).public_bytes(Encoding.DER)),
        ]
    else:
        intermediate = make_certificate(signer, cn="Intermediate CA", now=now, ca=True)
        holder = make_certificate(intermediate, cn="odd-device.example.com", now=now)
        x5c = [
            _b64(holder.certificate.public_bytes(Encoding.DER)),
            _b64(spoil(intermediate.certificate, signer.key)),
        ]
    claims = claims_for(authority, iss=issuer, aud=f"{s.server.url}{path}")
    return signed_with_header(holder, x5c, claims)


def _x5c_sign(kind: str, where: str) -> Send:
    async def send(s: Session) -> httpx.Response:
        ott = _x5c_token(s, kind, where, X5C_PROVISIONER, "/1.0/sign")
        return await s.http.post("/1.0/sign", json={"csr": new_csr(USER)[2], "ott": ott})

    return send


def _x5c_device_accounts(kind: str, where: str) -> Send:
    async def send(s: Session) -> httpx.Response:
        bearer = _x5c_token(s, kind, where, DEVICE_API_PROVISIONER, DEVICE_API)
        return await s.http.get(DEVICE_API, headers={"Authorization": f"Bearer {bearer}"})

    return send


def x5c_cases() -> list[Case]:
    cases = []
    for kind in X5C_SPOILERS:
        for where in ("leaf", "intermediate"):
            status = 401 if kind in ("unknown key algorithm", "duplicate extension") else 400
            cases.append(Case(f"/1.0/sign, x5c {where} {kind}", _x5c_sign(kind, where), status))
            cases.append(
                Case(f"{DEVICE_API}, x5c {where} {kind}", _x5c_device_accounts(kind, where), status)
            )
    return cases


# --- JOSE nested deep -------------------------------------------------------------------------


def _deep_sign_token(part: str) -> Send:
    async def send(s: Session) -> httpx.Response:
        claims = claims_for(s.server.authority, iss="admin", aud=f"{s.server.url}/1.0/sign")
        if part == "header":
            ott = compact_with(deep_header({"alg": "ES256", "typ": "JWT"}), json.dumps(claims), KEY)
        else:
            ott = compact_with('{"alg":"ES256","typ":"JWT"}', deep_json(), KEY)
        return await s.http.post("/1.0/sign", json={"csr": new_csr()[2], "ott": ott})

    return send


def _deep_revoke_token(s: Session) -> Awaitable[httpx.Response]:
    async def send() -> httpx.Response:
        _, _, csr_pem = new_csr("svc.example.com")
        r = await s.http.post("/1.0/sign", json={"csr": csr_pem, "ott": s.server.token()})
        assert r.status_code == 201, r.text
        serial = x509.load_pem_x509_certificate(r.json()["crt"].encode()).serial_number
        ott = compact_with(deep_header({"alg": "ES256", "typ": "JWT"}), "{}", KEY)
        return await s.http.post("/1.0/revoke", json={"serial": str(serial), "ott": ott})

    return send()


def _deep_bearer(s: Session) -> Awaitable[httpx.Response]:
    ott = compact_with(deep_header({"alg": "ES256", "x5c": []}), "{}", KEY)
    return s.http.get(DEVICE_API, headers={"Authorization": f"Bearer {ott}"})


def _raw_flattened(header_json: str, payload_json: str) -> dict[str, str]:
    protected = b64url_encode(header_json.encode())
    payload = b64url_encode(payload_json.encode())
    signature = create_signature("ES256", KEY, f"{protected}.{payload}".encode())
    return {"protected": protected, "payload": payload, "signature": b64url_encode(signature)}


def _deep_acme(part: str, resource: str) -> Send:
    async def send(s: Session) -> httpx.Response:
        url = s.acme.directory[resource]
        header: dict[str, Any] = {"alg": "ES256", "nonce": await s.acme.nonce(), "url": url}
        if resource == "newAccount":
            header["jwk"] = jwk_from_public_key(KEY.public_key())
        else:
            if s.acme.kid is None:
                await s.acme.new_account()
            header["kid"] = s.acme.kid
        if part == "header":
            body = _raw_flattened(deep_header(header), "{}")
        else:
            body = _raw_flattened(json.dumps(header), deep_json())
        return await s.acme.send(url, body)

    return send


def jose_cases() -> list[Case]:
    return [
        Case("/1.0/sign, token header nested deep", _deep_sign_token("header"), 400),
        Case("/1.0/sign, token payload nested deep", _deep_sign_token("payload"), 400),
        Case("/1.0/revoke, token header nested deep", _deep_revoke_token, 400),
        Case(f"{DEVICE_API}, bearer token nested deep", _deep_bearer, 400),
        Case(
            "ACME newAccount, protected header nested deep",
            _deep_acme("header", "newAccount"),
            400,
            "malformed",
        ),
        Case(
            "ACME newAccount, payload nested deep",
            _deep_acme("payload", "newAccount"),
            400,
            "malformed",
        ),
        Case(
            "ACME newOrder, protected header nested deep",
            _deep_acme("header", "newOrder"),
            400,
            "malformed",
        ),
        Case(
            "ACME newOrder, payload nested deep",
            _deep_acme("payload", "newOrder"),
            400,
            "malformed",
        ),
    ]


# --- ACME newAccount: JWK members of the wrong type --------------------------------------------


def _new_account_with_jwk(jwk: dict[str, Any]) -> Send:
    async def send(s: Session) -> httpx.Response:
        url = s.acme.directory["newAccount"]
        header = {"nonce": await s.acme.nonce(), "url": url, "jwk": jwk}
        return await s.acme.send(url, sign_flattened(KEY, {"termsOfServiceAgreed": True}, header))

    return send


def _v4_revoke_cert(s: Session) -> Awaitable[httpx.Response]:
    async def send() -> httpx.Response:
        if s.acme.kid is None:
            await s.acme.new_account()
        issuer = ec.generate_private_key(ec.SECP256R1())
        now = s.server.authority.clock.now()
        ca = make_certificate(None, cn="Elsewhere", now=now, ca=True, key=issuer)
        leaf = make_certificate(ca, cn="svc.example.com", now=now)
        der = certificate_v4(leaf.certificate, issuer)
        return await s.acme.post(
            s.acme.directory["revokeCert"], {"certificate": b64url_encode(der)}
        )

    return send()


def jwk_cases() -> list[Case]:
    good = jwk_from_public_key(KEY.public_key())
    cases = [
        Case(f"ACME newAccount, jwk {label}", _new_account_with_jwk(jwk), 400, "badPublicKey")
        for label, jwk in wrong_type_jwks(good).items()
    ]
    cases.append(Case("ACME revokeCert, certificate version 4", _v4_revoke_cert, 400, "malformed"))
    return cases


GROUPS: dict[str, Callable[[], list[Case]]] = {
    "CSR": csr_cases,
    "EK": attest_cases,
    "X5C": x5c_cases,
    "JOSE nested deep": jose_cases,
    "JWK member types": jwk_cases,
}


# --- the test -----------------------------------------------------------------------------------


def _problems(case: Case, response: httpx.Response) -> list[str]:
    """What is wrong with the answer to *case* (nothing: an empty list)."""
    if response.status_code != case.status:
        return [f"status {response.status_code}, expected {case.status}: {response.text[:300]}"]
    content_type = response.headers.get("content-type", "")
    try:
        body = response.json()
    except ValueError:
        return [f"the body is not JSON: {response.text[:200]}"]
    if case.problem is not None:
        expected = ACME_ERROR + case.problem
        if not content_type.startswith(PROBLEM):
            return [f"content-type {content_type!r}, expected {PROBLEM}"]
        if body.get("type") != expected or body.get("status") != case.status:
            return [f"problem {body}, expected type {expected}"]
        if not isinstance(body.get("detail"), str) or not body["detail"]:
            return [f"problem without detail: {body}"]
        return []
    if not content_type.startswith("application/json"):
        return [f"content-type {content_type!r}, expected application/json"]
    if not isinstance(body, dict) or not body.keys() >= ERROR_KEYS:
        return [f"body {body} lacks {sorted(ERROR_KEYS)}"]
    if body["status"] != case.status or not body["error"] or not body["message"]:
        return [f"error body {body} does not describe a {case.status}"]
    return []


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.exc_info is not None or r.levelno >= logging.ERROR
    ]


@pytest.mark.parametrize("group", list(GROUPS))
async def test_hostile_input_gets_a_4xx_in_the_protocols_form_and_the_server_lives(
    hostile_server: RunningServer, group: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = hostile_server
    versions = ["HTTP/1.1", "HTTP/2"] if server.host == "quart" else ["HTTP/1.1"]
    cases = GROUPS[group]()
    failures: list[str] = []
    for version in versions:
        async with client(server, http2=version == "HTTP/2") as http:
            session = Session(server, http, await ACMEClient(http, server.url).start())
            for case in cases:
                response = await case.send(session)
                assert response.http_version == version, (case.name, response.http_version)
                failures += [f"{version} {case.name}: {p}" for p in _problems(case, response)]
            health = await http.get("/health")
            assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert not failures, "\n".join(failures)
    assert not _tracebacks(caplog), _tracebacks(caplog)
    async with client(server) as http:  # a new connection works too
        assert (await http.get("/health")).status_code == 200


def test_every_group_sends_what_finding_6_names() -> None:
    names = [case.name for make in GROUPS.values() for case in make()]
    for needle in (
        "/1.0/sign, CSR version 6",
        "ACME finalize, CSR unknown curve",
        "/attest, EK of an unknown algorithm",
        "/1.0/sign, x5c leaf version 4",
        f"{DEVICE_API}, x5c leaf malformed issuer",
        "/1.0/sign, x5c intermediate unknown key algorithm",
        "ACME newAccount, protected header nested deep",
        "ACME newAccount, jwk crv as list",
    ):
        assert needle in names
