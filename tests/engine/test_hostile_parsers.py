"""Hostile input to the parsers an anonymous client reaches: only devid's errors come out.

A CSR of a version no standard defines or with a key nobody implements, an EK of an
unknown algorithm, JOSE nested thousands deep, a JWK whose members have the wrong JSON
type: each must be refused with a ProtocolError (BadRequest, Unauthorized, an ACME
problem), never with cryptography's or Python's own exceptions, which the hosts can
only answer with a 500.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from engine import csr as csr_module
from engine.acme.jws import key_from_jwk, loads, parse_key_change, parse_request, sign_flattened
from engine.acme.problems import ACMEProblem
from engine.acme.revocation import parse_revocation
from engine.attestation import AttestRequest
from engine.csr import parse_csr
from engine.errors import BadRequest
from engine.jose import (
    b64url_encode,
    jwk_from_public_key,
    jwk_thumbprint,
    parse_compact,
    public_key_from_jwk,
)
from tests.attestation_fakes import b64, make_device
from tests.hostile import (
    DEEP,
    EC_PUBLIC_KEY,
    HOSTILE_CSRS,
    P256_CURVE,
    UNKNOWN_CURVE,
    UNKNOWN_KEY_ALGORITHM,
    _split,
    certificate_v4,
    certificate_with_duplicate_extension,
    certificate_with_malformed_issuer,
    certificate_with_unknown_key_algorithm,
    compact_with,
    csr_with_version,
    deep_header,
    deep_json,
    pem_csr,
    spki_with,
    wrong_type_jwks,
)

EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_JWK = jwk_from_public_key(EC_KEY.public_key())
OKP_JWK = jwk_from_public_key(ed25519.Ed25519PrivateKey.generate().public_key())
RSA_JWK = jwk_from_public_key(rsa.generate_private_key(65537, 2048).public_key())


# --- CSRs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(HOSTILE_CSRS))
@pytest.mark.parametrize("form", ["der", "pem"])
def test_a_hostile_csr_is_a_bad_request(kind: str, form: str) -> None:
    der = HOSTILE_CSRS[kind]()
    with pytest.raises(BadRequest) as refused:
        parse_csr(der if form == "der" else pem_csr(der))
    assert refused.value.status == 400 and refused.value.detail


@pytest.mark.parametrize("version", [1, 2, 6, 127])
def test_the_der_reader_leaves_other_versions_to_cryptography_which_refuses_them(
    version: int,
) -> None:
    """Both readers of engine.csr agree: the DER reader takes only v1 (0) and hands
    anything else back (None) to cryptography, which refuses it."""
    der = csr_with_version(version)
    tbs, _ = _split(der)
    assert csr_module._simple_facts(tbs) is None
    with pytest.raises(BadRequest, match="version"):
        parse_csr(der)


@pytest.mark.parametrize("network", ["10.0.0.0/8", "2001:db8::/32"])
def test_an_ip_network_san_is_refused_by_both_readers(network: str) -> None:
    """An iPAddress of 8 or 32 bytes (address and mask) is no address: the DER reader hands
    it to cryptography, which reads it as a network; both must refuse it."""
    import ipaddress

    from cryptography.hazmat.primitives import hashes

    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_network(network))]),
            critical=False,
        )
        .sign(EC_KEY, hashes.SHA256())
    )
    der = csr.public_bytes(Encoding.DER)
    assert csr_module._simple_facts(_split(der)[0]) is None
    with pytest.raises(BadRequest, match="iPAddress"):
        parse_csr(der)


# --- the EK of POST /attest --------------------------------------------------------------------


@pytest.fixture(scope="module")
def attest_body() -> dict[str, Any]:
    return make_device("ecc", "ecc").attest_body()


@pytest.mark.parametrize(
    ("old", "new"),
    [(EC_PUBLIC_KEY, UNKNOWN_KEY_ALGORITHM), (P256_CURVE, UNKNOWN_CURVE)],
    ids=["unknown algorithm", "unknown curve"],
)
def test_an_ek_of_an_unknown_algorithm_is_a_bad_request(
    attest_body: dict[str, Any], old: bytes, new: bytes
) -> None:
    body = copy.deepcopy(attest_body)
    body["ek"] = b64(spki_with(old, new))
    with pytest.raises(BadRequest, match="ek"):
        AttestRequest.parse(body)


def _signed_leaf() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hostile EK CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ek")]))
        .issuer_name(name)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(7)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert, key


HOSTILE_CERTIFICATES = {
    "version 4": certificate_v4,
    "unknown key algorithm": certificate_with_unknown_key_algorithm,
    "malformed issuer": certificate_with_malformed_issuer,
}


@pytest.mark.parametrize("kind", list(HOSTILE_CERTIFICATES))
@pytest.mark.parametrize("send_ek", [True, False], ids=["with ek", "certificate only"])
def test_a_hostile_ek_certificate_is_a_bad_request(
    attest_body: dict[str, Any], kind: str, send_ek: bool
) -> None:
    cert, key = _signed_leaf()
    body = copy.deepcopy(attest_body)
    body["ekCerts"] = [b64(HOSTILE_CERTIFICATES[kind](cert, key))]
    if not send_ek:
        del body["ek"]
    with pytest.raises(BadRequest, match="ekCerts"):
        AttestRequest.parse(body)


# --- JOSE nested deep --------------------------------------------------------------------------


def test_a_compact_jws_header_nested_deep_is_a_bad_request() -> None:
    token = compact_with(deep_header({"alg": "ES256", "typ": "JWT"}), "{}", EC_KEY)
    with pytest.raises(BadRequest, match="nested too deeply"):
        parse_compact(token, max_bytes=len(token))


def test_a_compact_jws_payload_nested_deep_is_a_bad_request() -> None:
    token = compact_with('{"alg":"ES256"}', deep_json(), EC_KEY)
    jws = parse_compact(token, max_bytes=len(token))
    with pytest.raises(BadRequest, match="nested too deeply"):
        jws.claims()


@pytest.mark.parametrize("depth", [40, 200, 900, DEEP])
def test_json_nested_past_the_limit_is_malformed_at_any_depth(depth: int) -> None:
    """Not only what overflows Python's recursion: any depth past the limit is refused the
    same way, so what later walks the value cannot overflow either."""
    with pytest.raises(ACMEProblem, match="nested too deeply") as refused:
        loads(deep_json(depth), "the JWS payload")
    assert refused.value.problem == "malformed"


def test_json_nested_within_the_limit_is_read() -> None:
    assert loads(deep_json(8), "the JWS payload") == {"x": [[[[[[[[]]]]]]]]}


def test_brackets_inside_strings_are_no_nesting() -> None:
    text = json.dumps({"x": "[{" * 100, "y": [[1]] * 50})
    assert loads(text, "the JWS payload")["x"] == "[{" * 100


def test_an_acme_request_whose_protected_header_nests_deep_is_malformed() -> None:
    protected = b64url_encode(deep_header({"alg": "ES256", "nonce": "n", "url": "u"}).encode())
    body = json.dumps({"protected": protected, "payload": "", "signature": "AA"}).encode()
    with pytest.raises(ACMEProblem, match="nested too deeply") as refused:
        parse_request(body, "application/jose+json")
    assert refused.value.problem == "malformed"


# --- JWK members of the wrong JSON type --------------------------------------------------------

WRONG_TYPES = {
    f"{kty} {case}": jwk
    for kty, good in (("EC", EC_JWK), ("OKP", OKP_JWK), ("RSA", RSA_JWK))
    for case, jwk in wrong_type_jwks(good).items()
}


@pytest.mark.parametrize("jwk", list(WRONG_TYPES.values()), ids=list(WRONG_TYPES))
def test_a_jwk_member_of_the_wrong_type_is_refused(jwk: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        public_key_from_jwk(jwk)
    with pytest.raises(BadRequest):
        jwk_thumbprint(jwk)
    with pytest.raises(ACMEProblem) as refused:
        key_from_jwk(jwk)
    assert refused.value.problem == "badPublicKey"


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "EC", "crv": ["P-256"], "x": EC_JWK["x"], "y": EC_JWK["y"]},
        {"kty": ["EC"], "crv": "P-256", "x": EC_JWK["x"], "y": EC_JWK["y"]},
        {"kty": {"EC": 1}},
        {"kty": "OKP", "crv": {"Ed25519": True}, "x": OKP_JWK["x"]},
        {"kty": "EC", "crv": "P-256", "x": "A" * 200, "y": EC_JWK["y"]},
        {"kty": "RSA", "n": RSA_JWK["n"], "e": b64url_encode(b"\x01" * 600)},
        {"kty": "RSA", "n": b64url_encode(b"\xff" * 4096), "e": RSA_JWK["e"]},
        {"kty": "RSA", "n": RSA_JWK["n"], "e": "AA"},
    ],
    ids=[
        "crv list",
        "kty list",
        "kty object",
        "okp crv object",
        "x too long",
        "huge e",
        "huge n",
        "e zero",
    ],
)
def test_hostile_jwks_are_bad_public_keys(jwk: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        public_key_from_jwk(jwk)
    with pytest.raises(ACMEProblem) as refused:
        key_from_jwk(jwk)
    assert refused.value.problem == "badPublicKey"


def test_a_key_change_whose_new_key_has_a_list_member_is_a_bad_public_key() -> None:
    """keyChange reads a second JWK, from inside the payload: the same rules hold there."""
    url = "https://ca.test/acme/acme/key-change"
    account = "https://ca.test/acme/acme/acct/1"
    inner = sign_flattened(
        EC_KEY,
        {"account": account, "oldKey": EC_JWK},
        {"jwk": {**EC_JWK, "crv": ["P-256"]}, "url": url},
    )
    outer = sign_flattened(EC_KEY, inner, {"nonce": "n", "url": url, "kid": account})
    request = parse_request(json.dumps(outer).encode(), "application/jose+json")
    with pytest.raises(ACMEProblem) as refused:
        parse_key_change(request)
    assert refused.value.problem == "badPublicKey"


# --- revokeCert --------------------------------------------------------------------------------


def test_a_certificate_to_revoke_of_version_4_is_malformed() -> None:
    cert, key = _signed_leaf()
    der = certificate_v4(cert, key)
    with pytest.raises(ACMEProblem) as refused:
        parse_revocation({"certificate": b64url_encode(der)})
    assert refused.value.problem == "malformed"


def test_the_builders_change_only_what_they_say() -> None:
    """The hostile certificates still load: only the part each test targets is broken."""
    cert, key = _signed_leaf()
    issuer_broken = x509.load_der_x509_certificate(certificate_with_malformed_issuer(cert, key))
    assert issuer_broken.subject == cert.subject
    with pytest.raises(ValueError):
        _ = issuer_broken.issuer
    unknown = x509.load_der_x509_certificate(certificate_with_unknown_key_algorithm(cert, key))
    assert unknown.issuer == cert.issuer
    assert base64.b64encode(cert.public_bytes(Encoding.DER))
    with pytest.raises(x509.InvalidVersion):
        x509.load_der_x509_certificate(certificate_v4(cert, key))


# --- the device inventory (admin API, `devid device add/import`) -------------------------------


@pytest.mark.parametrize("kind", list(HOSTILE_CERTIFICATES))
def test_a_hostile_ek_certificate_for_the_inventory_is_a_bad_request(kind: str) -> None:
    from datetime import UTC, datetime

    from engine.inventory import device_from_input

    cert, key = _signed_leaf()
    der = HOSTILE_CERTIFICATES[kind](cert, key)
    record = {"ekCertificate": base64.b64encode(der).decode()}
    if kind == "malformed issuer":  # the inventory reads only the key: this one is accepted
        assert device_from_input(record, now=datetime.now(UTC)).ek_certificate == der
        return
    with pytest.raises(BadRequest):
        device_from_input(record, now=datetime.now(UTC))


# --- certificate paths (EK, x5c, attestation statements) ---------------------------------------


def test_a_pool_certificate_whose_extensions_cannot_be_read_is_no_issuer() -> None:
    """A client-supplied "intermediate" with two basicConstraints extensions is skipped
    (fail closed), not an exception out of the path search."""
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    from engine.chain import ChainError, verify_chain

    now = datetime.now(UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    mid_key = ec.generate_private_key(ec.SECP256R1())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def build(subject: str, issuer: str, key: Any, signer: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, ca, ca, False, False), critical=True
            )
        )
        return builder.sign(signer, hashes.SHA256())

    root = build("Root", "Root", root_key, root_key, True)
    mid = build("Mid", "Root", mid_key, root_key, True)
    leaf = build("Leaf", "Mid", ec.generate_private_key(ec.SECP256R1()), mid_key, False)
    assert verify_chain(leaf, [mid], [root], now) == [leaf, mid, root]
    spoiled = x509.load_der_x509_certificate(certificate_with_duplicate_extension(mid, root_key))
    with pytest.raises(ChainError):
        verify_chain(leaf, [spoiled], [root], now)
