"""Minting one-time tokens, the client's side of the JWK and X5C provisioners.

A device (``agent.accounts``), the CA host's ``devid token``, tests and benchmarks
mint tokens here. The module needs nothing but :mod:`engine.jose` and
cryptography: importing it loads no provisioner type and no plugin machinery
(pluggy), so a device can mint tokens without carrying the CA's side. The
provisioners that verify these tokens live in :mod:`plugins.jwk` and
:mod:`plugins.x5c`, which re-export the names below.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.jose import PrivateKey, b64url_encode, jwk_from_public_key, jwk_thumbprint, sign_compact

__all__ = [
    "IDENTITY_REQUEST_LIFETIME",
    "IDENTITY_REQUEST_TYPE",
    "instance_nonce",
    "key_nonce",
    "mint_identity_request",
    "mint_token",
    "mint_x5c_token",
    "sign_token_claims",
    "x5c_header",
]


def key_nonce(spki_der: bytes) -> str:
    """The OpenID ``nonce`` that binds an ID token to one key: the base64url SHA-256 of the
    key's SubjectPublicKeyInfo (DER).

    ``devid login`` makes the key first and asks the provider for an ID token carrying
    this nonce; the OIDC provisioner accepts a token that carries a nonce only with a CSR
    for that key, so a token copied on its way cannot certify another key.
    """
    return b64url_encode(hashlib.sha256(spki_der).digest())


def sign_token_claims(
    *,
    provisioner: str,
    subject: str,
    audience: str,
    now: datetime,
    jti: str,
    sans: Sequence[str] = (),
    lifetime: timedelta = timedelta(minutes=5),
    csr_der: bytes | None = None,
) -> dict[str, object]:
    """The claims of a one-time sign (or revoke) token, for clients that mint them."""
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
    return claims


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


#: The JWS ``typ`` of an instance identity request (:func:`mint_identity_request`).
IDENTITY_REQUEST_TYPE = "devid-instance-identity+jwt"
#: How long an instance identity request is valid.
IDENTITY_REQUEST_LIFETIME = timedelta(minutes=5)
#: How many decimal digits :func:`instance_nonce` has (what Azure's metadata server takes).
INSTANCE_NONCE_DIGITS = 10


def instance_nonce(spki_der: bytes, audience: str) -> str:
    """The nonce an instance asks its cloud to sign into an identity document, binding
    the document to one key and one CA provisioner: ten decimal digits (the form Azure's
    attested-data endpoint takes) drawn from the SHA-256 of the key's
    SubjectPublicKeyInfo (DER) and the request's *audience* (``<sign URL>#<name>``).

    The CA recomputes it from the CSR and the request and refuses a document that carries
    another, so a document copied on its way cannot certify another key, nor be taken to
    another CA or provisioner. Ten digits are about 33 bits: finding another key with the
    same nonce takes some 5·10⁹ key generations on average, within the document's
    lifetime (hours) and before the instance itself uses it.
    """
    digest = hashlib.sha256(b"devid instance nonce\x00" + audience.encode() + b"\x00" + spki_der)
    value = int.from_bytes(digest.digest()[:8], "big") % 10**INSTANCE_NONCE_DIGITS
    return f"{value:0{INSTANCE_NONCE_DIGITS}d}"


def mint_identity_request(
    key: PrivateKey,
    *,
    audience: str,
    cloud: str,
    evidence: dict[str, object],
    now: datetime,
    lifetime: timedelta = IDENTITY_REQUEST_LIFETIME,
) -> str:
    """An instance identity request: a compact JWS signed by *key*, the key the CSR sent
    with it certifies, carrying what the instance's cloud signed (*evidence*, under the
    member named *cloud*: ``"aws"``, ``"azure"``), for *audience* (``<CA sign URL>#<provisioner>``),
    valid from *now* for *lifetime* (at most :data:`IDENTITY_REQUEST_LIFETIME`)."""
    if lifetime > IDENTITY_REQUEST_LIFETIME:
        raise ValueError(f"an identity request lives at most {IDENTITY_REQUEST_LIFETIME}")
    issued = int(now.timestamp())
    claims: dict[str, object] = {
        "aud": audience,
        "iat": issued,
        "exp": issued + int(lifetime.total_seconds()),
        cloud: evidence,
    }
    return sign_compact(claims, key, headers={"typ": IDENTITY_REQUEST_TYPE})
