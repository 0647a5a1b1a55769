"""Shared helpers for the host tests: TLS clients, starting servers, issuing, error checks."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from hosts.core.authority import Authority
from tests.conftest import RunningServer, make_token_factory, new_csr, provisioner_of

DEVID = Path(sys.executable).parent / "devid"
ERROR_KEYS = {"status", "error", "message"}


# --- TLS and HTTP -------------------------------------------------------------


def tls_context(root: Path, client_chain: Path | None = None) -> ssl.SSLContext:
    """Trust only *root*; optionally present *client_chain* (leaf + chain + key, PEM)."""
    context = ssl.create_default_context(cafile=str(root))
    if client_chain is not None:
        context.load_cert_chain(str(client_chain))
    return context


def client(
    server: RunningServer, *, cert: Path | None = None, http2: bool = False
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url,
        verify=tls_context(server.root_path, cert),
        http2=http2,
        timeout=httpx.Timeout(30.0),
    )


def assert_json_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """A refusal: the given status and a JSON body {status, error, message}."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert body.keys() >= ERROR_KEYS, body
    assert body["status"] == status
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["message"], str) and body["message"]
    return body


# --- certificates ---------------------------------------------------------------


@attrs.frozen
class Issued:
    """A certificate a client received, with its key and the PEM the CA sent."""

    key: CertificateIssuerPrivateKeyTypes
    certificate: x509.Certificate
    response: dict[str, Any]

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def write_chain(self, path: Path) -> Path:
        """The certificate chain alone (PEM), as `devid ca certificate` writes it."""
        path.write_text("".join(self.response["certChain"]))
        return path

    def write_client_pem(self, path: Path) -> Path:
        """Leaf, intermediate and unencrypted key in one file, for ``load_cert_chain``."""
        key_pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        path.write_text("".join(self.response["certChain"]) + key_pem)
        path.chmod(0o600)
        return path


def load_pem(text: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(text.encode())


def issued_from(key: CertificateIssuerPrivateKeyTypes, response: dict[str, Any]) -> Issued:
    return Issued(key=key, certificate=load_pem(response["crt"]), response=response)


async def issue(
    server: RunningServer, subject: str = "svc.example.com", sans: list[str] | None = None
) -> Issued:
    """Get a certificate over HTTPS with a fresh token from the default provisioner."""
    key, _, csr_pem = new_csr(subject, sans)
    async with client(server) as http:
        r = await http.post("/1.0/sign", json={"csr": csr_pem, "ott": server.token(subject, sans)})
    assert r.status_code == 201, r.text
    return issued_from(key, r.json())


def issue_in_process(authority: Authority, password: bytes, subject: str) -> Issued:
    """Issue from a loaded authority without any server (e.g. a second, foreign CA)."""
    authority.set_base_urls(["https://other.test"])
    key = provisioner_of(authority).load_private_key(password)
    token = make_token_factory(key, "https://other.test", lambda: datetime.now(UTC))
    private, _, csr_pem = new_csr(subject)
    return issued_from(private, authority.sign({"csr": csr_pem, "ott": token(subject)}))


# --- servers --------------------------------------------------------------------


@asynccontextmanager
async def running_server(data_dir: Path, password: bytes) -> AsyncIterator[RunningServer]:
    """Like the ``server`` fixture, for a data directory the test prepared itself."""
    from hosts.quart import serve

    authority = Authority.load(data_dir, password)
    try:
        async with trio.open_nursery() as nursery:
            stop = trio.Event()
            urls: list[str] = await nursery.start(
                lambda task_status: serve(
                    authority, "127.0.0.1:0", shutdown_trigger=stop.wait, task_status=task_status
                )
            )
            url = next(u for u in urls if "127.0.0.1" in u)
            key = provisioner_of(authority).load_private_key(password)
            try:
                yield RunningServer(
                    url=url,
                    urls=urls,
                    root_path=authority.config.root.certificate,
                    authority=authority,
                    token=make_token_factory(key, url, lambda: datetime.now(UTC)),
                )
            finally:
                stop.set()
    finally:
        authority.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a ``devid`` subprocess, without the caller's DEVID_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVID_")}
    env.update(extra)
    return env


def run_devid(
    *args: str | Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(DEVID), *map(str, args)],
        capture_output=True,
        text=True,
        env=env if env is not None else clean_env(),
        timeout=60,
    )
    if check:
        assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result


def wait_for_health(url: str, root: Path | None, process: subprocess.Popen[Any]) -> None:
    """Poll ``/health`` until it answers 200; fail if the process dies or 30 s pass."""
    verify: ssl.SSLContext | bool = tls_context(root) if root is not None else False
    deadline = time.monotonic() + 30
    with httpx.Client(verify=verify, timeout=2) as http:
        while True:
            code = process.poll()
            assert code is None, f"devid serve exited early with {code}"
            try:
                if http.get(f"{url}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "devid serve did not answer /health within 30 s"
            time.sleep(0.05)


@contextmanager
def devid_serve(
    data_dir: Path,
    port: int,
    logs: Path,
    *,
    root: Path | None = None,
    env: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
) -> Iterator[subprocess.Popen[str]]:
    """Run ``devid serve`` in the background until /health answers; stop it afterwards.

    stdout goes to ``logs.with_suffix('.out')`` and stderr to *logs*. *root*
    may be None when the data directory does not exist yet (TLS unverified
    until then; only /health is fetched that way).
    """
    out = logs.with_suffix(".out")
    with open(out, "w") as stdout, open(logs, "w") as stderr:
        process = subprocess.Popen(
            [str(DEVID), "serve", "--data", str(data_dir), "--listen", f"127.0.0.1:{port}", *extra],
            stdout=stdout,
            stderr=stderr,
            text=True,
            env=env if env is not None else clean_env(),
        )
    try:
        wait_for_health(f"https://127.0.0.1:{port}", root, process)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
