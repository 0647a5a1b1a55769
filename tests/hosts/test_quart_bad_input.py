"""Bad input to the quart host: always a 4xx with a JSON problem, never a 500 or a change.

Every case below is one malformed or hostile request. Each must be answered
with the expected status and a JSON body {status, error, message}, and must
leave the certificate store exactly as it was.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.jose import b64url_encode
from tests.conftest import RunningServer, new_csr

from .helpers import assert_json_error, client

SUBJECT = "bad-input.example.com"
JSON = {"content-type": "application/json"}


@attrs.frozen
class Case:
    method: str
    path: str
    status: int
    request: Callable[[RunningServer], dict[str, Any]] = lambda _: {}


def csr_pem() -> str:
    return new_csr(SUBJECT)[2]


def sign_body(server: RunningServer, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"csr": csr_pem(), "ott": server.token(SUBJECT)}
    body.update(fields)
    return {key: value for key, value in body.items() if value is not ...}


def sign(status: int, **fields: Any) -> Case:
    """POST /1.0/sign with a valid CSR and token, except for *fields* (``...`` drops one)."""
    return Case("POST", "/1.0/sign", status, lambda s: {"json": sign_body(s, **fields)})


def raw_sign(status: int, content: bytes, headers: dict[str, str] = JSON) -> Case:
    return Case("POST", "/1.0/sign", status, lambda _: {"content": content, "headers": headers})


def revoke(status: int, **body: Any) -> Case:
    return Case("POST", "/1.0/revoke", status, lambda _: {"json": body})


def bad_signature_csr() -> str:
    _, csr, _ = new_csr(SUBJECT)
    der = bytearray(csr.public_bytes(Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the signature
    tampered = x509.load_der_x509_csr(bytes(der))
    assert not tampered.is_signature_valid
    return tampered.public_bytes(Encoding.PEM).decode()


def unsigned_token(header: dict[str, Any], claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return b64url_encode(json.dumps(value).encode())

    return f"{part(header)}.{part(claims)}."


def past() -> str:
    return (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def chunks(total: int) -> AsyncIterator[bytes]:
    """A JSON-ish body sent chunked, so no Content-Length announces its size."""
    yield b'{"csr": "'
    for _ in range(total // 4096):
        yield b"A" * 4096
    yield b'"}'


CASES = {
    # --- the body itself ---------------------------------------------------------
    "malformed-json": raw_sign(400, b'{"csr": '),
    "not-utf8": raw_sign(400, b'{"csr": "\xff\xfe"}'),
    "json-array": raw_sign(400, b'["csr", "ott"]'),
    "json-string": raw_sign(400, b'"csr"'),
    "json-null": raw_sign(400, b"null"),
    "empty-body": raw_sign(400, b""),
    "deeply-nested-json": raw_sign(400, b"[" * 60_000),
    "text-plain": raw_sign(415, b"{}", {"content-type": "text/plain"}),
    "form-encoded": raw_sign(
        415, b"csr=x&ott=y", {"content-type": "application/x-www-form-urlencoded"}
    ),
    "oversized-body": raw_sign(413, b'{"csr": "' + b"A" * (65 * 1024) + b'"}'),
    "oversized-chunked-body": Case(
        "POST", "/1.0/sign", 413, lambda _: {"content": chunks(80 * 1024), "headers": JSON}
    ),
    # --- /1.0/sign fields ---------------------------------------------------------
    "empty-object": raw_sign(400, b"{}"),
    "missing-csr": sign(400, csr=...),
    "missing-ott": sign(400, ott=...),
    "csr-number": sign(400, csr=42),
    "csr-list": sign(400, csr=["-----BEGIN CERTIFICATE REQUEST-----"]),
    "ott-object": sign(400, ott={"alg": "ES256"}),
    "garbage-csr": sign(400, csr="this is not a CSR"),
    "garbage-pem-csr": sign(
        400,
        csr="-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    ),
    "huge-csr": sign(400, csr="A" * (40 * 1024)),
    "csr-bad-signature": Case(
        "POST", "/1.0/sign", 400, lambda s: {"json": sign_body(s, csr=bad_signature_csr())}
    ),
    "garbage-token": sign(400, ott="garbage"),
    "token-two-parts": sign(400, ott="eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0"),
    "token-bad-base64": sign(400, ott="!!!.???.***"),
    "token-header-not-json": sign(400, ott=f"{b64url_encode(b'nope')}.e30.AA"),
    "huge-token": sign(400, ott="A" * (20 * 1024) + ".e30.AA"),
    "token-alg-none": Case(
        "POST",
        "/1.0/sign",
        401,
        lambda s: {
            "json": sign_body(
                s,
                ott=unsigned_token(
                    {"alg": "none"},
                    {"iss": "admin", "sub": SUBJECT, "aud": f"{s.url}/1.0/sign", "jti": "x"},
                ),
            )
        },
    ),
    "token-unknown-issuer": Case(
        "POST",
        "/1.0/sign",
        401,
        lambda s: {
            "json": sign_body(s, ott=unsigned_token({"alg": "ES256"}, {"iss": "nobody"}) + "AA")
        },
    ),
    "not-after-number": sign(400, notAfter=3600),
    "not-after-words": sign(400, notAfter="tomorrow"),
    "not-after-past": Case(
        "POST", "/1.0/sign", 400, lambda s: {"json": sign_body(s, notAfter=past())}
    ),
    "not-after-absurd-duration": sign(400, notAfter="99999999999d"),
    "not-after-beyond-calendar": sign(400, notAfter="3000000d"),
    # --- routing -----------------------------------------------------------------
    "unknown-route": Case("GET", "/no/such/route", 404),
    "unknown-api-route": Case("POST", "/1.0/nothing", 404, lambda _: {"json": {}}),
    "unknown-crl-issuer": Case("GET", "/crl/nobody", 404),
    "get-sign": Case("GET", "/1.0/sign", 405),
    "put-revoke": Case("PUT", "/1.0/revoke", 405, lambda _: {"json": {}}),
    "delete-health": Case("DELETE", "/health", 405),
    # --- /1.0/revoke fields ------------------------------------------------------
    "revoke-missing-serial": revoke(400, ott="x"),
    "revoke-serial-words": revoke(400, serial="not-a-number"),
    "revoke-serial-hex-prefix-only": revoke(400, serial="0x"),
    "revoke-serial-number-type": revoke(400, serial=12345),
    "revoke-serial-zero": revoke(400, serial="0"),
    "revoke-serial-negative": revoke(400, serial="-5"),
    "revoke-serial-too-long": revoke(400, serial="9" * 65),
    "revoke-reason-code-11": revoke(400, serial="12345", reasonCode=11),
    "revoke-reason-code-negative": revoke(400, serial="12345", reasonCode=-1),
    "revoke-reason-code-ca-only": revoke(400, serial="12345", reasonCode=2),
    "revoke-reason-code-string": revoke(400, serial="12345", reasonCode="1"),
    "revoke-reason-code-bool": revoke(400, serial="12345", reasonCode=True),
    "revoke-reason-too-long": revoke(400, serial="12345", reason="x" * 1000),
    "revoke-text-plain": Case(
        "POST",
        "/1.0/revoke",
        415,
        lambda _: {"content": b'{"serial": "1"}', "headers": {"content-type": "text/plain"}},
    ),
}


def _params() -> list[Any]:
    params = []
    for name, case in CASES.items():
        if isinstance(case, Case):
            params.append(pytest.param(case, id=name))
        else:  # already a pytest.param carrying marks
            params.append(pytest.param(*case.values, marks=case.marks, id=name))
    return params


@pytest.mark.parametrize("case", _params())
async def test_bad_input_is_a_json_4xx_and_changes_nothing(
    server: RunningServer, case: Case
) -> None:
    store = server.authority.stores.certificates
    before = store.count_certificates()
    async with client(server) as http:
        response = await http.request(case.method, case.path, **case.request(server))
    assert_json_error(response, case.status)
    assert store.count_certificates() == before


async def test_the_server_still_issues_after_a_barrage_of_bad_input(
    server: RunningServer,
) -> None:
    """Every bad request in turn, then a good one: nothing above left the CA broken."""
    store = server.authority.stores.certificates
    before = store.count_certificates()
    for name, case in CASES.items():
        if not isinstance(case, Case):
            continue
        # After a 413 the server may drop the connection, so those get their own.
        async with client(server) as http:
            response = await http.request(case.method, case.path, **case.request(server))
        assert response.status_code < 500, (name, response.text)
    assert store.count_certificates() == before
    async with client(server) as http:
        good = await http.post("/1.0/sign", json=sign_body(server))
    assert good.status_code == 201, good.text
    assert store.count_certificates() == before + 1
