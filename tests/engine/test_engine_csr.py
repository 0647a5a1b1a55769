"""engine.csr: a CSR is parsed once, its self-signature and key checked, its names extracted."""

from __future__ import annotations

import hashlib
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from engine.csr import MAX_CSR_BYTES, parse_csr
from engine.der import read_tlv, tlv
from engine.errors import BadRequest
from engine.keys import KeyType
from engine.names import SAN


def build_csr(
    key: CertificateIssuerPrivateKeyTypes,
    common_name: str | None = "svc.example.com",
    sans: list[x509.GeneralName] | None = None,
) -> x509.CertificateSigningRequest:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


@pytest.fixture(scope="module")
def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_pem_csr_yields_key_type_common_name_and_sans(p256: ec.EllipticCurvePrivateKey) -> None:
    csr = build_csr(
        p256,
        sans=[
            x509.DNSName("svc.example.com"),
            x509.IPAddress(ipaddress.ip_address("10.0.0.7")),
        ],
    )
    info = parse_csr(csr.public_bytes(Encoding.PEM).decode())
    assert info.key_type is KeyType.P256
    assert info.common_name == "svc.example.com"
    assert info.sans == (SAN.parse("svc.example.com"), SAN.parse("10.0.0.7"))
    assert info.public_key == p256.public_key()


def test_der_and_pem_forms_parse_to_the_same_request(p256: ec.EllipticCurvePrivateKey) -> None:
    csr = build_csr(p256)
    from_pem = parse_csr(csr.public_bytes(Encoding.PEM))
    from_der = parse_csr(csr.public_bytes(Encoding.DER))
    assert from_pem.der == from_der.der == csr.public_bytes(Encoding.DER)
    assert from_pem.sha256 == hashlib.sha256(from_der.der).digest()


def test_csr_without_common_name_or_sans_parses_with_none_and_empty(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    info = parse_csr(build_csr(p256, common_name=None).public_bytes(Encoding.DER))
    assert info.common_name is None
    assert info.sans == ()


@pytest.mark.parametrize(
    ("make_key", "key_type"),
    [
        (lambda: ec.generate_private_key(ec.SECP384R1()), KeyType.P384),
        (ed25519.Ed25519PrivateKey.generate, KeyType.ED25519),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), KeyType.RSA2048),
    ],
    ids=["P-384", "Ed25519", "RSA-2048"],
)
def test_accepted_key_types_are_classified(make_key: object, key_type: KeyType) -> None:
    key = make_key()  # type: ignore[operator]
    assert parse_csr(build_csr(key).public_bytes(Encoding.DER)).key_type is key_type


def test_csr_with_a_bad_signature_is_a_bad_request() -> None:
    # Ed25519 signatures are raw bytes at the end of the DER: flipping one keeps it parseable.
    der = bytearray(build_csr(ed25519.Ed25519PrivateKey.generate()).public_bytes(Encoding.DER))
    der[-1] ^= 0x01
    x509.load_der_x509_csr(bytes(der))  # still a well-formed CSR
    with pytest.raises(BadRequest, match="signature"):
        parse_csr(bytes(der))


def test_csr_signed_by_a_different_key_is_a_bad_request(p256: ec.EllipticCurvePrivateKey) -> None:
    # The request body of one CSR with the signature of another key.
    other = ec.generate_private_key(ec.SECP256R1())
    mine = build_csr(p256, common_name="a.example.com")
    theirs = build_csr(other, common_name="a.example.com")
    theirs_der = theirs.public_bytes(Encoding.DER)
    _, theirs_body, _ = read_tlv(theirs_der)
    signature_part = theirs_body[len(theirs.tbs_certrequest_bytes) :]
    der = tlv(0x30, mine.tbs_certrequest_bytes + signature_part)
    x509.load_der_x509_csr(der)  # well-formed, just not signed by its own key
    with pytest.raises(BadRequest, match="signature"):
        parse_csr(der)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a csr",
        b"\x30\x03\x02\x01\x01",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        "-----BEGIN CERTIFICATE REQUEST-----\n",
    ],
    ids=["empty", "text", "wrong-der", "bad-pem-body", "truncated-pem"],
)
def test_garbage_is_a_bad_request(data: bytes | str) -> None:
    with pytest.raises(BadRequest, match="CSR"):
        parse_csr(data)


def test_oversized_csr_is_refused_before_parsing() -> None:
    with pytest.raises(BadRequest, match="too large"):
        parse_csr(b"\x30" * (MAX_CSR_BYTES + 1))


def test_rsa_1024_csr_is_a_bad_request() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(BadRequest, match="too small"):
        parse_csr(build_csr(key).public_bytes(Encoding.DER))


def test_p521_csr_is_a_bad_request() -> None:
    key = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(BadRequest, match="curve"):
        parse_csr(build_csr(key).public_bytes(Encoding.DER))


def test_csr_with_an_unsupported_san_type_is_a_bad_request(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    directory = x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone")]))
    csr = build_csr(p256, sans=[x509.DNSName("svc.example.com"), directory])
    with pytest.raises(BadRequest, match="subject alternative name"):
        parse_csr(csr.public_bytes(Encoding.DER))


def _pem_variants(der: bytes) -> list[bytes]:
    import base64

    body = base64.b64encode(der)
    lines64 = b"\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    plain = (
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + lines64
        + b"\n-----END CERTIFICATE REQUEST-----\n"
    )
    return [
        plain,
        plain.replace(b"\n", b"\r\n"),  # Windows line ends
        b"  \n" + plain + b"\n\n",  # blank lines around the block
        plain.replace(b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"),  # Netscape/MS label
        b"-----BEGIN CERTIFICATE REQUEST-----\n" + body + b"\n-----END CERTIFICATE REQUEST-----",
    ]


def test_pem_forms_that_clients_send_all_parse_to_the_same_request(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    der = build_csr(p256).public_bytes(Encoding.DER)
    for text in _pem_variants(der):
        info = parse_csr(text)
        assert info.der == der
        assert info.csr.public_bytes(Encoding.DER) == der


@pytest.mark.parametrize(
    "mangle",
    [
        lambda pem: pem.replace(b"-----END CERTIFICATE REQUEST-----", b""),  # no end marker
        lambda pem: pem[:60] + b"!" + pem[61:],  # not base64
        lambda pem: pem + pem,  # two blocks
        lambda pem: pem.replace(b"CERTIFICATE REQUEST", b"CERTIFICATE"),  # another label
        lambda pem: pem.replace(b"\n", b"\nProc-Type: 4,ENCRYPTED\n", 1),  # RFC 1421 header
        lambda pem: pem[:100] + pem[104:],  # truncated body
    ],
)
def test_mangled_pem_is_a_client_error_or_the_same_request(
    p256: ec.EllipticCurvePrivateKey, mangle: object
) -> None:
    """Whatever the shape, the answer is the request itself or a 400, never another request
    and never an unexpected exception."""
    assert callable(mangle)
    der = build_csr(p256).public_bytes(Encoding.DER)
    try:
        info = parse_csr(mangle(_pem_variants(der)[0]))
    except BadRequest:
        return
    assert info.der == der
