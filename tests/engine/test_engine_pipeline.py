"""engine.pipeline: the one signing pipeline (validators -> template -> modifiers -> validity).

Issuers are small self-made CAs built in each test with a SoftwareSigner, and
time and randomness come from FrozenClock and CountingRandom.
"""

from __future__ import annotations

import hashlib
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.csr import CSRInfo, parse_csr
from engine.errors import BadRequest, Forbidden
from engine.extensions import PROVISIONER_OID, ProvisionerRef
from engine.keys import signature_hash_for
from engine.names import SAN
from engine.pipeline import (
    Issuer,
    SignRequest,
    issue_certificate,
    random_serial,
    renew_certificate,
)
from engine.policy import (
    CommonNameIs,
    DurationLimits,
    SANsAre,
    SetSubjectAndSANs,
    SignPolicy,
)
from engine.ports import CountingRandom, FrozenClock
from engine.signer import SoftwareSigner
from engine.template import CertificateTemplate

NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
REF = ProvisionerRef(type="JWK", name="admin")


# --- helpers -----------------------------------------------------------------------


def make_issuer(
    key: CertificateIssuerPrivateKeyTypes | None = None,
    *,
    name: str = "agent",
    not_before: datetime = NOW - timedelta(days=1),
    lifetime: timedelta = timedelta(days=365),
    common_name: str = "Test Agent CA",
) -> Issuer:
    """A self-signed CA certificate for *key*, wrapped as an Issuer."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(4242)
        .not_valid_before(not_before)
        .not_valid_after(not_before + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, signature_hash_for(key))  # type: ignore[arg-type]
    )
    return Issuer(name=name, certificate=cert, signer=SoftwareSigner(key))


def make_csr(
    common_name: str | None = "svc.example.com",
    sans: list[str] | None = None,
    key: CertificateIssuerPrivateKeyTypes | None = None,
) -> CSRInfo:
    key = key or ec.generate_private_key(ec.SECP256R1())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # allows an over-long CN for one test
        attrs_ = (
            [x509.NameAttribute(NameOID.COMMON_NAME, common_name, _validate=False)]
            if common_name
            else []
        )
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs_))
    names = [SAN.parse(s).to_general_name() for s in (sans or [])]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, signature_hash_for(key))  # type: ignore[arg-type]
    return parse_csr(csr.public_bytes(Encoding.DER))


def make_policy(**changes: Any) -> SignPolicy:
    return SignPolicy(**{"provisioner": REF, "issuer": "agent", **changes})


def issue(
    csr: CSRInfo | None = None,
    policy: SignPolicy | None = None,
    issuer: Issuer | None = None,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    now: datetime = NOW,
    seed: bytes = b"devid",
) -> x509.Certificate:
    issued = issue_certificate(
        SignRequest(
            csr=csr or make_csr(sans=["svc.example.com"]),
            not_before=not_before,
            not_after=not_after,
        ),
        policy or make_policy(),
        issuer or make_issuer(),
        FrozenClock(now),
        CountingRandom(seed),
    )
    return issued.certificate


class FixedRandom:
    def __init__(self, byte: int) -> None:
        self.byte = byte

    def bytes(self, n: int) -> bytes:
        return bytes([self.byte]) * n


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return make_issuer()


# --- serials -------------------------------------------------------------------------


def test_serials_are_positive_distinct_and_carry_more_than_64_random_bits() -> None:
    random = CountingRandom(b"serials")
    serials = [random_serial(random) for _ in range(200)]
    assert len(set(serials)) == 200
    assert all(s > 0 for s in serials)
    assert all(s.bit_length() <= 159 for s in serials)  # fits 20 DER octets, sign bit clear
    assert sum(s.bit_length() > 64 for s in serials) >= 199


def test_serial_clears_the_sign_bit_of_all_ones_randomness() -> None:
    assert random_serial(FixedRandom(0xFF)) == 2**159 - 1


def test_serial_is_never_zero() -> None:
    assert random_serial(FixedRandom(0x00)) == 1


def test_certificate_serial_is_drawn_from_the_random_port(issuer: Issuer) -> None:
    a = issue(issuer=issuer, seed=b"one")
    b = issue(issuer=issuer, seed=b"two")
    assert a.serial_number == random_serial(CountingRandom(b"one"))
    assert a.serial_number != b.serial_number


# --- what every leaf says ----------------------------------------------------------------


def test_subject_key_identifier_is_sha1_of_the_leaf_public_key(issuer: Issuer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue(make_csr(sans=["svc.example.com"], key=key), issuer=issuer)
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    assert ski.value.digest == hashlib.sha1(point).digest()
    assert not ski.critical


def test_authority_key_identifier_is_the_issuers_subject_key_identifier(issuer: Issuer) -> None:
    cert = issue(issuer=issuer)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest


def test_leaf_is_not_a_ca_and_says_so_critically(issuer: Issuer) -> None:
    ext = issue(issuer=issuer).extensions.get_extension_for_class(x509.BasicConstraints)
    assert ext.critical
    assert ext.value.ca is False


def test_leaf_key_usage_is_critical_and_excludes_certificate_signing(issuer: Issuer) -> None:
    ext = issue(issuer=issuer).extensions.get_extension_for_class(x509.KeyUsage)
    assert ext.critical
    assert ext.value.digital_signature
    assert not ext.value.key_cert_sign
    assert not ext.value.crl_sign


def test_leaf_is_for_tls_server_and_client_by_default(issuer: Issuer) -> None:
    eku = issue(issuer=issuer).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def test_leaf_carries_the_csr_names_and_issuer_name(issuer: Issuer) -> None:
    cert = issue(make_csr("svc.example.com", ["svc.example.com", "10.0.0.1"]), issuer=issuer)
    assert cert.subject.rfc4514_string() == "CN=svc.example.com"
    assert cert.issuer == issuer.certificate.subject
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not sans.critical
    assert [SAN.from_general_name(n) for n in sans.value] == [
        SAN.parse("svc.example.com"),
        SAN.parse("10.0.0.1"),
    ]


def test_provisioner_extension_round_trips_to_provisioner_ref(issuer: Issuer) -> None:
    ref = ProvisionerRef(type="X5C", name="fleet-ä")  # non-ASCII survives UTF8String
    cert = issue(issuer=issuer, policy=make_policy(provisioner=ref))
    ext = cert.extensions.get_extension_for_oid(PROVISIONER_OID)
    assert not ext.critical
    assert ProvisionerRef.from_certificate(cert) == ref


def test_certificate_without_provisioner_extension_has_no_provisioner_ref(issuer: Issuer) -> None:
    assert ProvisionerRef.from_certificate(issuer.certificate) is None


def test_san_only_certificate_has_an_empty_subject_and_a_critical_san(issuer: Issuer) -> None:
    cert = issue(make_csr(common_name=None, sans=["svc.example.com"]), issuer=issuer)
    assert len(cert.subject) == 0
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


def test_certificate_without_subject_or_sans_is_refused(issuer: Issuer) -> None:
    with pytest.raises(Forbidden, match="neither a subject nor"):
        issue(make_csr(common_name=None, sans=[]), issuer=issuer)


@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")
def test_common_name_longer_than_64_characters_is_a_bad_request(issuer: Issuer) -> None:
    # X.520 caps commonName at 64; this must be a 400, not a crash in the builder.
    csr = make_csr(common_name="a" * 65, sans=["svc.example.com"])
    with pytest.raises(BadRequest, match="common name"):
        issue(csr, issuer=issuer)


def test_policy_for_another_issuer_is_refused(issuer: Issuer) -> None:
    with pytest.raises(Forbidden, match="issuer"):
        issue(issuer=issuer, policy=SignPolicy(provisioner=REF, issuer="account"))


def test_issued_certificate_records_provisioner_evidence_and_chain(issuer: Issuer) -> None:
    policy = make_policy(evidence={"method": "test"})
    issued = issue_certificate(
        SignRequest(csr=make_csr(sans=["svc.example.com"])),
        policy,
        issuer,
        FrozenClock(NOW),
        CountingRandom(),
    )
    assert issued.provisioner == REF
    assert issued.evidence == {"method": "test"}
    assert issued.chain == (issued.certificate, issuer.certificate)
    assert issued.der == issued.certificate.public_bytes(Encoding.DER)
    assert issued.serial_hex == format(issued.certificate.serial_number, "x")


# --- issuer key types -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_key", "hash_name"),
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), "sha256"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "sha384"),
        (ed25519.Ed25519PrivateKey.generate, None),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "sha256"),
    ],
    ids=["P-256", "P-384", "Ed25519", "RSA-2048"],
)
def test_each_issuer_key_type_signs_a_leaf_that_verifies(
    make_key: Any, hash_name: str | None
) -> None:
    issuer = make_issuer(make_key())
    cert = issue(issuer=issuer)
    cert.verify_directly_issued_by(issuer.certificate)
    algorithm = cert.signature_hash_algorithm
    assert (algorithm.name if algorithm else None) == hash_name


def test_leaf_from_one_issuer_does_not_verify_against_another(issuer: Issuer) -> None:
    impostor = make_issuer(common_name=issuer.certificate.subject.rfc4514_string()[3:])
    cert = issue(issuer=impostor)
    with pytest.raises(Exception):  # noqa: B017 - cryptography raises InvalidSignature
        cert.verify_directly_issued_by(issuer.certificate)


# --- validity --------------------------------------------------------------------------


def test_default_duration_and_backdate_apply_when_nothing_is_requested(issuer: Issuer) -> None:
    policy = make_policy(
        durations=DurationLimits(default=timedelta(hours=8)), backdate=timedelta(minutes=2)
    )
    cert = issue(policy=policy, issuer=issuer)
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=2)
    assert cert.not_valid_after_utc == NOW + timedelta(hours=8)


def test_requested_not_before_is_used_exactly_without_backdate(issuer: Issuer) -> None:
    start = NOW + timedelta(minutes=4)  # within the default 5m skew
    policy = make_policy(durations=DurationLimits(default=timedelta(hours=8)))
    cert = issue(policy=policy, issuer=issuer, not_before=start)
    assert cert.not_valid_before_utc == start
    assert cert.not_valid_after_utc == start + timedelta(hours=8)


def test_requested_not_after_within_limits_is_used(issuer: Issuer) -> None:
    cert = issue(issuer=issuer, not_after=NOW + timedelta(hours=3))
    assert cert.not_valid_after_utc == NOW + timedelta(hours=3)


def test_duration_shorter_than_the_minimum_is_forbidden(issuer: Issuer) -> None:
    policy = make_policy(durations=DurationLimits(minimum=timedelta(minutes=5)))
    with pytest.raises(Forbidden, match="shorter than the minimum"):
        issue(policy=policy, issuer=issuer, not_after=NOW + timedelta(minutes=4))


def test_duration_longer_than_the_maximum_is_forbidden(issuer: Issuer) -> None:
    policy = make_policy(durations=DurationLimits(maximum=timedelta(hours=24)))
    with pytest.raises(Forbidden, match="longer than the maximum"):
        issue(policy=policy, issuer=issuer, not_after=NOW + timedelta(hours=25))


def test_maximum_counts_from_requested_not_before(issuer: Issuer) -> None:
    policy = make_policy(durations=DurationLimits(maximum=timedelta(hours=24)))
    start = NOW - timedelta(minutes=4)
    with pytest.raises(Forbidden, match="longer than the maximum"):
        issue(
            policy=policy,
            issuer=issuer,
            not_before=start,
            not_after=NOW + timedelta(hours=23, minutes=57),
        )


def test_not_after_beyond_the_issuers_expiry_is_forbidden() -> None:
    short_lived = make_issuer(
        not_before=NOW - timedelta(days=1), lifetime=timedelta(days=1, hours=2)
    )
    policy = make_policy(
        durations=DurationLimits(default=timedelta(hours=1), maximum=timedelta(days=30))
    )
    with pytest.raises(Forbidden, match="issuing CA"):
        issue(policy=policy, issuer=short_lived, not_after=NOW + timedelta(hours=3))


def test_default_duration_beyond_the_issuers_expiry_is_forbidden() -> None:
    short_lived = make_issuer(
        not_before=NOW - timedelta(days=1), lifetime=timedelta(days=1, hours=2)
    )
    with pytest.raises(Forbidden, match="issuing CA"):
        issue(issuer=short_lived)  # default 24h > the 2h the CA has left


def test_not_before_is_raised_to_the_issuers_not_before() -> None:
    young = make_issuer(not_before=NOW - timedelta(seconds=30))
    cert = issue(issuer=young)  # backdate of 1m would predate the CA
    assert cert.not_valid_before_utc == NOW - timedelta(seconds=30)


def test_not_after_limit_clamps_the_default(issuer: Issuer) -> None:
    policy = make_policy(not_after_limit=NOW + timedelta(hours=2))
    cert = issue(policy=policy, issuer=issuer)
    assert cert.not_valid_after_utc == NOW + timedelta(hours=2)


def test_requested_not_after_beyond_the_limit_is_forbidden(issuer: Issuer) -> None:
    policy = make_policy(not_after_limit=NOW + timedelta(hours=2))
    with pytest.raises(Forbidden, match="later than the credential allows"):
        issue(policy=policy, issuer=issuer, not_after=NOW + timedelta(hours=3))


def test_not_after_before_not_before_is_a_bad_request(issuer: Issuer) -> None:
    with pytest.raises(BadRequest, match="later than notBefore"):
        issue(
            issuer=issuer,
            not_before=NOW + timedelta(minutes=4),
            not_after=NOW + timedelta(minutes=2),
        )


def test_not_after_in_the_past_is_a_bad_request(issuer: Issuer) -> None:
    with pytest.raises(BadRequest, match="notAfter is in the past"):
        issue(
            issuer=issuer,
            not_before=NOW - timedelta(minutes=4),
            not_after=NOW - timedelta(minutes=1),
        )


# --- validators and modifiers ------------------------------------------------------------


@attrs.frozen
class Recorder:
    """A validator and modifier that notes when it runs and what it saw."""

    label: str
    log: list[tuple[str, Any]]
    sans: tuple[SAN, ...] | None = None

    def validate(self, csr: CSRInfo) -> None:
        self.log.append((self.label, csr.common_name))

    def modify(self, template: CertificateTemplate) -> CertificateTemplate:
        self.log.append((self.label, tuple(template.sans)))
        return template if self.sans is None else template.evolve(sans=self.sans)


@attrs.frozen
class Refuse:
    def validate(self, csr: CSRInfo) -> None:
        raise Forbidden("refused by test validator")


def test_validators_then_modifiers_run_in_order_each_seeing_the_last_result(
    issuer: Issuer,
) -> None:
    log: list[tuple[str, Any]] = []
    first_sans = (SAN.parse("one.example.com"),)
    final_sans = (SAN.parse("two.example.com"),)
    policy = make_policy(
        validators=(Recorder("v1", log), Recorder("v2", log)),
        modifiers=(Recorder("m1", log, first_sans), Recorder("m2", log, final_sans)),
    )
    cert = issue(make_csr("svc.example.com", ["svc.example.com"]), policy, issuer)
    assert log == [
        ("v1", "svc.example.com"),
        ("v2", "svc.example.com"),
        ("m1", (SAN.parse("svc.example.com"),)),
        ("m2", first_sans),
    ]
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [SAN.from_general_name(n) for n in names] == list(final_sans)


def test_a_refusing_validator_stops_the_pipeline_before_anything_else(issuer: Issuer) -> None:
    log: list[tuple[str, Any]] = []
    policy = make_policy(
        validators=(Recorder("v1", log), Refuse(), Recorder("v3", log)),
        modifiers=(Recorder("m1", log),),
    )
    with pytest.raises(Forbidden, match="test validator"):
        issue(policy=policy, issuer=issuer)
    assert log == [("v1", "svc.example.com")]


def test_authorized_subject_and_sans_replace_what_the_csr_asked_for(issuer: Issuer) -> None:
    sans = (SAN.parse("a.example.com"), SAN.parse("10.9.8.7"))
    policy = make_policy(modifiers=(SetSubjectAndSANs("a.example.com", sans),))
    cert = issue(make_csr(common_name=None, sans=["svc.example.com"]), policy, issuer)
    assert cert.subject.rfc4514_string() == "CN=a.example.com"
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [SAN.from_general_name(n) for n in names] == list(sans)


def test_name_validators_compare_csr_names_with_the_authorized_ones(issuer: Issuer) -> None:
    policy = make_policy(
        validators=(
            CommonNameIs("svc.example.com"),
            SANsAre(frozenset({SAN.parse("svc.example.com")})),
        )
    )
    issue(make_csr("svc.example.com", ["svc.example.com"]), policy, issuer)
    with pytest.raises(Forbidden, match="common name"):
        issue(make_csr("evil.example.com", ["svc.example.com"]), policy, issuer)
    with pytest.raises(Forbidden, match=r"not authorized: evil\.example\.com"):
        issue(make_csr("svc.example.com", ["svc.example.com", "evil.example.com"]), policy, issuer)
    with pytest.raises(Forbidden, match=r"missing: svc\.example\.com"):
        issue(make_csr("svc.example.com", []), policy, issuer)


# --- renewal ----------------------------------------------------------------------------


def _extensions(cert: x509.Certificate) -> dict[x509.ObjectIdentifier, tuple[bool, Any]]:
    return {ext.oid: (ext.critical, ext.value) for ext in cert.extensions}


def test_renewal_keeps_subject_sans_key_extensions_and_lifetime_with_a_new_serial(
    issuer: Issuer,
) -> None:
    policy = make_policy(durations=DurationLimits(default=timedelta(hours=6)))
    current = issue(make_csr("svc.example.com", ["svc.example.com", "10.0.0.1"]), policy, issuer)
    later = NOW + timedelta(hours=5)
    renewed = renew_certificate(
        current, issuer, FrozenClock(later), CountingRandom(b"renew")
    ).certificate
    renewed.verify_directly_issued_by(issuer.certificate)
    assert renewed.serial_number != current.serial_number
    assert renewed.subject == current.subject
    assert renewed.public_key() == current.public_key()
    assert _extensions(renewed) == _extensions(current)
    lifetime = current.not_valid_after_utc - current.not_valid_before_utc
    assert renewed.not_valid_after_utc - renewed.not_valid_before_utc == lifetime
    assert renewed.not_valid_before_utc == later - timedelta(minutes=1)


def test_renewal_records_the_serial_it_replaces_and_its_provisioner(issuer: Issuer) -> None:
    current = issue(issuer=issuer)
    renewed = renew_certificate(current, issuer, FrozenClock(NOW), CountingRandom(b"r"))
    assert renewed.provisioner == REF
    assert renewed.evidence["renewed_from"] == format(current.serial_number, "x")


def test_renewal_of_a_certificate_from_another_ca_is_forbidden(issuer: Issuer) -> None:
    other = make_issuer(common_name="Other CA")
    current = issue(issuer=other)
    with pytest.raises(Forbidden, match="not issued by this CA"):
        renew_certificate(current, issuer, FrozenClock(NOW), CountingRandom())


def test_renewal_of_a_certificate_without_a_provisioner_is_forbidden(issuer: Issuer) -> None:
    with pytest.raises(Forbidden, match="provisioner"):
        renew_certificate(issuer.certificate, issuer, FrozenClock(NOW), CountingRandom())


def test_renewal_that_would_outlive_the_issuer_is_forbidden() -> None:
    issuer = make_issuer(not_before=NOW - timedelta(days=1), lifetime=timedelta(days=2))
    current = issue(issuer=issuer)
    near_end = NOW + timedelta(hours=12)
    with pytest.raises(Forbidden, match="outlive"):
        renew_certificate(current, issuer, FrozenClock(near_end), CountingRandom())


def test_issuer_without_ski_falls_back_to_the_key_for_aki() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "No SKI CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    issuer = Issuer(name="agent", certificate=cert, signer=SoftwareSigner(key))
    leaf = issue(issuer=issuer)
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
