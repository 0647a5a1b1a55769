"""The accounts REST API (``/api/v1/accounts``, admin credential) and the listing a device
fetches over mTLS with its device certificate (``GET /api/v1/device/accounts``), through
both hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CA, RunningServer

from .account_helpers import (
    ACCOUNTS,
    DEVICE_ACCOUNTS,
    WIFI,
    admin,
    ek_of,
    issue_device_certificate,
    register_device,
)
from .helpers import assert_json_error, client, issue


async def create(server: RunningServer, ca: CA, **fields: Any) -> dict[str, Any]:
    async with admin(server, ca) as http:
        r = await http.post(ACCOUNTS, json=fields)
    assert r.status_code == 201, r.text
    return dict(r.json())


# --- authentication --------------------------------------------------------------------------


ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", ACCOUNTS, None),
    ("POST", ACCOUNTS, WIFI),
    ("GET", f"{ACCOUNTS}/corp-wifi", None),
    ("PATCH", f"{ACCOUNTS}/corp-wifi", {"validity": "8h"}),
    ("DELETE", f"{ACCOUNTS}/corp-wifi", None),
]


async def test_every_admin_route_needs_an_admin_credential(server: RunningServer, ca: CA) -> None:
    kept = await create(server, ca, **WIFI)
    async with client(server) as http:
        for method, path, body in ROUTES:
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                r = await http.request(method, path, json=body, headers=headers)
                assert_json_error(r, 401)
    stored = server.authority.stores.accounts.get_account("corp-wifi")
    assert stored is not None and stored.to_json() == kept


async def test_a_device_certificate_is_not_an_admin_credential(
    server: RunningServer, ca: CA, tmp_path: Path
) -> None:
    register_device(server.authority, "laptop-1", tags=["laptops"])
    device = issue_device_certificate(server.authority, "laptop-1")
    async with client(server, cert=device.client_pem(tmp_path / "device.pem")) as http:
        r = await http.get(ACCOUNTS)
    assert_json_error(r, 401)


# --- create, read, update, delete -----------------------------------------------------------


async def test_an_account_is_created_read_listed_and_its_provisioner_appears(
    server: RunningServer, ca: CA
) -> None:
    created = await create(server, ca, **WIFI)
    assert created["name"] == "corp-wifi"
    assert created["provisioner"] == "account:corp-wifi"
    assert created["eku"] == ["clientAuth"]
    assert created["keyType"] == "P-256"
    assert created["validity"] == "1d"
    assert created["tpmKey"] is True and created["pkcs12"] is False
    assert created["status"] == "active"
    assert created["id"] and created["createdAt"] and created["updatedAt"]
    async with admin(server, ca) as http:
        one = await http.get(f"{ACCOUNTS}/corp-wifi")
        listing = await http.get(ACCOUNTS)
        provisioners = await http.get("/provisioners")
    assert one.json() == created
    assert listing.json() == {"accounts": [created], "total": 1}
    views = {p["name"]: p for p in provisioners.json()["provisioners"]}
    view = views["account:corp-wifi"]
    assert view["type"] == "X5C"
    assert view["issuer"] == "account"
    assert view["account"] == "corp-wifi"
    agent_ca = server.authority.issuers["agent"].certificate
    assert [r["subject"] for r in view["roots"]] == [agent_ca.subject.rfc4514_string()]


async def test_the_listing_filters_by_type_status_and_device(server: RunningServer, ca: CA) -> None:
    register_device(server.authority, "laptop-1", tags=["laptops"])
    await create(server, ca, **WIFI)
    await create(server, ca, name="vpn", type="vpn", devices=[ek_of("other")])
    await create(server, ca, name="old", type="web", tags=["laptops"], status="disabled")
    async with admin(server, ca) as http:
        by_type = (await http.get(ACCOUNTS, params={"type": "vpn"})).json()
        disabled = (await http.get(ACCOUNTS, params={"status": "disabled"})).json()
        for_device = (await http.get(ACCOUNTS, params={"device": ek_of("laptop-1")})).json()
        bad = await http.get(ACCOUNTS, params={"type": "printer"})
    assert [a["name"] for a in by_type["accounts"]] == ["vpn"]
    assert [a["name"] for a in disabled["accounts"]] == ["old"]
    assert [a["name"] for a in for_device["accounts"]] == ["corp-wifi"]
    assert "type must be one of" in assert_json_error(bad, 400)["message"]


async def test_an_account_is_updated_and_its_provisioner_rebuilt(
    server: RunningServer, ca: CA
) -> None:
    created = await create(server, ca, **WIFI)
    before = server.authority.provisioners["account:corp-wifi"]
    async with admin(server, ca) as http:
        r = await http.patch(
            f"{ACCOUNTS}/corp-wifi", json={"validity": "8h", "keyType": "RSA-2048", "pkcs12": True}
        )
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["validity"] == "8h" and updated["keyType"] == "RSA-2048" and updated["pkcs12"]
    assert updated["id"] == created["id"] and updated["createdAt"] == created["createdAt"]
    after = server.authority.provisioners["account:corp-wifi"]
    assert after is not before
    assert after.public_view()["durations"]["max"] == "8h"


async def test_an_account_is_removed_with_its_provisioner(server: RunningServer, ca: CA) -> None:
    await create(server, ca, **WIFI)
    async with admin(server, ca) as http:
        r = await http.delete(f"{ACCOUNTS}/corp-wifi")
        assert r.status_code == 204, r.text
        gone = await http.get(f"{ACCOUNTS}/corp-wifi")
        again = await http.delete(f"{ACCOUNTS}/corp-wifi")
    assert_json_error(gone, 404)
    assert_json_error(again, 404)
    assert "account:corp-wifi" not in server.authority.provisioners
    assert "admin" in server.authority.provisioners


async def test_a_duplicate_name_is_a_conflict(server: RunningServer, ca: CA) -> None:
    await create(server, ca, **WIFI)
    async with admin(server, ca) as http:
        r = await http.post(ACCOUNTS, json={**WIFI, "type": "vpn"})
    assert "already exists" in assert_json_error(r, 409)["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"type": "wifi"}, "account name"),
        ({"name": "x"}, "needs a type"),
        ({"name": "x", "type": "wifi", "commonName": "{device.colour}"}, "unknown placeholder"),
        ({"name": "x", "type": "wifi", "keyType": "RSA-4096"}, "not allowed for accounts"),
        ({"name": "x", "type": "wifi", "validity": "90d"}, "validity must be between"),
        ({"name": "x", "type": "wifi", "devices": ["not-an-ek"]}, "urn:ek:sha256"),
        ({"name": "x", "type": "wifi", "sans": ["{device.owner}"]}, "say what kind of name"),
    ],
)
async def test_bad_accounts_are_refused_with_clear_messages(
    server: RunningServer, ca: CA, body: dict[str, Any], message: str
) -> None:
    async with admin(server, ca) as http:
        r = await http.post(ACCOUNTS, json=body)
    assert message in assert_json_error(r, 400)["message"]
    assert server.authority.stores.accounts.list_accounts() == []


async def test_bad_updates_are_refused(server: RunningServer, ca: CA) -> None:
    await create(server, ca, **WIFI)
    async with admin(server, ca) as http:
        renamed = await http.patch(f"{ACCOUNTS}/corp-wifi", json={"name": "other"})
        missing = await http.patch(f"{ACCOUNTS}/nothing", json={"validity": "1h"})
        bad_name = await http.get(f"{ACCOUNTS}/Not%20A%20Name")
    assert "cannot change name" in assert_json_error(renamed, 400)["message"]
    assert_json_error(missing, 404)
    assert_json_error(bad_name, 400)


# --- what a device fetches over mTLS ----------------------------------------------------------


async def test_a_device_lists_its_accounts_with_what_the_agent_needs(
    server: RunningServer, ca: CA, tmp_path: Path
) -> None:
    urn = register_device(server.authority, "laptop-1", tags=["laptops"])
    await create(server, ca, **WIFI)
    await create(
        server, ca, name="vpn", type="vpn", devices=[urn], keyType="RSA-2048", validity="8h",
        tpmKey=False, pkcs12=True, eku=["clientAuth", "ipsecIKE"],
    )  # fmt: skip
    await create(server, ca, name="not-mine", type="web", devices=[ek_of("other")])
    await create(server, ca, name="off", type="web", devices=[urn], status="disabled")
    device = issue_device_certificate(server.authority, "laptop-1")
    async with client(server, cert=device.client_pem(tmp_path / "device.pem")) as http:
        r = await http.get(DEVICE_ACCOUNTS)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["device"] == {"ek": urn, "name": "laptop-1"}
    assert body["unavailable"] == []
    wifi, vpn = body["accounts"]
    audience = f"{server.url}/1.0/sign"
    assert wifi == {
        "name": "corp-wifi",
        "type": "wifi",
        "description": None,
        "provisioner": "account:corp-wifi",
        "audience": audience,
        "commonName": "laptop-1",
        "sans": ["laptop-1.wifi.example.com", urn],
        "eku": ["clientAuth"],
        "keyType": "P-256",
        "validity": "1d",
        "validitySeconds": 86400,
        "tpmKey": True,
        "pkcs12": False,
        "updatedAt": wifi["updatedAt"],
    }
    assert vpn["name"] == "vpn" and vpn["commonName"] == urn and vpn["sans"] == [urn]
    assert (vpn["keyType"], vpn["validitySeconds"], vpn["tpmKey"], vpn["pkcs12"]) == (
        "RSA-2048",
        8 * 3600,
        False,
        True,
    )
    assert vpn["eku"] == ["clientAuth", "ipsecIKE"]


async def test_an_account_the_device_cannot_fill_in_is_reported_unavailable(
    server: RunningServer, ca: CA, tmp_path: Path
) -> None:
    urn = register_device(server.authority, "laptop-1")
    await create(server, ca, name="needs-serial", type="wifi", commonName="{device.serial}",
                 devices=[urn])  # fmt: skip
    device = issue_device_certificate(server.authority, "laptop-1")
    async with client(server, cert=device.client_pem(tmp_path / "device.pem")) as http:
        body = (await http.get(DEVICE_ACCOUNTS)).json()
    assert body["accounts"] == []
    [problem] = body["unavailable"]
    assert problem["name"] == "needs-serial"
    assert "{device.serial}" in problem["reason"]


async def test_the_listing_needs_the_device_certificate(server: RunningServer) -> None:
    async with client(server) as http:
        r = await http.get(DEVICE_ACCOUNTS)
    assert "device certificate" in assert_json_error(r, 401)["message"]


async def test_a_certificate_without_a_device_identity_lists_nothing(
    server: RunningServer, tmp_path: Path
) -> None:
    # Agent CA, but no PermanentIdentifier
    bare = issue_device_certificate(server.authority, "svc", identify=False)
    async with client(server, cert=bare.client_pem(tmp_path / "bare.pem")) as http:
        r = await http.get(DEVICE_ACCOUNTS)
    assert "does not identify an attested device" in assert_json_error(r, 403)["message"]
    # A JWK-token certificate comes from the TLS CA, which identifies no device.
    service = await issue(server, "svc.example.com")
    async with client(server, cert=service.write_client_pem(tmp_path / "svc.pem")) as http:
        r = await http.get(DEVICE_ACCOUNTS)
    assert "from the Agent CA" in assert_json_error(r, 403)["message"]


async def test_an_unregistered_device_lists_nothing(server: RunningServer, tmp_path: Path) -> None:
    device = issue_device_certificate(server.authority, "stranger")
    async with client(server, cert=device.client_pem(tmp_path / "device.pem")) as http:
        r = await http.get(DEVICE_ACCOUNTS)
    assert "not in this CA's inventory" in assert_json_error(r, 403)["message"]


async def test_a_disabled_device_lists_nothing(
    server: RunningServer, ca: CA, tmp_path: Path
) -> None:
    urn = register_device(server.authority, "laptop-1", tags=["laptops"])
    await create(server, ca, **WIFI)
    device = issue_device_certificate(server.authority, "laptop-1")
    server.authority.inventory.disable(urn)
    async with client(server, cert=device.client_pem(tmp_path / "device.pem")) as http:
        r = await http.get(DEVICE_ACCOUNTS)
    # Disabling the device revoked its device certificate.
    assert "revoked" in assert_json_error(r, 401)["message"]


async def test_a_revoked_device_certificate_lists_nothing(
    server: RunningServer, ca: CA, tmp_path: Path
) -> None:
    register_device(server.authority, "laptop-1", tags=["laptops"])
    device = issue_device_certificate(server.authority, "laptop-1")
    pem = device.client_pem(tmp_path / "device.pem")
    async with client(server, cert=pem) as http:
        revoked = await http.post(
            "/1.0/revoke", json={"serial": str(device.certificate.serial_number)}
        )
        assert revoked.status_code == 200, revoked.text
    async with client(server, cert=pem) as http:
        r = await http.get(DEVICE_ACCOUNTS)
    assert "revoked" in assert_json_error(r, 401)["message"]


async def test_an_account_added_behind_the_servers_back_is_listed(
    server: RunningServer, tmp_path: Path
) -> None:
    """The CLI (or another worker process) writes the store directly."""
    from engine.accounts import account_from_input
    from hosts.core.ports import SystemClock

    urn = register_device(server.authority, "laptop-1")
    server.authority.stores.accounts.add_account(
        account_from_input(
            {"name": "cli-made", "type": "generic", "devices": [urn]},
            id="cli-1",
            now=SystemClock().now(),
        )
    )
    device = issue_device_certificate(server.authority, "laptop-1")
    async with client(server, cert=device.client_pem(tmp_path / "device.pem")) as http:
        body = (await http.get(DEVICE_ACCOUNTS)).json()
    assert [a["name"] for a in body["accounts"]] == ["cli-made"]
    assert "account:cli-made" in server.authority.provisioners
