"""The ``step`` device-attest-01 format (YubiKey PIV attestation, step-ca's layout).

A real YubiKey signature cannot be made here, so statements come from
YubiKey-like chains built in the test (a PIV root, a per-device slot-f9
intermediate, a slot attestation certificate with Yubico's extensions). The
real Yubico roots and intermediates in tests/vectors/roots are checked to
chain as that folder's README says, and to refuse the self-made chains.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID, ObjectIdentifier

from engine import der
from engine.acme.problems import ACMEProblem
from engine.chain import ChainError, verify_chain
from plugins.attestation.base import AttestationContext, AttestationResult
from plugins.attestation.step import (
    YUBICO_FIRMWARE_OID,
    YUBICO_FORM_FACTOR_OID,
    YUBICO_POLICY_OID,
    YUBICO_SERIAL_OID,
    StepFormat,
    cbor_byte_string,
)
from tests.vectors_path import VECTORS

ROOTS = VECTORS / "roots"


def _pem(name: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates((ROOTS / name).read_bytes())


YUBICO_PIV_ROOT = _pem("yubico-piv-ca.crt")[0]
YUBICO_ROOT_1 = _pem("yubico-attestation-root-1.pem")[0]
YUBICO_A1 = _pem("yubico-piv-attestation-a1-chain.pem")
YUBICO_B1 = _pem("yubico-piv-attestation-b1-chain.pem")

NOW = datetime(2025, 6, 1, tzinfo=UTC)
KEY_AUTHORIZATION = (
    "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
)
SERIAL = 16011234


def _problem(run: Callable[[], object]) -> str:
    with pytest.raises(ACMEProblem) as info:
        run()
    assert info.value.problem == "badAttestationStatement"
    return info.value.detail


# --- the real Yubico certificates -----------------------------------------------------


def test_the_yubico_roots_are_the_expected_ones() -> None:
    for cert, fingerprint in (
        (YUBICO_PIV_ROOT, "63ece914e54dd87915f34033c85af4c0696ba1512f8add66ced738331207b546"),
        (YUBICO_ROOT_1, "62760c6a6ef91679f454c8902b80fd009825b3f25da90f1fbace2ec6586cd5a8"),
    ):
        assert hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest() == fingerprint
        cert.verify_directly_issued_by(cert)


@pytest.mark.parametrize("chain", [YUBICO_A1, YUBICO_B1], ids=["A 1", "B 1"])
def test_the_yubico_piv_attestation_cas_chain_to_attestation_root_1(
    chain: list[x509.Certificate],
) -> None:
    piv_attestation, intermediate = chain
    assert "PIV Attestation" in piv_attestation.subject.rfc4514_string()
    assert "Attestation Intermediate" in intermediate.subject.rfc4514_string()
    path = verify_chain(piv_attestation, [intermediate], [YUBICO_ROOT_1], NOW)
    assert path == [piv_attestation, intermediate, YUBICO_ROOT_1]
    with pytest.raises(ChainError):
        verify_chain(piv_attestation, [intermediate], [YUBICO_PIV_ROOT], NOW)
    with pytest.raises(ChainError, match="not yet valid"):  # issued 2024-12-01
        verify_chain(
            piv_attestation, [intermediate], [YUBICO_ROOT_1], datetime(2024, 6, 1, tzinfo=UTC)
        )


# --- YubiKey-like chains --------------------------------------------------------------


@attrs.frozen
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _ca(
    common_name: str, issuer: Authority | None = None, path_length: int | None = 1
) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=365))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), True)
        .sign(issuer.key if issuer else key, hashes.SHA256())
    )
    return Authority(key, cert)


PIV_ROOT = _ca("Test PIV Root CA Serial 263751")
F9 = _ca("Test PIV Attestation", PIV_ROOT, path_length=None)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
P384_KEY = ec.generate_private_key(ec.SECP384R1())
RSA_KEY = rsa.generate_private_key(65537, 2048)
ED_KEY = ed25519.Ed25519PrivateKey.generate()

YUBIKEY_EXTENSIONS: list[tuple[ObjectIdentifier, bytes]] = [
    (YUBICO_FIRMWARE_OID, bytes([5, 7, 4])),
    (YUBICO_SERIAL_OID, der.tlv(0x02, SERIAL.to_bytes(4, "big"))),
    (YUBICO_POLICY_OID, bytes([1, 1])),
    (YUBICO_FORM_FACTOR_OID, bytes([1])),
]


def slot_certificate(
    key: Any = EC_KEY,
    *,
    issuer: Authority = F9,
    extensions: Sequence[tuple[ObjectIdentifier, bytes]] = YUBIKEY_EXTENSIONS,
    ca: bool = False,
    not_after: datetime = NOW + timedelta(days=3650),
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "YubiKey PIV Attestation 9a")])
        )
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(not_after)
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    for oid, value in extensions:
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), False)
    return builder.sign(issuer.key, hashes.SHA256())


def sign(key: Any, alg: int, data: bytes) -> bytes:
    if alg in (-7, -35, -36):
        chosen = {-7: hashes.SHA256(), -35: hashes.SHA384(), -36: hashes.SHA512()}[alg]
        return bytes(key.sign(data, ec.ECDSA(chosen)))
    if alg == -8:
        return bytes(key.sign(data))
    chosen_hash: hashes.HashAlgorithm = {
        -257: hashes.SHA256(),
        -258: hashes.SHA384(),
        -65535: hashes.SHA1(),
        -37: hashes.SHA256(),
    }[alg]
    pad: padding.AsymmetricPadding = (
        padding.PSS(padding.MGF1(chosen_hash), padding.PSS.DIGEST_LENGTH)
        if alg == -37
        else padding.PKCS1v15()
    )
    return bytes(key.sign(data, pad, chosen_hash))


def statement(
    key: Any = EC_KEY,
    alg: int = -7,
    *,
    wrap: bool = True,
    certificate: x509.Certificate | None = None,
    chain: Sequence[x509.Certificate] = (F9.cert,),
    signed: str = KEY_AUTHORIZATION,
) -> dict[str, Any]:
    signature = sign(key, alg, signed.encode())
    certificate = certificate or slot_certificate(key)
    return {
        "alg": alg,
        # step's client sends cbor.Marshal(signature) as the sig byte string.
        "sig": cbor2.dumps(signature) if wrap else signature,
        "x5c": [c.public_bytes(Encoding.DER) for c in (certificate, *chain)],
    }


def verify(
    st: Any,
    *,
    roots: tuple[x509.Certificate, ...] = (PIV_ROOT.cert,),
    intermediates: tuple[x509.Certificate, ...] = (),
    allow_sha1: bool = False,
    key_authorization: str = KEY_AUTHORIZATION,
    now: datetime = NOW,
) -> AttestationResult:
    context = AttestationContext(
        now=now, roots=roots, intermediates=intermediates, allow_sha1=allow_sha1
    )
    return StepFormat().verify(st, key_authorization, context)


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def test_a_yubikey_attestation_binds_the_slot_key_and_the_serial() -> None:
    result = verify(statement())

    assert result.format == "step"
    assert _spki(result.public_key) == _spki(EC_KEY.public_key())
    assert result.serial_numbers == (str(SERIAL),)
    assert result.permanent_identifiers == (str(SERIAL),)
    assert result.identities() == {"16011234"}
    assert result.chain[-1] == PIV_ROOT.cert
    assert result.evidence["signature_encoding"] == "cbor"
    assert result.evidence["yubikey_firmware"] == "5.7.4"
    assert result.evidence["yubikey_pin_policy"] == 1
    assert result.evidence["yubikey_touch_policy"] == 1
    assert result.evidence["yubikey_form_factor"] == 1
    assert result.evidence["chain"][-1] == "CN=Test PIV Root CA Serial 263751"


@pytest.mark.parametrize(
    ("key", "alg"),
    [
        (EC_KEY, -7),
        (P384_KEY, -35),
        (EC_KEY, -36),
        (RSA_KEY, -257),
        (RSA_KEY, -258),
        (RSA_KEY, -37),
        (ED_KEY, -8),
    ],
    ids=["ES256", "ES384", "ES512", "RS256", "RS384", "PS256", "EdDSA"],
)
@pytest.mark.parametrize("wrap", [True, False], ids=["cbor", "raw"])
def test_every_cose_algorithm_verifies_wrapped_or_bare(key: Any, alg: int, wrap: bool) -> None:
    result = verify(statement(key, alg, wrap=wrap))
    assert _spki(result.public_key) == _spki(key.public_key())
    assert result.evidence["signature_encoding"] == ("cbor" if wrap else "raw")


def test_sha1_is_refused_unless_allowed() -> None:
    st = statement(RSA_KEY, -65535)
    assert "SHA-1" in _problem(lambda: verify(st))
    assert verify(st, allow_sha1=True).evidence["alg"] == "RS1"


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: statement(signed="another.key-authorization"), "not a valid signature"),
        (lambda: statement(certificate=slot_certificate(P384_KEY)), "not a valid signature"),
        (lambda: {**statement(), "alg": -257}, "cannot make RS256"),
        (lambda: {**statement(RSA_KEY, -257), "alg": -7}, "cannot make ES256"),
        (lambda: {**statement(RSA_KEY, -257), "alg": -37}, "not a valid signature"),
        (lambda: {**statement(), "sig": cbor2.dumps(b"\x00" * 70)}, "not a valid signature"),
        (lambda: {**statement(), "sig": cbor2.dumps([b"\x30"])}, "not a valid signature"),
    ],
    ids=[
        "another key authorization",
        "signed by another key",
        "RS256 over an EC key",
        "ES256 over an RSA key",
        "PS256 for a PKCS#1 signature",
        "garbage signature",
        "CBOR array",
    ],
)
def test_signature_mistakes_are_refused(make: Callable[[], dict[str, Any]], needle: str) -> None:
    assert needle in _problem(lambda: verify(make()))


def test_another_key_authorization_at_verification_is_refused() -> None:
    assert "not a valid signature" in _problem(
        lambda: verify(statement(), key_authorization="other.auth")
    )


def test_the_new_yubico_hierarchy_chains_through_configured_intermediates() -> None:
    """5.7.4+: slot certificate -> f9 -> PIV Attestation A 1 -> Intermediate A 1 -> Root 1."""
    root = _ca("Test Attestation Root 1", path_length=3)
    intermediate = _ca("Test Attestation Intermediate A 1", root, path_length=2)
    piv_attestation = _ca("Test PIV Attestation A 1", intermediate, path_length=1)
    f9 = _ca("Test YubiKey f9", piv_attestation, path_length=0)
    st = statement(certificate=slot_certificate(issuer=f9), chain=(f9.cert,))
    result = verify(
        st,
        roots=(PIV_ROOT.cert, root.cert),
        intermediates=(piv_attestation.cert, intermediate.cert),
    )
    assert [c.subject for c in result.chain[1:]] == [
        f9.cert.subject,
        piv_attestation.cert.subject,
        intermediate.cert.subject,
        root.cert.subject,
    ]
    assert "does not chain" in _problem(lambda: verify(st, roots=(root.cert,)))


def test_self_made_chains_do_not_chain_to_the_real_yubico_roots() -> None:
    detail = _problem(
        lambda: verify(
            statement(),
            roots=(YUBICO_PIV_ROOT, YUBICO_ROOT_1),
            intermediates=(*YUBICO_A1, *YUBICO_B1),
        )
    )
    assert detail == "the YubiKey attestation certificate does not chain to a trusted root"


def test_the_f9_intermediate_is_required() -> None:
    assert "does not chain" in _problem(lambda: verify(statement(chain=())))


def test_an_expired_slot_certificate_is_refused() -> None:
    certificate = slot_certificate(not_after=NOW - timedelta(seconds=1))
    assert "expired" in _problem(lambda: verify(statement(certificate=certificate)))


def test_a_ca_slot_certificate_is_refused() -> None:
    certificate = slot_certificate(ca=True)
    assert "is a CA" in _problem(lambda: verify(statement(certificate=certificate)))


def test_without_a_serial_there_is_no_identity() -> None:
    certificate = slot_certificate(extensions=[(YUBICO_FIRMWARE_OID, bytes([4, 3, 5]))])
    result = verify(statement(certificate=certificate))
    assert result.identities() == frozenset()
    assert result.evidence["yubikey_firmware"] == "4.3.5"


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\x02\x00",
        b"\x02\x01\xff",
        b"\x02\x01\x00",
        der.tlv(0x02, (2**64).to_bytes(9, "big")),
        b"\x04\x04\x00\xf4\x4e\x02",
        b"\x02\x04\x00\xf4\x4e\x02\x00",
        b"\x02\x84\xff\xff\xff\xff",
    ],
    ids=[
        "empty",
        "empty INTEGER",
        "negative",
        "zero",
        "2**64",
        "OCTET STRING",
        "trailing byte",
        "bad length",
    ],
)
def test_a_malformed_serial_is_refused(value: bytes) -> None:
    certificate = slot_certificate(extensions=[(YUBICO_SERIAL_OID, value)])
    assert "serial number" in _problem(lambda: verify(statement(certificate=certificate)))


def test_odd_yubikey_facts_are_left_out_of_the_evidence() -> None:
    certificate = slot_certificate(
        extensions=[
            (YUBICO_SERIAL_OID, der.tlv(0x02, b"\x01")),
            (YUBICO_FIRMWARE_OID, b"\x05"),
            (YUBICO_POLICY_OID, b""),
            (YUBICO_FORM_FACTOR_OID, b"\x01\x02"),
        ]
    )
    evidence = verify(statement(certificate=certificate)).evidence
    assert not {k for k in evidence if k.startswith("yubikey_")}
    assert evidence["identities"]["serial_numbers"] == ["1"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (cbor2.dumps(b""), b""),
        (cbor2.dumps(b"\x01" * 23), b"\x01" * 23),
        (cbor2.dumps(b"\x01" * 24), b"\x01" * 24),
        (cbor2.dumps(b"\x02" * 300), b"\x02" * 300),
        (cbor2.dumps(b"\x01" * 24)[:-1], None),
        (cbor2.dumps(b"\x01" * 3) + b"\x00", None),
        (b"\x5f\x41\x01\xff", None),  # indefinite length
        (b"\x30\x06\x02\x01\x01\x02\x01\x01", None),  # a DER signature
        (b"", None),
    ],
)
def test_cbor_byte_string_reads_exactly_one_definite_byte_string(
    data: bytes, expected: bytes | None
) -> None:
    assert cbor_byte_string(data) == expected
