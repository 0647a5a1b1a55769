"""Each built-in provisioner type's ``authorize_renew``, pure: given the facts the host
gathers, it allows a renewal (saying what it checked and how long the renewal may live)
or refuses it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from engine.errors import ConfigurationError, Forbidden, Unauthorized
from engine.inventory import Device, DeviceStatus
from engine.jose import jwk_from_public_key
from plugins.acme import ACMEProvisioner
from plugins.jwk import JWKProvisioner
from plugins.provisioner import (
    CertificateFacts,
    ProvisionerEnvironment,
    RenewContext,
)
from plugins.x5c import X5CProvisioner

NOW = datetime.now(UTC).replace(microsecond=0)
ISSUERS = frozenset({"attestation", "agent", "account", "tls"})
EK = "urn:ek:sha256:" + "A" * 43 + "="


def certificate(name: str = "svc.example.com", *, ca: bool = False) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(minutes=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def facts(**changes: Any) -> CertificateFacts:
    base = CertificateFacts(
        serial="1a",
        issuer="tls",
        provisioner_type="ACME",
        provisioner_name="acme",
        status="active",
        not_before=NOW - timedelta(hours=1),
        not_after=NOW + timedelta(hours=23),
        evidence={"method": "acme"},
    )
    return attrs.evolve(base, **changes)


def context(record: CertificateFacts, **changes: Any) -> RenewContext:
    return RenewContext(now=NOW, certificate=certificate(), record=record, **changes)


def env(tmp_path: Path) -> ProvisionerEnvironment:
    return ProvisionerEnvironment(data_dir=tmp_path, issuers=ISSUERS)


def acme(tmp_path: Path, **options: Any) -> ACMEProvisioner:
    table = {"type": "ACME", "name": "acme", "issuer": "agent", **options}
    return ACMEProvisioner.from_config("acme", table, env(tmp_path))


def device(status: DeviceStatus = DeviceStatus.ACTIVE) -> Device:
    return Device(ek_urn=EK, status=status)


# --- ACME ----------------------------------------------------------------------------------


def test_acme_certificates_do_not_renew_over_1_0_renew_by_default(tmp_path: Path) -> None:
    with pytest.raises(Forbidden, match="order a new one over ACME"):
        acme(tmp_path).authorize_renew(context(facts()))


def test_acme_certificates_renew_when_the_provisioner_allows(tmp_path: Path) -> None:
    allowed = acme(tmp_path, allow_renewal=True).authorize_renew(context(facts()))
    assert allowed.checked == {"allow_renewal": True}
    assert allowed.not_after_limit is None


def test_acme_allow_renewal_must_be_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="allow_renewal"):
        acme(tmp_path, allow_renewal="yes")


def test_an_attested_device_certificate_renews_only_while_its_device_is_active(
    tmp_path: Path,
) -> None:
    provisioner = acme(tmp_path)  # allow_renewal does not apply to device certificates
    record = facts(issuer="agent", device=EK, evidence={"attestation": {"ek_urns": [EK]}})
    allowed = provisioner.authorize_renew(context(record, device=device()))
    assert allowed.checked == {"device": EK, "device_status": "active"}
    with pytest.raises(Forbidden, match="is disabled"):
        provisioner.authorize_renew(context(record, device=device(DeviceStatus.DISABLED)))
    with pytest.raises(Forbidden, match="not in this CA's inventory"):
        provisioner.authorize_renew(context(record, device=None))
    with pytest.raises(Forbidden, match="does not name the device"):
        provisioner.authorize_renew(context(attrs.evolve(record, device=None), device=device()))
    other = Device(ek_urn="urn:ek:sha256:" + "B" * 43 + "=")
    with pytest.raises(Forbidden, match="not in this CA's inventory"):
        provisioner.authorize_renew(context(record, device=other))


# --- JWK -----------------------------------------------------------------------------------


def jwk(tmp_path: Path, **options: Any) -> JWKProvisioner:
    key = jwk_from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    table = {"type": "JWK", "name": "admin", "issuer": "tls", "key": key, **options}
    return JWKProvisioner.from_config("admin", table, env(tmp_path))


def test_jwk_certificates_renew_unless_the_provisioner_says_no(tmp_path: Path) -> None:
    record = facts(provisioner_type="JWK", provisioner_name="admin")
    assert jwk(tmp_path).authorize_renew(context(record)).checked == {"allow_renewal": True}
    with pytest.raises(Forbidden, match="does not allow renewal"):
        jwk(tmp_path, allow_renewal=False).authorize_renew(context(record))


# --- X5C -----------------------------------------------------------------------------------


def x5c(**options: Any) -> X5CProvisioner:
    return X5CProvisioner(
        name="partner", issuer="tls", roots=[certificate("Root", ca=True)], **options
    )


def test_x5c_certificates_do_not_renew_by_default() -> None:
    record = facts(provisioner_type="X5C", provisioner_name="partner")
    with pytest.raises(Forbidden, match="does not allow renewal"):
        x5c().authorize_renew(context(record))


def test_x5c_renewal_follows_the_x5c_certificate_when_this_ca_issued_it() -> None:
    provisioner = x5c(allow_renewal=True)
    record = facts(
        provisioner_type="X5C", provisioner_name="partner", evidence={"leaf_serial": "2b"}
    )
    # An outside x5c certificate: nothing more to check.
    assert provisioner.authorize_renew(context(record)).not_after_limit is None
    leaf = facts(serial="2b", issuer="agent", not_after=NOW + timedelta(hours=5))
    allowed = provisioner.authorize_renew(context(record, leaf=leaf))
    assert allowed.not_after_limit == leaf.not_after
    assert allowed.checked == {"allow_renewal": True, "leaf_serial": "2b", "leaf_status": "active"}
    with pytest.raises(Unauthorized, match="is revoked"):
        provisioner.authorize_renew(context(record, leaf=attrs.evolve(leaf, status="revoked")))
    with pytest.raises(Unauthorized, match="has expired"):
        expired = attrs.evolve(leaf, not_after=NOW - timedelta(seconds=1))
        provisioner.authorize_renew(context(record, leaf=expired))
