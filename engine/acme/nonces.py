"""Replay nonces (RFC 8555 6.5): single use and expiring.

The store keeps issued nonces and hands each back at most once (it deletes
what it returns); the engine mints them and decides whether the one a
request carried is still good.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import attrs

from ..jose import b64url_encode
from ..ports import Random
from .problems import bad_nonce

NONCE_BYTES = 16
NONCE_LIFETIME = timedelta(hours=1)
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@attrs.frozen
class Nonce:
    value: str
    expires_at: datetime


def new_nonce(random: Random, now: datetime, lifetime: timedelta = NONCE_LIFETIME) -> Nonce:
    return Nonce(b64url_encode(random.bytes(NONCE_BYTES)), now + lifetime)


def well_formed(value: str) -> bool:
    """Whether *value* could be one of ours (a base64url string of sane length)."""
    return bool(_NONCE.match(value))


def check_nonce(value: str, expires_at: datetime | None, now: datetime) -> None:
    """*expires_at* is what the store returned when it took *value* (None: unknown or used)."""
    if not well_formed(value):
        raise bad_nonce("the nonce is not one this server issues")
    if expires_at is None:
        raise bad_nonce("the nonce is unknown or was used already; get a new one")
    if expires_at <= now:
        raise bad_nonce("the nonce has expired; get a new one")
