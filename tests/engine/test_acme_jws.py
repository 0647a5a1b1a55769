"""engine.acme.jws: ACME request signatures, EAB, keyChange (nonces: test_acme_nonces)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from engine.acme import jws
from engine.acme.problems import ACMEProblem
from engine.jose import b64url_encode, jwk_from_public_key, jwk_thumbprint

URL = "https://ca.test/acme/acme/new-order"
NONCE = b64url_encode(b"n" * 16)
P256 = ec.generate_private_key(ec.SECP256R1())
P384 = ec.generate_private_key(ec.SECP384R1())
ED = ed25519.Ed25519PrivateKey.generate()
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def request(value: Any, content_type: str = jws.JOSE_JSON) -> jws.SignedRequest:
    return jws.parse_request(body(value), content_type)


def problem_of(excinfo: pytest.ExceptionInfo[ACMEProblem]) -> str:
    return excinfo.value.problem


@pytest.mark.parametrize("key", [P256, P384, ED, RSA], ids=["P-256", "P-384", "Ed25519", "RSA"])
def test_a_signed_request_verifies_with_the_key_it_names(key: Any) -> None:
    signed = request(jws.sign_request(key, URL, {"a": 1}, nonce=NONCE))
    _, _, thumbprint = jws.key_from_jwk(signed.jwk)
    assert thumbprint == jwk_thumbprint(jwk_from_public_key(key.public_key()))
    jws.verify(signed, key.public_key())
    jws.check_url(signed, URL)
    assert signed.payload_object() == {"a": 1}
    assert not signed.post_as_get


def test_post_as_get_has_an_empty_payload() -> None:
    signed = request(jws.sign_request(P256, URL, None, nonce=NONCE, kid="https://ca.test/k"))
    assert signed.post_as_get and signed.payload() is None
    assert signed.kid == "https://ca.test/k" and signed.jwk is None
    with pytest.raises(ACMEProblem, match="JSON object"):
        signed.payload_object()


@pytest.mark.parametrize(
    ("content_type", "status"),
    [("application/json", 415), ("", 415), ("application/jose+json; charset=utf-8", None)],
)
def test_the_content_type_must_be_jose_json(content_type: str, status: int | None) -> None:
    value = jws.sign_request(P256, URL, {}, nonce=NONCE)
    if status is None:
        request(value, content_type)
        return
    with pytest.raises(ACMEProblem) as excinfo:
        request(value, content_type)
    assert excinfo.value.http_status == status


def test_oversized_requests_are_413() -> None:
    with pytest.raises(ACMEProblem) as excinfo:
        jws.parse_request(b" " * (jws.MAX_JWS_BYTES + 1), jws.JOSE_JSON)
    assert excinfo.value.http_status == 413


def _signed_header(header: dict[str, Any], alg: str = "ES256") -> dict[str, str]:
    return jws.sign_flattened(P256, {}, header, alg=alg)


@pytest.mark.parametrize(
    ("mutate", "kind"),
    [
        (lambda b: {**b, "header": {"kid": "x"}}, "malformed"),
        (lambda b: {"payload": b["payload"], "signatures": [b]}, "malformed"),
        (lambda b: {k: v for k, v in b.items() if k != "signature"}, "malformed"),
        (lambda b: {**b, "extra": 1}, "malformed"),
        (lambda b: {**b, "payload": 5}, "malformed"),
        (lambda b: {**b, "protected": "!!"}, "malformed"),
        (lambda b: {**b, "protected": b64url_encode(b"[1]")}, "malformed"),
        (lambda b: [b], "malformed"),
    ],
    ids=[
        "unprotected header",
        "general serialization",
        "no signature",
        "extra member",
        "payload not a string",
        "protected not base64url",
        "protected not an object",
        "not an object",
    ],
)
def test_the_flattened_shape_is_enforced(mutate: Any, kind: str) -> None:
    value = jws.sign_request(P256, URL, {}, nonce=NONCE)
    with pytest.raises(ACMEProblem) as excinfo:
        request(mutate(value))
    assert problem_of(excinfo) == kind


@pytest.mark.parametrize(
    ("header", "alg", "kind"),
    [
        ({"url": URL, "kid": "k"}, "ES256", "badNonce"),
        ({"nonce": NONCE, "kid": "k"}, "ES256", "malformed"),
        ({"nonce": NONCE, "url": URL}, "ES256", "malformed"),
        ({"nonce": NONCE, "url": URL, "kid": "k", "jwk": {"kty": "EC"}}, "ES256", "malformed"),
        ({"nonce": NONCE, "url": URL, "kid": ""}, "ES256", "malformed"),
        ({"nonce": NONCE, "url": URL, "jwk": "not a jwk"}, "ES256", "malformed"),
        ({"nonce": NONCE, "url": URL, "kid": "k", "crit": ["b64"]}, "ES256", "malformed"),
        ({"nonce": NONCE, "url": URL, "kid": "k", "b64": False}, "ES256", "malformed"),
    ],
    ids=["no nonce", "no url", "neither", "both", "empty kid", "jwk a string", "crit", "b64"],
)
def test_the_protected_header_is_checked(header: dict[str, Any], alg: str, kind: str) -> None:
    with pytest.raises(ACMEProblem) as excinfo:
        request(_signed_header(header, alg))
    assert problem_of(excinfo) == kind


@pytest.mark.parametrize("alg", ["none", "None", "HS256", "HS512", "RS1", "ES512", ""])
def test_none_hmac_and_unknown_algorithms_are_refused(alg: str) -> None:
    header = {"alg": alg, "nonce": NONCE, "url": URL, "kid": "k"}
    value = {
        "protected": b64url_encode(json.dumps(header).encode()),
        "payload": b64url_encode(b"{}"),
        "signature": "",
    }
    with pytest.raises(ACMEProblem) as excinfo:
        request(value)
    expected = "malformed" if alg == "" else "badSignatureAlgorithm"
    assert problem_of(excinfo) == expected
    if expected == "badSignatureAlgorithm":
        assert "HS256" not in excinfo.value.algorithms
        assert "ES256" in excinfo.value.algorithms


@pytest.mark.parametrize(
    ("key", "alg", "allowed"),
    [
        (P256, "ES384", ["ES256"]),
        (P384, "ES256", ["ES384"]),
        (ED, "ES256", ["EdDSA"]),
        (P256, "RS256", ["ES256"]),
        (RSA, "ES256", ["PS256", "PS384", "PS512", "RS256", "RS384", "RS512"]),
    ],
)
def test_the_algorithm_is_pinned_to_the_key_type(key: Any, alg: str, allowed: list[str]) -> None:
    header = {"alg": alg, "nonce": NONCE, "url": URL, "kid": "k"}
    value = {
        "protected": b64url_encode(json.dumps(header).encode()),
        "payload": b64url_encode(b"{}"),
        "signature": b64url_encode(b"\0" * 64),
    }
    signed = request(value)
    with pytest.raises(ACMEProblem) as excinfo:
        jws.verify(signed, key.public_key())
    assert problem_of(excinfo) == "badSignatureAlgorithm"
    assert list(excinfo.value.algorithms) == allowed


def test_a_wrong_signature_is_malformed() -> None:
    signed = request(jws.sign_request(P256, URL, {}, nonce=NONCE))
    with pytest.raises(ACMEProblem) as excinfo:
        jws.verify(signed, ec.generate_private_key(ec.SECP256R1()).public_key())
    assert problem_of(excinfo) == "malformed"


def test_the_url_must_be_the_request_url() -> None:
    signed = request(jws.sign_request(P256, URL, {}, nonce=NONCE))
    with pytest.raises(ACMEProblem) as excinfo:
        jws.check_url(signed, URL + "/")
    assert problem_of(excinfo) == "unauthorized"


def test_duplicate_members_are_refused() -> None:
    raw = b'{"protected": "a", "protected": "b", "payload": "", "signature": ""}'
    with pytest.raises(ACMEProblem, match="duplicate"):
        jws.parse_request(raw, jws.JOSE_JSON)


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "oct", "k": "AAAA"},
        {**jwk_from_public_key(P256.public_key()), "d": "AAAA"},
        {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
    ],
    ids=["symmetric", "private", "P-521"],
)
def test_keys_that_cannot_sign_acme_requests_are_bad_public_keys(jwk: dict[str, str]) -> None:
    with pytest.raises(ACMEProblem) as excinfo:
        jws.key_from_jwk(jwk)
    assert problem_of(excinfo) == "badPublicKey"


# --- external account binding ----------------------------------------------------------------

EAB_URL = "https://ca.test/acme/acme/new-account"
SECRET = b"s" * 32


def eab(
    key: Any = P256,
    *,
    kid: str = "team",
    secret: bytes = SECRET,
    url: str = EAB_URL,
    alg: str = "HS256",
    **extra: Any,
) -> dict[str, str]:
    protected = b64url_encode(json.dumps({"alg": alg, "kid": kid, "url": url, **extra}).encode())
    payload = b64url_encode(json.dumps(jwk_from_public_key(key.public_key())).encode())
    mac = hmac.new(secret, f"{protected}.{payload}".encode(), hashlib.sha256).digest()
    return {"protected": protected, "payload": payload, "signature": b64url_encode(mac)}


def verify_eab(binding: Any, key: Any = P256) -> str:
    return jws.verify_external_binding(
        binding, account_key=key.public_key(), url=EAB_URL, keys={"team": SECRET}
    )


def test_a_good_external_account_binding_names_its_key() -> None:
    assert verify_eab(eab()) == "team"


@pytest.mark.parametrize(
    ("binding", "kind"),
    [
        (eab(secret=b"t" * 32), "unauthorized"),
        (eab(kid="other"), "unauthorized"),
        (eab(url="https://ca.test/elsewhere"), "unauthorized"),
        (eab(alg="HS512"), "badSignatureAlgorithm"),
        (eab(alg="ES256"), "badSignatureAlgorithm"),
        (eab(nonce="abc"), "malformed"),
        (eab(key=P384), "unauthorized"),
        ("not an object", "malformed"),
    ],
    ids=["wrong MAC", "unknown kid", "wrong url", "HS512", "ES256", "nonce", "other key", "shape"],
)
def test_bad_external_account_bindings(binding: Any, kind: str) -> None:
    with pytest.raises(ACMEProblem) as excinfo:
        verify_eab(binding)
    assert problem_of(excinfo) == kind


# --- keyChange -------------------------------------------------------------------------------

KC_URL = "https://ca.test/acme/acme/key-change"
ACCOUNT = "https://ca.test/acme/acme/acct/abc"


def key_change(inner: Any) -> jws.SignedRequest:
    return request(jws.sign_request(P256, KC_URL, inner, nonce=NONCE, kid=ACCOUNT))


def test_key_change_proves_the_new_key() -> None:
    new = ec.generate_private_key(ec.SECP256R1())
    inner = jws.sign_flattened(
        new,
        {"account": ACCOUNT, "oldKey": jwk_from_public_key(P256.public_key())},
        {"jwk": jwk_from_public_key(new.public_key()), "url": KC_URL},
    )
    change = jws.parse_key_change(key_change(inner))
    assert change.account_url == ACCOUNT
    assert change.new_thumbprint == jwk_thumbprint(jwk_from_public_key(new.public_key()))


@pytest.mark.parametrize(
    "header",
    [
        lambda new: {"kid": ACCOUNT, "url": KC_URL},
        lambda new: {"jwk": jwk_from_public_key(new.public_key()), "url": URL},
        lambda new: {"jwk": jwk_from_public_key(P384.public_key()), "url": KC_URL},
    ],
    ids=["kid instead of jwk", "another url", "jwk of another key"],
)
def test_bad_inner_key_change_jws(header: Any) -> None:
    new = ec.generate_private_key(ec.SECP256R1())
    inner = jws.sign_flattened(new, {"account": ACCOUNT, "oldKey": {}}, header(new))
    with pytest.raises(ACMEProblem):
        jws.parse_key_change(key_change(inner))


# --- the key cache ---------------------------------------------------------------------------


def test_key_from_jwk_remembers_keys_and_returns_fresh_dicts() -> None:
    jwk = jwk_from_public_key(P256.public_key())
    first = jws.key_from_jwk(jwk)
    second = jws.key_from_jwk(dict(jwk))
    assert first[0].public_numbers() == second[0].public_numbers()
    assert first[1] == second[1] == jwk and first[1] is not second[1]
    assert first[2] == second[2] == jwk_thumbprint(jwk)
    first[1]["x"] = "changed"  # a caller's copy, not the cache's
    assert jws.key_from_jwk(jwk)[1] == jwk


@pytest.mark.parametrize(
    "change",
    [
        {"d": "AAAA"},  # private material, even for a key seen before
        {"x": 5},  # not a string (never cached)
        {"crv": "P-521"},
        {"kty": "oct"},
    ],
)
def test_key_from_jwk_refusals_are_not_remembered(change: dict[str, Any]) -> None:
    jwk = jwk_from_public_key(P256.public_key())
    jws.key_from_jwk(jwk)
    for _ in range(2):
        with pytest.raises(ACMEProblem) as excinfo:
            jws.key_from_jwk({**jwk, **change})
        assert problem_of(excinfo) == "badPublicKey"


def test_key_from_jwk_large_keys_are_parsed_every_time() -> None:
    jwk = jwk_from_public_key(RSA.public_key())
    padded = {**jwk, "kid": "k" * 5000}  # extra members are allowed, and make it large
    assert jws.key_from_jwk(padded)[2] == jwk_thumbprint(jwk)
