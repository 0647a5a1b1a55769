"""Minting JWK provisioner tokens (the CA host's ``devid token``, tests, benchmarks)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta

from engine.jose import PrivateKey, b64url_encode, jwk_from_public_key, jwk_thumbprint, sign_compact


def mint_token(
    key: PrivateKey,
    *,
    provisioner: str,
    subject: str,
    audience: str,
    now: datetime,
    jti: str,
    sans: Sequence[str] = (),
    lifetime: timedelta = timedelta(minutes=5),
    csr_der: bytes | None = None,
) -> str:
    """A one-time token a JWK provisioner named *provisioner* accepts."""
    issued = int(now.timestamp())
    claims: dict[str, object] = {
        "iss": provisioner,
        "sub": subject,
        "aud": audience,
        "sans": list(sans) or [subject],
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(lifetime.total_seconds()),
        "jti": jti,
    }
    if csr_der is not None:
        claims["csr_sha256"] = b64url_encode(hashlib.sha256(csr_der).digest())
    kid = jwk_thumbprint(jwk_from_public_key(key.public_key()))
    return sign_compact(claims, key, headers={"kid": kid})
