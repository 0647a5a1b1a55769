"""Registered-claim checks shared by every token-based provisioner (JWK, X5C, OIDC).

The claims a client signs (:func:`sign_token_claims`) are made in :mod:`plugins.minting`,
which a device imports without this module.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from engine.errors import ProtocolError, ServiceUnavailable, Unauthorized
from engine.jose import CompactJWS, b64url_decode, parse_compact
from engine.names import SAN
from engine.policy import CSRDigestIs

from .base import Credential
from .minting import sign_token_claims as sign_token_claims
from .remote import RemoteKeys

LEEWAY = timedelta(seconds=60)
MAX_JTI_LENGTH = 256


@attrs.frozen
class TokenTimes:
    not_before: datetime
    expires_at: datetime

    @property
    def replay_until(self) -> datetime:
        """How long a used token must be remembered: it still verifies until exp + LEEWAY."""
        return self.expires_at + LEEWAY


def _numeric_date(claims: Mapping[str, Any], name: str, required: bool) -> datetime | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise Unauthorized(f"token has no {name} claim")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthorized(f"token claim {name} must be a number")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise Unauthorized(f"token claim {name} is out of range") from None


def check_token_times(
    claims: Mapping[str, Any], *, now: datetime, max_lifetime: timedelta
) -> TokenTimes:
    """Check exp (required), nbf and iat (one of them required) against *now* with
    :data:`LEEWAY`, and the token's lifetime against *max_lifetime*."""
    expires = _numeric_date(claims, "exp", required=True)
    issued = _numeric_date(claims, "iat", required=False)
    not_before = _numeric_date(claims, "nbf", required=False)
    assert expires is not None
    start = not_before or issued
    if start is None:
        raise Unauthorized("token has neither nbf nor iat")
    if issued is not None and issued > now + LEEWAY:
        raise Unauthorized("token was issued in the future")
    if not_before is not None and not_before > now + LEEWAY:
        raise Unauthorized("token is not yet valid")
    if expires <= now - LEEWAY:
        raise Unauthorized("token has expired")
    if expires <= start:
        raise Unauthorized("token expires before it becomes valid")
    if expires - start > max_lifetime:
        raise Unauthorized(
            f"token lifetime {expires - start} exceeds this provisioner's limit of {max_lifetime}"
        )
    return TokenTimes(not_before=start, expires_at=expires)


def check_registered_claims(
    claims: dict[str, Any],
    *,
    issuer: str,
    audiences: frozenset[str],
    now: datetime,
    max_lifetime: timedelta,
) -> TokenTimes:
    """Check iss, aud, exp, nbf, iat and jti; return the token's validity window."""
    if claims.get("iss") != issuer:
        raise Unauthorized(f"token issuer {claims.get('iss')!r} is not {issuer!r}")
    aud = claims.get("aud")
    aud_values = [aud] if isinstance(aud, str) else aud
    if not isinstance(aud_values, list) or not any(
        isinstance(a, str) and a in audiences for a in aud_values
    ):
        raise Unauthorized(f"token audience {aud!r} is not this endpoint")
    times = check_token_times(claims, now=now, max_lifetime=max_lifetime)
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise Unauthorized("token has no usable jti claim")
    return times


MAX_SUBJECT_LENGTH = 256
MAX_SANS = 100


def subject_and_sans(claims: Mapping[str, Any]) -> tuple[str, tuple[SAN, ...]]:
    """A sign token's ``sub`` and ``sans`` claims (``sans`` defaults to ``[sub]``)."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_LENGTH:
        raise Unauthorized("token has no usable sub claim")
    raw_sans = claims.get("sans", [subject])
    if not isinstance(raw_sans, list) or not all(isinstance(s, str) for s in raw_sans):
        raise Unauthorized("token sans claim must be a list of strings")
    if len(raw_sans) > MAX_SANS:
        raise Unauthorized("token names too many SANs")
    try:
        sans = tuple(sorted(set(SAN.parse(s) for s in raw_sans)))
    except ProtocolError as exc:
        raise Unauthorized(f"token sans: {exc.detail}") from None
    return subject, sans


def csr_binding(claims: Mapping[str, Any], *, required: bool) -> CSRDigestIs | None:
    """The validator for a ``csr_sha256`` claim, or None when the token has none."""
    binding = claims.get("csr_sha256")
    if binding is None:
        if required:
            raise Unauthorized("this provisioner requires tokens bound to the CSR (csr_sha256)")
        return None
    if not isinstance(binding, str):
        raise Unauthorized("token csr_sha256 claim must be a string")
    return CSRDigestIs(b64url_decode(binding, what="csr_sha256"))


# The last token each request thread parsed: every JOSE provisioner type reads the same
# token in turn while the host routes it, and it is parsed once.
_last_parsed = threading.local()


def parse_jose(text: str) -> CompactJWS:
    """``engine.jose.parse_compact(text)``, remembered for the next call with the same text
    on this thread (it refuses none, HMAC and oversized tokens)."""
    cached = getattr(_last_parsed, "value", None)
    if cached is not None and cached[0] is text:
        jws: CompactJWS = cached[1]
        return jws
    jws = parse_compact(text)
    _last_parsed.value = (text, jws)
    return jws


def read_jose_credential(text: str) -> Credential | None:
    """The reading of a compact-JWS token for :meth:`plugins.base.Provisioner.read_credential`:
    it addresses the provisioner its ``iss`` names. A ProtocolError if *text* is not a
    compact JWS this code reads (none and HMAC never are) or its ``iss`` is not a name;
    the host tries the other types before it reports that."""
    jws = parse_jose(text)
    issuer = jws.claims().get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise Unauthorized(f"token issuer {issuer!r} is not a provisioner that signs tokens here")
    return Credential(text=text, provisioner=issuer, reading=jws)


def jose_token(credential: Credential | str) -> CompactJWS:
    """The parsed token of *credential* (a JOSE type's reading, or the raw text)."""
    if isinstance(credential, Credential):
        if isinstance(credential.reading, CompactJWS):
            return credential.reading
        return parse_jose(credential.text)
    return parse_jose(credential)


#: The longest ``kid`` a token may name (the key sets devid reads use short ones).
MAX_KID_CHARS = 256


def verify_remote_token(
    jws: CompactJWS,
    remote_keys: RemoteKeys | None,
    *,
    algorithms: Collection[str],
    refresh_interval: timedelta,
    what: str,
    whose: str,
    provisioner: str,
    jwks_uri: str | None = None,
    issuer: str | None = None,
) -> dict[str, Any]:
    """The claims of *jws* (*what*: "ID token", "access token") once its signature verifies
    with the key its ``kid`` names in a third party's JWK set, fetched by the host:
    *jwks_uri*, or that of the OpenID provider *issuer*'s discovery document. Unauthorized
    for an algorithm not in *algorithms* or an unusable ``kid``; ServiceUnavailable when
    the host cannot fetch keys (*whose*: "Google's signing keys") or the key cannot be had."""
    alg = jws.alg
    if alg not in algorithms:
        raise Unauthorized(
            f"{what} algorithm {alg!r} is not one provisioner {provisioner!r} accepts"
            f" ({', '.join(algorithms)})"
        )
    if remote_keys is None:
        raise ServiceUnavailable(f"this CA cannot fetch {whose} here")
    kid = jws.header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid or len(kid) > MAX_KID_CHARS):
        raise Unauthorized(f"{what} kid must be a short string")
    if jwks_uri is None:
        if issuer is None:
            raise ValueError("verify_remote_token needs a jwks_uri or an issuer")
        jwks_uri = remote_keys.provider(issuer).jwks_uri
    key = remote_keys.key(jwks_uri, kid, alg, refresh_interval=refresh_interval)
    return jws.verify(key)
