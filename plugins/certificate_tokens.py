"""Tokens signed by the key of a certificate (an ``x5c`` JWS header), verified to roots.

The X5C provisioner's credential, and the bearer token a device signs with its
(TPM-resident) device key where its TLS stack cannot present the certificate. A
token verifies when its ``x5c`` path leads to one of the given roots at the current
time, the leaf's key signed it with the one algorithm that key type allows (``none``
and HMAC are refused before anything else), and its registered claims hold (``iss``
the expected name, ``aud`` this endpoint, lifetime, ``jti``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import attrs
from cryptography import x509

from engine.errors import Unauthorized

from .base import Credential
from .certpaths import VerifiedPath, parse_x5c, verify_x5c_path
from .provisioner import AuthorizeContext, TokenUse
from .tokens import TokenTimes, check_registered_claims, jose_token

# The algorithms an x5c token may name; the leaf's key type then picks the one that verifies.
X5C_ALGORITHMS = frozenset({"ES256", "ES384", "EdDSA", "RS256", "PS256"})


@attrs.frozen
class X5CToken:
    """A token whose signature, certificate path and registered claims all verified."""

    claims: Mapping[str, Any]
    path: VerifiedPath
    times: TokenTimes
    use: TokenUse

    @property
    def leaf(self) -> x509.Certificate:
        return self.path.leaf


def verify_certificate_token(
    credential: Credential | str,
    *,
    name: str,
    roots: Sequence[x509.Certificate],
    ctx: AuthorizeContext,
    max_lifetime: timedelta = timedelta(minutes=5),
) -> X5CToken:
    """Verify an x5c token addressed (``iss``) to *name* whose certificate path leads to
    one of *roots*; raise Unauthorized (or BadRequest for a malformed token) to refuse.
    The result's ``use`` is the one-time ``jti`` the caller must record."""
    jws = jose_token(credential)  # parsing refuses none, HMAC and oversized tokens
    if jws.alg not in X5C_ALGORITHMS:
        raise Unauthorized(f"algorithm {jws.alg!r} is not allowed for X5C tokens")
    if "jwk" in jws.header or "jku" in jws.header or "x5u" in jws.header:
        raise Unauthorized("an X5C token names its key only through x5c")
    certificates = parse_x5c(jws.header)
    path = verify_x5c_path(certificates, roots, ctx.now)
    claims = jws.verify(path.leaf_key)  # the algorithm must be the leaf key's
    times = check_registered_claims(
        claims, issuer=name, audiences=ctx.audiences, now=ctx.now, max_lifetime=max_lifetime
    )
    use = TokenUse(provisioner=name, token_id=str(claims["jti"]), expires_at=times.replay_until)
    return X5CToken(claims=claims, path=path, times=times, use=use)
