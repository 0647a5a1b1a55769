"""Compact JWS tokens (engine/jose.py): the split and decode of header, payload and
signature, the claims, a JWK in the header, and the signature check with a key
pinned by the verifier (the JWK and X5C provisioners' first steps on ``ott``)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from engine.jose import CompactJWS, parse_compact, public_key_from_jwk
from fuzz.harness import attempt, text

# A fixed verifier key (any key: the signature check must refuse cleanly, not crash).
_KEY = ec.derive_private_key(0xD3_71D, ec.SECP256R1()).public_key()


def _verify_with_header_jwk(jws: CompactJWS) -> None:
    jws.verify(public_key_from_jwk(jws.header.get("jwk")))


def test_one_input(data: bytes) -> None:
    jws = attempt(parse_compact, text(data))
    if jws is None:
        return
    attempt(jws.claims)
    if "jwk" in jws.header:
        attempt(_verify_with_header_jwk, jws)
    attempt(jws.verify, _KEY)
