"""The fixtures themselves work: an in-process issuance and one over HTTPS."""

from __future__ import annotations

import ssl

import httpx
from cryptography import x509

from hosts.core.authority import Authority
from tests.conftest import RunningServer, TokenFactory, new_csr, sign_json


def test_in_process_issuance(authority: Authority, token: TokenFactory) -> None:
    _, _, csr_pem = new_csr("svc.example.com")
    response = sign_json(authority, {"csr": csr_pem, "ott": token("svc.example.com")})
    cert = x509.load_pem_x509_certificate(response["crt"].encode())
    assert cert.subject.rfc4514_string() == "CN=svc.example.com"
    assert len(response["certChain"]) == 2


async def test_https_issuance(server: RunningServer) -> None:
    _, _, csr_pem = new_csr("svc.example.com")
    context = ssl.create_default_context(cafile=str(server.root_path))
    async with httpx.AsyncClient(verify=context) as client:
        r = await client.post(
            f"{server.url}/1.0/sign", json={"csr": csr_pem, "ott": server.token("svc.example.com")}
        )
    assert r.status_code == 201, r.text
