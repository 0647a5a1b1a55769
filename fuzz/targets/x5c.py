"""X5C tokens' certificate chains (plugins/x5c): the ``x5c`` header's certificates,
the leaf's key, the path to the provisioner's root, the leaf's and intermediates'
profiles, and the token signature with the leaf's key; the same verifier serves
``POST /1.0/sign`` (account provisioners) and ``GET /api/v1/device/accounts``.

The input is the chain itself: DER certificates one after the other, leaf first.
The target wraps them in a token whose signature is junk, so it is refused at the
signature at the latest.
"""

from __future__ import annotations

import base64
import json

from cryptography import x509

from engine.jose import b64url_encode
from fuzz.harness import FIXTURES_DIR, NOW, attempt
from plugins.certpaths import fingerprint, is_ca_certificate, parse_x5c
from plugins.provisioner import AuthorizeContext
from plugins.x5c import X5CProvisioner

ROOTS = tuple(
    x509.load_der_x509_certificate(p.read_bytes())
    for p in sorted((FIXTURES_DIR / "x5c").glob("*.der"))
)
AUDIENCE = "https://ca.example/1.0/sign"
CONTEXT = AuthorizeContext(now=NOW, audiences=frozenset({AUDIENCE}))
PROVISIONER = X5CProvisioner(name="x5c", issuer="agent", roots=ROOTS)
ALGORITHMS = ("ES256", "ES384", "RS256", "PS256", "EdDSA")
CLAIMS = {
    "iss": "x5c",
    "aud": AUDIENCE,
    "sub": "device-1",
    "jti": "fuzz",
    "iat": int(NOW.timestamp()),
    "nbf": int(NOW.timestamp()),
    "exp": int(NOW.timestamp()) + 300,
}


def split_der(data: bytes) -> list[bytes]:
    """DER elements one after the other (the last one takes whatever is left)."""
    parts: list[bytes] = []
    while data and len(parts) < 8:
        size = _element_size(data)
        if size is None or size >= len(data):
            parts.append(data)
            break
        parts.append(data[:size])
        data = data[size:]
    return parts


def _element_size(data: bytes) -> int | None:
    if len(data) < 2:
        return None
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4 or len(data) < 2 + count:
        return None
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")


def token(certificates: list[bytes], alg: str) -> str:
    header = {"alg": alg, "typ": "JWT", "x5c": [base64.b64encode(c).decode() for c in certificates]}
    encoded = [
        b64url_encode(json.dumps(header).encode()),
        b64url_encode(json.dumps(CLAIMS).encode()),
        b64url_encode(bytes(64)),
    ]
    return ".".join(encoded)


def _inspect(header: dict[str, object]) -> None:
    for cert in parse_x5c(header):
        fingerprint(cert)
        is_ca_certificate(cert)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    alg = ALGORITHMS[data[0] % len(ALGORITHMS)]
    certificates = split_der(data[1:])
    credential = token(certificates, alg)
    attempt(PROVISIONER.verify_token, credential, CONTEXT)
    attempt(_inspect, {"x5c": [base64.b64encode(c).decode() for c in certificates]})
