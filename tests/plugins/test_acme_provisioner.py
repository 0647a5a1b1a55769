"""plugins.acme: the ACME provisioner's options, public view, and what it refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from engine.acme.identifiers import Identifier
from engine.errors import ConfigurationError, Unauthorized
from engine.jose import b64url_encode
from hosts.core.authority import Authority
from plugins.acme import ACMEProvisioner
from plugins.manager import PluginManager
from plugins.provisioner import ProvisionerEnvironment
from tests.conftest import TokenFactory, new_csr, sign_json

ISSUERS = frozenset({"attestation", "agent", "account", "tls"})


def env(tmp_path: Path) -> ProvisionerEnvironment:
    return ProvisionerEnvironment(data_dir=tmp_path, issuers=ISSUERS)


def build(tmp_path: Path, **options: Any) -> ACMEProvisioner:
    table = {"type": "ACME", "name": options.pop("name", "acme"), **options}
    return ACMEProvisioner.from_config(table["name"], table, env(tmp_path))


def test_it_registers_through_the_entry_point() -> None:
    assert PluginManager().provisioner_type("acme") is ACMEProvisioner


def test_device_attest_only_defaults_to_the_agent_ca(tmp_path: Path) -> None:
    devices = build(
        tmp_path,
        challenges=["device-attest-01"],
        attestation_formats=["tpm"],
        require_inventory=True,
        name="devices",
    )
    assert devices.issuer == "agent"
    unregistered = build(tmp_path, challenges=["device-attest-01"], attestation_formats=["tpm"])
    assert unregistered.issuer == "tls"
    mixed = build(tmp_path, challenges=["device-attest-01", "http-01"], attestation_formats=["tpm"])
    assert mixed.issuer == "tls"


def test_defaults_are_closed(tmp_path: Path) -> None:
    p = build(tmp_path)
    assert p.issuer == "tls"  # the Agent CA vouches for devices only
    assert p.profile.challenges == {"http-01", "dns-01", "tls-alpn-01"}
    assert p.profile.identifiers.allowed_domains == ()  # nothing until configured
    assert p.profile.require_eab is False
    assert p.attestation_formats == ()
    assert p.describe_ekus() == ["serverAuth", "clientAuth"]
    # It reads no credential, so /1.0/sign never routes a token to it.
    assert ACMEProvisioner.read_credential("a.b.c") is None
    assert p.acme() is p


def test_default_config_round_trips(tmp_path: Path) -> None:
    table = ACMEProvisioner.default_config("acme", env(tmp_path))
    p = ACMEProvisioner.from_config("acme", table, env(tmp_path))
    p.profile.identifiers.check(Identifier("dns", "anything.example"))


def test_a_full_configuration(tmp_path: Path) -> None:
    ca_cert = _self_signed()
    (tmp_path / "apple-root.pem").write_bytes(ca_cert.public_bytes(Encoding.PEM))
    p = build(
        tmp_path,
        name="devices.v2",
        issuer="account",
        challenges=["device-attest-01"],
        attestation_formats=["tpm", "apple"],
        attestation_roots={"apple": ["apple-root.pem"]},
        require_eab=True,
        eab_keys={"kid-1": b64url_encode(b"k" * 32)},
        order_lifetime="2h",
        durations={"min": "1h", "max": "48h", "default": "8h"},
        template={"ekus": ["clientAuth", "1.3.6.1.4.1.311.20.2.2"]},
        website="https://pki.example.com",
        terms_of_service="https://pki.example.com/tos",
        require_inventory=True,
    )
    assert p.profile.order_lifetime == timedelta(hours=2)
    assert p.profile.durations.default == timedelta(hours=8)
    assert p.profile.eab_keys == {"kid-1": b"k" * 32}
    assert p.attestation_roots["apple"] == (ca_cert,)
    assert p.describe_ekus() == ["clientAuth", "1.3.6.1.4.1.311.20.2.2"]
    view = p.public_view()
    assert view["directory"] == "/acme/devices.v2/directory"
    assert view["requireEAB"] is True
    assert "kid-1" not in str(view) and b64url_encode(b"k" * 32) not in str(view)
    now = datetime.now(UTC)
    apple = p.attestation_context("apple", now)
    assert apple.roots == (ca_cert,) and apple.intermediates == ()
    tpm = p.attestation_context("tpm", now, ca_roots=(ca_cert,), ca_intermediates=(ca_cert,))
    assert tpm.roots == (ca_cert,) and tpm.intermediates == (ca_cert,)


def _self_signed() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vendor root")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "has space"}, "part of its URLs"),
        ({"issuer": "root"}, "issuer"),
        ({"challenges": []}, "non-empty subset"),
        ({"challenges": ["http-02"]}, "non-empty subset"),
        ({"challenges": ["device-attest-01"], "attestation_formats": []}, "attestation_formats"),
        ({"require_eab": True}, "needs at least one key"),
        ({"eab_keys": {"k": b64url_encode(b"short")}}, "at least 16 bytes"),
        ({"eab_keys": {"k": "not base64url!"}}, "base64url"),
        ({"eab_keys": ["k"]}, "table"),
        ({"allowed_ip_ranges": ["10.0.0.0/33"]}, "CIDR"),
        ({"allowed_domains": "example.com"}, "list of strings"),
        ({"order_lifetime": "60d"}, "order_lifetime"),
        ({"template": {"ekus": ["sortOfAuth"]}}, "unknown EKU"),
        ({"template": {"eku": ["clientAuth"]}}, "unknown option"),
        ({"attestation_roots": {"android": ["x.pem"]}}, "not in attestation_formats"),
        ({"attestation_roots": {"tpm": ["missing.pem"]}}, "cannot read"),
        ({"website": "pki.example.com"}, "URL"),
        ({"challenge": ["http-01"]}, "unknown option"),
    ],
)
def test_bad_options_are_configuration_errors(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build(tmp_path, **options)


def test_it_never_authorizes_tokens(authority: Authority, token: TokenFactory) -> None:
    """/1.0/sign cannot reach an ACME provisioner (step-ca GHSA-h8cp-697h-8c8p)."""
    acme = authority.provisioners["acme"]
    assert isinstance(acme, ACMEProvisioner)
    csr_pem = new_csr("svc.example.com")[2]
    with pytest.raises(Unauthorized, match="not a provisioner that signs tokens"):
        sign_json(authority, {"csr": csr_pem, "ott": token(provisioner="acme")})
    with pytest.raises(Unauthorized):
        acme.authorize_sign("token", None, authority.context("/1.0/sign"))  # type: ignore[arg-type]
    with pytest.raises(Unauthorized):
        acme.authorize_revoke("token", 1, authority.context("/1.0/revoke"))
