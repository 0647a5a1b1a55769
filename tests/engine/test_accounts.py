"""engine.accounts: account records, their validation, templates, assignment, and the
device a device certificate identifies."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.accounts import (
    Account,
    AccountStatus,
    AccountType,
    CSRWithinTemplate,
    SetAccountCertificate,
    account_from_input,
    account_from_store,
    accounts_for,
    device_ek_urn,
    device_ek_urns,
    render_template,
    san_template_kind,
    update_account,
)
from engine.attestation.akcert import permanent_identifier_name
from engine.csr import parse_csr
from engine.errors import BadRequest, Forbidden
from engine.inventory import Device, DeviceStatus, ek_urn_from_digest, permanent_identifier_value
from engine.keys import KeyType
from engine.names import SAN, SANKind
from engine.template import CertificateTemplate

NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
DIGEST = hashlib.sha256(b"EK one").digest()
EK = ek_urn_from_digest(DIGEST)
OTHER_EK = ek_urn_from_digest(hashlib.sha256(b"EK two").digest())


def new(**fields: Any) -> Account:
    data: dict[str, Any] = {"name": "corp-wifi", "type": "wifi", **fields}
    return account_from_input(data, id="id-1", now=NOW)


def device(**fields: Any) -> Device:
    values: dict[str, Any] = {
        "ek_urn": EK,
        "name": "laptop-7",
        "serial": "SN-7",
        "owner": "alice@example.com",
        "tags": ("laptops",),
        **fields,
    }
    return Device(**values)


# --- creating and validating --------------------------------------------------------------


def test_a_new_account_has_safe_defaults() -> None:
    account = new()
    assert account.type is AccountType.WIFI
    assert account.common_name == "{device.ek}"
    assert account.sans == ("{device.ek}",)
    assert account.eku == ("clientAuth",)
    assert account.extended_key_usage == (ExtendedKeyUsageOID.CLIENT_AUTH,)
    assert account.key_type is KeyType.P256
    assert account.validity == timedelta(hours=24)
    assert account.tpm_key is True and account.pkcs12 is False
    assert account.status is AccountStatus.ACTIVE
    assert account.devices == () and account.tags == ()
    assert account.provisioner_name == "account:corp-wifi"
    assert account.created_at == account.updated_at == NOW


@pytest.mark.parametrize("kind", ["wifi", "vpn", "web", "generic"])
def test_every_type_defaults_to_client_authentication(kind: str) -> None:
    assert new(type=kind).eku == ("clientAuth",)


def test_every_field_is_read() -> None:
    account = new(
        type="vpn",
        description="Site VPN",
        commonName="{device.name}",
        sans=["dns:{device.name}.vpn.example.com", "email:{device.owner}", "{device.ek}"],
        eku=["clientAuth", "ipsecIKE", "1.2.3.4"],
        keyType="rsa-2048",
        validity="8h",
        tpmKey=False,
        pkcs12=True,
        devices=[OTHER_EK, EK, EK],
        tags=["b", "a"],
        status="disabled",
    )
    assert account.key_type is KeyType.RSA2048
    assert account.validity == timedelta(hours=8)
    assert account.devices == tuple(sorted({EK, OTHER_EK}))
    assert account.tags == ("a", "b")
    assert account.eku == ("clientAuth", "ipsecIKE", "1.2.3.4")
    assert account.extended_key_usage[2] == x509.ObjectIdentifier("1.2.3.4")
    assert not account.active
    assert account.durations.default == account.durations.maximum == timedelta(hours=8)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Corp WiFi"}, "account name"),
        ({"name": ""}, "account name"),
        ({"name": "a:b"}, "account name"),
        ({"type": "printer"}, "type must be one of wifi, vpn, web, generic"),
        ({"colour": "red"}, "unknown account field(s): colour"),
        ({"commonName": "{device.colour}"}, "unknown placeholder {device.colour}"),
        ({"commonName": "{device.name"}, "braces may only surround a placeholder"),
        ({"sans": ["{device.name}"]}, "say what kind of name it makes"),
        ({"sans": ["not a name {device.name}"]}, "does not make a DNS name"),
        ({"sans": "x.example.com"}, "sans must be a list"),
        ({"sans": ["dns:"]}, "empty after its dns: prefix"),
        ({"keyType": "RSA-4096"}, "not allowed for accounts; use one of P-256, P-384, RSA-2048"),
        ({"keyType": "Ed25519"}, "not allowed for accounts"),
        ({"validity": "1m"}, "validity must be between 5m and 30d"),
        ({"validity": "60d"}, "validity must be between 5m and 30d"),
        ({"validity": "soon"}, "invalid duration"),
        ({"tpmKey": "yes"}, "tpmKey must be true or false"),
        ({"pkcs12": 1}, "pkcs12 must be true or false"),
        ({"devices": ["laptop-7"]}, "urn:ek:sha256"),
        ({"tags": ["bad tag"]}, "invalid tag"),
        ({"status": "paused"}, "status must be 'active' or 'disabled'"),
        ({"eku": ["clientAuthh"]}, "unknown EKU 'clientAuthh'"),
        ({"eku": []}, "at least one extended key usage"),
        ({"commonName": None, "sans": []}, "needs a commonName template or at least one SAN"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as info:
        new(**fields)
    assert message in info.value.detail


def test_an_account_needs_a_type() -> None:
    with pytest.raises(BadRequest, match="needs a type"):
        account_from_input({"name": "x"}, id="1", now=NOW)


def test_an_account_is_a_json_object() -> None:
    with pytest.raises(BadRequest, match="JSON object"):
        account_from_input(["x"], id="1", now=NOW)


@pytest.mark.parametrize(
    ("template", "kind"),
    [
        ("{device.ek}", SANKind.URI),
        ("urn:example:{device.id}", SANKind.URI),
        ("https://id.example.com/{device.id}", SANKind.URI),
        ("{device.name}.wifi.example.com", SANKind.DNS),
        ("{device.owner}@example.com", SANKind.EMAIL),
        ("email:{device.owner}", SANKind.EMAIL),
        ("DNS:{device.name}", SANKind.DNS),
        ("ip:{device.serial}", SANKind.IP),
        ("10.0.0.1", SANKind.IP),
    ],
)
def test_a_san_template_says_what_kind_of_name_it_makes(template: str, kind: SANKind) -> None:
    assert san_template_kind(template) is kind


def test_the_json_form_round_trips_through_the_store_form() -> None:
    account = new(description="d", sans=["dns:{device.name}.example.com"], tags=["x"])
    assert account_from_store(account.to_json()) == account
    view = account.to_json()
    assert view["provisioner"] == "account:corp-wifi"
    assert view["validity"] == "1d"
    assert view["createdAt"] == NOW.isoformat()


def test_an_update_changes_only_what_it_names() -> None:
    account = new(tags=["laptops"])
    later = NOW + timedelta(hours=1)
    updated = update_account(account, {"validity": "12h", "devices": [EK]}, now=later)
    assert updated.validity == timedelta(hours=12)
    assert updated.devices == (EK,)
    assert updated.tags == ("laptops",)
    assert updated.updated_at == later and updated.created_at == NOW
    assert updated.id == account.id


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "other"}, "cannot change name"),
        ({"id": "x"}, "cannot change id"),
        ({"sans": [], "commonName": None}, "needs a commonName template"),
        ("x", "changes must be a JSON object"),
    ],
)
def test_bad_updates_are_refused(changes: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        update_account(new(), changes, now=NOW)


# --- which devices get which accounts ----------------------------------------------------


def test_accounts_are_assigned_by_ek_or_by_tag() -> None:
    by_ek = new(name="by-ek", devices=[EK])
    by_tag = new(name="by-tag", tags=["laptops"])
    other_tag = new(name="other-tag", tags=["servers"])
    other_ek = new(name="other-ek", devices=[OTHER_EK])
    everything = [other_tag, by_tag, other_ek, by_ek]
    assert [a.name for a in accounts_for(device(), everything)] == ["by-ek", "by-tag"]


def test_a_disabled_account_is_given_to_nobody() -> None:
    assert accounts_for(device(), [new(devices=[EK], status="disabled")]) == []


def test_a_disabled_device_gets_no_account() -> None:
    disabled = device(status=DeviceStatus.DISABLED)
    assert accounts_for(disabled, [new(devices=[EK]), new(name="t", tags=["laptops"])]) == []


# --- rendering -------------------------------------------------------------------------------


def test_templates_render_from_the_device_record() -> None:
    account = new(
        commonName="{device.name} ({device.serial})",
        sans=[
            "dns:{device.name}.{account.type}.example.com",
            "email:{device.owner}",
            "{device.ek}",
            "urn:devid:{device.id}",
            "{device.ek}",
        ],
    )
    common_name, sans = render_template(account, device())
    assert common_name == "laptop-7 (SN-7)"
    assert sans == (
        SAN(SANKind.DNS, "laptop-7.wifi.example.com"),
        SAN(SANKind.EMAIL, "alice@example.com"),
        SAN(SANKind.URI, EK),
        SAN(SANKind.URI, "urn:devid:" + permanent_identifier_value(DIGEST)),
    )


def test_the_default_template_names_the_device_by_its_ek() -> None:
    assert render_template(new(), device(name=None)) == (EK, (SAN(SANKind.URI, EK),))


def test_a_missing_device_field_is_refused_by_name() -> None:
    with pytest.raises(Forbidden, match=r"needs \{device.serial\}.*does not have"):
        render_template(new(commonName="{device.serial}"), device(serial=None))


def test_a_device_value_cannot_change_the_kind_of_a_name() -> None:
    account = new(sans=["{device.name}.example.com"])
    with pytest.raises(Forbidden, match=r"evil@attacker\.example\.com.*which is not a DNS name"):
        render_template(account, device(name="evil@attacker"))


def test_an_email_template_needs_an_email_address() -> None:
    with pytest.raises(Forbidden, match="which is not an email address"):
        render_template(new(sans=["email:{device.owner}"]), device(owner="alice"))


def test_a_common_name_over_64_characters_is_refused() -> None:
    with pytest.raises(Forbidden, match="64 characters"):
        render_template(new(commonName="{device.name}"), device(name="x" * 65))


# --- the device behind a certificate ---------------------------------------------------------


def certificate(names: list[x509.GeneralName]) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_a_device_certificate_names_its_device_by_permanent_identifier() -> None:
    cert = certificate([permanent_identifier_name(permanent_identifier_value(DIGEST))])
    assert device_ek_urns(cert) == (EK,)
    assert device_ek_urn(cert) == EK


def test_a_plain_uri_or_a_foreign_assigner_does_not_identify_a_device() -> None:
    value = permanent_identifier_value(DIGEST)
    cert = certificate(
        [
            x509.UniformResourceIdentifier(EK),
            permanent_identifier_name(value, assigner=None),
            permanent_identifier_name(value, assigner="1.2.3.4"),
        ]
    )
    assert device_ek_urns(cert) == ()
    with pytest.raises(Forbidden, match="does not identify an attested device"):
        device_ek_urn(cert)


def test_a_certificate_naming_two_devices_is_refused() -> None:
    other = hashlib.sha256(b"EK two").digest()
    cert = certificate(
        [
            permanent_identifier_name(permanent_identifier_value(DIGEST)),
            permanent_identifier_name(permanent_identifier_value(other)),
        ]
    )
    with pytest.raises(Forbidden, match="more than one device"):
        device_ek_urn(cert)


def test_a_certificate_without_sans_identifies_nothing() -> None:
    assert device_ek_urns(certificate([])) == ()


# --- the policy's parts ---------------------------------------------------------------------


def csr(common_name: str | None, sans: list[x509.GeneralName]) -> Any:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs_ = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs_))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return parse_csr(builder.sign(key, hashes.SHA256()).public_bytes(Encoding.PEM))


RENDERED = frozenset({SAN(SANKind.URI, EK), SAN(SANKind.DNS, "laptop-7.example.com")})


def test_a_csr_may_ask_for_the_rendered_names_or_fewer() -> None:
    check = CSRWithinTemplate("corp-wifi", "laptop-7", RENDERED)
    check.validate(csr("laptop-7", [x509.UniformResourceIdentifier(EK)]))
    check.validate(csr(None, []))


def test_a_csr_may_repeat_its_common_name_as_a_san_and_a_san_as_its_common_name() -> None:
    """What an X5C token (always a sub and SANs, repeated in the CSR) makes of an account
    without SANs or without a common name."""
    CSRWithinTemplate("cn-only", "laptop-7", frozenset()).validate(
        csr("laptop-7", [x509.DNSName("laptop-7")])
    )
    CSRWithinTemplate("sans-only", None, RENDERED).validate(
        csr(EK, [x509.UniformResourceIdentifier(EK)])
    )


@pytest.mark.parametrize(
    ("common_name", "sans", "message"),
    [
        ("someone-else", [], "is not a name account 'corp-wifi' gives"),
        (None, [x509.DNSName("admin.example.com")], "outside what account 'corp-wifi' gives"),
        (
            None,
            [permanent_identifier_name(permanent_identifier_value(DIGEST))],
            "no otherName",
        ),
    ],
)
def test_a_csr_asking_for_other_names_is_refused(
    common_name: str | None, sans: list[x509.GeneralName], message: str
) -> None:
    with pytest.raises(Forbidden, match=message):
        CSRWithinTemplate("corp-wifi", "laptop-7", RENDERED).validate(csr(common_name, sans))


def test_the_certificate_gets_exactly_the_rendered_names_and_the_account_ekus() -> None:
    template = CertificateTemplate(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "from-token")]),
        sans=(SAN(SANKind.DNS, "from-token.example.com"),),
        extra_general_names=(permanent_identifier_name("x"),),
    )
    sans = tuple(sorted(RENDERED))
    out = SetAccountCertificate(None, sans, (ExtendedKeyUsageOID.CLIENT_AUTH,)).modify(template)
    assert len(out.subject) == 0
    assert out.sans == sans
    assert out.extra_general_names == ()
    assert out.extended_key_usage == (ExtendedKeyUsageOID.CLIENT_AUTH,)
