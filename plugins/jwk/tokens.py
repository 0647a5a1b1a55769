"""Minting JWK provisioner tokens (the CA host's ``devid token``, tests, benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from engine.jose import PrivateKey, jwk_from_public_key, jwk_thumbprint, sign_compact
from plugins.api import sign_token_claims


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
    claims = sign_token_claims(
        provisioner=provisioner,
        subject=subject,
        audience=audience,
        now=now,
        jti=jti,
        sans=sans,
        lifetime=lifetime,
        csr_der=csr_der,
    )
    kid = jwk_thumbprint(jwk_from_public_key(key.public_key()))
    return sign_compact(claims, key, headers={"kid": kid})
