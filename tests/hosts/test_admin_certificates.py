"""Admin client certificates: only one issued by `devid admin certificate` opens the admin
API. Whatever its subject, a certificate anyone can get (ACME http-01, a JWK token) is no
admin credential; a revoked or expired admin certificate is refused.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import tomli_w
import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from engine.assurance import Assurance
from engine.errors import Unauthorized
from engine.inventory import ek_urn_from_digest
from engine.jose import b64url_encode
from engine.ports import FrozenClock
from hosts.cli import main
from hosts.core.authority import Authority
from hosts.service.admin import ADMIN_PROVISIONER, issue_admin_certificate
from tests.conftest import CA, HOSTS, PASSWORD, RunningServer, new_csr, sign_json

from .acme_helpers import acme_client, acme_server_for
from .helpers import assert_json_error, issued_from
from .test_acme_flows import accept_all, authorize, csr_der, ordered

DEVICES = "/api/v1/devices"
ADMIN_SUBJECT = "CN=ops.example"
URN = ek_urn_from_digest(hashlib.sha256(b"a device an impostor would add").digest())


def legacy_admin_subjects(ca: CA) -> None:
    """What an older devid.toml granted admin by: a client certificate's subject."""
    path = ca.data_dir / "devid.toml"
    config = tomllib.loads(path.read_text())
    config["admin"]["client_subjects"] = [ADMIN_SUBJECT]
    path.write_text(tomli_w.dumps(config))


def tls(root: Path, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(root))
    context.load_cert_chain(str(cert), str(key))
    return context


@asynccontextmanager
async def as_client(
    server: RunningServer, cert: Path, key: Path
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=server.url, verify=tls(server.root_path, cert, key), timeout=30
    ) as http:
        yield http


def write_pair(
    directory: Path, name: str, chain: list[x509.Certificate], key: object
) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    key_path.write_bytes(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def refused_as_admin(server: RunningServer, cert: Path, key: Path) -> None:
    async with as_client(server, cert, key) as http:
        r = await http.post(DEVICES, json={"ek": URN, "name": "by an impostor"})
        assert_json_error(r, 401)
        assert_json_error(await http.get(DEVICES), 401)
    assert server.authority.stores.devices.get_device(URN) is None


def admin_cli(ca: CA, tmp_path: Path, *args: str) -> int:
    password_file = tmp_path / "password"
    password_file.write_bytes(PASSWORD)
    return main(
        [
            "admin",
            "certificate",
            *args,
            "--data",
            str(ca.data_dir),
            "--password-file",
            str(password_file),
        ]
    )


# --- (a) a certificate anyone can get never makes an admin -----------------------------------


@pytest.mark.parametrize("host", HOSTS)
async def test_an_acme_http01_certificate_for_the_admin_subject_is_no_admin(
    ca: CA, nursery: trio.Nursery, tmp_path: Path, host: str
) -> None:
    legacy_admin_subjects(ca)
    server, stop = await acme_server_for(ca, nursery, host)
    try:
        accept_all(server)  # the attacker controls ops.example's web server
        async with acme_client(server) as acme:
            await acme.new_account()
            url, order = await ordered(acme, ("dns", "ops.example"))
            await authorize(acme, order)
            await acme.wait_for(url, ["ready"])
            key, der = csr_der(["ops.example"], "ops.example")
            r = await acme.post(order["finalize"], {"csr": b64url_encode(der)})
            assert r.status_code == 200, r.text
            done = await acme.wait_for(url, ["valid"])
            chain = x509.load_pem_x509_certificates((await acme.get(done["certificate"])).content)
        assert chain[0].subject.rfc4514_string() == ADMIN_SUBJECT
        cert, key_path = write_pair(tmp_path, "acme", chain, key)
        await refused_as_admin(server, cert, key_path)
    finally:
        await stop.close()


async def test_a_jwk_token_certificate_for_the_admin_subject_is_no_admin(
    ca: CA, nursery: trio.Nursery, tmp_path: Path
) -> None:
    legacy_admin_subjects(ca)
    server, stop = await acme_server_for(ca, nursery, "quart")
    try:
        key, _, csr_pem = new_csr("ops.example")
        issued = issued_from(
            key, sign_json(server.authority, {"csr": csr_pem, "ott": server.token("ops.example")})
        )
        assert issued.certificate.subject.rfc4514_string() == ADMIN_SUBJECT
        assert Assurance.of(issued.certificate) is Assurance.TOKEN
        chain = [x509.load_pem_x509_certificate(p.encode()) for p in issued.response["certChain"]]
        cert, key_path = write_pair(tmp_path, "jwk", chain, key)
        await refused_as_admin(server, cert, key_path)
    finally:
        await stop.close()


def test_client_subjects_alone_grant_nothing_and_say_what_to_run(
    ca: CA, caplog: pytest.LogCaptureFixture
) -> None:
    legacy_admin_subjects(ca)
    with caplog.at_level(logging.WARNING):
        authority = Authority.load(ca.data_dir, ca.password)
    try:
        warning = " ".join(r.getMessage() for r in caplog.records)
        assert "client_subjects" in warning and "devid admin certificate" in warning
        key, _, csr_pem = new_csr("ops.example")
        authority.set_base_urls(["https://ca.test"])
        cert = issued_from(
            key, sign_json(authority, {"csr": csr_pem, "ott": _token(authority, ca)})
        )
        der = cert.certificate.public_bytes(serialization.Encoding.DER)
        with pytest.raises(Unauthorized, match="not an admin certificate"):
            authority.admin.check(None, der)
    finally:
        authority.close()


def _token(authority: Authority, ca: CA) -> str:
    from datetime import UTC, datetime

    from tests.conftest import make_token_factory, provisioner_of

    key = provisioner_of(authority).load_private_key(ca.password)
    return make_token_factory(key, "https://ca.test", lambda: datetime.now(UTC))("ops.example")


# --- (b) the admin certificate works ---------------------------------------------------------


async def test_devid_admin_certificate_opens_the_admin_api(
    server: RunningServer, ca: CA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = tmp_path / "ops.crt", tmp_path / "ops.key"
    assert admin_cli(ca, tmp_path, "ops", str(cert), str(key), "--validity", "2d") == 0
    printed = capsys.readouterr().out
    leaf, tls_ca = x509.load_pem_x509_certificates(cert.read_bytes())
    assert tls_ca == server.authority.issuers["tls"].certificate
    assert leaf.subject.rfc4514_string() == "CN=ops"
    assert key.stat().st_mode & 0o777 == 0o600
    assert format(leaf.serial_number, "x") in printed
    record = server.authority.stores.certificates.get_certificate(format(leaf.serial_number, "x"))
    assert record is not None and record.issuer == "tls"
    assert (record.provisioner_type, record.provisioner_name) == (
        ADMIN_PROVISIONER.type,
        ADMIN_PROVISIONER.name,
    )
    # The running server sees it at once (the store is shared): no restart.
    async with as_client(server, cert, key) as http:
        r = await http.post(DEVICES, json={"ek": URN, "name": "by the admin certificate"})
        assert r.status_code == 201, r.text
        assert (await http.get(DEVICES)).json()["total"] == 1


def test_devid_admin_certificate_keeps_existing_files(ca: CA, tmp_path: Path) -> None:
    cert, key = tmp_path / "ops.crt", tmp_path / "ops.key"
    key.write_text("something precious")
    assert admin_cli(ca, tmp_path, "ops", str(cert), str(key)) == 2
    assert key.read_text() == "something precious" and not cert.exists()


# --- (c) revoked or expired admin certificates are refused -------------------------------------


async def test_a_revoked_admin_certificate_is_refused_and_listed_in_the_crl(
    server: RunningServer, ca: CA, tmp_path: Path
) -> None:
    issued, key = issue_admin_certificate(server.authority, "ops")
    cert, key_path = write_pair(tmp_path, "ops", list(issued.chain), key)
    async with as_client(server, cert, key_path) as http:
        assert (await http.get(DEVICES)).status_code == 200
    # An operator withdraws it with the admin token, like any certificate of this CA.
    token = (ca.data_dir / "secrets" / "admin-token").read_text().strip()
    async with httpx.AsyncClient(
        base_url=server.url,
        verify=ssl.create_default_context(cafile=str(server.root_path)),
        timeout=30,
    ) as http:
        r = await http.post(
            f"/api/v1/certificates/{issued.certificate.serial_number}/revoke",
            json={"reasonCode": 1, "reason": "laptop stolen"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text
        crl = x509.load_der_x509_crl((await http.get("/crl/tls")).content)
    assert crl.get_revoked_certificate_by_serial_number(issued.certificate.serial_number)
    await refused_as_admin(server, cert, key_path)


def test_an_expired_admin_certificate_is_refused(
    frozen_authority: Authority, clock: FrozenClock
) -> None:
    issued, _ = issue_admin_certificate(frozen_authority, "ops", timedelta(hours=1))
    assert Assurance.of(issued.certificate) is Assurance.OPERATOR
    assert frozen_authority.admin.check(None, issued.der) == "admin-certificate:CN=ops"
    clock.advance(timedelta(hours=2))
    with pytest.raises(Unauthorized, match="not currently valid"):
        frozen_authority.admin.check(None, issued.der)


def test_a_server_certificate_of_this_ca_is_no_admin(authority: Authority) -> None:
    from hosts.core.servercert import ServerTLS

    issued, _ = ServerTLS(authority, ["ops"], instance="scope-test").issue()
    authority.record_issued(issued)
    with pytest.raises(Unauthorized, match="not an admin certificate"):
        authority.admin.check(None, issued.der)
