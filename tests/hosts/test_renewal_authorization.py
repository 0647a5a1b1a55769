"""``POST /1.0/renew`` is authorized by the provisioner that issued the certificate: a
device certificate renews only while its device is registered and active; an account
certificate only while the device, its device certificate and the account are active and
the account is still assigned, and never past the device certificate; each renewal
stores full evidence. Through both hosts, with the current certificate over mTLS."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import attrs
import pytest

from engine.accounts import update_account
from engine.extensions import ProvisionerRef
from engine.inventory import DeviceStatus
from engine.ports import FrozenClock
from plugins.api import Provisioner
from tests.conftest import CA, RunningServer

from .account_helpers import (
    DeviceCertificate,
    admin,
    ek_of,
    issue_device_certificate,
    register_device,
)
from .device_certs import (
    WIFI,
    account_certificate,
    held_device,
    issue_ak_certificate,
    record_of,
    refused,
    renew,
    renewed,
    setup_laptop,
)
from .helpers import client, issue, load_pem


@pytest.fixture
async def laptop(server: RunningServer, ca: CA) -> DeviceCertificate:
    return await setup_laptop(server, ca)


# Changes made behind the revocation (another process, an older devid, a direct store
# edit): renewal must refuse on its own, whatever the certificate's status says.


def disable_in_store(server: RunningServer, label: str) -> None:
    store = server.authority.stores.devices
    device = store.get_device(ek_of(label))
    assert device is not None
    store.put_device(attrs.evolve(device, status=DeviceStatus.DISABLED))


# --- device certificates ---------------------------------------------------------------


async def test_a_device_certificate_renews_while_its_device_is_active(
    server: RunningServer, laptop: DeviceCertificate, tmp_path: Path
) -> None:
    new = await renewed(server, held_device(laptop), tmp_path)
    assert new.certificate.issuer == laptop.certificate.issuer
    assert ProvisionerRef.from_certificate(new.certificate) == ProvisionerRef("ACME", "devices")
    record = record_of(server, new.serial)
    assert (record.provisioner_type, record.provisioner_name) == ("ACME", "devices")
    assert record.device == ek_of("laptop-1")
    assert record.evidence["renewed_from"] == format(laptop.certificate.serial_number, "x")
    assert record.evidence["attestation"]["ek_urns"] == [ek_of("laptop-1")]
    renewal = record.evidence["renewal"]
    assert renewal["provisioner"] == "devices"
    assert renewal["checked"] == {"device": ek_of("laptop-1"), "device_status": "active"}


async def test_a_disabled_device_cannot_renew_its_device_certificate(
    server: RunningServer, laptop: DeviceCertificate, tmp_path: Path
) -> None:
    disable_in_store(server, "laptop-1")
    count = server.authority.stores.certificates.count_certificates()
    refused(await renew(server, held_device(laptop), tmp_path), "is disabled")
    assert server.authority.stores.certificates.count_certificates() == count


async def test_a_removed_device_cannot_renew_its_device_certificate(
    server: RunningServer, laptop: DeviceCertificate, tmp_path: Path
) -> None:
    assert server.authority.stores.devices.delete_device(ek_of("laptop-1"))
    refused(await renew(server, held_device(laptop), tmp_path), "not in this CA's inventory")


async def test_an_unregistered_device_certificate_is_not_renewed(
    server: RunningServer, tmp_path: Path
) -> None:
    stranger = issue_device_certificate(server.authority, "stranger")
    refused(await renew(server, held_device(stranger), tmp_path), "not in this CA's inventory")


async def test_disabling_a_device_stops_renewal_of_both_its_certificates(
    server: RunningServer, ca: CA, laptop: DeviceCertificate, tmp_path: Path
) -> None:
    wifi = await account_certificate(server, laptop)
    async with admin(server, ca) as http:
        r = await http.post(f"/api/v1/devices/{ek_of('laptop-1')}/disable")
    assert r.status_code == 200, r.text
    refused(await renew(server, held_device(laptop), tmp_path), "revoked")
    refused(await renew(server, wifi, tmp_path), "revoked")


# --- account certificates --------------------------------------------------------------


async def test_an_account_certificate_renews_with_full_evidence(
    server: RunningServer, laptop: DeviceCertificate, tmp_path: Path
) -> None:
    wifi = await account_certificate(server, laptop)
    new = await renewed(server, wifi, tmp_path)
    assert new.certificate.issuer == wifi.certificate.issuer
    assert new.certificate.subject == wifi.certificate.subject
    assert ProvisionerRef.from_certificate(new.certificate) == ProvisionerRef(
        "X5C", "account:corp-wifi"
    )
    first = record_of(server, wifi.serial)
    record = record_of(server, new.serial)
    assert record.provisioner_name == "account:corp-wifi"
    assert record.device == ek_of("laptop-1")
    device_serial = format(laptop.certificate.serial_number, "x")
    # The original evidence, carried over...
    for key in ("account", "account_id", "device", "leaf_serial", "leaf_sha256", "method"):
        assert record.evidence[key] == first.evidence[key], key
    assert record.evidence["leaf_serial"] == device_serial
    # ...what it was renewed from, and what the renewal checked.
    assert record.evidence["renewed_from"] == wifi.serial
    renewal = record.evidence["renewal"]
    assert renewal["provisioner"] == "account:corp-wifi"
    assert renewal["checked"] == {
        "device": ek_of("laptop-1"),
        "device_status": "active",
        "device_certificate": device_serial,
        "device_certificate_status": "active",
        "account": "corp-wifi",
        "account_id": first.evidence["account_id"],
        "account_status": "active",
        "assigned": True,
    }
    assert renewal["not_after_limit"] == laptop.certificate.not_valid_after_utc.isoformat()


async def test_a_disabled_device_cannot_renew_its_account_certificate(
    server: RunningServer, laptop: DeviceCertificate, tmp_path: Path
) -> None:
    wifi = await account_certificate(server, laptop)
    disable_in_store(server, "laptop-1")
    refused(await renew(server, wifi, tmp_path), "is disabled")


async def test_a_removed_device_cannot_renew_its_account_certificate(
    server: RunningServer, laptop: DeviceCertificate, tmp_path: Path
) -> None:
    wifi = await account_certificate(server, laptop)
    assert server.authority.stores.devices.delete_device(ek_of("laptop-1"))
    refused(await renew(server, wifi, tmp_path), "not in this CA's inventory")


async def test_a_revoked_device_certificate_stops_its_account_certificates_renewing(
    server: RunningServer, laptop: DeviceCertificate, tmp_path: Path
) -> None:
    wifi = await account_certificate(server, laptop)
    pem = held_device(laptop).client_pem(tmp_path / "device.pem")
    async with client(server, cert=pem) as http:
        r = await http.post("/1.0/revoke", json={"serial": str(laptop.certificate.serial_number)})
    assert r.status_code == 200, r.text
    refused(
        await renew(server, wifi, tmp_path), "the certificate that obtained this one is revoked"
    )


async def test_a_removed_account_stops_renewal(
    server: RunningServer, laptop: DeviceCertificate, tmp_path: Path
) -> None:
    wifi = await account_certificate(server, laptop)
    assert server.authority.stores.accounts.delete_account("corp-wifi")
    refused(await renew(server, wifi, tmp_path), "corp-wifi")


async def test_an_account_removed_and_created_again_does_not_renew_the_old_certificates(
    server: RunningServer, ca: CA, laptop: DeviceCertificate, tmp_path: Path
) -> None:
    wifi = await account_certificate(server, laptop)
    assert server.authority.stores.accounts.delete_account("corp-wifi")
    async with admin(server, ca) as http:
        r = await http.post("/api/v1/accounts", json=WIFI)
    assert r.status_code == 201, r.text
    refused(await renew(server, wifi, tmp_path), "removed and re-created")


async def test_an_unassigned_account_stops_renewal(
    server: RunningServer, laptop: DeviceCertificate, tmp_path: Path
) -> None:
    wifi = await account_certificate(server, laptop)
    store = server.authority.stores.accounts
    account = store.get_account("corp-wifi")
    assert account is not None
    changed = update_account(account, {"tags": ["desktops"]}, now=server.authority.clock.now())
    assert store.update_account(changed)
    refused(await renew(server, wifi, tmp_path), "is not assigned to the device")


async def test_a_disabled_account_stops_renewal(
    server: RunningServer, laptop: DeviceCertificate, tmp_path: Path
) -> None:
    wifi = await account_certificate(server, laptop)
    store = server.authority.stores.accounts
    account = store.get_account("corp-wifi")
    assert account is not None
    changed = update_account(account, {"status": "disabled"}, now=server.authority.clock.now())
    assert store.update_account(changed)
    refused(await renew(server, wifi, tmp_path), "is disabled")


async def test_a_renewal_of_a_renewal_follows_the_same_rules(
    server: RunningServer, laptop: DeviceCertificate, tmp_path: Path
) -> None:
    wifi = await account_certificate(server, laptop)
    second = await renewed(server, wifi, tmp_path)
    third = await renewed(server, second, tmp_path)
    record = record_of(server, third.serial)
    assert record.provisioner_name == "account:corp-wifi"
    assert record.evidence["renewed_from"] == second.serial
    assert record.evidence["leaf_serial"] == format(laptop.certificate.serial_number, "x")
    disable_in_store(server, "laptop-1")
    refused(await renew(server, third, tmp_path), "is disabled")
    refused(await renew(server, held_device(laptop), tmp_path), "is disabled")


async def test_a_renewed_account_certificate_never_outlives_the_device_certificate(
    server: RunningServer, ca: CA, tmp_path: Path
) -> None:
    register_device(server.authority, "laptop-1", tags=["laptops"])
    async with admin(server, ca) as http:
        r = await http.post("/api/v1/accounts", json=WIFI)  # validity 24h
    assert r.status_code == 201, r.text
    device = issue_device_certificate(
        server.authority, "laptop-1", lifetime=timedelta(hours=24, minutes=30)
    )
    wifi = await account_certificate(server, device)
    assert wifi.certificate.not_valid_after_utc < device.certificate.not_valid_after_utc
    # An hour later, a renewal of the same lifetime would end after the device certificate.
    later = server.authority.clock.now() + timedelta(hours=1)
    server.authority.clock = FrozenClock(later)
    new = await renewed(server, wifi, tmp_path)
    assert new.certificate.not_valid_after_utc <= device.certificate.not_valid_after_utc
    assert new.certificate.not_valid_after_utc == device.certificate.not_valid_after_utc


# --- other provisioners ------------------------------------------------------------------


async def test_a_jwk_certificate_renews_as_its_provisioner_allows(
    server: RunningServer, tmp_path: Path
) -> None:
    current = await issue(server, "svc.example.com")
    pem = current.write_client_pem(tmp_path / "svc.pem")
    async with client(server, cert=pem) as http:
        r = await http.post("/1.0/renew")
    assert r.status_code == 201, r.text
    new = load_pem(r.json()["crt"])
    record = record_of(server, format(new.serial_number, "x"))
    assert record.provisioner_name == "admin"
    assert record.evidence["method"] == "jwk-token"
    assert record.evidence["renewal"]["checked"] == {"allow_renewal": True}
    provisioner = server.authority.provisioners["admin"]
    provisioner.allow_renewal = False  # type: ignore[attr-defined]
    async with client(server, cert=pem) as http:
        r = await http.post("/1.0/renew")
    refused(r, "does not allow renewal")


async def test_an_ak_certificate_is_not_renewed(server: RunningServer, tmp_path: Path) -> None:
    register_device(server.authority, "laptop-1")
    ak = issue_ak_certificate(server, "laptop-1")
    refused(await renew(server, ak, tmp_path), "AK certificates are not renewed")


async def test_a_provisioner_without_authorize_renew_renews_nothing(
    server: RunningServer, tmp_path: Path
) -> None:
    current = await issue(server, "svc.example.com")

    class NoRenewal(Provisioner):
        """A provisioner type that leaves authorize_renew to the base class."""

        type_name = "JWK"

        def __init__(self) -> None:
            self.name = "admin"
            self.issuer = "tls"

    server.authority.provisioners = {**server.authority.provisioners, "admin": NoRenewal()}
    pem = current.write_client_pem(tmp_path / "svc.pem")
    async with client(server, cert=pem) as http:
        r = await http.post("/1.0/renew")
    refused(r, "does not renew certificates")


async def test_a_certificate_whose_provisioner_is_gone_is_not_renewed(
    server: RunningServer, tmp_path: Path
) -> None:
    current = await issue(server, "svc.example.com")
    remaining = {k: v for k, v in server.authority.provisioners.items() if k != "admin"}
    server.authority.provisioners = remaining
    pem = current.write_client_pem(tmp_path / "svc.pem")
    async with client(server, cert=pem) as http:
        r = await http.post("/1.0/renew")
    refused(r, "no provisioner named 'admin' renews certificates here")


async def test_a_certificate_from_a_ca_its_provisioner_no_longer_uses_is_not_renewed(
    server: RunningServer, tmp_path: Path
) -> None:
    """A JWK certificate from before the TLS CA (issued by the Agent CA) must not be renewed
    on the Agent CA, which now vouches for devices only."""
    current = await issue(server, "svc.example.com")
    provisioner = server.authority.provisioners["admin"]
    assert provisioner.issuer == "tls"
    provisioner.issuer = "account"  # type: ignore[misc]  # as if the certificate predates a move
    pem = current.write_client_pem(tmp_path / "svc.pem")
    async with client(server, cert=pem) as http:
        r = await http.post("/1.0/renew")
    refused(r, "now issues from 'account': get a new certificate")
