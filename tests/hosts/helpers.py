"""Shared helpers for the host tests: TLS clients, starting servers, issuing, error checks.

Servers, ports and the ``devid`` command come from :mod:`hosts.testing`; the names
the tests import from here are kept.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from hosts.core.authority import Authority
from hosts.testing.ports import free_port as free_port
from hosts.testing.servers import clean_env as clean_env
from hosts.testing.servers import devid_serve as serve_subprocess
from hosts.testing.servers import run_devid as run_devid
from hosts.testing.servers import serving_in_process
from hosts.testing.servers import wait_for_health as wait_for_health
from tests.conftest import RunningServer, make_token_factory, new_csr, provisioner_of, sign_json

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
    return issued_from(private, sign_json(authority, {"csr": csr_pem, "ott": token(subject)}))


# --- servers --------------------------------------------------------------------


@asynccontextmanager
async def running_server(data_dir: Path, password: bytes) -> AsyncIterator[RunningServer]:
    """Like the ``server`` fixture, for a data directory the test prepared itself."""
    authority = Authority.load(data_dir, password)
    try:
        async with serving_in_process(authority, "quart") as served:
            key = provisioner_of(authority).load_private_key(password)
            yield RunningServer(
                url=served.url,
                urls=served.urls,
                root_path=authority.config.root.certificate,
                authority=authority,
                token=make_token_factory(key, served.url, lambda: datetime.now(UTC)),
            )
    finally:
        authority.close()


@contextmanager
def devid_serve(
    data_dir: Path,
    port: int,
    logs: Path,
    *,
    root: Path | None = None,
    env: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``devid serve`` on 127.0.0.1:*port* until /health answers; stop it afterwards.

    stdout goes to ``logs.with_suffix('.out')`` and stderr to *logs*. *root* None:
    the data directory's own root (read once the server has initialised it).
    """
    with serve_subprocess(data_dir, logs, port=port, root=root, env=env, extra=extra) as server:
        yield server.process.process
