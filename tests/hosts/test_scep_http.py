"""SCEP over HTTP on both hosts: the operations, the two ways of sending a PKIOperation,
refusals in SCEP's own form (CertRep FAILURE) or as JSON 4xx, and the admin API."""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

import httpx
import pytest
from cryptography import x509

from engine.scep import (
    FailInfo,
    MessageType,
    PKIStatus,
    issuer_and_subject,
    read_cert_rep,
    read_certs_only,
)
from hosts.testing.servers import tls_context
from tests.conftest import CA, RunningServer

from .account_helpers import admin_token
from .scep_support import (
    CHALLENGE,
    PROVISIONER,
    SCEPClient,
    add_scep_provisioner,
    client_key,
    scep_csr,
    self_signed,
)

pytestmark = pytest.mark.trio


@pytest.fixture
def ca(ca: CA) -> CA:
    add_scep_provisioner(ca.data_dir, one_time_challenges=True)
    return ca


async def _get(server: RunningServer, path: str, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(verify=tls_context(server.root_path)) as http:
        return await http.get(f"{server.url}{path}", params=params)


async def _post(server: RunningServer, path: str, body: bytes, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(verify=tls_context(server.root_path)) as http:
        return await http.post(
            f"{server.url}{path}",
            params=params,
            content=body,
            headers={"content-type": "application/x-pki-message"},
        )


async def _client(server: RunningServer, key_index: int = 0) -> SCEPClient:
    response = await _get(server, f"/scep/{PROVISIONER}", operation="GetCACert")
    certificates, _ = read_certs_only(response.content)
    ra = next(
        c
        for c in certificates
        if c.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    )
    key = client_key(key_index)

    def unused(_: bytes) -> bytes:
        raise AssertionError("send over HTTP in these tests")

    return SCEPClient(send=unused, ra=ra, key=key, signer=self_signed(key, "dev1"))


def _reply(client: SCEPClient, response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-pki-message"
    return read_cert_rep(
        response.content, trusted=[client.ra], recipient=client.signer, key=client.key
    )


async def test_caps_and_ca_certificates(server: RunningServer) -> None:
    caps = await _get(server, f"/scep/{PROVISIONER}", operation="GetCACaps")
    assert caps.status_code == 200
    assert caps.headers["content-type"].startswith("text/plain")
    assert "POSTPKIOperation" in caps.text.split() and "AES" in caps.text.split()
    cacert = await _get(server, f"/scep/{PROVISIONER}", operation="GetCACert")
    assert cacert.headers["content-type"] == "application/x-x509-ca-ra-cert"
    certificates, _ = read_certs_only(cacert.content)
    tls = server.authority.issuers["tls"].certificate
    assert tls in certificates and server.authority.root in certificates
    # The path some clients append answers the same.
    again = await _get(server, f"/scep/{PROVISIONER}/pkiclient.exe", operation="GetCACert")
    assert read_certs_only(again.content)[0] == certificates


async def test_pkioperation_by_post_and_by_get(server: RunningServer) -> None:
    client = await _client(server)
    message = client.request("tx-post", scep_csr(client.key, "dev1", CHALLENGE))
    rep = _reply(
        client, await _post(server, f"/scep/{PROVISIONER}", message, operation="PKIOperation")
    )
    assert rep.status is PKIStatus.SUCCESS, rep
    assert rep.certificates[0].subject.rfc4514_string() == "CN=dev1"
    # GET with the message in base64 (as some clients send it, '+' and '/' included).
    message = client.request("tx-get", scep_csr(client.key, "dev1", CHALLENGE))
    encoded = base64.b64encode(message).decode()
    quoted = urllib.parse.quote(encoded, safe="")
    url = f"{server.url}/scep/{PROVISIONER}/pkiclient.exe?operation=PKIOperation&message={quoted}"
    async with httpx.AsyncClient(verify=tls_context(server.root_path)) as http:
        response = await http.get(url)
    rep = _reply(client, response)
    assert rep.status is PKIStatus.SUCCESS, rep
    # A POSTed body in base64 (old clients) is read too.
    message = client.request("tx-b64", scep_csr(client.key, "dev1", CHALLENGE))
    rep = _reply(
        client,
        await _post(
            server, f"/scep/{PROVISIONER}", base64.b64encode(message), operation="PKIOperation"
        ),
    )
    assert rep.status is PKIStatus.SUCCESS, rep


async def test_refusals_are_failure_certreps_or_json(server: RunningServer) -> None:
    client = await _client(server)
    before = server.authority.ca.stores.certificates.count_certificates()
    # A message refused: 200 with CertRep FAILURE.
    message = client.request("tx-no", scep_csr(client.key, "dev1", None))
    rep = _reply(
        client, await _post(server, f"/scep/{PROVISIONER}", message, operation="PKIOperation")
    )
    assert rep.status is PKIStatus.FAILURE and rep.fail_info is FailInfo.BAD_REQUEST
    # Garbage: still a CertRep FAILURE, never a 500.
    for body in (b"", b"\x30\x80", b"\x00" * 100, b"not base64 %%%"):
        response = await _post(server, f"/scep/{PROVISIONER}", body, operation="PKIOperation")
        rep = read_cert_rep(response.content, trusted=[client.ra])
        assert rep.status is PKIStatus.FAILURE and rep.fail_info is FailInfo.BAD_REQUEST
    response = await _get(server, f"/scep/{PROVISIONER}", operation="PKIOperation", message="!!!")
    assert read_cert_rep(response.content, trusted=[client.ra]).status is PKIStatus.FAILURE
    # Transport-level mistakes: JSON 4xx.
    for params, status, words in (
        ({}, 400, "operation"),
        ({"operation": "Teleport"}, 400, "unknown SCEP operation"),
        ({"operation": "PKIOperation"}, 400, "message"),
        ({"operation": "GetNextCACert"}, 404, "next CA certificate"),
    ):
        response = await _get(server, f"/scep/{PROVISIONER}", **params)
        assert response.status_code == status, (params, response.text)
        assert words in response.json()["message"]
    response = await _get(server, "/scep/nobody", operation="GetCACaps")
    assert response.status_code == 404
    assert "no SCEP provisioner" in response.json()["message"]
    assert server.authority.ca.stores.certificates.count_certificates() == before


async def test_the_admin_api_makes_challenges_and_decides_pending_requests(
    server: RunningServer, ca: CA
) -> None:
    headers = {"authorization": f"Bearer {admin_token(ca)}"}
    async with httpx.AsyncClient(verify=tls_context(server.root_path), headers=headers) as http:
        base = f"{server.url}/api/v1/scep/{PROVISIONER}"
        made = await http.post(f"{base}/challenges", json={"subject": "dev1", "expires": "1h"})
        assert made.status_code == 201, made.text
        body = made.json()
        assert body["subject"] == "dev1" and body["challenge"]
        bad = await http.post(f"{base}/challenges", json={"expires": "forever"})
        assert bad.status_code == 400
        listed = await http.get(f"{base}/requests", params={"status": "all"})
        assert listed.status_code == 200 and listed.json() == {"requests": []}
        missing = await http.post(f"{base}/requests/nope/approve")
        assert missing.status_code == 404
    client = await _client(server)
    message = client.request("tx-otc", scep_csr(client.key, "dev1", body["challenge"]))
    rep = _reply(
        client, await _post(server, f"/scep/{PROVISIONER}", message, operation="PKIOperation")
    )
    assert rep.status is PKIStatus.SUCCESS, rep
    async with httpx.AsyncClient(verify=tls_context(server.root_path)) as http:
        anonymous = await http.post(f"{server.url}/api/v1/scep/{PROVISIONER}/challenges", json={})
    assert anonymous.status_code == 401


async def test_manual_approval_over_the_admin_api(server: RunningServer, ca: CA) -> None:
    # The provisioner here approves automatically: switch to manual for this test.
    config = ca.data_dir / "devid.toml"
    config.write_text(
        config.read_text().replace('name = "mdm"\n', 'name = "mdm"\napproval = "manual"\n', 1)
    )
    server.authority.reload()
    client = await _client(server)
    message = client.request("tx/with+slash", scep_csr(client.key, "dev1", CHALLENGE))
    rep = _reply(
        client, await _post(server, f"/scep/{PROVISIONER}", message, operation="PKIOperation")
    )
    assert rep.status is PKIStatus.PENDING
    headers = {"authorization": f"Bearer {admin_token(ca)}"}
    async with httpx.AsyncClient(verify=tls_context(server.root_path), headers=headers) as http:
        base = f"{server.url}/api/v1/scep/{PROVISIONER}"
        listed = (await http.get(f"{base}/requests")).json()["requests"]
        assert [r["transactionID"] for r in listed] == ["tx/with+slash"]
        approved = await http.post(f"{base}/requests/tx/with+slash/approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "issued"
        again = await http.post(f"{base}/requests/tx/with+slash/reject", json={"reason": "late"})
        assert again.status_code == 409
    poll = issuer_and_subject(
        server.authority.issuers["tls"].certificate.subject,
        x509.Name.from_rfc4514_string("CN=dev1"),
    )
    message = client.request("tx/with+slash", poll, MessageType.CERT_POLL)
    rep = _reply(
        client, await _post(server, f"/scep/{PROVISIONER}", message, operation="PKIOperation")
    )
    assert rep.status is PKIStatus.SUCCESS
    assert format(rep.certificates[0].serial_number, "x") == approved.json()["serial"]
