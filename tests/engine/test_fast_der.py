"""The pre-encoded DER leaf (engine.fastcert) is byte for byte what CertificateBuilder makes.

For each issuer key type, many leaves are encoded both ways from the same
inputs: the TBSCertificate must be identical; for Ed25519 and RSA PKCS#1 v1.5
(deterministic signatures) the whole certificate too; for ECDSA (randomized)
both signatures must verify. Anything the fast path does not encode exactly
(or that the builder refuses) must fall back to the builder.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine import der as der_module
from engine import fastcert
from engine.errors import Forbidden
from engine.extensions import ProvisionerRef
from engine.keys import signature_hash_for
from engine.names import SAN, SANKind
from engine.pipeline import (
    IssuedCertificate,
    Issuer,
    PreparedCertificate,
    build_certificate,
    builder_certificate,
    builder_renewal,
    renew_certificate,
    sign_certificate,
)
from engine.policy import SignPolicy
from engine.ports import FrozenClock, Random
from engine.signer import SoftwareSigner
from engine.template import KEY_USAGES, CertificateTemplate, subject_with_common_name

NOW = datetime(2026, 11, 28, 12, 30, 45, 123456, tzinfo=UTC)

ISSUER_KEYS = {
    "P-256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "P-384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "Ed25519": ed25519.Ed25519PrivateKey.generate,
    "RSA-2048": lambda: rsa.generate_private_key(65537, 2048),
}
DETERMINISTIC = {"Ed25519", "RSA-2048"}

_SUBJECT_KEYS: dict[str, Any] = {}


def subject_key(kind: str) -> Any:
    """Subject public keys of every type a CSR may carry (made once: RSA is slow)."""
    if kind not in _SUBJECT_KEYS:
        _SUBJECT_KEYS[kind] = {
            "P-256": lambda: ec.generate_private_key(ec.SECP256R1()),
            "P-384": lambda: ec.generate_private_key(ec.SECP384R1()),
            "P-521": lambda: ec.generate_private_key(ec.SECP521R1()),
            "Ed25519": ed25519.Ed25519PrivateKey.generate,
            "RSA-2048": lambda: rsa.generate_private_key(65537, 2048),
            "RSA-3072": lambda: rsa.generate_private_key(3, 3072),
        }[kind]().public_key()
    return _SUBJECT_KEYS[kind]


def make_issuer(key: Any, *, with_ski: bool = True, name: x509.Name | None = None) -> Issuer:
    subject = name or x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Fast DER Test"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Fast DER Test Agent CA"),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(77)
        .not_valid_before(NOW - timedelta(days=30))
        .not_valid_after(NOW + timedelta(days=365 * 40))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    )
    if with_ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    cert = builder.sign(key, signature_hash_for(key))
    return Issuer(name="agent", certificate=cert, signer=SoftwareSigner(key))


@pytest.fixture(scope="module", params=sorted(ISSUER_KEYS))
def issuer_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def issuer(issuer_kind: str) -> Issuer:
    return make_issuer(ISSUER_KEYS[issuer_kind]())


def reference(issuer: Issuer, *args: Any) -> x509.Certificate:
    template, public_key, serial, not_before, not_after, provisioner = args
    return builder_certificate(
        template,
        public_key,
        issuer.certificate,
        issuer.signer,
        issuer.authority_key_identifier,
        serial,
        not_before,
        not_after,
        provisioner,
    )


def assert_same(issuer: Issuer, issuer_kind: str, *args: Any) -> bytes:
    """Encode both ways; compare as the module docstring says; return the fast DER."""
    encoder = issuer.leaf_encoder
    assert encoder is not None
    template, public_key, serial, not_before, not_after, provisioner = args
    tbs = encoder.tbs(template, public_key, serial, not_before, not_after, provisioner)
    assert tbs is not None, "the fast path declined inputs it should encode"
    expected = reference(issuer, *args)
    assert tbs == expected.tbs_certificate_bytes
    fast_der = encoder.certificate(tbs)
    fast = x509.load_der_x509_certificate(fast_der)
    if issuer_kind in DETERMINISTIC:
        assert fast_der == expected.public_bytes(Encoding.DER)
    else:
        assert fast.tbs_certificate_bytes == expected.tbs_certificate_bytes
        assert fast.signature_algorithm_oid == expected.signature_algorithm_oid
        # Only the signature value differs; it re-encodes to the same DER.
        assert fast.public_bytes(Encoding.DER) == fast_der
    fast.verify_directly_issued_by(issuer.certificate)
    expected.verify_directly_issued_by(issuer.certificate)
    return fast_der


def random_sans(rng: random.Random) -> tuple[SAN, ...]:
    out: list[SAN] = []
    for _ in range(rng.randint(0, 6)):
        kind = rng.choice(list(SANKind))
        n = rng.randint(0, 10**6)
        if kind is SANKind.DNS:
            label = "x" * rng.randint(1, 63)
            out.append(SAN.parse(f"{label}.d{n}.example.com"))
        elif kind is SANKind.IP:
            if rng.random() < 0.5:
                out.append(SAN.parse(f"10.{n % 256}.{n // 256 % 256}.{rng.randint(0, 255)}"))
            else:
                out.append(SAN.parse(f"2001:db8::{n % 65536:x}:{rng.randint(0, 65535):x}"))
        elif kind is SANKind.EMAIL:
            out.append(SAN.parse(f"user{n}@example.org"))
        else:
            out.append(SAN.parse(f"spiffe://example.org/device/{n}"))
    return tuple(out)


def random_template(rng: random.Random) -> CertificateTemplate:
    sans = random_sans(rng)
    common_name = rng.choice([None, "device", f"dev-{rng.randint(0, 10**9)}.example.com", "é"])
    if common_name is None and not sans:
        sans = (SAN.parse("only-a-san.example.com"),)
    usages = frozenset(u for u in KEY_USAGES if rng.random() < 0.4) or frozenset(
        {"digital_signature"}
    )
    eku = rng.choice(
        [
            (),
            (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
            (ExtendedKeyUsageOID.CLIENT_AUTH,),
            (x509.ObjectIdentifier("2.23.133.8.3"),),
        ]
    )
    return CertificateTemplate(
        subject=subject_with_common_name(common_name),
        sans=sans,
        key_usage=usages,
        extended_key_usage=eku,
    )


def test_every_issuer_key_type_gets_an_encoder(issuer: Issuer) -> None:
    assert issuer.leaf_encoder is not None


def test_issuer_without_ski_still_matches(issuer_kind: str) -> None:
    issuer = make_issuer(ISSUER_KEYS[issuer_kind](), with_ski=False)
    template = random_template(random.Random(1))
    assert_same(
        issuer,
        issuer_kind,
        template,
        subject_key("P-256"),
        123456789,
        NOW,
        NOW + timedelta(hours=24),
        ProvisionerRef("JWK", "admin"),
    )


@pytest.mark.parametrize("seed", range(40))
def test_random_leaves_are_identical(issuer: Issuer, issuer_kind: str, seed: int) -> None:
    rng = random.Random(f"{issuer_kind}-{seed}")
    template = random_template(rng)
    key = subject_key(rng.choice(["P-256", "P-384", "P-521", "Ed25519", "RSA-2048", "RSA-3072"]))
    # Serials of every length the builder accepts (1 to 159 bits), leading zero bytes too.
    serial = rng.getrandbits(rng.randint(1, 159)) or 1
    not_before = NOW + timedelta(
        seconds=rng.randint(-(10**8), 10**8), microseconds=rng.randint(0, 999999)
    )
    not_after = not_before + timedelta(seconds=rng.randint(1, 10**9))
    provisioner = ProvisionerRef(rng.choice(["JWK", "X5C", "ACME"]), f"p{rng.randint(0, 99)}é")
    assert_same(issuer, issuer_kind, template, key, serial, not_before, not_after, provisioner)


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [
        # UTCTime / GeneralizedTime boundary (the builder switches in 2050).
        (datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2050, 1, 1, tzinfo=UTC)),
        (datetime(1950, 1, 1, tzinfo=UTC), datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        (datetime(2000, 2, 29, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        # Another time zone: both convert to UTC.
        (
            datetime(2030, 6, 1, 1, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            datetime(2030, 6, 2, tzinfo=timezone(timedelta(hours=-8))),
        ),
        # Naive datetimes are taken as UTC by both, also beside an aware one.
        (datetime(2030, 6, 1), datetime(2031, 6, 1)),
        (datetime(2030, 6, 1, 12), datetime(2030, 6, 1, 14, tzinfo=timezone(timedelta(hours=2)))),
        # Equal dates are accepted by the builder.
        (datetime(2030, 6, 1, tzinfo=UTC), datetime(2030, 6, 1, tzinfo=UTC)),
    ],
)
def test_validity_encodings(
    issuer: Issuer, issuer_kind: str, not_before: datetime, not_after: datetime
) -> None:
    template = random_template(random.Random(7))
    assert_same(
        issuer,
        issuer_kind,
        template,
        subject_key("P-256"),
        2**158 + 5,
        not_before,
        not_after,
        ProvisionerRef("JWK", "admin"),
    )


def test_empty_subject_makes_the_names_critical(issuer: Issuer, issuer_kind: str) -> None:
    template = CertificateTemplate(
        subject=x509.Name([]), sans=(SAN.parse("svc.example.com"), SAN.parse("192.0.2.1"))
    )
    der = assert_same(
        issuer,
        issuer_kind,
        template,
        subject_key("Ed25519"),
        1,
        NOW,
        NOW + timedelta(days=1),
        ProvisionerRef("JWK", "admin"),
    )
    cert = x509.load_der_x509_certificate(der)
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


def test_extra_extensions_and_general_names(issuer: Issuer, issuer_kind: str) -> None:
    template = CertificateTemplate(
        subject=x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
                x509.NameAttribute(NameOID.COMMON_NAME, "device 1"),
            ]
        ),
        sans=(SAN.parse("a.example.com"),),
        extra_general_names=(
            x509.OtherName(x509.ObjectIdentifier("1.3.6.1.5.5.7.8.3"), b"\x30\x03\x0c\x01\x41"),
            x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dir")])),
        ),
        extra_extensions=(
            x509.Extension(
                x509.ObjectIdentifier("1.2.3.4.5"),
                True,
                x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00"),
            ),
            x509.Extension(
                x509.oid.ExtensionOID.CERTIFICATE_POLICIES,
                False,
                x509.CertificatePolicies(
                    [x509.PolicyInformation(x509.ObjectIdentifier("2.23.140.1.2.1"), None)]
                ),
            ),
        ),
    )
    assert_same(
        issuer,
        issuer_kind,
        template,
        subject_key("RSA-2048"),
        99,
        NOW,
        NOW + timedelta(days=1),
        ProvisionerRef("attestation", "tpm"),
    )


def test_sign_certificate_uses_the_fast_path(issuer: Issuer, issuer_kind: str) -> None:
    template = random_template(random.Random(3))
    key = subject_key("P-256")
    provisioner = ProvisionerRef("JWK", "admin")
    calls = []
    encoder = issuer.leaf_encoder
    assert encoder is not None
    original = encoder.certificate

    def spy(tbs: bytes) -> bytes:
        calls.append(tbs)
        return original(tbs)

    encoder.certificate = spy  # type: ignore[method-assign]
    try:
        cert, der = sign_certificate(
            template, key, issuer, 424242, NOW, NOW + timedelta(days=2), provisioner
        )
    finally:
        del encoder.certificate
    assert len(calls) == 1
    assert cert is None  # the fast path does not parse its own output back
    loaded = x509.load_der_x509_certificate(der)
    expected = reference(issuer, template, key, 424242, NOW, NOW + timedelta(days=2), provisioner)
    assert loaded.tbs_certificate_bytes == expected.tbs_certificate_bytes


class SeededRandom(Random):
    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def bytes(self, n: int) -> bytes:
        return self._rng.randbytes(n)


@pytest.mark.parametrize("seed", range(12))
def test_issued_facts_are_those_of_the_certificate(
    issuer: Issuer, issuer_kind: str, seed: int
) -> None:
    """The pipeline hands the store its own serial, validity, subject and names instead of
    parsing the new certificate back; each must be what the certificate says."""
    rng = random.Random(f"facts-{issuer_kind}-{seed}")
    template = random_template(rng)
    not_before = NOW + timedelta(
        seconds=rng.randint(-(10**6), 10**6), microseconds=rng.randint(0, 999999)
    )
    if seed % 3 == 0:
        not_before = not_before.replace(tzinfo=None)  # naive: UTC, as the builder reads it
    elif seed % 3 == 1:
        not_before = not_before.astimezone(timezone(timedelta(hours=-7)))
    prepared = PreparedCertificate(
        template=template,
        public_key=subject_key(rng.choice(["P-256", "Ed25519", "RSA-2048"])),
        issuer=issuer,
        not_before=not_before,
        not_after=NOW + timedelta(days=rng.randint(2, 900), seconds=rng.randint(0, 86399)),
        policy=SignPolicy(provisioner=ProvisionerRef("JWK", "admin"), issuer=issuer.name),
    )
    issued = prepared.sign(SeededRandom(seed))
    parsed = IssuedCertificate(
        der=issued.der,
        issuer=issuer,
        provisioner=issued.provisioner,
        certificate=x509.load_der_x509_certificate(issued.der),
    )
    assert issued.certificate.public_bytes(Encoding.DER) == issued.der
    assert issued.serial == parsed.serial and issued.serial_hex == parsed.serial_hex
    assert issued.not_before == parsed.not_before
    assert issued.not_after == parsed.not_after
    assert issued.subject_text == parsed.subject_text
    assert issued.sans == parsed.sans and issued.san_texts == parsed.san_texts
    assert issued.pem == parsed.certificate.public_bytes(Encoding.PEM).decode()
    issued.certificate.verify_directly_issued_by(issuer.certificate)


# --- what the fast path declines (the builder decides, with its own errors) -----------


def test_duplicate_extension_falls_back_to_the_builders_error(issuer: Issuer) -> None:
    template = CertificateTemplate(
        subject=subject_with_common_name("dup"),
        extra_extensions=(
            x509.Extension(
                x509.oid.ExtensionOID.BASIC_CONSTRAINTS,
                True,
                x509.BasicConstraints(ca=True, path_length=None),
            ),
        ),
    )
    encoder = issuer.leaf_encoder
    assert encoder is not None
    provisioner = ProvisionerRef("JWK", "admin")
    key = subject_key("P-256")
    assert encoder.tbs(template, key, 5, NOW, NOW + timedelta(days=1), provisioner) is None
    with pytest.raises(ValueError, match="already been set"):
        build_certificate(template, key, issuer, 5, NOW, NOW + timedelta(days=1), provisioner)


@pytest.mark.parametrize("serial", [0, -1, 2**159])
def test_serials_the_builder_refuses_fall_back(issuer: Issuer, serial: int) -> None:
    template = random_template(random.Random(5))
    encoder = issuer.leaf_encoder
    assert encoder is not None
    provisioner = ProvisionerRef("JWK", "admin")
    key = subject_key("P-256")
    assert encoder.tbs(template, key, serial, NOW, NOW + timedelta(days=1), provisioner) is None
    with pytest.raises(ValueError):
        build_certificate(template, key, issuer, serial, NOW, NOW + timedelta(days=1), provisioner)


def test_dates_the_builder_refuses_fall_back(issuer: Issuer) -> None:
    template = random_template(random.Random(6))
    encoder = issuer.leaf_encoder
    assert encoder is not None
    provisioner = ProvisionerRef("JWK", "admin")
    key = subject_key("P-256")
    early = datetime(1949, 12, 31, tzinfo=UTC)
    assert encoder.tbs(template, key, 5, early, NOW, provisioner) is None
    with pytest.raises(ValueError):
        build_certificate(template, key, issuer, 5, early, NOW, provisioner)
    backwards = (NOW, NOW - timedelta(seconds=1))
    assert encoder.tbs(template, key, 5, *backwards, provisioner) is None
    with pytest.raises(ValueError):
        build_certificate(template, key, issuer, 5, *backwards, provisioner)


def test_non_ascii_names_fall_back_to_the_builders_error(issuer: Issuer) -> None:
    template = CertificateTemplate(
        subject=subject_with_common_name("x"), sans=(SAN(SANKind.DNS, "bücher.example"),)
    )
    encoder = issuer.leaf_encoder
    assert encoder is not None
    provisioner = ProvisionerRef("JWK", "admin")
    key = subject_key("P-256")
    assert encoder.tbs(template, key, 5, NOW, NOW + timedelta(days=1), provisioner) is None
    with pytest.raises(ValueError):
        build_certificate(template, key, issuer, 5, NOW, NOW + timedelta(days=1), provisioner)


def test_no_identity_is_refused_before_signing(issuer: Issuer) -> None:
    template = CertificateTemplate(subject=x509.Name([]))
    with pytest.raises(Forbidden):
        build_certificate(
            template,
            subject_key("P-256"),
            issuer,
            5,
            NOW,
            NOW + timedelta(days=1),
            ProvisionerRef("JWK", "admin"),
        )


def test_an_issuer_whose_self_check_fails_uses_the_builder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If the encoder ever disagreed with the builder here, the issuer keeps the builder."""
    real_tbs = fastcert.LeafEncoder.tbs

    def off_by_one(self: fastcert.LeafEncoder, *args: Any) -> bytes | None:
        tbs = real_tbs(self, *args)
        return None if tbs is None else tbs[:-1] + bytes([tbs[-1] ^ 1])

    monkeypatch.setattr(fastcert.LeafEncoder, "tbs", off_by_one)
    issuer = make_issuer(ec.generate_private_key(ec.SECP256R1()))
    assert issuer.leaf_encoder is None
    template = random_template(random.Random(8))
    cert, der = sign_certificate(
        template,
        subject_key("P-256"),
        issuer,
        77,
        NOW,
        NOW + timedelta(days=1),
        ProvisionerRef("JWK", "admin"),
    )
    cert.verify_directly_issued_by(issuer.certificate)
    assert cert.public_bytes(Encoding.DER) == der


class BrokenSigner(SoftwareSigner):
    """A signer whose raw signatures are wrong (a misbehaving HSM, say)."""

    def sign(self, data: bytes) -> bytes:
        return b"\x00" * 64


def test_a_signer_whose_raw_signatures_do_not_verify_gets_no_encoder() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    good = make_issuer(key)
    issuer = Issuer(name="agent", certificate=good.certificate, signer=BrokenSigner(key))
    assert issuer.leaf_encoder is None


@pytest.mark.parametrize("kind", ["P-256", "P-384", "Ed25519", "RSA-2048"])
def test_the_requests_own_key_encoding_gives_the_same_certificate(
    issuer: Issuer, issuer_kind: str, kind: str
) -> None:
    """The request's SubjectPublicKeyInfo is used as is only where it is what the builder
    writes; a compressed EC point (or any other form) is encoded again."""
    from cryptography.hazmat.primitives.serialization import PublicFormat

    key = subject_key(kind)
    spkis = [key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)]
    if kind.startswith("P-"):
        point = key.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
        # The same key with a compressed point: same algorithm identifier, shorter BIT STRING.
        full = spkis[0]
        _, body, _ = der_module.read_tlv(full)
        _, algorithm, _ = der_module.read_tlv(body)
        spkis.append(
            der_module.tlv(
                0x30, der_module.tlv(0x30, algorithm) + der_module.tlv(0x03, b"\x00" + point)
            )
        )
    template = random_template(random.Random(kind))
    encoder = issuer.leaf_encoder
    assert encoder is not None
    provisioner = ProvisionerRef("JWK", "admin")
    expected = reference(issuer, template, key, 5150, NOW, NOW + timedelta(days=3), provisioner)
    for spki in spkis:
        tbs = encoder.tbs(template, key, 5150, NOW, NOW + timedelta(days=3), provisioner, spki)
        assert tbs == expected.tbs_certificate_bytes


# --- renewals --------------------------------------------------------------------------


def renewed_both_ways(
    issuer: Issuer, current: x509.Certificate, serial: int
) -> tuple[bytes | None, x509.Certificate]:
    """The fast renewal's TBSCertificate (None if it declined) and the builder's renewal."""
    encoder = issuer.leaf_encoder
    assert encoder is not None
    later = NOW + timedelta(hours=20, seconds=7)
    not_after = later + (current.not_valid_after_utc - current.not_valid_before_utc)
    fast = encoder.renewal_tbs(current.tbs_certificate_bytes, serial, later, not_after)
    return fast, builder_renewal(current, issuer, serial, later, not_after)


@pytest.mark.parametrize("seed", range(8))
def test_renewals_are_identical_to_the_builders(
    issuer: Issuer, issuer_kind: str, seed: int
) -> None:
    rng = random.Random(seed)
    template = random_template(rng)
    key = subject_key(rng.choice(["P-256", "P-384", "Ed25519"]))
    provisioner = ProvisionerRef("ACCOUNT", "account:corp-wifi")
    current = reference(
        issuer, template, key, 1000 + seed, NOW, NOW + timedelta(days=1), provisioner
    )
    fast, expected = renewed_both_ways(issuer, current, 2000 + seed)
    assert fast is not None, "the fast path declined a renewal it should encode"
    assert fast == expected.tbs_certificate_bytes


def test_renewals_keep_other_names_and_extra_extensions(issuer: Issuer, issuer_kind: str) -> None:
    """A device certificate's PermanentIdentifier otherName and unusual extensions are
    copied as encoded, critical ones included."""
    template = CertificateTemplate(
        subject=x509.Name([]),
        sans=(SAN.parse("spiffe://example.org/device/1"),),
        extra_general_names=(
            x509.OtherName(x509.ObjectIdentifier("1.3.6.1.5.5.7.8.3"), b"\x30\x03\x0c\x01\x41"),
        ),
        extra_extensions=(
            x509.Extension(
                x509.ObjectIdentifier("1.2.3.4.5"),
                True,
                x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00"),
            ),
        ),
    )
    key = subject_key("P-256")
    current = reference(
        issuer,
        template,
        key,
        31337,
        NOW,
        NOW + timedelta(days=7),
        ProvisionerRef("ACME", "devices"),
    )
    fast, expected = renewed_both_ways(issuer, current, 31338)
    assert fast == expected.tbs_certificate_bytes


def test_renewals_the_fast_path_declines_use_the_builder(issuer: Issuer) -> None:
    encoder = issuer.leaf_encoder
    assert encoder is not None
    template = random_template(random.Random(99))
    provisioner = ProvisionerRef("JWK", "admin")
    # An RSA key: the builder writes its SubjectPublicKeyInfo again, so it builds.
    rsa_leaf = reference(
        issuer, template, subject_key("RSA-2048"), 5, NOW, NOW + timedelta(days=1), provisioner
    )
    assert (
        encoder.renewal_tbs(rsa_leaf.tbs_certificate_bytes, 6, NOW, NOW + timedelta(days=1)) is None
    )
    # Another issuer's certificate, a serial the builder refuses, truncated input.
    leaf = reference(
        issuer, template, subject_key("P-256"), 7, NOW, NOW + timedelta(days=1), provisioner
    )
    other = make_issuer(
        ec.generate_private_key(ec.SECP256R1()),
        name=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other")]),
    )
    assert other.leaf_encoder is not None
    assert (
        other.leaf_encoder.renewal_tbs(leaf.tbs_certificate_bytes, 8, NOW, NOW + timedelta(days=1))
        is None
    )
    assert encoder.renewal_tbs(leaf.tbs_certificate_bytes, 0, NOW, NOW + timedelta(days=1)) is None
    assert (
        encoder.renewal_tbs(leaf.tbs_certificate_bytes[:-3], 8, NOW, NOW + timedelta(days=1))
        is None
    )
    # renew_certificate still renews it (through the builder), signed by the issuer.
    renewed = renew_certificate(rsa_leaf, issuer, FrozenClock(NOW), SeededRandom(1))
    renewed.certificate.verify_directly_issued_by(issuer.certificate)
    assert renewed.certificate.public_key() == rsa_leaf.public_key()


def test_renew_certificate_takes_the_fast_path_and_states_its_facts(issuer: Issuer) -> None:
    template = random_template(random.Random(5))
    provisioner = ProvisionerRef("X5C", "devices")
    current = reference(
        issuer, template, subject_key("P-256"), 41, NOW, NOW + timedelta(days=2), provisioner
    )
    renewed = renew_certificate(
        current, issuer, FrozenClock(NOW + timedelta(days=1)), SeededRandom(2)
    )
    assert renewed.given_certificate is None  # encoded from the current one, not built
    loaded = x509.load_der_x509_certificate(renewed.der)
    loaded.verify_directly_issued_by(issuer.certificate)
    assert renewed.serial == loaded.serial_number
    assert (renewed.not_before, renewed.not_after) == (
        loaded.not_valid_before_utc,
        loaded.not_valid_after_utc,
    )
    assert renewed.subject_text == loaded.subject.rfc4514_string()
    assert (
        renewed.san_texts
        == IssuedCertificate(der=renewed.der, issuer=issuer, provisioner=provisioner).san_texts
    )
    assert renewed.evidence == {"renewed_from": "29"}
    assert loaded.not_valid_after_utc - loaded.not_valid_before_utc == timedelta(days=2)
