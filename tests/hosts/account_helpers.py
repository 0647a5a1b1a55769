"""Helpers for the account tests: an admin client, device certificates from the Agent CA,
and X5C tokens signed with them."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from engine.attestation.akcert import permanent_identifier_name
from engine.extensions import ProvisionerRef
from engine.inventory import ek_urn_from_digest, permanent_identifier_value
from engine.pipeline import IssuedCertificate, build_certificate, random_serial
from engine.template import CertificateTemplate
from hosts.core.authority import Authority
from plugins.x5c import mint_x5c_token
from tests.conftest import CA, RunningServer

from .helpers import client

ACCOUNTS = "/api/v1/accounts"
DEVICE_ACCOUNTS = "/api/v1/device/accounts"


#: The Wi-Fi account most account tests use: names from the inventory, given by tag.
WIFI: dict[str, Any] = {
    "name": "corp-wifi",
    "type": "wifi",
    "commonName": "{device.name}",
    "sans": ["dns:{device.name}.wifi.example.com", "{device.ek}"],
    "tags": ["laptops"],
}


def admin_token(ca: CA) -> str:
    return (ca.data_dir / "secrets" / "admin-token").read_text().strip()


@asynccontextmanager
async def admin(server: RunningServer, ca: CA) -> AsyncIterator[httpx.AsyncClient]:
    async with client(server) as http:
        http.headers["Authorization"] = f"Bearer {admin_token(ca)}"
        yield http


def ek_digest(label: str) -> bytes:
    return hashlib.sha256(f"the EK of {label}".encode()).digest()


def ek_of(label: str) -> str:
    return ek_urn_from_digest(ek_digest(label))


@attrs.frozen
class DeviceCertificate:
    """A device identity certificate as device-attest-01 issues it, with its key."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    agent_ca: x509.Certificate

    def client_pem(self, path: Path) -> Path:
        """Leaf, Agent CA and key in one file, for an mTLS client."""
        key_pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.write_bytes(
            self.certificate.public_bytes(serialization.Encoding.PEM)
            + self.agent_ca.public_bytes(serialization.Encoding.PEM)
            + key_pem
        )
        path.chmod(0o600)
        return path

    def token(
        self,
        audience: str,
        account: str,
        subject: str,
        sans: list[str],
        *,
        jti: str | None = None,
    ) -> str:
        return mint_x5c_token(
            self.key,
            [self.certificate],
            provisioner=f"account:{account}",
            subject=subject,
            audience=audience,
            now=datetime.now(UTC),
            jti=jti or uuid.uuid4().hex,
            sans=sans,
        )


def issue_device_certificate(
    authority: Authority,
    label: str,
    *,
    lifetime: timedelta = timedelta(days=2),
    identify: bool = True,
) -> DeviceCertificate:
    """A certificate from the Agent CA carrying the device's PermanentIdentifier (devid's
    EK-digest assigner), recorded in the store as issued by the ``devices`` provisioner
    with evidence shaped as device-attest-01 stores it."""
    issuer = authority.issuers["agent"]
    key = ec.generate_private_key(ec.SECP256R1())
    value = permanent_identifier_value(ek_digest(label))
    template = CertificateTemplate(
        subject=x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, value)]),
        key_usage=frozenset({"digital_signature"}),
        extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,),
        extra_general_names=(permanent_identifier_name(value),) if identify else (),
    )
    now = datetime.now(UTC)
    provisioner = ProvisionerRef(type="ACME", name="devices")
    cert = build_certificate(
        template,
        key.public_key(),
        issuer,
        random_serial(authority.random),
        now - timedelta(minutes=1),
        now + lifetime,
        provisioner,
    )
    evidence = {
        "method": "acme",
        "provisioner": "devices",
        "identifiers": [{"type": "permanent-identifier", "value": value}],
        "attestation": {"format": "tpm", "ek_urns": [ek_of(label)]},
    }
    issued = IssuedCertificate(
        certificate=cert,
        der=cert.public_bytes(serialization.Encoding.DER),
        issuer=issuer,
        provisioner=provisioner,
        evidence=evidence if identify else {},
    )
    authority.record_issued(issued)
    return DeviceCertificate(key=key, certificate=cert, agent_ca=issuer.certificate)


def register_device(authority: Authority, label: str, **fields: Any) -> str:
    urn = ek_of(label)
    authority.inventory.add({"ek": urn, "name": label, **fields})
    return urn
