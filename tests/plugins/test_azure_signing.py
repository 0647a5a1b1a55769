"""The Azure provisioner inside a real CA, in process: the host routes an instance identity
request to the provisioner its audience names, fetches Entra's signing key from a JWK set
served on loopback (the host's real key cache), reads the roots and intermediates from
the data directory, records the machine's first use so its next request gets no
certificate, and renews the certificate with its key.

The provisioner's every check is tested in tests/plugins/test_azure_provisioner.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.assurance import Assurance
from engine.errors import Forbidden, Unauthorized
from engine.extensions import ProvisionerRef
from engine.jose import jwk_from_public_key
from hosts.core.authority import Authority
from hosts.testing.keys import StaticRemoteKeys
from tests.conftest import CA, renew_json, sign_json
from tests.hosts.acme_helpers import add_provisioner
from tests.plugins.test_azure_provisioner import (
    MIRID,
    RESOURCE,
    SUBSCRIPTION,
    TENANT,
    VM_ID,
    Azure,
    Device,
    TestPKI,
    document_time,
)

AUDIENCE = "https://ca.test/1.0/sign#azure"
START = datetime.now(UTC)
AZURE = Azure(StaticRemoteKeys(discovery=False), TestPKI(now=START))


@pytest.fixture
def jwks_url() -> Iterator[str]:
    """Entra ID's JWK set, served on loopback."""
    jwk = jwk_from_public_key(AZURE.token_key.public_key())
    body = json.dumps({"keys": [{**jwk, "kid": "e-1", "use": "sig"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/common/discovery/keys"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def azure_authority(ca: CA, jwks_url: str) -> Iterator[Authority]:
    (ca.data_dir / "azure-roots.pem").write_bytes(AZURE.pki.root.public_bytes(Encoding.PEM))
    (ca.data_dir / "azure-intermediates.pem").write_bytes(
        AZURE.pki.intermediate.public_bytes(Encoding.PEM)
    )
    add_provisioner(
        ca.data_dir,
        {
            "type": "Azure",
            "name": "azure",
            "tenant_id": TENANT,
            "resource": RESOURCE,
            "subscriptions": [SUBSCRIPTION],
            "roots": ["azure-roots.pem"],
            "intermediates": ["azure-intermediates.pem"],
            "jwks_url": jwks_url,
        },
    )
    auth = Authority.load(ca.data_dir, ca.password)
    auth.set_base_urls(["https://ca.test"])
    yield auth
    auth.close()


def request(
    device: Device,
    *,
    audience: str = AUDIENCE,
    vm_id: str = VM_ID,
    mirid: str | None = None,
    subscription: str = SUBSCRIPTION,
    nonce: str | None = None,
) -> str:
    """What a machine sends now: its token and a fresh document for its key."""
    now = datetime.now(UTC)
    seconds = int(now.timestamp())
    token = AZURE.access_token(
        {
            "iat": seconds - 60,
            "nbf": seconds - 60,
            "exp": seconds + 86000,
            "xms_mirid": mirid or MIRID.replace(SUBSCRIPTION, subscription),
        }
    )
    content = AZURE.document(
        nonce or device.nonce(audience),
        vmId=vm_id,
        subscriptionId=subscription,
        timeStamp={
            "createdOn": document_time(now - timedelta(seconds=5)),
            "expiresOn": document_time(now + timedelta(hours=6)),
        },
    )
    attested = AZURE.attested(None, content=json.dumps(content).encode())
    return AZURE.request(device, audience=audience, token=token, attested=attested, now=now)


def test_a_machine_enrols_once_and_renews(azure_authority: Authority) -> None:
    device = Device()
    response = sign_json(azure_authority, {"csr": device.csr_pem, "ott": request(device)})
    cert = x509.load_pem_x509_certificate(response["crt"].encode())
    assert ProvisionerRef.from_certificate(cert) == ProvisionerRef("Azure", "azure")
    assert Assurance.of(cert) is Assurance.CLOUD_INSTANCE
    assert cert.subject.rfc4514_string() == "CN=web-1"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"azure://{SUBSCRIPTION}/prod-rg/web-1",
        f"urn:uuid:{VM_ID}",
    ]
    # Trust on first use: another request of the same machine gets nothing ...
    again = Device()
    with pytest.raises(Unauthorized, match="already been used"):
        sign_json(azure_authority, {"csr": again.csr_pem, "ott": request(again)})
    # ... while the certificate's key renews it, and another machine enrols.
    renewed = renew_json(azure_authority, cert.public_bytes(Encoding.DER))
    assert x509.load_pem_x509_certificate(renewed["crt"].encode()).subject == cert.subject
    other = Device()
    other_vm = "0e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b"
    sign_json(
        azure_authority,
        {"csr": other.csr_pem, "ott": request(other, vm_id=other_vm, mirid=MIRID + "2")},
    )


def test_a_request_for_another_ca_is_refused(azure_authority: Authority) -> None:
    device = Device()
    ott = request(device, audience="https://other-ca.example.com/1.0/sign#azure")
    with pytest.raises(Unauthorized):
        sign_json(azure_authority, {"csr": device.csr_pem, "ott": ott})
    assert azure_authority.stores.certificates.count_certificates() == 0


def test_a_document_for_another_key_is_refused(azure_authority: Authority) -> None:
    device, other = Device(), Device()
    with pytest.raises(Unauthorized, match="nonce"):
        ott = request(device, nonce=other.nonce(AUDIENCE))
        sign_json(azure_authority, {"csr": device.csr_pem, "ott": ott})
    assert azure_authority.stores.certificates.count_certificates() == 0


def test_a_machine_of_another_subscription_is_refused(azure_authority: Authority) -> None:
    device = Device()
    other = "0afbfffa-5df9-4a3b-987e-fe7577624272"
    ott = request(device, subscription=other)
    with pytest.raises(Forbidden, match=f"subscription {other} is not one"):
        sign_json(azure_authority, {"csr": device.csr_pem, "ott": ott})
    # A token of one subscription with a document of another is not evidence at all.
    ott = request(device, mirid=MIRID.replace(SUBSCRIPTION, other))
    with pytest.raises(Unauthorized, match="subscription"):
        sign_json(azure_authority, {"csr": device.csr_pem, "ott": ott})
    assert azure_authority.stores.certificates.count_certificates() == 0
