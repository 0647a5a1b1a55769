"""Disabling or removing a device revokes every certificate issued to it (device, account
and AK certificates), and the CRLs list them at once; removing an account, or taking a
device out of its assignment, revokes that account's certificates of the devices that
lost it. Through both hosts' admin API, the inventory import and the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from hosts.core.authority import Authority
from hosts.core.config import load_config
from hosts.store import open_sqlite
from tests.conftest import CA, RunningServer, new_csr, sign_json

from .account_helpers import DeviceCertificate, admin, ek_of, issue_device_certificate
from .device_certs import (
    WIFI,
    Held,
    account_certificate,
    held_device,
    issue_ak_certificate,
    record_of,
    refused,
    renew,
    setup_laptop,
)
from .helpers import client, run_devid

PRIVILEGE_WITHDRAWN = x509.ReasonFlags.privilege_withdrawn
CESSATION_OF_OPERATION = x509.ReasonFlags.cessation_of_operation


async def crl(server: RunningServer, issuer: str) -> x509.CertificateRevocationList:
    async with client(server) as http:
        r = await http.get(f"/crl/{issuer}")
    assert r.status_code == 200, r.text
    return x509.load_der_x509_crl(r.content)


async def crl_reason(
    server: RunningServer, issuer: str, held: Held | DeviceCertificate
) -> x509.ReasonFlags | None:
    """The reason the issuer's CRL gives for *held*; None if it is not listed (fails if
    it is listed without a reason)."""
    entry = (await crl(server, issuer)).get_revoked_certificate_by_serial_number(
        held.certificate.serial_number
    )
    if entry is None:
        return None
    return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason


class Laptop:
    """laptop-1 with its device, corp-wifi and AK certificates."""

    def __init__(self, device: DeviceCertificate, wifi: Held, ak: Held) -> None:
        self.device = device
        self.wifi = wifi
        self.ak = ak

    async def reasons(self, server: RunningServer) -> dict[str, x509.ReasonFlags | None]:
        return {
            "device": await crl_reason(server, "agent", self.device),
            "wifi": await crl_reason(server, "account", self.wifi),
            "ak": await crl_reason(server, "attestation", self.ak),
        }

    def status(self, server: RunningServer) -> dict[str, str]:
        return {
            "device": record_of(server, held_device(self.device).serial).status,
            "wifi": record_of(server, self.wifi.serial).status,
            "ak": record_of(server, self.ak.serial).status,
        }


async def laptop_with_certificates(server: RunningServer, ca: CA, label: str) -> Laptop:
    device = await setup_laptop(server, ca, label)
    wifi = await account_certificate(server, device, label)
    return Laptop(device, wifi, issue_ak_certificate(server, label))


@pytest.fixture
async def laptops(server: RunningServer, ca: CA) -> tuple[Laptop, Laptop]:
    return (
        await laptop_with_certificates(server, ca, "laptop-1"),
        await laptop_with_certificates(server, ca, "laptop-2"),
    )


def path_of(label: str) -> str:
    return f"/api/v1/devices/{ek_of(label)}"


async def test_disabling_a_device_lists_all_its_certificates_on_the_crls_at_once(
    server: RunningServer, ca: CA, laptops: tuple[Laptop, Laptop]
) -> None:
    one, two = laptops
    nothing = {"device": None, "wifi": None, "ak": None}
    assert await one.reasons(server) == nothing
    async with admin(server, ca) as http:
        r = await http.post(f"{path_of('laptop-1')}/disable")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "disabled"
    withdrawn = {
        "device": PRIVILEGE_WITHDRAWN,
        "wifi": PRIVILEGE_WITHDRAWN,
        "ak": PRIVILEGE_WITHDRAWN,
    }
    assert await one.reasons(server) == withdrawn
    assert await two.reasons(server) == nothing  # the other device keeps its certificates
    assert two.status(server) == {"device": "active", "wifi": "active", "ak": "active"}
    revocation = server.authority.stores.certificates.revoked_entries(
        "account", server.authority.clock.now()
    )
    assert [e.serial for e in revocation] == [one.wifi.certificate.serial_number]


async def test_enabling_the_device_again_revokes_nothing_back(
    server: RunningServer, ca: CA, laptops: tuple[Laptop, Laptop], tmp_path: Path
) -> None:
    one, _ = laptops
    async with admin(server, ca) as http:
        assert (await http.post(f"{path_of('laptop-1')}/disable")).status_code == 200
        r = await http.patch(path_of("laptop-1"), json={"status": "active"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active"
    assert one.status(server) == {"device": "revoked", "wifi": "revoked", "ak": "revoked"}
    assert (await one.reasons(server))["device"] == PRIVILEGE_WITHDRAWN
    refused(await renew(server, held_device(one.device), tmp_path), "revoked")
    refused(await renew(server, one.wifi, tmp_path), "revoked")


async def test_removing_a_device_revokes_all_its_certificates(
    server: RunningServer, ca: CA, laptops: tuple[Laptop, Laptop]
) -> None:
    one, two = laptops
    async with admin(server, ca) as http:
        r = await http.delete(path_of("laptop-1"))
    assert r.status_code == 204, r.text
    gone = dict.fromkeys(("device", "wifi", "ak"), CESSATION_OF_OPERATION)
    assert await one.reasons(server) == gone
    assert two.status(server) == {"device": "active", "wifi": "active", "ak": "active"}


async def test_a_revocation_says_why_and_is_audited(
    server: RunningServer, ca: CA, laptops: tuple[Laptop, Laptop]
) -> None:
    one, _ = laptops
    events: list[tuple[str, dict[str, Any]]] = []

    def audit(event: str, fields: Mapping[str, Any]) -> None:
        events.append((event, dict(fields)))

    server.authority.inventory.revoker.audit = audit
    async with admin(server, ca) as http:
        assert (await http.post(f"{path_of('laptop-1')}/disable")).status_code == 200
    ek = ek_of("laptop-1")
    assert sorted(f["serial"] for _, f in events) == sorted(
        [held_device(one.device).serial, one.wifi.serial, one.ak.serial]
    )
    for event, fields in events:
        assert event == "certificate.revoked"
        assert fields["reason"] == f"the device {ek} was disabled"
        assert fields["reason_code"] == 9
        assert fields["by"] == "device-inventory"
        assert fields["device"] == ek


async def test_untagging_a_device_revokes_only_the_account_certificates_it_lost(
    server: RunningServer, ca: CA, laptops: tuple[Laptop, Laptop]
) -> None:
    one, two = laptops
    async with admin(server, ca) as http:
        r = await http.patch(path_of("laptop-1"), json={"tags": ["desktops"]})
    assert r.status_code == 200, r.text
    assert one.status(server) == {"device": "active", "wifi": "revoked", "ak": "active"}
    assert (await one.reasons(server))["wifi"] == PRIVILEGE_WITHDRAWN
    assert two.status(server)["wifi"] == "active"


async def test_removing_an_account_revokes_its_certificates(
    server: RunningServer, ca: CA, laptops: tuple[Laptop, Laptop]
) -> None:
    one, _ = laptops
    async with admin(server, ca) as http:
        r = await http.delete("/api/v1/accounts/corp-wifi")
    assert r.status_code == 204, r.text
    for laptop in laptops:
        assert laptop.status(server) == {"device": "active", "wifi": "revoked", "ak": "active"}
        assert (await laptop.reasons(server))["wifi"] == CESSATION_OF_OPERATION
    record = record_of(server, one.wifi.serial)
    assert record.status == "revoked"


async def test_an_account_reassigned_revokes_the_certificates_of_devices_that_lost_it(
    server: RunningServer, ca: CA, laptops: tuple[Laptop, Laptop]
) -> None:
    one, two = laptops
    async with admin(server, ca) as http:
        r = await http.patch(
            "/api/v1/accounts/corp-wifi", json={"tags": [], "devices": [ek_of("laptop-2")]}
        )
    assert r.status_code == 200, r.text
    assert one.status(server)["wifi"] == "revoked"
    assert two.status(server)["wifi"] == "active"


async def test_an_import_that_disables_a_device_revokes_its_certificates(
    server: RunningServer, laptops: tuple[Laptop, Laptop]
) -> None:
    one, two = laptops
    report = server.authority.inventory.upsert_many(
        [{"ek": ek_of("laptop-1"), "status": "disabled"}, {"ek": ek_of("laptop-2")}]
    )
    assert [r.outcome for r in report.rows] == ["updated", "unchanged"]
    assert one.status(server) == {"device": "revoked", "wifi": "revoked", "ak": "revoked"}
    assert two.status(server) == {"device": "active", "wifi": "active", "ak": "active"}


def test_devid_device_disable_and_remove_revoke(ca: CA) -> None:
    authority = Authority.load(ca.data_dir, ca.password)
    try:
        for label in ("laptop-1", "laptop-2"):
            authority.inventory.add({"ek": ek_of(label), "tags": ["laptops"]})
        first = issue_device_certificate(authority, "laptop-1")
        second = issue_device_certificate(authority, "laptop-2")
    finally:
        authority.close()
    disabled = run_devid("device", "disable", "--data", ca.data_dir, ek_of("laptop-1"))
    assert disabled.stdout.strip() == f"Disabled {ek_of('laptop-1')}; 1 certificate revoked"
    removed = run_devid("device", "remove", "--data", ca.data_dir, ek_of("laptop-2"))
    assert removed.stdout.strip() == f"Removed {ek_of('laptop-2')}; 1 certificate revoked"
    enabled = run_devid("device", "enable", "--data", ca.data_dir, ek_of("laptop-1"))
    assert enabled.stdout.strip() == f"Enabled {ek_of('laptop-1')}"
    stores = open_sqlite(load_config(ca.data_dir).store.path)
    try:
        for device in (first, second):
            record = stores.certificates.get_certificate(
                format(device.certificate.serial_number, "x")
            )
            assert record is not None and record.status == "revoked"
        entries = {
            e.serial: e.reason_code
            for e in stores.certificates.revoked_entries("agent", datetime.now(UTC))
        }
        assert entries == {
            first.certificate.serial_number: 9,
            second.certificate.serial_number: 5,
        }
    finally:
        stores.close()


def test_devid_account_remove_revokes_its_certificates(ca: CA) -> None:
    authority = Authority.load(ca.data_dir, ca.password)
    try:
        authority.set_base_urls(["https://ca.test"])
        authority.accounts.add(WIFI)
        authority.inventory.add({"ek": ek_of("laptop-1"), "name": "laptop-1", "tags": ["laptops"]})
        device = issue_device_certificate(authority, "laptop-1")
        sans = ["laptop-1.wifi.example.com", ek_of("laptop-1")]
        ott = device.token("https://ca.test/1.0/sign", "corp-wifi", "laptop-1", sans)
        response = sign_json(authority, {"csr": new_csr("laptop-1", sans)[2], "ott": ott})
    finally:
        authority.close()
    wifi = x509.load_pem_x509_certificate(response["crt"].encode())
    run_devid("account", "remove", "--data", ca.data_dir, "corp-wifi")
    stores = open_sqlite(load_config(ca.data_dir).store.path)
    try:
        record = stores.certificates.get_certificate(format(wifi.serial_number, "x"))
        assert record is not None and record.status == "revoked"
        device_record = stores.certificates.get_certificate(
            format(device.certificate.serial_number, "x")
        )
        assert device_record is not None and device_record.status == "active"
        revoked = stores.certificates.revoked_entries("account", datetime.now(UTC))
        assert [(e.serial, e.reason_code) for e in revoked] == [(wifi.serial_number, 5)]
    finally:
        stores.close()
