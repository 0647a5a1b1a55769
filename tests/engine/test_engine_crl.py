"""engine.crl: revocation lists list what was revoked, why, and are signed by the issuer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from engine.crl import RevokedEntry, build_crl
from engine.keys import signature_hash_for
from engine.pipeline import Issuer
from engine.signer import SoftwareSigner

NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)


def make_issuer(key: CertificateIssuerPrivateKeyTypes) -> Issuer:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CRL Test CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(99)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, signature_hash_for(key))  # type: ignore[arg-type]
    )
    return Issuer(name="agent", certificate=cert, signer=SoftwareSigner(key))


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return make_issuer(ec.generate_private_key(ec.SECP256R1()))


def load(der: bytes) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(der)


def test_crl_lists_every_revoked_serial_with_its_date(issuer: Issuer) -> None:
    entries = [
        RevokedEntry(serial=0x1234, revoked_at=NOW - timedelta(hours=2)),
        RevokedEntry(serial=2**150 + 7, revoked_at=NOW - timedelta(minutes=5), reason_code=1),
    ]
    crl = load(build_crl(issuer, entries, now=NOW, number=1))
    assert len(crl) == 2
    for entry in entries:
        revoked = crl.get_revoked_certificate_by_serial_number(entry.serial)
        assert revoked is not None
        assert revoked.revocation_date_utc == entry.revoked_at


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (1, x509.ReasonFlags.key_compromise),
        (3, x509.ReasonFlags.affiliation_changed),
        (4, x509.ReasonFlags.superseded),
        (5, x509.ReasonFlags.cessation_of_operation),
        (6, x509.ReasonFlags.certificate_hold),
        (9, x509.ReasonFlags.privilege_withdrawn),
        (10, x509.ReasonFlags.aa_compromise),
    ],
)
def test_crl_entry_carries_the_reason_code(
    issuer: Issuer, code: int, reason: x509.ReasonFlags
) -> None:
    crl = load(build_crl(issuer, [RevokedEntry(5, NOW, code)], now=NOW, number=1))
    revoked = crl.get_revoked_certificate_by_serial_number(5)
    assert revoked is not None
    assert revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason is reason


def test_unspecified_reason_is_left_out_as_rfc5280_recommends(issuer: Issuer) -> None:
    crl = load(build_crl(issuer, [RevokedEntry(5, NOW, 0)], now=NOW, number=1))
    revoked = crl.get_revoked_certificate_by_serial_number(5)
    assert revoked is not None
    with pytest.raises(x509.ExtensionNotFound):
        revoked.extensions.get_extension_for_class(x509.CRLReason)


@pytest.mark.parametrize(
    "key",
    [ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate()],
    ids=["P-384", "Ed25519"],
)
def test_crl_is_signed_by_the_issuer(key: CertificateIssuerPrivateKeyTypes) -> None:
    issuer = make_issuer(key)
    crl = load(build_crl(issuer, [RevokedEntry(5, NOW)], now=NOW, number=1))
    assert crl.is_signature_valid(issuer.certificate.public_key())  # type: ignore[arg-type]
    assert crl.issuer == issuer.certificate.subject


def test_crl_is_not_valid_under_another_key(issuer: Issuer) -> None:
    crl = load(build_crl(issuer, [], now=NOW, number=1))
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert not crl.is_signature_valid(other)


def test_crl_validity_number_and_aki(issuer: Issuer) -> None:
    crl = load(build_crl(issuer, [], now=NOW, number=77, lifetime=timedelta(hours=6)))
    assert len(crl) == 0
    assert crl.last_update_utc == NOW
    assert crl.next_update_utc == NOW + timedelta(hours=6)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 77
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
