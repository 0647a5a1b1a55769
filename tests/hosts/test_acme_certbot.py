"""A whole http-01 flow driven by certbot's ``acme`` library (ClientV2 + josepy).

certbot's library is strict about RFC 8555 (a ``Link: rel="up"`` on challenge
responses, 200 with Location for an existing account, problem documents,
Replay-Nonce on every POST), so this is the first interop check. The http-01
responder is a small threaded HTTP server on a free loopback port, and the
server's real validator (hosts/validation/http01.py) is pointed at it with
``--acme-http01-port`` (``ACMEService.configure``).
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import josepy
import pytest
import trio
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import RunningServer

from .acme_helpers import acme_server_fixture  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class _Responder(http.server.BaseHTTPRequestHandler):
    answers: dict[str, str] = {}

    def do_GET(self) -> None:
        prefix = "/.well-known/acme-challenge/"
        token = self.path[len(prefix) :] if self.path.startswith(prefix) else ""
        answer = self.answers.get(token)
        if answer is None:
            self.send_error(404)
            return
        body = answer.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def http01_responder() -> Iterator[tuple[int, dict[str, str]]]:
    """Serve /.well-known/acme-challenge/TOKEN on a free loopback port."""
    answers: dict[str, str] = {}
    handler = type("Responder", (_Responder,), {"answers": answers})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], answers
    finally:
        httpd.shutdown()
        httpd.server_close()


def _client(server: RunningServer, key: ec.EllipticCurvePrivateKey) -> client.ClientV2:
    net = client.ClientNetwork(
        josepy.JWKEC(key=key),
        alg=josepy.ES256,
        verify_ssl=str(server.root_path),  # type: ignore[arg-type]
        user_agent="devid-tests",
    )
    directory = client.ClientV2.get_directory(f"{server.url}/acme/acme/directory", net)
    return client.ClientV2(directory, net)


def _certbot_flow(server: RunningServer, port: int, answers: dict[str, str]) -> dict[str, Any]:
    """Runs in a thread: register, order, answer http-01, finalize, ARI, revoke."""
    account_key = ec.generate_private_key(ec.SECP256R1())
    acme = _client(server, account_key)
    assert acme.directory.meta.external_account_required is False
    registration = acme.new_account(
        messages.NewRegistration.from_data(email="ops@example.com", terms_of_service_agreed=True)
    )
    # A second newAccount with the same key (a new client) finds it: 200 + Location.
    with pytest.raises(errors.ConflictError) as conflict:
        _client(server, account_key).new_account(
            messages.NewRegistration.from_data(terms_of_service_agreed=True)
        )
    assert conflict.value.location == registration.uri

    cert_key = ec.generate_private_key(ec.SECP256R1())
    key_pem = cert_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    csr_pem = crypto_util.make_csr(key_pem, ipaddrs=[ipaddress.ip_address("127.0.0.1")])
    order = acme.new_order(csr_pem)
    (authorization,) = order.authorizations
    assert authorization.body.identifier.value == "127.0.0.1"
    offered = {c.to_json()["type"] for c in authorization.body.challenges}
    assert offered == {"http-01", "tls-alpn-01"}  # RFC 8738: no dns-01 for addresses
    http01 = next(
        c for c in authorization.body.challenges if isinstance(c.chall, challenges.HTTP01)
    )
    response, validation = http01.response_and_validation(acme.net.key)
    answers[http01.chall.encode("token")] = validation
    acme.answer_challenge(http01, response)
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=60)
    finished = acme.poll_and_finalize(order, deadline)
    chain = x509.load_pem_x509_certificates(finished.fullchain_pem.encode())
    renewal_at, _ = acme.renewal_time(chain[0].public_bytes(serialization.Encoding.PEM))
    acme.revoke(chain[0], 4)
    with pytest.raises(messages.Error) as again:
        acme.revoke(chain[0], 4)
    acme.deactivate_registration(registration)
    with pytest.raises(messages.Error) as gone:
        acme.new_order(csr_pem)
    return {
        "chain": chain,
        "renewal_at": renewal_at,
        "again": again.value,
        "gone": gone.value,
    }


async def test_certbot_acme_library_completes_http01_issuance(acme_server: RunningServer) -> None:
    with http01_responder() as (port, answers):
        acme_server.authority.acme.configure(http01_port=port)
        result = await trio.to_thread.run_sync(_certbot_flow, acme_server, port, answers)
    leaf, issuer = result["chain"][:2]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert issuer.subject == acme_server.authority.issuers["tls"].certificate.subject
    leaf.verify_directly_issued_by(issuer)
    assert leaf.not_valid_before_utc < result["renewal_at"].astimezone(datetime.UTC)
    assert result["renewal_at"].astimezone(datetime.UTC) < leaf.not_valid_after_utc
    assert result["again"].code == "alreadyRevoked"
    assert result["gone"].code == "unauthorized"
    record = acme_server.authority.stores.certificates.get_certificate(
        format(leaf.serial_number, "x")
    )
    assert record is not None and record.status == "revoked"
    assert record.provisioner_name == "acme"
    assert record.evidence["method"] == "acme"
