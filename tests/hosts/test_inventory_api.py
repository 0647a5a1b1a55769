"""The admin REST API for the device inventory (``/api/v1/devices``) over real HTTPS.

Device identifiers are EK URNs (``urn:ek:sha256:<standard base64>``): they contain '/',
'+' and '=', so clients percent-encode them in paths. Every route needs an admin
credential: the bearer token from DIR/secrets/admin-token, or a client certificate from
``devid admin certificate``.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from engine.inventory import DeviceFilter, ek_urn_from_digest
from hosts.service.admin import issue_admin_certificate
from hosts.store import Revocation
from tests.attestation_fakes import make_ek, make_vendor
from tests.conftest import CA, RunningServer, new_csr, sign_json

from .helpers import Issued, assert_json_error, client, issued_from

DEVICES = "/api/v1/devices"


def awkward_urn(index: int) -> str:
    """An EK URN whose base64 holds '+', '/' and '=' (and even '//')."""
    digest = bytes([0xFB, 0xEF, 0xBE, 0xFF, 0xFF, 0xFF]) + index.to_bytes(26, "big")
    urn = ek_urn_from_digest(digest)
    assert "+" in urn and "/" in urn and urn.endswith("=")
    return urn


def device_path(urn: str, suffix: str = "") -> str:
    return f"{DEVICES}/{quote(urn, safe='')}{suffix}"


def admin_token(ca: CA) -> str:
    return (ca.data_dir / "secrets" / "admin-token").read_text().strip()


@asynccontextmanager
async def admin(server: RunningServer, ca: CA) -> AsyncIterator[httpx.AsyncClient]:
    async with client(server) as http:
        http.headers["Authorization"] = f"Bearer {admin_token(ca)}"
        yield http


async def add(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    r = await http.post(DEVICES, json=fields)
    assert r.status_code == 201, r.text
    return dict(r.json())


# --- authentication ----------------------------------------------------------------------


ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", DEVICES, None),
    ("POST", DEVICES, {"ek": awkward_urn(1)}),
    ("GET", device_path(awkward_urn(1)), None),
    ("PATCH", device_path(awkward_urn(1)), {"name": "x"}),
    ("POST", device_path(awkward_urn(1), "/disable"), None),
    ("DELETE", device_path(awkward_urn(1)), None),
]


async def test_every_route_needs_an_admin_credential(server: RunningServer, ca: CA) -> None:
    store = server.authority.stores.devices
    async with admin(server, ca) as http:
        await add(http, ek=awkward_urn(1), name="keep me")
    before = store.get_device(awkward_urn(1))
    headers_cases: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {admin_token(ca)}"},
        {"Authorization": "Bearer"},
        {"Authorization": admin_token(ca)},
    ]
    async with client(server) as http:
        for method, path, body in ROUTES:
            for headers in headers_cases:
                r = await http.request(method, path, json=body, headers=headers)
                assert_json_error(r, 401)
    assert store.get_device(awkward_urn(1)) == before
    _, total = store.list_devices(DeviceFilter(), limit=10)
    assert total == 1


async def test_the_admin_token_from_the_data_directory_works(server: RunningServer, ca: CA) -> None:
    async with admin(server, ca) as http:
        r = await http.get(DEVICES)
    assert r.status_code == 200, r.text
    assert r.json() == {"devices": [], "total": 0, "limit": 100, "offset": 0, "nextOffset": None}


async def test_a_wrong_token_says_so_without_echoing_it(server: RunningServer) -> None:
    async with client(server) as http:
        r = await http.get(DEVICES, headers={"Authorization": "Bearer not-the-token-1234"})
    error = assert_json_error(r, 401)
    assert "not-the-token-1234" not in r.text
    assert "token" in error["message"]


# --- create and read ----------------------------------------------------------------------


async def test_a_device_created_by_ek_can_be_read_back(server: RunningServer, ca: CA) -> None:
    urn = awkward_urn(2)
    async with admin(server, ca) as http:
        created = await add(
            http, ek=urn, name="Robot 7", serial="SN-7", owner="alice", tags=["lab", "arm"]
        )
        r = await http.get(device_path(urn))
    assert r.status_code == 200, r.text
    assert r.json() == created
    assert created["ek"] == urn
    assert created["ekCertificate"] is None
    assert created["status"] == "active"
    assert created["tags"] == ["arm", "lab"]
    assert created["createdAt"] and created["updatedAt"]


async def test_a_device_can_be_found_by_a_differently_cased_urn_prefix(
    server: RunningServer, ca: CA
) -> None:
    urn = awkward_urn(3)
    async with admin(server, ca) as http:
        await add(http, ek=urn)
        r = await http.get(device_path("URN:EK:SHA256:" + urn.split(":", 3)[3]))
    assert r.status_code == 200, r.text
    assert r.json()["ek"] == urn


@pytest.mark.parametrize("encoding", ["pem", "base64"])
async def test_a_device_created_by_ek_certificate_gets_its_urn_from_the_key(
    server: RunningServer, ca: CA, encoding: str
) -> None:
    ek = make_ek("ecc", slot=11)
    cert = make_vendor().ek_certificate(ek.public_key)
    value = (
        cert.public_bytes(Encoding.PEM).decode()
        if encoding == "pem"
        else base64.b64encode(cert.public_bytes(Encoding.DER)).decode()
    )
    async with admin(server, ca) as http:
        created = await add(http, ekCertificate=value)
    assert created["ek"] == ek.urn
    assert base64.b64decode(created["ekCertificate"]) == cert.public_bytes(Encoding.DER)
    stored = server.authority.stores.devices.get_device(ek.urn)
    assert stored is not None and stored.ek_certificate == cert.public_bytes(Encoding.DER)


async def test_ek_and_certificate_must_agree(server: RunningServer, ca: CA) -> None:
    cert = make_vendor().ek_certificate(make_ek("ecc", slot=11).public_key)
    body = {
        "ek": make_ek("ecc", slot=12).urn,
        "ekCertificate": cert.public_bytes(Encoding.PEM).decode(),
    }
    async with admin(server, ca) as http:
        r = await http.post(DEVICES, json=body)
    assert "does not match" in assert_json_error(r, 400)["message"]
    assert server.authority.stores.devices.get_device(make_ek("ecc", slot=12).urn) is None


async def test_a_duplicate_device_is_a_conflict(server: RunningServer, ca: CA) -> None:
    urn = awkward_urn(4)
    async with admin(server, ca) as http:
        first = await add(http, ek=urn, name="first")
        r = await http.post(DEVICES, json={"ek": urn, "name": "second"})
        assert_json_error(r, 409)
        again = await http.get(device_path(urn))
    assert again.json() == first


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "needs ek"),
        ({"ek": "urn:ek:sha256:AAAA"}, "32-byte"),
        ({"ek": "urn:ek:sha1:" + "A" * 28}, "urn:ek:sha256"),
        ({"ek": "urn:ek:sha256:!!!"}, "base64"),
        ({"ek": awkward_urn(5), "colour": "red"}, "unknown device field"),
        ({"ek": awkward_urn(5), "tags": "lab"}, "tags"),
        ({"ek": awkward_urn(5), "tags": ["bad tag!"]}, "invalid tag"),
        ({"ek": awkward_urn(5), "status": "retired"}, "status"),
        ({"ek": awkward_urn(5), "name": "line\nbreak"}, "name"),
        (
            {"ekCertificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"},
            "certificate",
        ),
        ({"ekCertificate": 12}, "certificate"),
    ],
)
async def test_invalid_devices_are_refused(
    server: RunningServer, ca: CA, body: dict[str, Any], message: str
) -> None:
    async with admin(server, ca) as http:
        r = await http.post(DEVICES, json=body)
        assert message in assert_json_error(r, 400)["message"]
        listing = await http.get(DEVICES)
    assert listing.json()["total"] == 0


async def test_bad_bodies_are_json_errors(server: RunningServer, ca: CA) -> None:
    async with admin(server, ca) as http:
        await add(http, ek=awkward_urn(6))
        for method, path in (("POST", DEVICES), ("PATCH", device_path(awkward_urn(6)))):
            r = await http.request(
                method, path, content=b"{nope", headers={"content-type": "application/json"}
            )
            assert_json_error(r, 400)
            r = await http.request(method, path, json=["a", "list"])
            assert_json_error(r, 400)
            r = await http.request(
                method, path, content=b"x=1", headers={"content-type": "text/plain"}
            )
            assert_json_error(r, 415)


async def test_reading_something_that_is_not_a_urn_is_a_bad_request(
    server: RunningServer, ca: CA
) -> None:
    async with admin(server, ca) as http:
        r = await http.get(device_path("not-a-urn"))
        assert_json_error(r, 400)
        r = await http.get(device_path(awkward_urn(99)))
        assert_json_error(r, 404)


# --- listing -------------------------------------------------------------------------------


async def test_listing_filters_by_status_owner_tag_and_text(server: RunningServer, ca: CA) -> None:
    specs: list[dict[str, Any]] = [
        {"name": "arm 1", "serial": "SN-100", "owner": "alice", "tags": ["lab", "arm"]},
        {"name": "arm 2", "serial": "SN-200", "owner": "alice", "tags": ["arm"]},
        {"name": "gate", "serial": "SN-300", "owner": "bob", "tags": ["lab"]},
        {"name": "old gate", "serial": "SN-400", "owner": "bob", "status": "disabled"},
        {"name": "100% cotton", "serial": "X_1", "owner": "carol"},
    ]
    urns = [awkward_urn(20 + i) for i in range(len(specs))]
    async with admin(server, ca) as http:
        for urn, spec in zip(urns, specs, strict=True):
            await add(http, ek=urn, **spec)

        async def names(**query: str) -> list[str]:
            r = await http.get(DEVICES, params=query)
            assert r.status_code == 200, r.text
            page = r.json()
            assert page["total"] == len(page["devices"])
            return sorted(d["name"] for d in page["devices"])

        assert await names(status="disabled") == ["old gate"]
        assert len(await names(status="active")) == 4
        assert await names(owner="alice") == ["arm 1", "arm 2"]
        assert await names(owner="nobody") == []
        assert await names(tag="lab") == ["arm 1", "gate"]
        assert await names(tag="arm", owner="alice") == ["arm 1", "arm 2"]
        assert await names(q="gate") == ["gate", "old gate"]
        assert await names(q="SN-2") == ["arm 2"]
        assert await names(q=urns[2]) == ["gate"]
        assert await names(q=urns[2][:-4]) == []  # a URN matches exactly, not as a prefix
        assert await names(q="%") == ["100% cotton"]  # LIKE wildcards are literal
        assert await names(q="X_") == ["100% cotton"]
        assert await names(q="_") == ["100% cotton"]
        assert await names(status="active", owner="bob") == ["gate"]


async def test_listing_pages_with_limit_offset_and_next_offset(
    server: RunningServer, ca: CA
) -> None:
    urns = [awkward_urn(40 + i) for i in range(7)]
    async with admin(server, ca) as http:
        for i, urn in enumerate(urns):
            await add(http, ek=urn, name=f"device {i}")
        seen: list[str] = []
        offset: int | None = 0
        pages = 0
        while offset is not None:
            r = await http.get(DEVICES, params={"limit": "3", "offset": str(offset)})
            assert r.status_code == 200, r.text
            page = r.json()
            assert page["total"] == 7 and page["limit"] == 3 and page["offset"] == offset
            seen.extend(d["ek"] for d in page["devices"])
            offset = page["nextOffset"]
            pages += 1
        assert pages == 3
        assert sorted(seen) == sorted(urns) and len(seen) == len(set(seen))
        r = await http.get(DEVICES, params={"offset": "10"})
        assert r.json()["devices"] == [] and r.json()["nextOffset"] is None
        r = await http.get(DEVICES, params={"limit": "7"})
        assert len(r.json()["devices"]) == 7 and r.json()["nextOffset"] is None


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "ten"},
        {"offset": "-1"},
        {"offset": "1.5"},
        {"status": "retired"},
        {"owner": "x" * 300},
    ],
)
async def test_bad_list_queries_are_refused(
    server: RunningServer, ca: CA, query: dict[str, str]
) -> None:
    async with admin(server, ca) as http:
        r = await http.get(DEVICES, params=query)
    assert_json_error(r, 400)


# --- changing and removing ----------------------------------------------------------------------


async def test_patch_changes_the_changeable_fields(server: RunningServer, ca: CA) -> None:
    urn = awkward_urn(60)
    async with admin(server, ca) as http:
        created = await add(http, ek=urn, name="before", owner="alice", tags=["a"])
        r = await http.patch(
            device_path(urn), json={"name": "after", "owner": None, "tags": ["b", "c"]}
        )
        assert r.status_code == 200, r.text
        updated = r.json()
        assert updated["name"] == "after" and updated["owner"] is None
        assert updated["tags"] == ["b", "c"]
        assert updated["createdAt"] == created["createdAt"]
        assert updated["updatedAt"] >= created["updatedAt"]
        assert (await http.get(device_path(urn))).json() == updated


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"ek": awkward_urn(61)}, 400),
        ({"ekCertificate": "x"}, 400),
        ({"createdAt": "2020-01-01"}, 400),
        ({"status": "retired"}, 400),
        ({"tags": [1, 2]}, 400),
    ],
)
async def test_patch_cannot_change_the_identity_or_break_the_record(
    server: RunningServer, ca: CA, changes: dict[str, Any], status: int
) -> None:
    urn = awkward_urn(60)
    async with admin(server, ca) as http:
        await add(http, ek=urn, name="steady")
        before = server.authority.stores.devices.get_device(urn)
        r = await http.patch(device_path(urn), json=changes)
        assert_json_error(r, status)
    assert server.authority.stores.devices.get_device(urn) == before
    assert server.authority.stores.devices.get_device(awkward_urn(61)) is None


async def test_patching_an_unknown_device_is_not_found(server: RunningServer, ca: CA) -> None:
    async with admin(server, ca) as http:
        r = await http.patch(device_path(awkward_urn(62)), json={"name": "ghost"})
    assert_json_error(r, 404)


async def test_disable_then_enable(server: RunningServer, ca: CA) -> None:
    urn = awkward_urn(63)
    async with admin(server, ca) as http:
        await add(http, ek=urn)
        r = await http.post(device_path(urn, "/disable"))
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "disabled"
        assert (await http.get(device_path(urn))).json()["status"] == "disabled"
        r = await http.patch(device_path(urn), json={"status": "active"})
        assert r.json()["status"] == "active"
        r = await http.post(device_path(awkward_urn(64), "/disable"))
        assert_json_error(r, 404)


async def test_delete_removes_the_device(server: RunningServer, ca: CA) -> None:
    urn = awkward_urn(65)
    async with admin(server, ca) as http:
        await add(http, ek=urn)
        r = await http.delete(device_path(urn))
        assert r.status_code == 204 and r.content == b""
        assert_json_error(await http.get(device_path(urn)), 404)
        assert_json_error(await http.delete(device_path(urn)), 404)
    assert server.authority.stores.devices.get_device(urn) is None


# --- admin by client certificate ---------------------------------------------------------------
# (tests/hosts/test_admin_certificates.py covers who can and cannot get one)


def _issue(server: RunningServer, subject: str) -> Issued:
    """A certificate from the running CA, issued in process with a one-time token."""
    key, _, csr_pem = new_csr(subject)
    response = sign_json(server.authority, {"csr": csr_pem, "ott": server.token(subject)})
    return issued_from(key, response)


def _admin_pem(server: RunningServer, path: Path) -> tuple[Path, int]:
    """An admin certificate (as `devid admin certificate` issues it) with its key in one file."""
    issued, key = issue_admin_certificate(server.authority, "ops")
    chain = "".join(c.public_bytes(Encoding.PEM).decode() for c in issued.chain)
    key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    path.write_text(chain + key_pem)
    path.chmod(0o600)
    return path, issued.certificate.serial_number


async def test_an_admin_client_certificate_opens_the_api(
    server: RunningServer, ca: CA, tmp_path: Path
) -> None:
    ops, _ = _admin_pem(server, tmp_path / "ops.pem")
    async with client(server, cert=ops) as http:
        r = await http.post(DEVICES, json={"ek": awkward_urn(70), "name": "by cert"})
        assert r.status_code == 201, r.text
        r = await http.get(DEVICES)
        assert r.status_code == 200 and r.json()["total"] == 1
    # The bearer token keeps working alongside.
    async with admin(server, ca) as http:
        assert (await http.get(DEVICES)).status_code == 200


async def test_another_client_certificate_is_no_credential(
    server: RunningServer, tmp_path: Path
) -> None:
    other = _issue(server, "ops").write_client_pem(tmp_path / "other.pem")  # same subject
    async with client(server, cert=other) as http:
        r = await http.post(DEVICES, json={"ek": awkward_urn(71)})
        assert "not an admin certificate" in assert_json_error(r, 401)["message"]
        assert_json_error(await http.get(DEVICES), 401)
    assert server.authority.stores.devices.get_device(awkward_urn(71)) is None


async def test_a_revoked_admin_certificate_is_refused(
    server: RunningServer, tmp_path: Path
) -> None:
    ops, serial = _admin_pem(server, tmp_path / "ops.pem")
    server.authority.stores.certificates.revoke(
        Revocation(
            serial=format(serial, "x"),
            issuer="tls",
            revoked_at=server.authority.clock.now(),
            reason_code=0,
            reason="",
            revoked_by="test",
        )
    )
    async with client(server, cert=ops) as http:
        assert_json_error(await http.get(DEVICES), 401)
