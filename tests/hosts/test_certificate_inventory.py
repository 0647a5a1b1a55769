"""The certificate inventory: ``GET /api/v1/certificates`` (filtered, paged, newest first)
and ``GET /api/v1/certificates/{serial}`` (chain, device, account, renewals, revocation),
for operators only, on both hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from engine.inventory import permanent_identifier_value
from tests.conftest import CA, RunningServer

from .account_helpers import DeviceCertificate, admin, ek_digest, ek_of
from .device_certs import Held, account_certificate, held_device, issue_ak_certificate, renewed
from .device_certs import setup_laptop as setup
from .helpers import assert_json_error, client, load_pem


@pytest.fixture
async def laptop(server: RunningServer, ca: CA) -> DeviceCertificate:
    return await setup(server, ca)


async def get(server: RunningServer, ca: CA, path: str, **params: str) -> dict[str, Any]:
    async with admin(server, ca) as http:
        r = await http.get(path, params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, dict)
    return body


async def listed(server: RunningServer, ca: CA, **params: str) -> list[str]:
    """The serials (hex, as stored) a listing with *params* returns, in its order."""
    body = await get(server, ca, "/api/v1/certificates", **params)
    return [c["serial"] for c in body["certificates"]]


async def test_an_operator_lists_every_certificate_newest_first_and_filters(
    server: RunningServer, ca: CA, laptop: DeviceCertificate
) -> None:
    device = held_device(laptop)
    wifi = await account_certificate(server, laptop)
    ak = issue_ak_certificate(server, "laptop-1")
    other = await setup(server, ca, "laptop-2")

    body = await get(server, ca, "/api/v1/certificates")
    serials = [c["serial"] for c in body["certificates"]]
    assert serials[:4] == [format(other.certificate.serial_number, "x"), ak.serial, wifi.serial,
                           device.serial]  # fmt: skip
    assert body["total"] == len(serials) and body["nextOffset"] is None
    first = body["certificates"][1]
    assert first == {
        "serial": ak.serial,
        "serialNumber": str(ak.certificate.serial_number),
        "issuer": "attestation",
        "subject": "CN=AK",
        "sans": [],
        "provisioner": "tpm",
        "provisionerType": "attestation",
        "device": ek_of("laptop-1"),
        "notBefore": first["notBefore"],
        "notAfter": ak.certificate.not_valid_after_utc.isoformat(),
        "createdAt": first["createdAt"],
        "status": "active",
    }

    mine = [ak.serial, wifi.serial, device.serial]
    assert await listed(server, ca, device=ek_of("laptop-1")) == mine
    # The device's identifier as its certificates carry it finds it too.
    identifier = permanent_identifier_value(ek_digest("laptop-1"))
    assert await listed(server, ca, device=identifier) == mine
    assert await listed(server, ca, account="corp-wifi") == [wifi.serial]
    assert await listed(server, ca, provisioner="account:corp-wifi") == [wifi.serial]
    assert await listed(server, ca, issuer="attestation") == [ak.serial]
    assert await listed(server, ca, provisioner="devices", issuer="agent") == [
        format(other.certificate.serial_number, "x"),
        device.serial,
    ]
    assert await listed(server, ca, search="laptop-1.wifi.example") == [wifi.serial]
    assert await listed(server, ca, search="LAPTOP-1.WIFI") == [wifi.serial]
    # The AK certificate lasts a day, the device certificates two.
    assert ak.serial in await listed(server, ca, expiring="36h")
    assert device.serial not in await listed(server, ca, expiring="36h")
    assert device.serial in await listed(server, ca, status="expiring", expiring="3d")
    assert await listed(server, ca, status="expired") == []

    page = await get(server, ca, "/api/v1/certificates", device=ek_of("laptop-1"), limit="2")
    assert [c["serial"] for c in page["certificates"]] == mine[:2]
    assert (page["total"], page["limit"], page["offset"], page["nextOffset"]) == (3, 2, 0, 2)
    page = await get(
        server, ca, "/api/v1/certificates", device=ek_of("laptop-1"), limit="2", offset="2"
    )
    assert [c["serial"] for c in page["certificates"]] == mine[2:]
    assert page["nextOffset"] is None

    async with admin(server, ca) as http:
        r = await http.post(f"/api/v1/certificates/0x{wifi.serial}/revoke", json={"reason": "lost"})
    assert r.status_code == 200, r.text
    assert await listed(server, ca, status="revoked") == [wifi.serial]
    assert await listed(server, ca, status="active", device=ek_of("laptop-1")) == [
        ak.serial,
        device.serial,
    ]


def chain_of(body: dict[str, Any]) -> list[x509.Certificate]:
    return [load_pem(pem) for pem in body["chain"]]


async def test_a_certificate_in_detail_with_its_chain_device_account_and_renewals(
    server: RunningServer, ca: CA, laptop: DeviceCertificate, tmp_path: Path
) -> None:
    wifi = await account_certificate(server, laptop)
    again: Held = await renewed(server, wifi, tmp_path)

    body = await get(server, ca, f"/api/v1/certificates/{again.certificate.serial_number}")
    certificate = body["certificate"]
    assert certificate["serial"] == again.serial and certificate["status"] == "active"
    assert certificate["account"] == "corp-wifi"
    assert certificate["evidence"]["renewed_from"] == wifi.serial
    chain = chain_of(body)
    assert chain[0] == again.certificate
    assert chain[1].subject == again.certificate.issuer
    assert chain[-1] == x509.load_pem_x509_certificate(ca.root_path.read_bytes())
    assert len(chain) == 3
    assert body["device"]["ek"] == ek_of("laptop-1") and body["device"]["name"] == "laptop-1"
    assert body["account"]["name"] == "corp-wifi"
    assert body["renewedFrom"]["serial"] == wifi.serial
    assert body["renewedFrom"]["status"] == "active"
    assert body["renewedBy"] == []
    assert body["revocation"] is None

    # The certificate it renewed names it as its renewal; hex with 0x finds it too.
    original = await get(server, ca, f"/api/v1/certificates/0x{wifi.serial}")
    assert original["renewedFrom"] is None
    assert [c["serial"] for c in original["renewedBy"]] == [again.serial]

    async with admin(server, ca) as http:
        r = await http.post(
            f"/api/v1/certificates/{wifi.certificate.serial_number}/revoke",
            json={"reason": "replaced", "reasonCode": 4},
        )
    assert r.status_code == 200, r.text
    revoked = await get(server, ca, f"/api/v1/certificates/{wifi.certificate.serial_number}")
    assert revoked["certificate"]["status"] == "revoked"
    assert revoked["revocation"] == {
        "revokedAt": revoked["revocation"]["revokedAt"],
        "reasonCode": 4,
        "reason": "replaced",
        "revokedBy": "admin-token",
    }


async def test_the_inventory_is_for_operators_only(
    server: RunningServer, ca: CA, laptop: DeviceCertificate, tmp_path: Path
) -> None:
    serial = laptop.certificate.serial_number
    # Neither anonymous clients nor the device's own certificate may read it.
    for cert in (None, laptop.client_pem(tmp_path / "laptop.pem")):
        async with client(server, cert=cert) as http:
            for path in ("/api/v1/certificates", f"/api/v1/certificates/{serial}"):
                assert_json_error(await http.get(path), 401)
    async with client(server) as http:
        http.headers["Authorization"] = "Bearer not-the-admin-token"
        assert_json_error(await http.get("/api/v1/certificates"), 401)


BAD_FILTERS: list[tuple[dict[str, str], str]] = [
    ({"status": "valid"}, "status must be one of"),
    ({"expiring": "soon"}, "duration"),
    ({"expiring": "7d", "status": "revoked"}, "expiring"),
    ({"limit": "0"}, "limit"),
    ({"limit": "501"}, "limit"),
    ({"offset": "-1"}, "offset"),
    ({"limit": "ten"}, "integers"),
    ({"device": "laptop-1"}, "EK"),
    ({"owner": "alice"}, "unknown filter owner"),
    ({"search": "x" * 300}, "search"),
]


async def test_bad_filters_are_400_with_a_json_body(server: RunningServer, ca: CA) -> None:
    async with admin(server, ca) as http:
        for params, message in BAD_FILTERS:
            r = await http.get("/api/v1/certificates", params=params)
            assert message in assert_json_error(r, 400)["message"], params


async def test_an_unknown_or_malformed_serial(server: RunningServer, ca: CA) -> None:
    async with admin(server, ca) as http:
        assert (
            "no certificate"
            in assert_json_error(await http.get("/api/v1/certificates/0xdeadbeef"), 404)["message"]
        )
        for bad in ("zz", "0xzz", "-5", "0"):
            r: httpx.Response = await http.get(f"/api/v1/certificates/{bad}")
            assert_json_error(r, 400)
