"""engine.jose: strict base64url, public JWKs, RFC 7638 thumbprints, and JWS
signatures whose algorithm is pinned to the key, never chosen by the token."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from engine.errors import BadRequest, Unauthorized
from engine.jose import (
    MAX_TOKEN_BYTES,
    PrivateKey,
    allowed_algorithms,
    b64url_decode,
    b64url_encode,
    create_signature,
    jwk_from_public_key,
    jwk_thumbprint,
    parse_compact,
    public_key_from_jwk,
    sign_compact,
    verify_signature,
)

# RFC 7638, section 3.1.
RFC7638_JWK = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2"
        "QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
        "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

CLAIMS = {"iss": "admin", "sub": "svc.example.com", "jti": "abc"}


@pytest.fixture(scope="module")
def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def p384() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def ed() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def rsa2048() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _segment(obj: Any) -> str:
    return b64url_encode(json.dumps(obj, separators=(",", ":")).encode())


def _token_with_signature(header: dict[str, Any], claims: dict[str, Any], sig: bytes) -> str:
    return f"{_segment(header)}.{_segment(claims)}.{b64url_encode(sig)}"


# --- base64url -------------------------------------------------------------


def test_b64url_round_trips_arbitrary_bytes_without_padding() -> None:
    for data in (b"", b"\x00", b"\xff\xfe", bytes(range(256))):
        text = b64url_encode(data)
        assert "=" not in text
        assert b64url_decode(text) == data


def test_b64url_accepts_bytes_as_well_as_text() -> None:
    assert b64url_decode(b"_-8") == b"\xff\xef"


@pytest.mark.parametrize(
    "text",
    [
        "QQ==",  # padded
        "a+b/",  # standard alphabet, not URL-safe
        "QU JD",  # whitespace
        "QUJD\n",  # trailing newline
        "A",  # impossible length
        "QUJ*",  # outside the alphabet
        "ÄÖÜ",  # not ASCII
    ],
)
def test_b64url_decode_rejects_anything_but_unpadded_base64url(text: str) -> None:
    with pytest.raises(BadRequest):
        b64url_decode(text)


def test_b64url_errors_name_what_was_being_decoded() -> None:
    with pytest.raises(BadRequest, match="token header"):
        b64url_decode("QQ==", what="token header")


# --- JWK parsing --------------------------------------------------------------


@pytest.mark.parametrize("key_fixture", ["p256", "p384", "ed", "rsa2048"])
def test_public_jwk_round_trips_through_parse(key_fixture: str, request: Any) -> None:
    key: PrivateKey = request.getfixturevalue(key_fixture)
    jwk = jwk_from_public_key(key.public_key())
    parsed = public_key_from_jwk(jwk)
    assert parsed == key.public_key()


def test_ec_jwk_has_fixed_width_coordinates() -> None:
    # A coordinate with leading zero bytes must still be 32 bytes for P-256 (RFC 7518 6.2.1.2).
    for _ in range(64):
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        jwk = jwk_from_public_key(key)
        assert len(b64url_decode(jwk["x"])) == 32
        assert len(b64url_decode(jwk["y"])) == 32


def test_jwk_parse_reads_the_curve_from_crv() -> None:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    parsed = public_key_from_jwk(jwk_from_public_key(key))
    assert isinstance(parsed, ec.EllipticCurvePublicKey)
    assert isinstance(parsed.curve, ec.SECP384R1)


@pytest.mark.parametrize("member", ["d", "p"])
def test_jwk_with_private_key_members_is_rejected(
    member: str, p256: ec.EllipticCurvePrivateKey
) -> None:
    jwk: dict[str, Any] = dict(jwk_from_public_key(p256.public_key()))
    jwk[member] = b64url_encode(b"\x01" * 32)
    with pytest.raises(BadRequest, match="private"):
        public_key_from_jwk(jwk)


def test_private_ec_jwk_made_from_a_real_key_is_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    jwk: dict[str, Any] = dict(jwk_from_public_key(p256.public_key()))
    jwk["d"] = b64url_encode(p256.private_numbers().private_value.to_bytes(32, "big"))
    with pytest.raises(BadRequest):
        public_key_from_jwk(jwk)


def test_rsa_jwk_smaller_than_2048_bits_is_rejected() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    with pytest.raises(BadRequest, match="2048"):
        public_key_from_jwk(jwk_from_public_key(small))


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "oct", "k": "c2VjcmV0"},
        {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
        {"kty": "OKP", "crv": "X25519", "x": "AA"},
        {"kty": "OKP", "crv": "Ed448", "x": "AA"},
        {"kty": "DSA"},
        {},
    ],
    ids=["oct", "P-521", "X25519", "Ed448", "DSA", "no-kty"],
)
def test_jwk_of_an_unsupported_type_or_curve_is_rejected(jwk: dict[str, Any]) -> None:
    with pytest.raises(BadRequest, match="unsupported"):
        public_key_from_jwk(jwk)


@pytest.mark.parametrize("value", [None, "a string", ["kty", "EC"], 42])
def test_jwk_that_is_not_a_json_object_is_rejected(value: Any) -> None:
    with pytest.raises(BadRequest):
        public_key_from_jwk(value)


def test_ec_jwk_whose_point_is_not_on_the_curve_is_rejected(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    jwk: dict[str, Any] = dict(jwk_from_public_key(p256.public_key()))
    y = int.from_bytes(b64url_decode(jwk["y"]), "big")
    jwk["y"] = b64url_encode(((y + 1) % 2**256).to_bytes(32, "big"))
    with pytest.raises(BadRequest):
        public_key_from_jwk(jwk)


def test_jwk_member_that_is_not_a_string_is_rejected(p256: ec.EllipticCurvePrivateKey) -> None:
    jwk: dict[str, Any] = dict(jwk_from_public_key(p256.public_key()))
    jwk["x"] = 12345
    with pytest.raises(BadRequest):
        public_key_from_jwk(jwk)


def test_ed25519_jwk_of_the_wrong_length_is_rejected() -> None:
    with pytest.raises(BadRequest):
        public_key_from_jwk({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(b"\x01" * 31)})


# --- thumbprints --------------------------------------------------------------


def test_thumbprint_matches_rfc7638_example() -> None:
    assert jwk_thumbprint(RFC7638_JWK) == RFC7638_THUMBPRINT


def test_rfc7638_example_key_parses_as_rsa_2048() -> None:
    key = public_key_from_jwk({k: RFC7638_JWK[k] for k in ("kty", "n", "e")})
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 2048
    assert jwk_thumbprint(jwk_from_public_key(key)) == RFC7638_THUMBPRINT


def test_thumbprint_ignores_optional_members_and_member_order() -> None:
    reordered = {"e": RFC7638_JWK["e"], "use": "sig", "n": RFC7638_JWK["n"], "kty": "RSA"}
    assert jwk_thumbprint(reordered) == RFC7638_THUMBPRINT


def test_thumbprint_of_an_ec_key_hashes_crv_kty_x_y_in_order(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    jwk = jwk_from_public_key(p256.public_key())
    canonical = f'{{"crv":"P-256","kty":"EC","x":"{jwk["x"]}","y":"{jwk["y"]}"}}'
    expected = b64url_encode(hashlib.sha256(canonical.encode()).digest())
    assert jwk_thumbprint(jwk) == expected


def test_thumbprint_differs_between_keys(
    p256: ec.EllipticCurvePrivateKey, p384: ec.EllipticCurvePrivateKey
) -> None:
    a = jwk_thumbprint(jwk_from_public_key(p256.public_key()))
    b = jwk_thumbprint(jwk_from_public_key(p384.public_key()))
    assert a != b


def test_thumbprint_of_unknown_key_type_is_rejected() -> None:
    with pytest.raises(BadRequest):
        jwk_thumbprint({"kty": "oct", "k": "c2VjcmV0"})


# --- signatures -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_fixture", "alg"),
    [
        ("p256", "ES256"),
        ("p384", "ES384"),
        ("ed", "EdDSA"),
        ("rsa2048", "RS256"),
        ("rsa2048", "PS256"),
    ],
)
def test_sign_then_verify_round_trip(key_fixture: str, alg: str, request: Any) -> None:
    key: PrivateKey = request.getfixturevalue(key_fixture)
    token = sign_compact(CLAIMS, key, alg=alg)
    jws = parse_compact(token)
    assert jws.alg == alg
    assert jws.verify(key.public_key()) == CLAIMS


def test_sign_compact_picks_the_algorithm_from_the_key(
    p256: ec.EllipticCurvePrivateKey,
    p384: ec.EllipticCurvePrivateKey,
    ed: ed25519.Ed25519PrivateKey,
    rsa2048: rsa.RSAPrivateKey,
) -> None:
    assert parse_compact(sign_compact(CLAIMS, p256)).alg == "ES256"
    assert parse_compact(sign_compact(CLAIMS, p384)).alg == "ES384"
    assert parse_compact(sign_compact(CLAIMS, ed)).alg == "EdDSA"
    assert parse_compact(sign_compact(CLAIMS, rsa2048)).alg == "RS256"


def test_ec_and_eddsa_keys_allow_exactly_one_algorithm(
    p256: ec.EllipticCurvePrivateKey,
    p384: ec.EllipticCurvePrivateKey,
    ed: ed25519.Ed25519PrivateKey,
) -> None:
    assert allowed_algorithms(p256.public_key()) == {"ES256"}
    assert allowed_algorithms(p384.public_key()) == {"ES384"}
    assert allowed_algorithms(ed.public_key()) == {"EdDSA"}


def test_no_key_ever_allows_none_or_hmac(
    p256: ec.EllipticCurvePrivateKey, ed: ed25519.Ed25519PrivateKey, rsa2048: rsa.RSAPrivateKey
) -> None:
    for key in (p256, ed, rsa2048):
        algs = allowed_algorithms(key.public_key())
        assert "none" not in algs
        assert not any(a.startswith("HS") for a in algs)


def test_signature_by_another_key_does_not_verify(p256: ec.EllipticCurvePrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    jws = parse_compact(sign_compact(CLAIMS, other))
    with pytest.raises(Unauthorized, match="does not verify"):
        jws.verify(p256.public_key())


def test_tampered_payload_does_not_verify(p256: ec.EllipticCurvePrivateKey) -> None:
    header, _, signature = sign_compact(CLAIMS, p256).split(".")
    forged = f"{header}.{_segment({**CLAIMS, 'sub': 'evil.example.com'})}.{signature}"
    with pytest.raises(Unauthorized):
        parse_compact(forged).verify(p256.public_key())


def test_es384_header_on_a_p256_key_is_refused(p256: ec.EllipticCurvePrivateKey) -> None:
    # A real ECDSA-P256 signature over SHA-384, presented as ES384.
    header = {"alg": "ES384", "typ": "JWT"}
    signing_input = f"{_segment(header)}.{_segment(CLAIMS)}".encode()
    r, s = decode_dss_signature(p256.sign(signing_input, ec.ECDSA(hashes.SHA384())))
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    jws = parse_compact(_token_with_signature(header, CLAIMS, sig))
    with pytest.raises(Unauthorized, match="not allowed"):
        jws.verify(p256.public_key())


def test_rs256_header_on_an_ec_key_is_refused(p256: ec.EllipticCurvePrivateKey) -> None:
    jws = parse_compact(_token_with_signature({"alg": "RS256"}, CLAIMS, b"\x01" * 256))
    with pytest.raises(Unauthorized, match="not allowed"):
        jws.verify(p256.public_key())


def test_es256_header_on_an_rsa_key_is_refused(rsa2048: rsa.RSAPrivateKey) -> None:
    jws = parse_compact(_token_with_signature({"alg": "ES256"}, CLAIMS, b"\x01" * 64))
    with pytest.raises(Unauthorized, match="not allowed"):
        jws.verify(rsa2048.public_key())


def test_eddsa_header_on_an_ec_key_is_refused(p256: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(Unauthorized):
        verify_signature("EdDSA", p256.public_key(), b"x", b"\x00" * 64)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "HS256", "HS384", "HS512", "hs256"])
def test_none_and_hmac_are_refused_when_parsing(alg: str) -> None:
    token = _token_with_signature({"alg": alg}, CLAIMS, b"")
    with pytest.raises(Unauthorized, match="not allowed"):
        parse_compact(token)


def test_hmac_token_keyed_with_the_public_key_is_refused(p256: ec.EllipticCurvePrivateKey) -> None:
    # The classic confusion: the verifier's public key used as an HMAC secret.
    secret = p256.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = f"{_segment(header)}.{_segment(CLAIMS)}".encode()
    sig = hmac.new(secret, signing_input, hashlib.sha256).digest()
    with pytest.raises(Unauthorized):
        parse_compact(_token_with_signature(header, CLAIMS, sig))


def test_verify_signature_refuses_none_and_hmac_even_if_called_directly(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    for alg in ("none", "HS256"):
        with pytest.raises(Unauthorized):
            verify_signature(alg, p256.public_key(), b"x", b"")


@pytest.mark.parametrize("length", [0, 63, 65, 96, 128])
def test_es256_signature_of_the_wrong_length_is_refused(
    length: int, p256: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(Unauthorized, match="wrong length"):
        verify_signature("ES256", p256.public_key(), b"data", b"\x01" * length)


def test_der_encoded_ecdsa_signature_is_refused(p256: ec.EllipticCurvePrivateKey) -> None:
    # JWS wants raw r||s; a DER signature (what X.509 uses) must not be accepted.
    der_sig = p256.sign(b"data", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(Unauthorized):
        verify_signature("ES256", p256.public_key(), b"data", der_sig)


def test_es384_signature_must_be_96_bytes(p384: ec.EllipticCurvePrivateKey) -> None:
    good = create_signature("ES384", p384, b"data")
    assert len(good) == 96
    verify_signature("ES384", p384.public_key(), b"data", good)
    with pytest.raises(Unauthorized, match="wrong length"):
        verify_signature("ES384", p384.public_key(), b"data", good[:64])


def test_create_signature_refuses_an_algorithm_the_key_does_not_allow(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    with pytest.raises(BadRequest):
        create_signature("ES384", p256, b"data")


# --- compact JWS parsing ----------------------------------------------------------


def test_parse_compact_does_not_verify_anything(p256: ec.EllipticCurvePrivateKey) -> None:
    jws = parse_compact(sign_compact(CLAIMS, p256, headers={"kid": "k1"}))
    assert jws.header == {"alg": "ES256", "typ": "JWT", "kid": "k1"}
    assert jws.claims() == CLAIMS


@pytest.mark.parametrize(
    "token",
    ["", "a.b", "a.b.c.d", "!!.e30.", "e30.e30.e30"],
    ids=["empty", "two-parts", "four-parts", "bad-base64", "header-without-alg"],
)
def test_parse_compact_rejects_malformed_tokens(token: str) -> None:
    with pytest.raises(BadRequest):
        parse_compact(token)


def test_parse_compact_rejects_header_that_is_not_a_json_object() -> None:
    token = f"{b64url_encode(b'[1]')}.{_segment(CLAIMS)}."
    with pytest.raises(BadRequest, match="header"):
        parse_compact(token)


def test_parse_compact_rejects_critical_header_extensions(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    token = sign_compact(CLAIMS, p256, headers={"crit": ["exp"], "exp": 1})
    with pytest.raises(BadRequest, match="critical"):
        parse_compact(token)


def test_parse_compact_rejects_unencoded_payloads(p256: ec.EllipticCurvePrivateKey) -> None:
    token = sign_compact(CLAIMS, p256, headers={"b64": False})
    with pytest.raises(BadRequest):
        parse_compact(token)


def test_parse_compact_rejects_oversized_tokens(p256: ec.EllipticCurvePrivateKey) -> None:
    token = sign_compact({**CLAIMS, "pad": "x" * MAX_TOKEN_BYTES}, p256)
    with pytest.raises(BadRequest, match="too large"):
        parse_compact(token)


def test_claims_must_be_a_json_object(p256: ec.EllipticCurvePrivateKey) -> None:
    header = _segment({"alg": "ES256"})
    payload = b64url_encode(b"[1, 2]")
    jws = parse_compact(f"{header}.{payload}.")
    with pytest.raises(BadRequest, match="JSON object"):
        jws.claims()


def test_claims_that_are_not_json_are_bad_requests() -> None:
    header = _segment({"alg": "ES256"})
    jws = parse_compact(f"{header}.{b64url_encode(b'not json')}.")
    with pytest.raises(BadRequest):
        jws.claims()
