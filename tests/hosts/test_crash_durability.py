"""A certificate a client has received is on disk, even if the CA is killed with SIGKILL.

The CA commits each certificate to SQLite before it answers. So after
``kill -9`` at an arbitrary moment in the middle of concurrent issuance,
every serial any client got back must be in the database with the exact DER
the client holds, and the CA must start again on the same data directory.
"""

from __future__ import annotations

import random
import signal
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import trio
from cryptography.hazmat.primitives.serialization import Encoding

from engine.jose import PrivateKey
from hosts.core.authority import configured_provisioners
from hosts.core.config import load_config
from hosts.store import open_sqlite
from plugins.jwk import JWKProvisioner, mint_token
from plugins.manager import PluginManager
from tests.conftest import CA, new_csr

from .helpers import devid_serve, free_port, load_pem, tls_context

WORKERS = 8
MAX_REQUESTS_PER_WORKER = 400
ISSUANCE_BOUND_SECONDS = 60


def provisioner_key(ca: CA) -> PrivateKey:
    """The admin provisioner's private key, read the way `devid token` reads it."""
    config = load_config(ca.data_dir)
    provisioner = configured_provisioners(config, PluginManager(), None)["admin"]
    assert isinstance(provisioner, JWKProvisioner)
    return provisioner.load_private_key(ca.password)


def token(key: PrivateKey, url: str, subject: str, path: str = "/1.0/sign") -> str:
    return mint_token(
        key,
        provisioner="admin",
        subject=subject,
        audience=f"{url}{path}",
        now=datetime.now(UTC),
        jti=uuid.uuid4().hex,
        sans=[subject],
    )


async def issue_until_the_server_dies(
    url: str, root: Path, key: PrivateKey, process_kill: trio.Event, received: dict[int, bytes]
) -> None:
    """WORKERS tasks issue certificates; *received* maps serial -> DER of every 201."""
    context = tls_context(root)

    async def worker(number: int) -> None:
        async with httpx.AsyncClient(verify=context, timeout=httpx.Timeout(20.0)) as http:
            for n in range(MAX_REQUESTS_PER_WORKER):
                subject = f"crash-{number}-{n}.example.com"
                _, _, csr_pem = new_csr(subject)
                body = {"csr": csr_pem, "ott": token(key, url, subject)}
                try:
                    response = await http.post(f"{url}/1.0/sign", json=body)
                except httpx.TransportError:
                    assert process_kill.is_set(), "the connection failed before the kill"
                    return
                assert response.status_code == 201, response.text
                cert = load_pem(response.json()["crt"])
                received[cert.serial_number] = cert.public_bytes(Encoding.DER)

    async with trio.open_nursery() as nursery:
        for number in range(WORKERS):
            nursery.start_soon(worker, number)


async def test_every_certificate_a_client_received_survives_kill_9(ca: CA, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_bytes(ca.password + b"\n")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    key = provisioner_key(ca)
    serve_args = ("--password-file", str(password_file))
    received: dict[int, bytes] = {}
    killed = trio.Event()
    logs = tmp_path / "first.log"

    with devid_serve(ca.data_dir, port, logs, root=ca.root_path, extra=serve_args) as process:

        async def kill_mid_flight() -> None:
            await trio.sleep(random.uniform(0.5, 1.5))
            deadline = time.monotonic() + ISSUANCE_BOUND_SECONDS
            while len(received) < WORKERS and time.monotonic() < deadline:
                await trio.sleep(0.01)  # make sure the kill lands during real issuance
            killed.set()
            process.send_signal(signal.SIGKILL)

        with trio.move_on_after(ISSUANCE_BOUND_SECONDS + 30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill_mid_flight)
                await issue_until_the_server_dies(url, ca.root_path, key, killed, received)
        assert killed.is_set(), "the server was never killed"
        assert process.wait(timeout=30) == -signal.SIGKILL

    assert len(received) >= WORKERS, f"too few certificates before the kill: {logs.read_text()}"
    stores = open_sqlite(ca.data_dir / "db" / "devid.sqlite")
    try:
        missing = []
        for serial, der in received.items():
            record = stores.certificates.get_certificate(format(serial, "x"))
            if record is None:
                missing.append(serial)
            else:
                assert record.der == der, f"serial {serial:x} is stored with different DER"
                assert record.status == "active"
        assert not missing, f"{len(missing)} of {len(received)} received serials were lost"
        stored = stores.certificates.count_certificates()
    finally:
        stores.close()
    assert stored >= len(received) + 1  # + the server's own TLS certificate

    # The CA starts again on the same directory, issues, and knows the old certificates.
    with devid_serve(
        ca.data_dir, port, tmp_path / "second.log", root=ca.root_path, extra=serve_args
    ) as process:
        survivor = next(iter(received))
        _, _, csr_pem = new_csr("after-restart.example.com")
        async with httpx.AsyncClient(verify=tls_context(ca.root_path), timeout=20) as http:
            issued = await http.post(
                f"{url}/1.0/sign",
                json={"csr": csr_pem, "ott": token(key, url, "after-restart.example.com")},
            )
            revoked = await http.post(
                f"{url}/1.0/revoke",
                json={
                    "serial": str(survivor),
                    "ott": token(key, url, str(survivor), "/1.0/revoke"),
                },
            )
        assert issued.status_code == 201, issued.text
        assert load_pem(issued.json()["crt"]).serial_number not in received
        assert revoked.status_code == 200, revoked.text
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
