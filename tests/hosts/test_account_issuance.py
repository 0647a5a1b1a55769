"""Account certificates end to end through both hosts: a device signs an X5C token with its
device certificate (Agent CA), and the Account CA issues the account's certificate with
the names the account's template renders for that device, or refuses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.accounts import account_from_input
from engine.assurance import Assurance
from engine.extensions import ProvisionerRef
from engine.inventory import ek_urn_from_digest
from engine.keys import KeyType
from hosts.core.ports import SystemClock
from plugins.x5c import mint_x5c_token
from tests.conftest import CA, RunningServer, new_csr

from .account_helpers import (
    ACCOUNTS,
    DEVICE_ACCOUNTS,
    WIFI,
    DeviceCertificate,
    admin,
    ek_of,
    issue_device_certificate,
    register_device,
)
from .helpers import assert_json_error, client, load_pem


async def create(server: RunningServer, ca: CA, **fields: Any) -> dict[str, Any]:
    async with admin(server, ca) as http:
        r = await http.post(ACCOUNTS, json=fields)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def listing(server: RunningServer, device: DeviceCertificate, tmp: Path) -> dict[str, Any]:
    async with client(server, cert=device.client_pem(tmp / "device.pem")) as http:
        r = await http.get(DEVICE_ACCOUNTS)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def sign(
    server: RunningServer,
    device: DeviceCertificate,
    account: str,
    subject: str,
    sans: list[str],
    *,
    csr_subject: str | None = None,
    csr_sans: list[str] | None = None,
    key_type: KeyType = KeyType.P256,
    token: str | None = None,
) -> Any:
    _, _, csr_pem = new_csr(
        csr_subject if csr_subject is not None else subject,
        csr_sans if csr_sans is not None else sans,
        key_type,
    )
    ott = token or device.token(f"{server.url}/1.0/sign", account, subject, sans)
    async with client(server) as http:
        return await http.post("/1.0/sign", json={"csr": csr_pem, "ott": ott})


@pytest.fixture
async def laptop(server: RunningServer, ca: CA) -> DeviceCertificate:
    register_device(server.authority, "laptop-1", tags=["laptops"], owner="alice@example.com")
    await create(server, ca, **WIFI)
    return issue_device_certificate(server.authority, "laptop-1")


def names_of(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n.value) for n in san]


# --- issuance --------------------------------------------------------------------------------


async def test_an_assigned_device_gets_its_account_certificate_from_the_account_ca(
    server: RunningServer, laptop: DeviceCertificate, tmp_path: Path
) -> None:
    [wifi] = (await listing(server, laptop, tmp_path))["accounts"]
    r = await sign(server, laptop, "corp-wifi", wifi["commonName"], wifi["sans"])
    assert r.status_code == 201, r.text
    cert = load_pem(r.json()["crt"])
    account_ca = server.authority.issuers["account"].certificate
    assert cert.issuer == account_ca.subject
    cert.verify_directly_issued_by(account_ca)
    assert load_pem(r.json()["ca"]) == account_ca
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "laptop-1"
    assert names_of(cert) == wifi["sans"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ProvisionerRef.from_certificate(cert) == ProvisionerRef("X5C", "account:corp-wifi")
    assert Assurance.of(cert) is Assurance.DEVICE_ACCOUNT
    lifetime = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(hours=23, minutes=55) < lifetime <= timedelta(hours=24)
    record = server.authority.stores.certificates.get_certificate(format(cert.serial_number, "x"))
    assert record is not None and record.issuer == "account"
    assert record.evidence["account"] == "corp-wifi"
    assert record.evidence["device"] == wifi["sans"][1]
    assert record.evidence["leaf_serial"] == format(laptop.certificate.serial_number, "x")


async def test_the_account_validity_and_key_type_apply(
    server: RunningServer, ca: CA, laptop: DeviceCertificate, tmp_path: Path
) -> None:
    await create(server, ca, name="vpn", type="vpn", tags=["laptops"], validity="8h",
                 keyType="RSA-2048", sans=["email:{device.owner}"])  # fmt: skip
    accounts = {a["name"]: a for a in (await listing(server, laptop, tmp_path))["accounts"]}
    vpn = accounts["vpn"]
    assert vpn["sans"] == ["alice@example.com"]
    wrong_key = await sign(server, laptop, "vpn", vpn["commonName"], vpn["sans"])
    assert "key type P-256 is not allowed" in assert_json_error(wrong_key, 403)["message"]
    r = await sign(server, laptop, "vpn", vpn["commonName"], vpn["sans"], key_type=KeyType.RSA2048)
    assert r.status_code == 201, r.text
    cert = load_pem(r.json()["crt"])
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(hours=8, minutes=1)


async def test_the_certificate_never_outlives_the_device_certificate(
    server: RunningServer, laptop: DeviceCertificate
) -> None:
    short = issue_device_certificate(server.authority, "laptop-1", lifetime=timedelta(hours=2))
    sans = ["laptop-1.wifi.example.com", ek_of("laptop-1")]
    r = await sign(server, short, "corp-wifi", "laptop-1", sans)
    assert r.status_code == 201, r.text
    cert = load_pem(r.json()["crt"])
    assert cert.not_valid_after_utc == short.certificate.not_valid_after_utc


async def test_an_account_created_behind_the_servers_back_can_be_used_at_once(
    server: RunningServer, laptop: DeviceCertificate
) -> None:
    """The CLI, or another worker process, wrote the store; no listing happened here."""
    server.authority.stores.accounts.add_account(
        account_from_input(
            {"name": "cli-made", "type": "generic", "tags": ["laptops"], "sans": []},
            id="cli-1",
            now=SystemClock().now(),
        )
    )
    ek = ek_of("laptop-1")
    r = await sign(server, laptop, "cli-made", ek, [ek])  # the token's sans default to [sub]
    assert r.status_code == 201, r.text
    cert = load_pem(r.json()["crt"])
    assert cert.subject.rfc4514_string() == f"CN={ek}"
    with pytest.raises(x509.ExtensionNotFound):  # the account has no SANs, so neither has it
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


# --- refusals --------------------------------------------------------------------------------


async def test_a_device_the_account_is_not_assigned_to_is_refused(
    server: RunningServer, ca: CA
) -> None:
    register_device(server.authority, "desktop-1", tags=["desktops"])
    await create(server, ca, **WIFI)
    desktop = issue_device_certificate(server.authority, "desktop-1")
    r = await sign(server, desktop, "corp-wifi", "desktop-1", ["desktop-1.wifi.example.com"])
    assert "is not assigned to the device" in assert_json_error(r, 403)["message"]


async def test_a_disabled_device_is_refused(
    server: RunningServer, laptop: DeviceCertificate
) -> None:
    server.authority.inventory.disable(ek_of("laptop-1"))
    r = await sign(server, laptop, "corp-wifi", "laptop-1", ["laptop-1.wifi.example.com"])
    # Disabling the device revoked its device certificate.
    assert "the device certificate is revoked" in assert_json_error(r, 401)["message"]


async def test_a_removed_device_is_refused(
    server: RunningServer, laptop: DeviceCertificate
) -> None:
    server.authority.inventory.remove(ek_of("laptop-1"))
    r = await sign(server, laptop, "corp-wifi", "laptop-1", ["laptop-1.wifi.example.com"])
    # Removing the device revoked its device certificate.
    assert "the device certificate is revoked" in assert_json_error(r, 401)["message"]


async def test_a_revoked_device_certificate_is_refused(
    server: RunningServer, laptop: DeviceCertificate, tmp_path: Path
) -> None:
    async with client(server, cert=laptop.client_pem(tmp_path / "device.pem")) as http:
        revoked = await http.post(
            "/1.0/revoke", json={"serial": str(laptop.certificate.serial_number)}
        )
    assert revoked.status_code == 200, revoked.text
    r = await sign(server, laptop, "corp-wifi", "laptop-1", ["laptop-1.wifi.example.com"])
    assert "revoked" in assert_json_error(r, 401)["message"]


async def test_a_certificate_without_a_device_identity_is_refused(
    server: RunningServer, ca: CA
) -> None:
    register_device(server.authority, "laptop-1", tags=["laptops"])
    await create(server, ca, **WIFI)
    anonymous = issue_device_certificate(server.authority, "laptop-1", identify=False)
    r = await sign(server, anonymous, "corp-wifi", "laptop-1", ["laptop-1.wifi.example.com"])
    assert "does not identify an attested device" in assert_json_error(r, 403)["message"]


async def test_sans_outside_the_template_are_refused(
    server: RunningServer, laptop: DeviceCertificate
) -> None:
    sans = ["laptop-1.wifi.example.com", "admin.example.com"]
    r = await sign(server, laptop, "corp-wifi", "laptop-1", sans)
    message = assert_json_error(r, 403)["message"]
    assert "admin.example.com" in message and "outside what account 'corp-wifi' gives" in message


async def test_another_common_name_is_refused(
    server: RunningServer, laptop: DeviceCertificate
) -> None:
    r = await sign(server, laptop, "corp-wifi", "laptop-2", ["laptop-1.wifi.example.com"])
    assert "is not a name account 'corp-wifi' gives" in assert_json_error(r, 403)["message"]


async def test_a_disabled_account_is_refused(
    server: RunningServer, ca: CA, laptop: DeviceCertificate
) -> None:
    async with admin(server, ca) as http:
        r = await http.patch(f"{ACCOUNTS}/corp-wifi", json={"status": "disabled"})
    assert r.status_code == 200, r.text
    r = await sign(server, laptop, "corp-wifi", "laptop-1", ["laptop-1.wifi.example.com"])
    assert "is disabled" in assert_json_error(r, 403)["message"]


async def test_a_removed_account_is_refused(
    server: RunningServer, ca: CA, laptop: DeviceCertificate
) -> None:
    async with admin(server, ca) as http:
        assert (await http.delete(f"{ACCOUNTS}/corp-wifi")).status_code == 204
    r = await sign(server, laptop, "corp-wifi", "laptop-1", ["laptop-1.wifi.example.com"])
    assert_json_error(r, 401)


async def test_an_account_removed_behind_the_servers_back_is_refused(
    server: RunningServer, laptop: DeviceCertificate
) -> None:
    assert "account:corp-wifi" in server.authority.provisioners
    server.authority.stores.accounts.delete_account("corp-wifi")
    r = await sign(server, laptop, "corp-wifi", "laptop-1", ["laptop-1.wifi.example.com"])
    assert "no longer exists" in assert_json_error(r, 401)["message"]


async def test_a_token_works_once(server: RunningServer, laptop: DeviceCertificate) -> None:
    sans = ["laptop-1.wifi.example.com"]
    token = laptop.token(f"{server.url}/1.0/sign", "corp-wifi", "laptop-1", sans)
    first = await sign(server, laptop, "corp-wifi", "laptop-1", sans, token=token)
    assert first.status_code == 201, first.text
    again = await sign(server, laptop, "corp-wifi", "laptop-1", sans, token=token)
    assert "already been used" in assert_json_error(again, 401)["message"]


# --- with a device certificate from the real ACME device-attest-01 flow ----------------------


async def test_a_device_certificate_from_device_attest_01_gets_account_certificates(
    ca: CA, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The devices provisioner (with a stand-in attestation format) issues the device
    certificate; the same certificate lists the accounts and signs the X5C token."""
    from . import test_acme_device_attest as attest_flow
    from .acme_helpers import acme_client

    devices, stop = await attest_flow.start_devices(ca, nursery, require_inventory=True)
    try:
        ek = ek_urn_from_digest(attest_flow.DIGEST)
        devices.authority.inventory.add({"ek": ek, "name": "laptop-9", "tags": ["laptops"]})
        await create(devices, ca, **WIFI)
        device_key = ec.generate_private_key(ec.SECP256R1())
        async with acme_client(devices, "devices") as acme:
            await acme.new_account()
            _, order, challenge = await attest_flow.device_order(acme)
            await attest_flow.attest(acme, challenge, device_key, [attest_flow.DEVICE])
            csr = attest_flow.device_csr(device_key, attest_flow.DEVICE)
            done = (await acme.post(order["finalize"], {"csr": csr})).json()
            chain = x509.load_pem_x509_certificates((await acme.get(done["certificate"])).content)
        device = DeviceCertificate(device_key, chain[0], chain[1])
        [wifi] = (await listing(devices, device, tmp_path))["accounts"]
        assert (wifi["commonName"], wifi["sans"]) == ("laptop-9", ["laptop-9.wifi.example.com", ek])
        r = await sign(devices, device, "corp-wifi", wifi["commonName"], wifi["sans"])
        assert r.status_code == 201, r.text
        cert = load_pem(r.json()["crt"])
        assert cert.issuer == devices.authority.issuers["account"].certificate.subject
        assert names_of(cert) == wifi["sans"]
    finally:
        await stop.close()


# --- revocation -----------------------------------------------------------------------------


def revoke_token(server: RunningServer, device: DeviceCertificate, serial: int) -> str:
    return mint_x5c_token(
        device.key,
        [device.certificate],
        provisioner="account:corp-wifi",
        subject=str(serial),
        audience=f"{server.url}/1.0/revoke",
        now=datetime.now(UTC),
        jti=uuid.uuid4().hex,
    )


async def test_a_device_revokes_its_own_account_certificate_but_not_anothers(
    server: RunningServer, laptop: DeviceCertificate
) -> None:
    register_device(server.authority, "laptop-2", tags=["laptops"])
    other = issue_device_certificate(server.authority, "laptop-2")
    r = await sign(server, laptop, "corp-wifi", "laptop-1", ["laptop-1.wifi.example.com"])
    assert r.status_code == 201, r.text
    serial = load_pem(r.json()["crt"]).serial_number
    async with client(server) as http:
        foreign = await http.post(
            "/1.0/revoke", json={"serial": str(serial), "ott": revoke_token(server, other, serial)}
        )
        own = await http.post(
            "/1.0/revoke", json={"serial": str(serial), "ott": revoke_token(server, laptop, serial)}
        )
    assert "only its own account certificates" in assert_json_error(foreign, 403)["message"]
    assert own.status_code == 200, own.text
    record = server.authority.stores.certificates.get_certificate(format(serial, "x"))
    assert record is not None and record.status == "revoked"


async def test_a_changed_key_type_applies_at_once(
    server: RunningServer, ca: CA, laptop: DeviceCertificate
) -> None:
    async with admin(server, ca) as http:
        r = await http.patch(f"{ACCOUNTS}/corp-wifi", json={"keyType": "RSA-2048"})
    assert r.status_code == 200, r.text
    sans = ["laptop-1.wifi.example.com"]
    refused = await sign(server, laptop, "corp-wifi", "laptop-1", sans)
    assert "key type P-256 is not allowed" in assert_json_error(refused, 403)["message"]
    ok = await sign(server, laptop, "corp-wifi", "laptop-1", sans, key_type=KeyType.RSA2048)
    assert ok.status_code == 201, ok.text
