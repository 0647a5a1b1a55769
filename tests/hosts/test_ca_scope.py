"""Each intermediate vouches only for what it says.

The Agent CA issues device certificates only (ACME device-attest-01 and renewals of
them), so a RADIUS server or VPN gateway that trusts it for device mTLS never accepts
a certificate someone got over http-01 or with a JWK token: those, and the server's
own HTTPS certificate, come from the TLS CA.
"""

from __future__ import annotations

import ssl
import tomllib
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509
from cryptography.x509.oid import NameOID

from engine.errors import ConfigurationError
from hosts.core.authority import Authority
from tests.conftest import CA, RunningServer, TokenFactory, new_csr, sign_json

from .acme_helpers import (
    acme_client,
    acme_server_fixture,  # noqa: F401
    add_provisioner,
    edit_provisioner,
)
from .helpers import client, load_pem, run_devid
from .test_acme_flows import accept_all, issue


def common_name(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_init_creates_a_tls_ca_beside_the_other_three(ca: CA) -> None:
    config = tomllib.loads((ca.data_dir / "devid.toml").read_text())
    assert sorted(config["ca"]["intermediates"]) == ["account", "agent", "attestation", "tls"]
    root = load_pem((ca.data_dir / "certs" / "root_ca.crt").read_text())
    tls = load_pem((ca.data_dir / "certs" / "tls_ca.crt").read_text())
    tls.verify_directly_issued_by(root)
    assert common_name(tls.subject) == "devid TLS CA"
    issuers = {p["name"]: p["issuer"] for p in config["provisioners"]}
    assert issuers == {"admin": "tls", "acme": "tls", "devices": "agent"}


def test_jwk_token_certificates_come_from_the_tls_ca(
    authority: Authority, token: TokenFactory
) -> None:
    _, _, csr_pem = new_csr("svc.example.com")
    response = sign_json(authority, {"csr": csr_pem, "ott": token("svc.example.com")})
    leaf = load_pem(response["crt"])
    assert leaf.issuer == authority.issuers["tls"].certificate.subject
    assert leaf.issuer != authority.issuers["agent"].certificate.subject
    record = authority.stores.certificates.get_certificate(format(leaf.serial_number, "x"))
    assert record is not None and record.issuer == "tls"


async def test_acme_http01_certificates_come_from_the_tls_ca(acme_server: RunningServer) -> None:
    accept_all(acme_server)
    async with acme_client(acme_server) as acme:
        await acme.new_account()
        _, _, leaf = await issue(acme, "web.example.com")
    authority = acme_server.authority
    assert leaf.issuer == authority.issuers["tls"].certificate.subject
    leaf.verify_directly_issued_by(authority.issuers["tls"].certificate)


async def test_the_server_certificate_comes_from_the_tls_ca(server: RunningServer) -> None:
    host, port = server.url.removeprefix("https://").rsplit(":", 1)
    pem = await trio.to_thread.run_sync(
        lambda: ssl.get_server_certificate((host, int(port)), ca_certs=str(server.root_path))
    )
    leaf = load_pem(pem)
    assert leaf.issuer == server.authority.issuers["tls"].certificate.subject
    record = server.authority.stores.certificates.get_certificate(format(leaf.serial_number, "x"))
    assert record is not None and record.issuer == "tls"


async def test_the_tls_ca_publishes_its_crl(server: RunningServer) -> None:
    async with client(server) as http:
        r = await http.get("/crl/tls")
    assert r.status_code == 200, r.text
    crl = x509.load_der_x509_crl(r.content)
    assert crl.issuer == server.authority.issuers["tls"].certificate.subject
    assert crl.is_signature_valid(server.authority.issuers["tls"].certificate.public_key())  # type: ignore[arg-type]


# --- refused at config load ---------------------------------------------------------------


def refused(ca: CA) -> str:
    with pytest.raises(ConfigurationError) as caught:
        Authority.load(ca.data_dir, ca.password).close()
    return str(caught.value)


def test_a_jwk_provisioner_on_the_agent_ca_is_refused(ca: CA) -> None:
    edit_provisioner(ca.data_dir, "admin", issuer="agent")
    message = refused(ca)
    assert "'admin'" in message and "device" in message and 'issuer = "tls"' in message


def test_an_http01_acme_provisioner_on_the_agent_ca_is_refused(ca: CA) -> None:
    edit_provisioner(ca.data_dir, "acme", issuer="agent")
    message = refused(ca)
    assert "'acme'" in message and 'issuer = "tls"' in message


def test_device_attest_mixed_with_http01_on_the_agent_ca_is_refused(ca: CA) -> None:
    edit_provisioner(ca.data_dir, "devices", challenges=["device-attest-01", "http-01"])
    message = refused(ca)
    assert "'devices'" in message and "device-attest-01" in message


def test_an_x5c_provisioner_on_the_agent_ca_is_refused(ca: CA) -> None:
    table: dict[str, Any] = {
        "type": "X5C",
        "name": "x5c",
        "issuer": "agent",
        "roots": ["certs/agent_ca.crt"],
    }
    add_provisioner(ca.data_dir, table)
    assert "'x5c'" in refused(ca)


def test_a_configured_x5c_provisioner_on_the_account_ca_is_refused(ca: CA) -> None:
    """Account CA certificates mean "a device an account is assigned to"; an X5C
    provisioner trusting the TLS CA there would let anyone with an http-01 certificate
    onto the Wi-Fi."""
    add_provisioner(
        ca.data_dir,
        {"type": "X5C", "name": "wifi", "issuer": "account", "roots": ["certs/tls_ca.crt"]},
    )
    message = refused(ca)
    assert "'wifi'" in message and "Account CA" in message and 'issuer = "tls"' in message


def test_a_jwk_provisioner_on_the_account_ca_is_refused(ca: CA) -> None:
    edit_provisioner(ca.data_dir, "admin", issuer="account")
    assert "Account CA" in refused(ca)


def test_device_attest_without_the_inventory_on_the_agent_ca_is_refused(ca: CA) -> None:
    """Without require_inventory any genuine TPM (or Apple device, or YubiKey) would get
    an Agent CA certificate, which promises a registered device."""
    edit_provisioner(ca.data_dir, "devices", require_inventory=False)
    message = refused(ca)
    assert "'devices'" in message and "require_inventory = true" in message


def test_no_provisioner_issues_from_the_attestation_ca(ca: CA) -> None:
    edit_provisioner(ca.data_dir, "acme", issuer="attestation")
    message = refused(ca)
    assert "'acme'" in message and "attestation" in message


def test_device_attest_01_alone_on_the_agent_ca_loads(ca: CA) -> None:
    authority = Authority.load(ca.data_dir, ca.password)
    try:
        assert authority.provisioners["devices"].issuer == "agent"
        assert authority.provisioners["acme"].issuer == "tls"
        assert authority.provisioners["admin"].issuer == "tls"
    finally:
        authority.close()


def test_init_help_and_output_name_the_tls_ca(tmp_path: Path) -> None:
    assert "TLS CA" in run_devid("init", "--help").stdout
    assert "TLS" in run_devid("--help").stdout
    assert "TLS CA" in run_devid("init", "--data", tmp_path / "ca").stdout
