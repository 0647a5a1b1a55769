"""Minting X5C tokens (the device agent, tests): signed by the key of the chain's leaf."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.jose import PrivateKey, sign_compact
from plugins.api import sign_token_claims


def x5c_header(chain: Sequence[x509.Certificate]) -> list[str]:
    """The ``x5c`` header value: standard base64 DER, in the order given (leaf first)."""
    return [base64.b64encode(c.public_bytes(Encoding.DER)).decode("ascii") for c in chain]


def mint_x5c_token(
    key: PrivateKey,
    chain: Sequence[x509.Certificate],
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
    """A one-time token the X5C provisioner named *provisioner* accepts.

    *chain* is the leaf certificate followed by any intermediates (the root may be
    left out); *key* is the leaf's private key: any cryptography private key object,
    including a TPM-resident one such as ``agent.enroll.TPMSigningKey`` (only its
    ``sign`` and ``public_key`` are used). The JWS algorithm follows from the key:
    ES256 for P-256, ES384 for P-384, EdDSA for Ed25519, RS256 for RSA.
    """
    if not chain:
        raise ValueError("an X5C token needs at least the leaf certificate")
    if key.public_key() != chain[0].public_key():
        raise ValueError("the key is not the key of the chain's first (leaf) certificate")
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
    return sign_compact(claims, key, headers={"x5c": x5c_header(chain)})
