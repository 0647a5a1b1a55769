"""Operators revoke any certificate this CA issued (device, account, AK and server
certificates) with the admin credential: ``POST /api/v1/certificates/{serial}/revoke``,
``POST /1.0/revoke`` with ``Authorization: Bearer <admin token>``, and
``devid ca revoke SERIAL --reason R``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from hosts.core.authority import Authority
from hosts.core.config import load_config
from tests.conftest import CA, RunningServer

from .account_helpers import DeviceCertificate, admin, admin_token, issue_device_certificate
from .device_certs import Held, account_certificate, held_device, issue_ak_certificate, record_of
from .device_certs import setup_laptop as setup
from .helpers import assert_json_error, clean_env, client, devid_serve, free_port, run_devid


@pytest.fixture
async def laptop(server: RunningServer, ca: CA) -> DeviceCertificate:
    return await setup(server, ca)


async def certificates(server: RunningServer, laptop: DeviceCertificate) -> dict[str, Held]:
    return {
        "agent": held_device(laptop),
        "account": await account_certificate(server, laptop),
        "attestation": issue_ak_certificate(server, "laptop-1"),
    }


async def listed(server: RunningServer, issuer: str, held: Held) -> x509.RevokedCertificate | None:
    async with client(server) as http:
        r = await http.get(f"/crl/{issuer}")
    assert r.status_code == 200, r.text
    crl = x509.load_der_x509_crl(r.content)
    return crl.get_revoked_certificate_by_serial_number(held.certificate.serial_number)


async def test_an_admin_revokes_device_account_and_ak_certificates_through_the_admin_api(
    server: RunningServer, ca: CA, laptop: DeviceCertificate
) -> None:
    held = await certificates(server, laptop)
    async with admin(server, ca) as http:
        for issuer, cert in held.items():
            r = await http.post(
                f"/api/v1/certificates/{cert.certificate.serial_number}/revoke",
                json={"reason": "laptop stolen", "reasonCode": 1},
            )
            assert r.status_code == 200, r.text
            assert r.json() == {
                "status": "ok",
                "serial": str(cert.certificate.serial_number),
                "issuer": issuer,
                "reasonCode": 1,
                "revokedBy": "admin-token",
            }
    for issuer, cert in held.items():
        entry = await listed(server, issuer, cert)
        assert entry is not None, issuer
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        assert reason == x509.ReasonFlags.key_compromise
        assert record_of(server, cert.serial).status == "revoked"


async def test_an_admin_revokes_through_1_0_revoke_with_the_admin_token(
    server: RunningServer, ca: CA, laptop: DeviceCertificate
) -> None:
    held = await certificates(server, laptop)
    async with admin(server, ca) as http:
        for cert in held.values():
            r = await http.post(
                "/1.0/revoke",
                json={"serial": str(cert.certificate.serial_number), "reason": "retired"},
            )
            assert r.status_code == 200, r.text
    for issuer, cert in held.items():
        assert await listed(server, issuer, cert) is not None, issuer


async def test_admin_revocation_needs_the_admin_credential(
    server: RunningServer, laptop: DeviceCertificate
) -> None:
    serial = laptop.certificate.serial_number
    async with client(server) as http:
        anonymous = await http.post(f"/api/v1/certificates/{serial}/revoke", json={})
        wrong = await http.post(
            f"/api/v1/certificates/{serial}/revoke",
            json={},
            headers={"Authorization": "Bearer not-the-admin-token"},
        )
        wrong_legacy = await http.post(
            "/1.0/revoke",
            json={"serial": str(serial)},
            headers={"Authorization": "Bearer not-the-admin-token"},
        )
    assert_json_error(anonymous, 401)
    assert_json_error(wrong, 401)
    assert_json_error(wrong_legacy, 401)
    assert record_of(server, held_device(laptop).serial).status == "active"


async def test_admin_revocation_refusals_are_json_errors(
    server: RunningServer, ca: CA, laptop: DeviceCertificate
) -> None:
    serial = laptop.certificate.serial_number
    path = f"/api/v1/certificates/{serial}/revoke"
    async with admin(server, ca) as http:
        cases: list[tuple[httpx.Response, int]] = [
            (await http.post("/api/v1/certificates/12345/revoke", json={}), 404),
            (await http.post("/api/v1/certificates/zz/revoke", json={}), 400),
            (await http.post(path, json={"reasonCode": 2}), 400),  # cACompromise: CA only
            (await http.post(path, json={"reasonCode": "1"}), 400),
            (await http.post(path, json={"reason": 5}), 400),
            (await http.post(path, json=["not", "an", "object"]), 400),
        ]
        first = await http.post(path)  # no body: reason unspecified
        again = await http.post(path, json={})
    for response, status in cases:
        assert_json_error(response, status)
    assert first.status_code == 200, first.text
    assert first.json()["reasonCode"] == 0
    assert_json_error(again, 409)


def test_devid_ca_revoke_uses_the_admin_credential(tmp_path: Path, ca: CA) -> None:
    authority = Authority.load(ca.data_dir, ca.password)
    try:
        devices = [issue_device_certificate(authority, f"laptop-{n}") for n in range(4)]
    finally:
        authority.close()
    serials = [str(d.certificate.serial_number) for d in devices]
    token_file = tmp_path / "token"
    token_file.write_text(admin_token(ca) + "\n")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    root = ca.root_path
    common = ("--ca-url", url, "--root", root)
    serve_env = clean_env(DEVID_PASSWORD=ca.password.decode())
    with devid_serve(ca.data_dir, port, tmp_path / "serve.log", root=root, env=serve_env):
        by_data = run_devid("ca", "revoke", serials[0], "--reason", "stolen", "--data",
                            ca.data_dir, *common)  # fmt: skip
        assert "has been revoked" in by_data.stdout
        run_devid("ca", "revoke", serials[1], "--admin-token-file", token_file,
                  "--reason-code", "5", *common)  # fmt: skip
        run_devid("ca", "revoke", serials[2], *common,
                  env=clean_env(DEVID_ADMIN_TOKEN=admin_token(ca)))  # fmt: skip
        without = run_devid("ca", "revoke", serials[3], *common, check=False)
        assert without.returncode != 0
        assert "admin credential" in without.stderr
        wrong = run_devid("ca", "revoke", serials[3], *common, check=False,
                          env=clean_env(DEVID_ADMIN_TOKEN="wrong"))  # fmt: skip
        assert wrong.returncode != 0
        assert "401" in wrong.stderr
        again = run_devid("ca", "revoke", serials[0], "--data", ca.data_dir, *common,
                          check=False)  # fmt: skip
        assert again.returncode != 0 and "already revoked" in again.stderr
    with sqlite3.connect(load_config(ca.data_dir).store.path) as db:
        rows = db.execute(
            "SELECT serial, reason, reason_code, revoked_by FROM revocations"
        ).fetchall()
    assert sorted(rows) == sorted(
        [
            (format(int(serials[0]), "x"), "stolen", 0, "admin-token"),
            (format(int(serials[1]), "x"), "", 5, "admin-token"),
            (format(int(serials[2]), "x"), "", 0, "admin-token"),
        ]
    )
