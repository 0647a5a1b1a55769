"""Registered-claim checks shared by every token-based provisioner (JWK, X5C, OIDC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from engine.errors import Unauthorized

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


def _numeric_date(claims: dict[str, Any], name: str, required: bool) -> datetime | None:
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
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise Unauthorized("token has no usable jti claim")
    return TokenTimes(not_before=start, expires_at=expires)
