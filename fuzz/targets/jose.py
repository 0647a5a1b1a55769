"""Compact JWS tokens (engine/jose.py): the split and decode of header, payload and
signature, the claims, a JWK in the header, and the signature check with a key
pinned by the verifier (the JWK and X5C provisioners' first steps on ``ott``).

The input is the token's text, or (after a first byte 0x01) its header, payload and
signature as raw bytes (see :func:`fuzz.harness.split`), which the target encodes:
then the fuzzer changes the JSON inside the token directly.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from engine.jose import CompactJWS, b64url_encode, parse_compact, public_key_from_jwk
from fuzz.harness import attempt, split, text

ENVELOPE = 0x01

# A fixed verifier key (any key: the signature check must refuse cleanly, not crash).
_KEY = ec.derive_private_key(0xD3_71D, ec.SECP256R1()).public_key()


def _verify_with_header_jwk(jws: CompactJWS) -> None:
    jws.verify(public_key_from_jwk(jws.header.get("jwk")))


def token(data: bytes) -> str:
    """The token an input stands for."""
    if data[:1] == bytes([ENVELOPE]):
        return ".".join(b64url_encode(part) for part in split(data[1:], 3))
    return text(data)


def test_one_input(data: bytes) -> None:
    jws = attempt(parse_compact, token(data))
    if jws is None:
        return
    attempt(jws.claims)
    if "jwk" in jws.header:
        attempt(_verify_with_header_jwk, jws)
    attempt(jws.verify, _KEY)
