"""SCEP over plain HTTP (``[server] scep_http_listen``) on both hosts: SCEP is served
there and nothing else, and single DES is accepted over HTTPS only."""

from __future__ import annotations

import httpx
import pytest
from cryptography import x509

from engine.errors import ConfigurationError
from engine.scep import ContentEncryption, FailInfo, PKIStatus, read_cert_rep, read_certs_only
from hosts.core.config import load_config
from hosts.testing.ports import free_port
from hosts.testing.servers import tls_context
from tests.conftest import CA, RunningServer

from .scep_support import (
    CHALLENGE,
    PROVISIONER,
    SCEPClient,
    add_scep_provisioner,
    client_key,
    scep_csr,
    self_signed,
)

PLAIN_PORT: dict[str, int] = {}


@pytest.fixture
def ca(ca: CA) -> CA:
    add_scep_provisioner(ca.data_dir, allow_des=True)
    port = free_port()
    PLAIN_PORT["port"] = port
    config = ca.data_dir / "devid.toml"
    text = config.read_text()
    config.write_text(
        text.replace("[server]\n", f'[server]\nscep_http_listen = "127.0.0.1:{port}"\n', 1)
    )
    return ca


def _plain(path: str) -> str:
    return f"http://127.0.0.1:{PLAIN_PORT['port']}{path}"


async def _client(server: RunningServer) -> SCEPClient:
    async with httpx.AsyncClient() as http:
        response = await http.get(_plain(f"/scep/{PROVISIONER}"), params={"operation": "GetCACert"})
    assert response.status_code == 200
    certificates, _ = read_certs_only(response.content)
    ra = next(
        c
        for c in certificates
        if c.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    )
    key = client_key()
    return SCEPClient(send=lambda _: b"", ra=ra, key=key, signer=self_signed(key, "dev1"))


async def _send(url: str, message: bytes, **options: object) -> httpx.Response:
    async with httpx.AsyncClient(**options) as http:  # type: ignore[arg-type]
        return await http.post(
            url,
            params={"operation": "PKIOperation"},
            content=message,
            headers={"content-type": "application/x-pki-message"},
        )


async def test_only_scep_is_served_over_plain_http(server: RunningServer) -> None:
    async with httpx.AsyncClient() as http:
        caps = await http.get(_plain(f"/scep/{PROVISIONER}"), params={"operation": "GetCACaps"})
        assert caps.status_code == 200 and "POSTPKIOperation" in caps.text.split()
        for path in ("/roots.pem", "/api/v1/devices", "/1.0/sign", "/acme/acme/directory"):
            refused = await http.get(_plain(path))
            assert refused.status_code == 404, path
            assert "only SCEP" in refused.json()["message"]
        # The HTTPS listener still serves everything.
    async with httpx.AsyncClient(verify=tls_context(server.root_path)) as https:
        assert (await https.get(f"{server.url}/roots.pem")).status_code == 200


async def test_enrolment_over_plain_http_with_aes(server: RunningServer) -> None:
    client = await _client(server)
    message = client.request("tx-plain", scep_csr(client.key, "dev1", CHALLENGE))
    response = await _send(_plain(f"/scep/{PROVISIONER}"), message)
    rep = read_cert_rep(
        response.content, trusted=[client.ra], recipient=client.signer, key=client.key
    )
    assert rep.status is PKIStatus.SUCCESS, rep


async def test_single_des_is_accepted_over_https_only(server: RunningServer) -> None:
    client = await _client(server)
    before = server.authority.ca.stores.certificates.count_certificates()
    message = client.request(
        "tx-des", scep_csr(client.key, "dev1", CHALLENGE), encryption=ContentEncryption.DES_CBC
    )
    plain = await _send(_plain(f"/scep/{PROVISIONER}"), message)
    rep = read_cert_rep(plain.content, trusted=[client.ra])
    assert rep.status is PKIStatus.FAILURE and rep.fail_info is FailInfo.BAD_ALG, rep
    assert server.authority.ca.stores.certificates.count_certificates() == before
    secure = await _send(
        f"{server.url}/scep/{PROVISIONER}", message, verify=tls_context(server.root_path)
    )
    rep = read_cert_rep(
        secure.content, trusted=[client.ra], recipient=client.signer, key=client.key
    )
    assert rep.status is PKIStatus.SUCCESS, rep


def test_the_plain_listener_is_checked_at_load(ca: CA) -> None:
    config = ca.data_dir / "devid.toml"
    text = config.read_text()
    listen = load_config(ca.data_dir).server.listen
    for value, words in (
        ('"nowhere"', "HOST:PORT"),
        ("8080", "must be a string"),
        ('"127.0.0.1:8443"', "must differ from server.listen"),
    ):
        value = value.replace("127.0.0.1:8443", listen)
        config.write_text(
            text.replace(
                f'scep_http_listen = "127.0.0.1:{PLAIN_PORT["port"]}"',
                f"scep_http_listen = {value}",
            )
        )
        with pytest.raises(ConfigurationError, match=words):
            load_config(ca.data_dir)
