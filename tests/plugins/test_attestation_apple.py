"""The ``apple`` device-attest-01 format (Apple Managed Device Attestation).

No real Apple attestation is available (only the root, in tests/vectors/roots),
so the chains here come from an Apple-like CA built in the test and passed as
the context's root: a P-384 root, a P-256 intermediate and a leaf carrying the
freshness code, serial number and UDID as raw extension values, as Apple's do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID, ObjectIdentifier

from engine import der
from engine.acme.problems import ACMEProblem
from plugins.attestation.apple import (
    APPLE_NONCE_OID,
    APPLE_OS_VERSION_OID,
    APPLE_SERIAL_NUMBER_OID,
    APPLE_UDID_OID,
    AppleFormat,
)
from plugins.attestation.base import AttestationContext, AttestationResult
from tests.vectors_path import VECTORS

ROOTS = VECTORS / "roots"
APPLE_ROOT = x509.load_pem_x509_certificate((ROOTS / "apple-att-ca.crt").read_bytes())

NOW = datetime(2025, 6, 1, tzinfo=UTC)
TOKEN = "DGyRejmCefe7v4NfDGDKfA"
KEY_AUTHORIZATION = f"{TOKEN}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
SERIAL = "C02XK1ABJG5J"
UDID = "00008030-001A2B3C4D5E802E"


def _problem(run: Callable[[], object]) -> str:
    with pytest.raises(ACMEProblem) as info:
        run()
    assert info.value.problem == "badAttestationStatement"
    return info.value.detail


@attrs.frozen
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Not Apple Inc."),
        ]
    )


def _ca(common_name: str, curve: ec.EllipticCurve, issuer: Authority | None = None) -> Authority:
    key = ec.generate_private_key(curve)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.cert.subject if issuer else _name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=365))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0 if issuer else None), True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    )
    return Authority(key, builder.sign(issuer.key if issuer else key, hashes.SHA384()))


ROOT = _ca("Test Enterprise Attestation Root CA", ec.SECP384R1())
INTERMEDIATE = _ca("Test Enterprise Attestation Sub CA 1", ec.SECP256R1(), ROOT)
DEVICE_KEY = ec.generate_private_key(ec.SECP384R1())


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def leaf(
    *,
    nonce: bytes | None = None,
    extensions: Sequence[tuple[ObjectIdentifier, bytes]] | None = None,
    issuer: Authority = INTERMEDIATE,
    ca: bool = False,
    not_after: datetime = NOW + timedelta(days=1),
) -> x509.Certificate:
    if extensions is None:
        extensions = [
            (APPLE_SERIAL_NUMBER_OID, SERIAL.encode()),
            (APPLE_UDID_OID, UDID.encode()),
            (APPLE_OS_VERSION_OID, b"17.5"),
            (APPLE_NONCE_OID, _sha256(KEY_AUTHORIZATION) if nonce is None else nonce),
        ]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a1b2c3d4e5f6")]))
        .issuer_name(issuer.cert.subject)
        .public_key(DEVICE_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), True
        )
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    for oid, value in extensions:
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), False)
    return builder.sign(issuer.key, hashes.SHA256())


def statement(
    certificate: x509.Certificate | None = None, *chain: x509.Certificate
) -> dict[str, Any]:
    certificates = [certificate or leaf(), *(chain or (INTERMEDIATE.cert,))]
    return {"x5c": [c.public_bytes(Encoding.DER) for c in certificates]}


def verify(
    st: Any,
    *,
    fmt: AppleFormat | None = None,
    roots: tuple[x509.Certificate, ...] = (ROOT.cert,),
    key_authorization: str = KEY_AUTHORIZATION,
    now: datetime = NOW,
) -> AttestationResult:
    context = AttestationContext(now=now, roots=roots)
    return (fmt or AppleFormat()).verify(st, key_authorization, context)


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def test_the_real_apple_root_is_the_expected_anchor() -> None:
    fingerprint = hashlib.sha256(APPLE_ROOT.public_bytes(Encoding.DER)).hexdigest()
    assert fingerprint == "ccf59ef8fcb3017d97f8b5fa6fa90e7a3f9283f76b55ac6cf6eda8b8b949f05b"
    APPLE_ROOT.verify_directly_issued_by(APPLE_ROOT)


def test_an_attestation_binds_the_leaf_key_udid_and_serial() -> None:
    result = verify(statement())

    assert result.format == "apple"
    assert _spki(result.public_key) == _spki(DEVICE_KEY.public_key())
    assert result.permanent_identifiers == (UDID,)
    assert result.serial_numbers == (SERIAL,)
    assert result.ek_urns == ()
    assert result.identities() == {UDID, SERIAL}
    assert [c.subject for c in result.chain] == [
        result.chain[0].subject,
        INTERMEDIATE.cert.subject,
        ROOT.cert.subject,
    ]
    assert result.evidence["nonce_binding"] == "key-authorization"
    assert result.evidence["os_version"] == "17.5"
    assert result.evidence["identities"] == {
        "permanent_identifiers": [UDID],
        "serial_numbers": [SERIAL],
    }
    assert (
        result.evidence["leaf_certificate_sha256"]
        == hashlib.sha256(result.chain[0].public_bytes(Encoding.DER)).hexdigest()
    )


def test_the_nonce_is_mandatory() -> None:
    certificate = leaf(
        extensions=[(APPLE_SERIAL_NUMBER_OID, SERIAL.encode()), (APPLE_UDID_OID, UDID.encode())]
    )
    detail = _problem(lambda: verify(statement(certificate)))
    assert "no nonce" in detail


@pytest.mark.parametrize(
    "nonce",
    [
        _sha256("another.key-authorization"),
        hashlib.sha256(b"").digest(),
        hashlib.sha1(KEY_AUTHORIZATION.encode()).digest() + b"\x00" * 12,
    ],
    ids=["another challenge", "empty", "SHA-1 padded"],
)
def test_a_wrong_nonce_is_refused(nonce: bytes) -> None:
    assert "does not match" in _problem(lambda: verify(statement(leaf(nonce=nonce))))


@pytest.mark.parametrize(
    "nonce",
    [b"", b"\x01", _sha256(KEY_AUTHORIZATION)[:31], _sha256(KEY_AUTHORIZATION) + b"\x00"],
    ids=["empty", "one byte", "31 bytes", "33 bytes"],
)
def test_a_nonce_that_is_not_a_digest_is_refused(nonce: bytes) -> None:
    assert "32-byte" in _problem(lambda: verify(statement(leaf(nonce=nonce))))


def test_a_nonce_in_an_octet_string_is_accepted() -> None:
    wrapped = der.tlv(0x04, _sha256(KEY_AUTHORIZATION))
    assert verify(statement(leaf(nonce=wrapped))).evidence["nonce_binding"] == "key-authorization"


def test_apple_devices_hash_the_challenge_token() -> None:
    """Apple devices put SHA-256(token) in the freshness code (step-ca compares that)."""
    st = statement(leaf(nonce=_sha256(TOKEN)))
    assert verify(st).evidence["nonce_binding"] == "token"
    strict = AppleFormat(accept_token_nonce=False)
    assert "does not match" in _problem(lambda: verify(st, fmt=strict))
    assert verify(statement(), fmt=strict)


def test_the_token_nonce_belongs_to_this_challenge_only() -> None:
    st = statement(leaf(nonce=_sha256(TOKEN)))
    other = "OtherTokenOtherToken00.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
    assert "does not match" in _problem(lambda: verify(st, key_authorization=other))


def test_a_chain_to_another_root_is_refused() -> None:
    detail = _problem(lambda: verify(statement(), roots=(APPLE_ROOT,)))
    assert detail == "the Apple attestation certificate does not chain to a trusted root"


def test_the_intermediate_is_needed() -> None:
    st = {"x5c": [leaf().public_bytes(Encoding.DER)]}
    assert "does not chain" in _problem(lambda: verify(st))
    context = AttestationContext(now=NOW, roots=(ROOT.cert,), intermediates=(INTERMEDIATE.cert,))
    assert AppleFormat().verify(st, KEY_AUTHORIZATION, context)


def test_an_expired_leaf_is_refused() -> None:
    certificate = leaf(not_after=NOW - timedelta(seconds=1))
    assert "expired" in _problem(lambda: verify(statement(certificate)))


def test_a_ca_leaf_is_refused() -> None:
    assert "is a CA" in _problem(lambda: verify(statement(leaf(ca=True))))


def test_a_leaf_signed_by_the_root_directly_also_chains() -> None:
    certificate = leaf(issuer=ROOT)
    assert verify(statement(certificate, ROOT.cert)).chain[-1] == ROOT.cert


def test_missing_identities_give_an_empty_result() -> None:
    certificate = leaf(extensions=[(APPLE_NONCE_OID, _sha256(KEY_AUTHORIZATION))])
    result = verify(statement(certificate))
    assert result.identities() == frozenset()


def test_identifiers_in_der_strings_are_unwrapped() -> None:
    certificate = leaf(
        extensions=[
            (APPLE_SERIAL_NUMBER_OID, der.tlv(0x0C, SERIAL.encode())),
            (APPLE_UDID_OID, der.tlv(0x04, UDID.encode())),
            (APPLE_NONCE_OID, _sha256(KEY_AUTHORIZATION)),
        ]
    )
    assert verify(statement(certificate)).identities() == {UDID, SERIAL}


@pytest.mark.parametrize(
    ("oid", "value"),
    [
        (APPLE_SERIAL_NUMBER_OID, b"\xff\xfe"),
        (APPLE_SERIAL_NUMBER_OID, b""),
        (APPLE_SERIAL_NUMBER_OID, b"C02\nXK1"),
        (APPLE_UDID_OID, b"U" * 300),
        (APPLE_UDID_OID, b"\x00\x01\x02"),
    ],
    ids=["serial not UTF-8", "empty serial", "serial with a newline", "huge UDID", "binary UDID"],
)
def test_unprintable_identifiers_are_refused(oid: ObjectIdentifier, value: bytes) -> None:
    others = [
        (o, v)
        for o, v in (
            (APPLE_SERIAL_NUMBER_OID, SERIAL.encode()),
            (APPLE_UDID_OID, UDID.encode()),
        )
        if o != oid
    ]
    certificate = leaf(
        extensions=[*others, (oid, value), (APPLE_NONCE_OID, _sha256(KEY_AUTHORIZATION))]
    )
    detail = _problem(lambda: verify(statement(certificate)))
    assert detail.startswith(
        "the Apple attestation serial"
        if oid == APPLE_SERIAL_NUMBER_OID
        else "the Apple attestation UDID"
    )


def test_an_unparseable_leaf_extension_is_refused() -> None:
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(INTERMEDIATE.cert.subject)
        .public_key(DEVICE_KEY.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(minutes=5))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(x509.oid.ExtensionOID.BASIC_CONSTRAINTS, b"\x04\x00"),
            True,
        )
        .add_extension(
            x509.UnrecognizedExtension(APPLE_NONCE_OID, _sha256(KEY_AUTHORIZATION)), False
        )
        .sign(INTERMEDIATE.key, hashes.SHA256())
    )
    assert "cannot be parsed" in _problem(lambda: verify(statement(certificate)))
