"""ACME request bodies (engine/acme/jws.py): the flattened JWS, its protected header,
the account JWK, the signature pinned to the key, and what newAccount reads before
an account exists: contacts, flags and the external account binding (MACed with a
provisioner's EAB key); keyChange's inner JWS; and revokeCert's certificate, which
a request signed by the certificate's own key may carry. An ACME account costs
nothing where no external account binding is required, so newOrder's identifiers
and times and finalize's CSR are read too.

The first byte chooses the request's content type and the form of the rest: the
body itself, or (byte 3 modulo 4) the protected header, payload and signature as
raw bytes (see :func:`fuzz.harness.split`) for the target to encode, so that the
fuzzer changes the JSON inside the JWS directly.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from engine.acme.accounts import parse_contacts
from engine.acme.identifiers import parse_identifiers
from engine.acme.jws import (
    SignedRequest,
    key_from_jwk,
    parse_key_change,
    parse_request,
    verify,
    verify_external_binding,
)
from engine.acme.orders import _time
from engine.acme.revocation import parse_revocation
from engine.csr import parse_csr
from engine.jose import PublicKey, b64url_decode, b64url_encode
from fuzz.harness import attempt, split

BASE = "https://ca.example/acme/acme"
NEW_ACCOUNT = f"{BASE}/new-account"
KEY_CHANGE = f"{BASE}/key-change"
REVOKE_CERT = f"{BASE}/revoke-cert"
#: The EAB key the seeds' bindings are MACed with, by key id.
EAB_KEYS = {"eab-kid-1": b"fuzz external account binding key 32B"}
#: The key of the account every ``kid`` request claims to come from.
ACCOUNT_KEY = ec.derive_private_key(0xACC0_0017, ec.SECP256R1())
CONTENT_TYPES = ("application/jose+json", "application/json", "")
ENVELOPE = 3


def _new_account(request: SignedRequest, key: PublicKey) -> None:
    payload = request.payload_object()
    parse_contacts(payload.get("contact"))
    for flag in ("onlyReturnExisting", "termsOfServiceAgreed"):
        if not isinstance(payload.get(flag, False), bool):
            return
    binding = payload.get("externalAccountBinding")
    if binding is not None:
        verify_external_binding(binding, account_key=key, url=NEW_ACCOUNT, keys=EAB_KEYS)


def _revocation(request: SignedRequest) -> None:
    parse_revocation(request.payload_object()).serial  # noqa: B018 (the serial is read)


def _order(payload: dict[str, Any]) -> None:
    """newOrder's identifiers and validity (anyone may open an account first)."""
    parse_identifiers(payload.get("identifiers"))
    _time(payload, "notBefore")
    _time(payload, "notAfter")


def _finalize(payload: dict[str, Any]) -> None:
    text = payload.get("csr")
    if isinstance(text, str):
        parse_csr(b64url_decode(text, what="csr"))


def _signed(request: SignedRequest) -> tuple[PublicKey, Any]:
    key: PublicKey
    if request.jwk is not None:
        key, _, _ = key_from_jwk(request.jwk)
    else:
        key = ACCOUNT_KEY.public_key()
    verify(request, key)
    return key, request.payload()


def request_body(data: bytes) -> tuple[bytes, str]:
    """The body and content type an input stands for."""
    if not data:
        return b"", ""
    if data[0] % 4 == ENVELOPE:
        protected, payload, signature = (b64url_encode(p) for p in split(data[1:], 3))
        flattened = {"protected": protected, "payload": payload, "signature": signature}
        return json.dumps(flattened).encode(), CONTENT_TYPES[0]
    return data[1:], CONTENT_TYPES[data[0] % 4 % len(CONTENT_TYPES)]


def test_one_input(data: bytes) -> None:
    body, content_type = request_body(data)
    request = attempt(parse_request, body, content_type)
    if request is None:
        return
    if request.jwk is not None:
        attempt(key_from_jwk, request.jwk)
    signed = attempt(_signed, request)
    # The steps after the signature check run whether or not it held: a mutated seed
    # rarely keeps a valid signature, and these steps only parse.
    key = signed[0] if signed is not None else ACCOUNT_KEY.public_key()
    if request.url == NEW_ACCOUNT or request.jwk is not None:
        attempt(_new_account, request, key)
    if request.url == KEY_CHANGE:
        attempt(parse_key_change, request)
    if request.url == REVOKE_CERT:
        attempt(_revocation, request)
    payload = attempt(request.payload_object)
    if payload is not None:
        attempt(_order, payload)
        attempt(_finalize, payload)
