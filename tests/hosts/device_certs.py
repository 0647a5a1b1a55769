"""Certificates a device holds in the host tests (device, account and AK certificates),
and renewing them over mTLS."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.extensions import ProvisionerRef
from engine.pipeline import (
    issue_own_certificate,
)
from engine.template import CertificateTemplate
from hosts.store import CertificateRecord
from tests.conftest import CA, RunningServer, new_csr

from .account_helpers import (
    WIFI,
    DeviceCertificate,
    admin,
    ek_of,
    issue_device_certificate,
    register_device,
)
from .helpers import assert_json_error, client, load_pem


@attrs.frozen
class Held:
    """A certificate a client holds: its key and chain, ready for mTLS."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    def client_pem(self, path: Path) -> Path:
        key_pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        pems = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)
        path.write_bytes(pems + key_pem)
        path.chmod(0o600)
        return path

    @property
    def serial(self) -> str:
        return format(self.certificate.serial_number, "x")


def held_device(device: DeviceCertificate) -> Held:
    return Held(device.key, device.certificate, (device.certificate, device.agent_ca))


def held_from(key: ec.EllipticCurvePrivateKey, response: dict[str, Any]) -> Held:
    return Held(key, load_pem(response["crt"]), tuple(load_pem(p) for p in response["certChain"]))


async def account_certificate(
    server: RunningServer, device: DeviceCertificate, label: str = "laptop-1"
) -> Held:
    """The corp-wifi certificate for the device *label*, signed through an X5C token."""
    sans = [f"{label}.wifi.example.com", ek_of(label)]
    key, _, csr_pem = new_csr(label, sans)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    ott = device.token(f"{server.url}/1.0/sign", "corp-wifi", label, sans)
    async with client(server) as http:
        r = await http.post("/1.0/sign", json={"csr": csr_pem, "ott": ott})
    assert r.status_code == 201, r.text
    return held_from(key, r.json())


async def renew(server: RunningServer, held: Held, tmp_path: Path) -> httpx.Response:
    pem = held.client_pem(tmp_path / f"{held.serial}.pem")
    async with client(server, cert=pem) as http:
        return await http.post("/1.0/renew")


async def renewed(server: RunningServer, held: Held, tmp_path: Path) -> Held:
    r = await renew(server, held, tmp_path)
    assert r.status_code == 201, r.text
    return held_from(held.key, r.json())


def record_of(server: RunningServer, serial: str) -> CertificateRecord:
    record = server.authority.stores.certificates.get_certificate(serial)
    assert record is not None
    return record


def refused(r: httpx.Response, text: str) -> None:
    """Refused with 401 or 403 and a message saying why."""
    assert r.status_code in (401, 403), r.text
    assert text in assert_json_error(r, r.status_code)["message"]


async def setup_laptop(
    server: RunningServer, ca: CA, label: str = "laptop-1", *, account: bool = True
) -> DeviceCertificate:
    """Register *label* (tag ``laptops``), create the corp-wifi account once, and give the
    device a device certificate."""
    register_device(server.authority, label, tags=["laptops"])
    if account and server.authority.stores.accounts.get_account("corp-wifi") is None:
        async with admin(server, ca) as http:
            r = await http.post("/api/v1/accounts", json=WIFI)
        assert r.status_code == 201, r.text
    return issue_device_certificate(server.authority, label)


def issue_ak_certificate(server: RunningServer, label: str) -> Held:
    """An AK certificate from the Attestation CA, recorded as credential activation does."""
    authority = server.authority
    issuer = authority.issuers["attestation"]
    key = ec.generate_private_key(ec.SECP256R1())
    now = authority.clock.now()
    template = CertificateTemplate(
        subject=x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "AK")]),
        key_usage=frozenset({"digital_signature"}),
        extended_key_usage=(),
    )
    issued = issue_own_certificate(
        template,
        key.public_key(),
        issuer,
        ProvisionerRef(type="attestation", name="tpm"),
        now=now,
        lifetime=timedelta(days=1),
        random=authority.random,
        evidence={"method": "tpm-credential-activation", "ek": ek_of(label)},
    )
    authority.record_issued(issued)
    return Held(key, issued.certificate, (issued.certificate, issuer.certificate))
