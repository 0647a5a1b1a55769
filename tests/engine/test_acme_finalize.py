"""engine.acme.finalize (CSR names, attested key, certificate names), .renewal and .revocation,
through the one signing pipeline."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from engine.acme.finalize import (
    HARDWARE_MODULE_NAME_OID,
    CSRNamesMatchOrder,
    PublicKeyIs,
    attested_key,
    hardware_module_name,
    order_names,
    read_hardware_module_name,
    read_permanent_identifier,
)
from engine.acme.identifiers import Identifier
from engine.acme.problems import ACMEProblem
from engine.acme.records import Authorization, AuthorizationStatus, Order, OrderStatus
from engine.acme.renewal import cert_id, parse_cert_id, serial_content, suggested_window
from engine.acme.revocation import authorize_revocation, parse_revocation
from engine.attestation.akcert import EK_DIGEST_ASSIGNER, permanent_identifier_name
from engine.csr import CSRInfo, parse_csr
from engine.inventory import permanent_identifier_value
from engine.jose import b64url_encode, jwk_from_public_key, jwk_thumbprint
from engine.names import SAN
from engine.template import leaf_template_from_csr

NOW = datetime(2030, 6, 1, tzinfo=UTC)
KEY = ec.generate_private_key(ec.SECP256R1())
DEVICE = permanent_identifier_value(hashlib.sha256(b"ek").digest())


def csr(
    names: list[str] = (),  # type: ignore[assignment]
    *,
    common_name: str | None = None,
    others: list[x509.GeneralName] = (),  # type: ignore[assignment]
    key: ec.EllipticCurvePrivateKey = KEY,
) -> CSRInfo:
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject))
    general = [SAN.parse(n).to_general_name() for n in names] + list(others)
    if general:
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    return parse_csr(builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER))


def identifiers(*pairs: tuple[str, str]) -> tuple[Identifier, ...]:
    return tuple(Identifier(t, v) for t, v in pairs)


WEB = identifiers(("dns", "a.example.com"), ("dns", "*.example.com"), ("ip", "10.0.0.1"))
WEB_NAMES = ["a.example.com", "*.example.com", "10.0.0.1"]


@pytest.mark.parametrize(
    "request_",
    [
        csr(["a.example.com", "*.example.com", "10.0.0.1"]),
        csr(["*.example.com", "10.0.0.1"], common_name="a.example.com"),
        csr(["a.example.com", "*.example.com", "10.0.0.1"], common_name="A.Example.com"),
        csr(["a.example.com", "*.example.com"], common_name="10.0.0.1"),
    ],
    ids=["SANs", "CN + SANs", "CN repeats a SAN", "address in the CN"],
)
def test_csr_names_equal_to_the_order_pass(request_: CSRInfo) -> None:
    CSRNamesMatchOrder(WEB).validate(request_)


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (csr(["a.example.com", "10.0.0.1"]), "missing: \\*.example.com"),
        (csr(["a.example.com", "*.example.com", "10.0.0.1", "b.example.com"]), "not in the order"),
        (
            csr(["a.example.com", "*.example.com", "10.0.0.1"], common_name="c.example.com"),
            "c.example",
        ),
        (csr(["a.example.com", "*.example.com", "10.0.0.1", "ops@example.com"]), "email"),
        (
            csr(
                ["a.example.com", "*.example.com", "10.0.0.1"],
                others=[permanent_identifier_name("x")],
            ),
            "otherName",
        ),
    ],
    ids=["one missing", "one extra", "extra CN", "an email SAN", "an otherName"],
)
def test_csr_names_that_differ_are_bad_csrs(request_: CSRInfo, why: str) -> None:
    with pytest.raises(ACMEProblem, match=why) as excinfo:
        CSRNamesMatchOrder(WEB).validate(request_)
    assert excinfo.value.problem == "badCSR"


DEVICE_ORDER = identifiers(("permanent-identifier", DEVICE))


@pytest.mark.parametrize(
    "request_",
    [
        csr(),
        csr(common_name=DEVICE),
        csr(common_name=DEVICE, others=[permanent_identifier_name(DEVICE)]),
        csr(others=[permanent_identifier_name(DEVICE, None)]),
    ],
    ids=["nothing", "CN", "CN + PermanentIdentifier (the agent)", "without assigner"],
)
def test_device_csrs_may_repeat_the_identifier(request_: CSRInfo) -> None:
    CSRNamesMatchOrder(DEVICE_ORDER).validate(request_)


@pytest.mark.parametrize(
    "request_",
    [
        csr(["device.example.com"]),
        csr(common_name="someone-else"),
        csr(others=[permanent_identifier_name("another")]),
        csr(others=[hardware_module_name(b"\x06\x03\x2a\x03\x04", b"SN1")]),
        csr(others=[x509.OtherName(x509.ObjectIdentifier("1.2.3.4"), b"\x05\x00")]),
        csr(others=[x509.OtherName(HARDWARE_MODULE_NAME_OID, b"\x05\x00")]),
    ],
    ids=["a DNS SAN", "another CN", "another id", "a hardware module", "unknown", "broken"],
)
def test_device_csrs_name_nothing_else(request_: CSRInfo) -> None:
    with pytest.raises(ACMEProblem) as excinfo:
        CSRNamesMatchOrder(DEVICE_ORDER).validate(request_)
    assert excinfo.value.problem == "badCSR"


def spki(key: Any) -> bytes:
    return bytes(key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def test_the_csr_must_carry_the_attested_key() -> None:
    PublicKeyIs(spki(KEY)).validate(csr())
    with pytest.raises(ACMEProblem, match="attestation certified"):
        PublicKeyIs(spki(ec.generate_private_key(ec.SECP256R1()))).validate(csr())


def _order(ids: tuple[Identifier, ...]) -> Order:
    return Order(
        id="o",
        provisioner="p",
        account_id="a",
        status=OrderStatus.PENDING,
        identifiers=ids,
        authorization_ids=("z",),
        created_at=NOW,
        expires_at=NOW + timedelta(hours=1),
    )


def _authz(identifier: Identifier, key: bytes | None, **attestation: Any) -> Authorization:
    return Authorization(
        id="z",
        provisioner="p",
        account_id="a",
        order_id="o",
        identifier=identifier,
        status=AuthorizationStatus.VALID,
        expires_at=NOW + timedelta(hours=1),
        challenge_ids=(),
        attested_key=key,
        attestation=attestation or None,
    )


def test_a_device_order_needs_its_attested_key() -> None:
    order = _order(DEVICE_ORDER)
    assert attested_key(order, [_authz(DEVICE_ORDER[0], spki(KEY))]) == spki(KEY)
    with pytest.raises(ACMEProblem):
        attested_key(order, [_authz(DEVICE_ORDER[0], None)])
    assert attested_key(_order(WEB), []) is None


def test_certificate_names_come_from_the_order() -> None:
    request_ = csr(["a.example.com", "*.example.com", "10.0.0.1"], common_name="A.example.com")
    names = order_names(_order(WEB), [], request_)
    template = names.modify(leaf_template_from_csr(request_))
    assert template.subject.rfc4514_string() == "CN=a.example.com"
    assert [str(s) for s in template.sans] == ["a.example.com", "*.example.com", "10.0.0.1"]
    assert template.extra_general_names == ()


def test_a_device_certificate_carries_the_permanent_identifier() -> None:
    request_ = csr(common_name=DEVICE, others=[permanent_identifier_name(DEVICE)])
    bound = _authz(DEVICE_ORDER[0], spki(KEY), permanent_identifiers=[DEVICE])
    names = order_names(_order(DEVICE_ORDER), [bound], request_)
    assert names.device_names == (permanent_identifier_name(DEVICE, EK_DIGEST_ASSIGNER),)
    template = names.modify(leaf_template_from_csr(request_))
    assert template.sans == ()
    assert read_permanent_identifier(template.extra_general_names[0].value) == DEVICE
    # A value that is not devid's EK digest gets no devid assigner.
    serial = identifiers(("permanent-identifier", "serial-42"))
    plain = order_names(_order(serial), [_authz(serial[0], spki(KEY))], csr())
    assert plain.device_names == (permanent_identifier_name("serial-42", None),)


def test_a_hardware_module_certificate_carries_the_serial() -> None:
    order = _order(identifiers(("hardware-module", "SN-7")))
    names = order_names(order, [], csr())
    (name,) = names.device_names
    parsed = read_hardware_module_name(name.value)
    assert parsed is not None and parsed[1] == b"SN-7"
    assert parsed[0] == b"\x06\x05\x67\x81\x05\x01\x02"  # 2.23.133.1.2, a TPM 2.0


# --- renewal information ---------------------------------------------------------------------


def _certificate(serial: int) -> x509.Certificate:
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
    return (
        x509.CertificateBuilder()
        .subject_name(issuer)
        .issuer_name(issuer)
        .public_key(KEY.public_key())
        .serial_number(serial)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=3))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(KEY.public_key()), critical=False
        )
        .sign(KEY, hashes.SHA256())
    )


@pytest.mark.parametrize("serial", [1, 0x7F, 0x80, 0xFF, 2**158 + 12345])
def test_cert_ids_round_trip(serial: int) -> None:
    certificate = _certificate(serial)
    key_identifier, parsed = parse_cert_id(cert_id(certificate))
    assert parsed == serial
    aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert key_identifier == aki.key_identifier


def test_serials_with_the_high_bit_set_get_a_leading_zero() -> None:
    assert serial_content(0x80) == b"\x00\x80"
    assert serial_content(0x7F) == b"\x7f"


@pytest.mark.parametrize(
    "text", ["", "abc", "a.b.c", "AAAA.", ".AQ", "AAAA.AAE", "AAAA./w", "AAAA.AA", "A+/=.AQ"]
)
def test_bad_cert_ids(text: str) -> None:
    with pytest.raises(ACMEProblem) as excinfo:
        parse_cert_id(text)
    assert excinfo.value.problem == "malformed"


def test_the_window_is_the_last_third_unless_revoked() -> None:
    start, end = suggested_window(NOW, NOW + timedelta(hours=24), revoked=False, now=NOW)
    assert (start, end) == (NOW + timedelta(hours=16), NOW + timedelta(hours=20))
    later = NOW + timedelta(hours=2)
    start, end = suggested_window(NOW, NOW + timedelta(hours=24), revoked=True, now=later)
    assert end == later and start < end


# --- revocation ---------------------------------------------------------------------------------


def _revocation(certificate: x509.Certificate, reason: Any = 1) -> Any:
    payload: dict[str, Any] = {"certificate": b64url_encode(certificate.public_bytes(Encoding.DER))}
    if reason is not None:
        payload["reason"] = reason
    return parse_revocation(payload)


@pytest.mark.parametrize("reason", [2, 6, 7, 8, 10, 11, -1, True, "1"])
def test_reasons_outside_the_acme_set_are_refused(reason: Any) -> None:
    with pytest.raises(ACMEProblem) as excinfo:
        _revocation(_certificate(5), reason)
    assert excinfo.value.problem == "badRevocationReason"


def test_revocation_by_owner_or_certificate_key() -> None:
    from engine.acme.records import Account, AccountStatus

    certificate = _certificate(5)
    wanted = _revocation(certificate, None)
    assert wanted.reason == 0 and wanted.serial == "5"
    account = Account("acct", "p", {}, "t", AccountStatus.VALID, NOW)
    der = certificate.public_bytes(Encoding.DER)
    common = {"stored_der": der, "issued_here": True, "owner": "acct"}
    assert authorize_revocation(wanted, account=account, signer_thumbprint=None, **common) == (
        "acme-account:acct"
    )
    stranger = attrs.evolve(account, id="other")
    with pytest.raises(ACMEProblem, match="another account"):
        authorize_revocation(wanted, account=stranger, signer_thumbprint=None, **common)
    own = jwk_thumbprint(jwk_from_public_key(KEY.public_key()))
    assert authorize_revocation(wanted, account=None, signer_thumbprint=own, **common) == (
        "acme-certificate-key"
    )
    with pytest.raises(ACMEProblem, match="neither"):
        authorize_revocation(wanted, account=None, signer_thumbprint="x", **common)
    with pytest.raises(ACMEProblem, match="did not issue"):
        authorize_revocation(
            wanted, account=account, signer_thumbprint=None, **{**common, "issued_here": False}
        )
    with pytest.raises(ACMEProblem, match="not the one"):
        authorize_revocation(
            wanted,
            account=account,
            signer_thumbprint=None,
            **{**common, "stored_der": _certificate(6).public_bytes(Encoding.DER)},
        )
