"""The AK certificate profile (TCG fields plus devid's EK binding) and reading it back.

software TPM stand-in: the real swtpm exchange is tested in tests/agent.
Keys come from tests/attestation_fakes.py; certificates are built with
engine.pipeline.build_certificate from a throwaway in-test Attestation CA.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID, ObjectIdentifier

from engine import der
from engine.attestation import (
    EK_URN_SAN_PREFIX,
    PERMANENT_IDENTIFIER_OID,
    TCG_KP_AIK_CERTIFICATE,
    TPMInfo,
    ak_certificate_template,
    identities_of_ak_certificate,
)
from engine.attestation.akcert import EK_DIGEST_ASSIGNER
from engine.errors import BadRequest, ProtocolError
from engine.extensions import ProvisionerRef
from engine.inventory import ek_urn_from_digest, permanent_identifier_value
from engine.pipeline import Issuer, build_certificate
from engine.signer import SoftwareSigner
from tests.attestation_fakes import make_ak, make_ek, make_vendor

TPM = TPMInfo("id:53544D20", "SW   TPM", "id:00010002")
# A digest whose standard base64 has '/' and '+': the PermanentIdentifier must not.
AWKWARD_DIGEST = bytes([0xFB, 0xFF, 0xBF] * 10 + [0xFF, 0xFE])
TCG_AT_TPM_MANUFACTURER = ObjectIdentifier("2.23.133.2.1")
TCG_AT_TPM_MODEL = ObjectIdentifier("2.23.133.2.2")
TCG_AT_TPM_VERSION = ObjectIdentifier("2.23.133.2.3")


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Attestation CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issuer("attestation", cert, SoftwareSigner(key))


def ak_certificate(issuer: Issuer, tpm: TPMInfo, digest: bytes) -> x509.Certificate:
    now = datetime.now(UTC)
    return build_certificate(
        ak_certificate_template(tpm, digest),
        make_ak("ecc").private_key.public_key(),
        issuer,
        1234,
        now - timedelta(minutes=1),
        now + timedelta(days=30),
        ProvisionerRef("attestation", "tpm"),
    )


def san_of(cert: x509.Certificate) -> x509.Extension[x509.SubjectAlternativeName]:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def permanent_identifier(cert: x509.Certificate) -> tuple[str, str | None]:
    """(identifierValue, assigner) of the single PermanentIdentifier otherName."""
    others = [
        o
        for o in san_of(cert).value.get_values_for_type(x509.OtherName)
        if o.type_id == PERMANENT_IDENTIFIER_OID
    ]
    assert len(others) == 1
    tag, body, end = der.read_tlv(others[0].value)
    assert tag == 0x30 and end == len(others[0].value)
    tag, value, pos = der.read_tlv(body)
    assert tag == 0x0C
    assigner = None
    if pos < len(body):
        tag, oid, end = der.read_tlv(body, pos)
        assert tag == 0x06 and end == len(body)
        assigner = der.tlv(0x06, oid).hex()
    return value.decode(), assigner


# --- the profile ----------------------------------------------------------------------


def test_the_subject_is_empty_and_the_san_critical(issuer: Issuer) -> None:
    cert = ak_certificate(issuer, TPM, AWKWARD_DIGEST)
    assert len(cert.subject) == 0
    assert san_of(cert).critical


def test_the_san_names_the_tpm_with_tcg_attributes(issuer: Issuer) -> None:
    cert = ak_certificate(issuer, TPM, AWKWARD_DIGEST)
    directories = san_of(cert).value.get_values_for_type(x509.DirectoryName)
    assert len(directories) == 1
    attributes = {a.oid: a.value for a in directories[0]}
    assert attributes == {
        TCG_AT_TPM_MANUFACTURER: "id:53544D20",
        TCG_AT_TPM_MODEL: "SW   TPM",
        TCG_AT_TPM_VERSION: "id:00010002",
    }


def test_the_permanent_identifier_is_the_base64url_ek_digest(issuer: Issuer) -> None:
    cert = ak_certificate(issuer, TPM, AWKWARD_DIGEST)
    value, assigner = permanent_identifier(cert)
    assert value == base64.urlsafe_b64encode(AWKWARD_DIGEST).decode().rstrip("=")
    assert value == permanent_identifier_value(AWKWARD_DIGEST)
    assert "/" in base64.b64encode(AWKWARD_DIGEST).decode()  # the test digest is awkward...
    assert not set(value) & set("/+=")  # ...and the identifier is not
    assert assigner == der.object_identifier(EK_DIGEST_ASSIGNER).hex()


def test_the_uri_is_the_inventory_ek_urn(issuer: Issuer) -> None:
    cert = ak_certificate(issuer, TPM, AWKWARD_DIGEST)
    uris = san_of(cert).value.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [ek_urn_from_digest(AWKWARD_DIGEST)]
    assert uris[0] == EK_URN_SAN_PREFIX + base64.b64encode(AWKWARD_DIGEST).decode()


def test_the_real_ek_digest_is_sha256_of_its_spki(issuer: Issuer) -> None:
    ek = make_ek("rsa")
    cert = ak_certificate(issuer, TPM, ek.digest)
    assert ek.digest == hashlib.sha256(ek.spki).digest()
    value, _ = permanent_identifier(cert)
    assert base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)) == ek.digest
    uris = san_of(cert).value.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [ek.urn]


def test_the_key_purpose_is_tcg_aik_certificate_only(issuer: Issuer) -> None:
    cert = ak_certificate(issuer, TPM, AWKWARD_DIGEST)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [TCG_KP_AIK_CERTIFICATE]
    assert TCG_KP_AIK_CERTIFICATE.dotted_string == "2.23.133.8.3"
    assert ExtendedKeyUsageOID.SERVER_AUTH not in eku
    assert ExtendedKeyUsageOID.CLIENT_AUTH not in eku


def test_it_is_not_a_ca_and_only_signs(issuer: Issuer) -> None:
    cert = ak_certificate(issuer, TPM, AWKWARD_DIGEST)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign and not usage.key_encipherment


def test_it_verifies_against_the_issuer_and_carries_the_ak_key(issuer: Issuer) -> None:
    cert = ak_certificate(issuer, TPM, AWKWARD_DIGEST)
    cert.verify_directly_issued_by(issuer.certificate)
    assert cert.public_key() == make_ak("ecc").private_key.public_key()
    assert ProvisionerRef.from_certificate(cert) == ProvisionerRef("attestation", "tpm")


def test_without_tpm_attributes_there_is_no_directory_name(issuer: Issuer) -> None:
    cert = ak_certificate(issuer, TPMInfo(), AWKWARD_DIGEST)
    san = san_of(cert).value
    assert san.get_values_for_type(x509.DirectoryName) == []
    assert len(san.get_values_for_type(x509.OtherName)) == 1
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        ek_urn_from_digest(AWKWARD_DIGEST)
    ]


# --- reading the identities back -------------------------------------------------------------


@pytest.mark.parametrize("tpm", [TPM, TPMInfo()])
def test_identities_round_trip(issuer: Issuer, tpm: TPMInfo) -> None:
    ek = make_ek("ecc")
    identities = identities_of_ak_certificate(ak_certificate(issuer, tpm, ek.digest))
    assert identities.permanent_identifiers == (permanent_identifier_value(ek.digest),)
    assert identities.ek_urns == (ek.urn,)
    assert identities.hardware_serials == ()
    assert not identities.empty


def _certificate(*extensions: tuple[x509.ExtensionType, bool]) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone")]))
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    return builder.sign(key, hashes.SHA256())


def _other(value: bytes) -> x509.OtherName:
    return x509.OtherName(PERMANENT_IDENTIFIER_OID, value)


GOOD_VALUE = "good-identifier"
GOOD = _other(der.sequence(der.utf8_string(GOOD_VALUE)))

MALFORMED_PERMANENT_IDENTIFIERS = {
    "bare-utf8string": der.utf8_string("no sequence"),
    "empty-sequence": der.sequence(),
    "integer-inside": der.sequence(der.tlv(0x02, b"\x01")),
    "ia5string-inside": der.sequence(der.tlv(0x16, b"ascii")),
    "invalid-utf8": der.sequence(der.tlv(0x0C, b"\xff\xfe\xc3")),
    "truncated-inner": bytes([0x30, 0x02, 0x0C, 0x05]),
    "one-byte-inner": bytes([0x30, 0x01, 0x0C]),
    "inner-length-too-long": bytes([0x30, 0x03, 0x0C, 0x85, 0x01]),
    "inner-indefinite-length": bytes([0x30, 0x02, 0x0C, 0x80]),
    "empty-value": der.sequence(der.utf8_string("")),
    "octet-string-outer": der.tlv(0x04, der.utf8_string("x")),
    "oid-only": der.sequence(der.object_identifier(EK_DIGEST_ASSIGNER)),
}


@pytest.mark.parametrize(
    "value", MALFORMED_PERMANENT_IDENTIFIERS.values(), ids=MALFORMED_PERMANENT_IDENTIFIERS.keys()
)
def test_a_malformed_permanent_identifier_is_skipped(value: bytes) -> None:
    cert = _certificate(
        (x509.SubjectAlternativeName([_other(value), GOOD]), True),
    )
    identities = identities_of_ak_certificate(cert)
    assert identities.permanent_identifiers == (GOOD_VALUE,)


def test_other_other_names_and_uris_are_ignored() -> None:
    cert = _certificate(
        (
            x509.SubjectAlternativeName(
                [
                    x509.OtherName(
                        ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), der.utf8_string("upn")
                    ),
                    x509.UniformResourceIdentifier("https://example.com/not-an-ek"),
                    x509.UniformResourceIdentifier("URN:EK:SHA256:ABCD"),
                    x509.DNSName("device.example"),
                ]
            ),
            False,
        ),
    )
    identities = identities_of_ak_certificate(cert)
    assert identities.permanent_identifiers == ()
    assert identities.ek_urns == ("URN:EK:SHA256:ABCD",)


def test_a_certificate_without_a_san_has_no_identities() -> None:
    identities = identities_of_ak_certificate(_certificate())
    assert identities.empty


def test_a_directory_name_with_non_string_values_does_not_crash() -> None:
    """step-ca panicked on unchecked type assertions in directoryName values."""
    weird = x509.DirectoryName(
        x509.Name(
            [
                x509.NameAttribute(
                    NameOID.X500_UNIQUE_IDENTIFIER, b"\x00\x01", x509.name._ASN1Type.BitString
                ),
                x509.NameAttribute(TCG_AT_TPM_MANUFACTURER, "id:53544D20"),
            ]
        )
    )
    cert = _certificate((x509.SubjectAlternativeName([weird, GOOD]), True))
    assert identities_of_ak_certificate(cert).permanent_identifiers == (GOOD_VALUE,)
    info = TPMInfo.from_ek_certificate(cert)
    assert info is not None and info.manufacturer == "id:53544D20"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\x01\x02", id="not-a-sequence"),
        pytest.param(b"\x30\x03\x89\x01\x00", id="unknown-general-name-tag"),
        pytest.param(b"\x30\x05\x86\x03\xff\xfe\xfd", id="uri-not-ascii"),
        pytest.param(b"\x30\x04\xa0\x02\x06\x00", id="empty-other-name-oid"),
    ],
)
def test_an_unparseable_san_is_a_bad_request_not_a_crash(raw: bytes) -> None:
    cert = _certificate(
        (x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, raw), True)
    )
    try:
        identities = identities_of_ak_certificate(cert)
    except ProtocolError as exc:
        assert isinstance(exc, BadRequest)
    else:
        assert identities.permanent_identifiers == ()


def test_an_empty_eku_is_a_bad_request_not_a_crash() -> None:
    """step-ca CVE-2026-40097: an AK certificate with an empty EKU crashed the verifier."""
    cert = _certificate(
        (x509.UnrecognizedExtension(ExtensionOID.EXTENDED_KEY_USAGE, der.sequence()), False),
        (x509.SubjectAlternativeName([GOOD]), True),
    )
    with pytest.raises(BadRequest):
        identities_of_ak_certificate(cert)


# --- TPM attributes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("manufacturer", "model", "firmware", "expected"),
    [
        ("1398033696", "SW   TPM", "1.2", TPMInfo("id:53544D20", "SW   TPM", "id:00010002")),
        ("id:53544d20", "", "", TPMInfo("id:53544D20", "", "")),
        (
            "1229346816",
            " NPCT75x ",
            "7.2",
            TPMInfo("id:49465800", "NPCT75x", "id:00070002"),
        ),
        ("4294967296", "m", "1.2.3", TPMInfo("", "m", "")),
        ("STM", "m" * 100, "65536.0", TPMInfo("", "m" * 64, "")),
        ("-1", "", "a.b", TPMInfo("", "", "")),
        ("id:123456789ABCDEF01", "", "1.", TPMInfo("", "", "")),
    ],
)
def test_tpm_info_from_the_client_keeps_only_well_formed_values(
    manufacturer: str, model: str, firmware: str, expected: TPMInfo
) -> None:
    assert TPMInfo.from_client(manufacturer, model, firmware) == expected


def test_tpm_info_from_an_ek_certificate() -> None:
    vendor = make_vendor()
    cert = vendor.ek_certificate(make_ek("rsa").public_key, manufacturer="id:49465800")
    assert TPMInfo.from_ek_certificate(cert) == TPMInfo("id:49465800", "SW   TPM", "id:00010002")


def test_an_ek_certificate_without_tcg_attributes_gives_no_tpm_info() -> None:
    assert TPMInfo.from_ek_certificate(_certificate()) is None
    plain = _certificate((x509.SubjectAlternativeName([x509.DNSName("tpm.example")]), False))
    assert TPMInfo.from_ek_certificate(plain) is None


def test_tpm_info_of_an_unparseable_ek_certificate_san_is_none() -> None:
    cert = _certificate(
        (x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x01\x02"), True)
    )
    assert TPMInfo.from_ek_certificate(cert) is None
