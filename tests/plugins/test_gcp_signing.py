"""The GCP provisioner inside a real CA, in process: the host routes an instance identity
token to the provisioner its audience names, fetches the signing key from a JWK set served
on loopback (the host's real key cache), records the instance's first use so its next
token gets no certificate, and renews the certificate with its key.

The provisioner's every check is tested in tests/plugins/test_gcp_provisioner.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from engine.assurance import Assurance
from engine.errors import Unauthorized
from engine.extensions import ProvisionerRef
from engine.jose import jwk_from_public_key, sign_compact
from hosts.core.authority import Authority
from tests.conftest import CA, new_csr, renew_json, sign_json
from tests.hosts.acme_helpers import add_provisioner

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KID = "google-key-1"
AUDIENCE = "https://ca.test/1.0/sign#gce"


@pytest.fixture
def jwks_url() -> Iterator[str]:
    """Google's JWK set, served on loopback."""
    body = json.dumps(
        {"keys": [{**jwk_from_public_key(KEY.public_key()), "kid": KID, "alg": "RS256"}]}
    ).encode()

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
        yield f"http://127.0.0.1:{server.server_address[1]}/oauth2/v3/certs"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def gcp_authority(ca: CA, jwks_url: str) -> Iterator[Authority]:
    add_provisioner(
        ca.data_dir,
        {"type": "GCP", "name": "gce", "projects": ["prod-123456"], "jwks_url": jwks_url},
    )
    auth = Authority.load(ca.data_dir, ca.password)
    auth.set_base_urls(["https://ca.test"])
    yield auth
    auth.close()


def identity_token(audience: str = AUDIENCE, instance_id: str = "4567890123456789012") -> str:
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": audience,
        "azp": "112233445566778899000",
        "sub": "112233445566778899000",
        "email": "app@prod-123456.iam.gserviceaccount.com",
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
        "google": {
            "compute_engine": {
                "instance_creation_timestamp": now - 60,
                "instance_id": instance_id,
                "instance_name": "web-1",
                "project_id": "prod-123456",
                "project_number": 123456789012,
                "zone": "europe-west1-b",
            }
        },
    }
    return sign_compact(claims, KEY, headers={"kid": KID, "typ": "JWT"})


def test_an_instance_enrols_once_and_renews(gcp_authority: Authority) -> None:
    response = sign_json(gcp_authority, {"csr": new_csr("web-1", [])[2], "ott": identity_token()})
    cert = x509.load_pem_x509_certificate(response["crt"].encode())
    assert ProvisionerRef.from_certificate(cert) == ProvisionerRef("GCP", "gce")
    assert Assurance.of(cert) is Assurance.CLOUD_INSTANCE
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [
        "web-1.c.prod-123456.internal",
        "web-1.europe-west1-b.c.prod-123456.internal",
    ]
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        "gce://prod-123456/europe-west1-b/4567890123456789012"
    ]
    # Trust on first use: a new token of the same instance gets nothing ...
    with pytest.raises(Unauthorized, match="already been used"):
        sign_json(gcp_authority, {"csr": new_csr("web-1", [])[2], "ott": identity_token()})
    # ... while the certificate's key renews it, and another instance enrols.
    renewed = renew_json(gcp_authority, cert.public_bytes(Encoding.DER))
    assert x509.load_pem_x509_certificate(renewed["crt"].encode()).subject == cert.subject
    sign_json(
        gcp_authority,
        {"csr": new_csr("web-1", [])[2], "ott": identity_token(instance_id="99")},
    )


def test_a_token_for_another_ca_is_refused(gcp_authority: Authority) -> None:
    token = identity_token("https://other-ca.example.com/1.0/sign#gce")
    with pytest.raises(Unauthorized, match=r"expected https://ca\.test/1\.0/sign#gce"):
        sign_json(gcp_authority, {"csr": new_csr("web-1", [])[2], "ott": token})
    assert gcp_authority.stores.certificates.count_certificates() == 0


def test_a_token_for_a_provisioner_that_is_not_here_is_refused(gcp_authority: Authority) -> None:
    token = identity_token("https://ca.test/1.0/sign#elsewhere")
    with pytest.raises(Unauthorized):
        sign_json(gcp_authority, {"csr": new_csr("web-1", [])[2], "ott": token})
    assert gcp_authority.stores.certificates.count_certificates() == 0
