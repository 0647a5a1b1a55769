"""Instance identity requests (plugins.identity_request, plugins.minting): the one JWS an
AWS or Azure instance sends, signed by the key its CSR certifies.

A request is read as addressed to the provisioner its ``aud`` fragment names, and
accepted only when the CSR's key signed it, for exactly this CA's sign URL and that
provisioner, within five minutes; the nonce binding a cloud-signed document to a key
and a provisioner changes with either.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from engine.csr import CSRInfo, parse_csr
from engine.errors import Unauthorized
from engine.jose import sign_compact
from plugins.api import (
    AuthorizeContext,
    instance_nonce,
    read_identity_request,
    sha256_token_id,
    verify_identity_request,
)
from plugins.minting import IDENTITY_REQUEST_TYPE, mint_identity_request

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SIGN_URL = "https://ca.example.com:8443/1.0/sign"
AUDIENCE = SIGN_URL + "#aws"
CTX = AuthorizeContext(now=NOW, audiences=frozenset({SIGN_URL}))
EVIDENCE = {"document": "{}", "signature": "c2ln"}


def _csr(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> CSRInfo:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "i-0123456789abcdef0")])
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    der = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .sign(key, algorithm)
        .public_bytes(Encoding.DER)
    )
    return parse_csr(der)


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _request(key: object, **kw: object) -> str:
    args: dict[str, object] = {
        "audience": AUDIENCE,
        "cloud": "aws",
        "evidence": EVIDENCE,
        "now": NOW,
    }
    args.update(kw)
    return mint_identity_request(key, **args)  # type: ignore[arg-type]


def test_a_request_signed_by_the_csr_key_for_this_provisioner_is_accepted(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    credential = read_identity_request(_request(key), "aws")
    assert credential is not None and credential.provisioner == "aws"
    request = verify_identity_request(credential, _csr(key), CTX, provisioner="aws", cloud="aws")
    assert dict(request.evidence) == EVIDENCE
    assert request.audience == AUDIENCE
    assert request.times.expires_at == NOW + timedelta(minutes=5)


def test_ed25519_keys_sign_requests_too() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    credential = read_identity_request(_request(key), "aws")
    assert credential is not None
    verify_identity_request(credential, _csr(key), CTX, provisioner="aws", cloud="aws")


def test_other_texts_are_not_identity_requests(key: ec.EllipticCurvePrivateKey) -> None:
    plain = sign_compact({"aud": AUDIENCE, "aws": EVIDENCE}, key)  # typ JWT
    assert read_identity_request(plain, "aws") is None
    assert read_identity_request(_request(key), "azure") is None  # another cloud's member
    assert read_identity_request(_request(key, audience=SIGN_URL), "aws") is None  # no name
    assert read_identity_request("not a token", "aws") is None
    assert read_identity_request("", "aws") is None


def test_a_request_signed_by_another_key_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    credential = read_identity_request(_request(other), "aws")
    assert credential is not None
    with pytest.raises(Unauthorized, match="signature does not verify"):
        verify_identity_request(credential, _csr(key), CTX, provisioner="aws", cloud="aws")


@pytest.mark.parametrize(
    "audience",
    [
        "https://other-ca.example.com/1.0/sign#aws",
        SIGN_URL + "#azure",
        SIGN_URL + "#aws#aws",
    ],
)
def test_a_request_for_another_ca_or_provisioner_is_refused(
    key: ec.EllipticCurvePrivateKey, audience: str
) -> None:
    credential = read_identity_request(_request(key, audience=audience), "aws")
    assert credential is not None
    with pytest.raises(Unauthorized, match="audience"):
        verify_identity_request(credential, _csr(key), CTX, provisioner="aws", cloud="aws")


def test_expired_and_long_lived_requests_are_refused(key: ec.EllipticCurvePrivateKey) -> None:
    old = read_identity_request(_request(key, now=NOW - timedelta(minutes=7)), "aws")
    assert old is not None
    with pytest.raises(Unauthorized, match="expired"):
        verify_identity_request(old, _csr(key), CTX, provisioner="aws", cloud="aws")
    with pytest.raises(ValueError):
        _request(key, lifetime=timedelta(hours=1))
    issued = int(NOW.timestamp())
    claims = {"aud": AUDIENCE, "iat": issued, "exp": issued + 3600, "aws": EVIDENCE}
    long_lived = sign_compact(claims, key, headers={"typ": IDENTITY_REQUEST_TYPE})
    credential = read_identity_request(long_lived, "aws")
    assert credential is not None
    with pytest.raises(Unauthorized, match="lifetime"):
        verify_identity_request(credential, _csr(key), CTX, provisioner="aws", cloud="aws")


def test_the_nonce_is_ten_digits_bound_to_the_key_and_the_audience(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    other = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    nonce = instance_nonce(spki, AUDIENCE)
    assert len(nonce) == 10 and nonce.isdigit()
    assert instance_nonce(spki, AUDIENCE) == nonce
    assert instance_nonce(other, AUDIENCE) != nonce
    assert instance_nonce(spki, SIGN_URL + "#azure") != nonce


def test_token_ids_by_content() -> None:
    assert sha256_token_id("abc") == sha256_token_id(b"abc")
    assert sha256_token_id("abc").startswith("sha256:") and len(sha256_token_id("abc")) == 71
