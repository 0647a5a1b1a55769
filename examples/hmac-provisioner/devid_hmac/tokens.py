"""HMAC tokens: compact JWS with ``alg`` HS256, made and read without any JOSE library.

A token is ``BASE64URL(header) "." BASE64URL(claims) "." BASE64URL(mac)`` where
the header is ``{"alg": "HS256", "typ": "JWT"}``, the claims are those of a devid
sign token (``plugins.api.sign_token_claims``: iss, sub, sans, aud, iat, nbf,
exp, jti, optionally csr_sha256) and the mac is HMAC-SHA256 of the first two
parts under the provisioner's shared secret.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from plugins.api import Unauthorized, sign_token_claims

ALGORITHM = "HS256"
#: The longest token read (longer text is not an HMAC token to this type).
MAX_TOKEN_LENGTH = 16 * 1024
#: The header members a token may have; anything else (``crit`` above all) is refused.
HEADER_MEMBERS = frozenset({"alg", "typ", "kid"})

_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding; ValueError for anything else."""
    if not _BASE64URL.match(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        raise ValueError("not base64url") from None


def _json_object(segment: str) -> dict[str, Any]:
    """A base64url JSON object; ValueError for anything else (deep nesting included)."""
    try:
        value = json.loads(b64url_decode(segment))
    except (ValueError, RecursionError):
        raise ValueError("not a JSON object") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


@dataclasses.dataclass(frozen=True)
class HMACToken:
    """A token read but not verified."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    mac: bytes

    def verify(self, secret: bytes) -> dict[str, Any]:
        """The claims, if the header is one this type allows and *secret* made the mac."""
        extra = sorted(set(self.header) - HEADER_MEMBERS)
        if extra:
            raise Unauthorized(f"HMAC token header has members this type refuses: {extra}")
        if self.header.get("typ", "JWT") != "JWT":
            raise Unauthorized("HMAC token typ must be JWT")
        expected = hmac.new(secret, self.signing_input, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, self.mac):
            raise Unauthorized("HMAC token signature does not verify")
        return self.claims


def read_token(text: str) -> HMACToken | None:
    """*text* as an HMAC token: None if it is not one (no three parts, or a header that
    is not JSON with ``alg`` HS256), Unauthorized if it is one but malformed."""
    if len(text) > MAX_TOKEN_LENGTH:
        return None
    parts = text.split(".")
    if len(parts) != 3:
        return None
    try:
        header = _json_object(parts[0])
    except ValueError:
        return None
    if header.get("alg") != ALGORITHM:
        return None
    try:
        claims = _json_object(parts[1])
        mac = b64url_decode(parts[2])
    except ValueError:
        raise Unauthorized("HMAC token is malformed") from None
    return HMACToken(header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), mac)


def encode_token(claims: dict[str, Any], secret: bytes) -> str:
    """Claims as an HS256 token under *secret*."""
    header = {"alg": ALGORITHM, "typ": "JWT"}
    segments = [
        b64url_encode(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    ]
    signing_input = ".".join(segments)
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url_encode(mac)}"


def mint_token(
    secret: bytes,
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
    """A one-time token of the HMAC provisioner *provisioner*, for a client holding the
    shared secret: sign tokens name the certificate's *subject* and *sans* (default
    ``[subject]``) and *audience* ``https://CA/1.0/sign``; revoke tokens name the
    decimal serial as *subject* and ``https://CA/1.0/revoke``."""
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
    return encode_token(claims, secret)
