"""Every OID in devid's certificates fits what every X.509 stack parses.

RFC 5280 (4.1.2.4 and appendix B) only asks implementations to handle OID arcs up to
2^28 - 1. Go's crypto/x509, and with it lego, Caddy, step and Kubernetes, rejects a
whole certificate ("x509: malformed extension OID field") when an extension OID has a
much larger arc, such as a UUID arc 2.25.<128-bit integer>; such a server certificate
fails every Go client's TLS handshake before any ACME request is made.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from engine.attestation.akcert import EK_DIGEST_ASSIGNER
from engine.extensions import PROVISIONER_OID

from .support import Server

LIMIT = 2**28


def too_large(dotted: str) -> list[int]:
    return [int(arc) for arc in dotted.split(".") if int(arc) >= LIMIT]


@pytest.mark.parametrize("oid", [PROVISIONER_OID.dotted_string, EK_DIGEST_ASSIGNER])
def test_devid_oids_have_small_arcs(oid: str) -> None:
    assert too_large(oid) == [], f"{oid}: arcs of 2^28 or more break Go's crypto/x509"


def test_served_certificates_have_small_extension_arcs(interop_server: Server) -> None:
    data = interop_server.data_dir
    paths = [data / "tls" / "server.crt", *sorted((data / "certs").glob("*.crt"))]
    found: dict[Path, list[str]] = {}
    for path in paths:
        for certificate in x509.load_pem_x509_certificates(path.read_bytes()):
            for extension in certificate.extensions:
                if too_large(extension.oid.dotted_string):
                    found.setdefault(path, []).append(extension.oid.dotted_string)
    assert found == {}, found
