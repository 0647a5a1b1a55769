"""Instance identity requests: how a cloud instance presents what its cloud signed.

An AWS instance identity document and an Azure attested-data document carry no
audience, and arrive in several pieces (a document, a signature, an access token). The
instance sends them to ``POST /1.0/sign`` as one ``ott``: a compact JWS (``typ``
:data:`~plugins.minting.IDENTITY_REQUEST_TYPE`) signed by the very key its CSR
certifies, with

- ``aud``: this CA's sign URL and the provisioner's name as its fragment
  (``https://ca.example.com:8443/1.0/sign#aws``), which addresses the provisioner;
- ``iat`` and ``exp``: the request lives at most five minutes;
- one member named after the cloud (``"aws"``, ``"azure"``) holding the cloud's
  evidence as the metadata server gave it.

The CA checks the JWS with the CSR's public key, so the request and the CSR come from
one key holder, and the audience and times before anything else; the provisioner then
checks the cloud's own signatures over the evidence. The request's signature proves
nothing about the instance by itself: what the cloud signed does (see each
provisioner's docstring for how the evidence is tied to this CA and to one instance).
Instances build requests with :func:`plugins.minting.mint_identity_request`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from engine.csr import CSRInfo
from engine.errors import ProtocolError, Unauthorized
from engine.jose import CompactJWS

from .base import Credential
from .minting import IDENTITY_REQUEST_LIFETIME, IDENTITY_REQUEST_TYPE
from .provisioner import AuthorizeContext
from .tokens import LEEWAY, TokenTimes, check_token_times, jose_token, parse_jose

__all__ = ["IdentityRequest", "read_identity_request", "sha256_token_id", "verify_identity_request"]


@attrs.frozen
class IdentityRequest:
    """A verified instance identity request."""

    #: The cloud's evidence: the request's member named after the cloud.
    evidence: Mapping[str, Any]
    #: The request's ``aud`` (``<sign URL>#<provisioner>``): what the evidence's nonce,
    #: where the cloud signs one, is computed over.
    audience: str
    times: TokenTimes


def read_identity_request(text: str, cloud: str) -> Credential | None:
    """The reading of *text* for a provisioner type's ``read_credential``: an identity
    request with a member named *cloud* addresses the provisioner its ``aud`` fragment
    names. None for anything else (another type's token, not a JWS at all)."""
    try:
        jws = parse_jose(text)
        if jws.header.get("typ") != IDENTITY_REQUEST_TYPE:
            return None
        claims = jws.claims()
    except ProtocolError:
        return None
    if not isinstance(claims.get(cloud), Mapping):
        return None
    aud = claims.get("aud")
    if not isinstance(aud, str):
        return None
    _, hash_sign, fragment = aud.partition("#")
    if not hash_sign or not fragment:
        return None
    return Credential(text=text, provisioner=fragment, reading=jws)


def verify_identity_request(
    credential: Credential, csr: CSRInfo, ctx: AuthorizeContext, *, provisioner: str, cloud: str
) -> IdentityRequest:
    """Check an identity request for *provisioner*: its signature with the CSR's key, its
    audience (exactly one of this CA's sign URLs, ``#`` and *provisioner*) and its times
    (at most :data:`~plugins.minting.IDENTITY_REQUEST_LIFETIME`, with a minute's leeway).
    Unauthorized otherwise."""
    jws: CompactJWS = jose_token(credential)
    if jws.header.get("typ") != IDENTITY_REQUEST_TYPE:
        raise Unauthorized(f"the credential is not an instance identity request ({cloud})")
    key = csr.public_key
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise Unauthorized("the CSR's key cannot sign an identity request (RSA, EC or Ed25519)")
    claims = jws.verify(key)
    audience = claims.get("aud")
    expected = sorted(f"{a}#{provisioner}" for a in ctx.audiences)
    if not isinstance(audience, str) or audience not in expected:
        raise Unauthorized(
            f"identity request audience {audience!r} is not this CA's provisioner URL"
            f" (expected {' or '.join(expected) or 'a URL of this CA'})"
        )
    times = check_token_times(claims, now=ctx.now, max_lifetime=IDENTITY_REQUEST_LIFETIME + LEEWAY)
    evidence = claims.get(cloud)
    if not isinstance(evidence, Mapping):
        raise Unauthorized(f"the identity request carries no {cloud!r} evidence")
    return IdentityRequest(evidence=evidence, audience=audience, times=times)


def sha256_token_id(data: str | bytes) -> str:
    """The one-time-use record of a credential used once by its content:
    ``sha256:<hex>``."""
    raw = data.encode() if isinstance(data, str) else data
    return "sha256:" + hashlib.sha256(raw).hexdigest()
