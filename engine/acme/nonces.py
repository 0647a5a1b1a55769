"""Replay nonces (RFC 8555 6.5): unpredictable, single use and expiring, with no store.

A nonce is ``base64url(counter || expiry || tag)``: a 64-bit issue counter, the
expiry in whole seconds since the epoch, and a 128-bit HMAC-SHA256 tag over both
under a key only this :class:`NonceBook` knows. The tag makes nonces unforgeable
and unpredictable to anyone but the issuer; the expiry rides inside, so nothing
is written when a nonce is minted.

Single use is enforced in memory by a sliding window over the counter: the
book remembers, for the last ``window`` counters it issued, whether each was
redeemed (one bit each). A nonce is accepted once if its tag verifies, it has
not expired, and its counter is inside the window and not yet marked. A nonce
older than the window (``window`` nonces were issued after it) is refused like
an expired one, so memory stays fixed however many nonces are minted.

A book is one process's: another process's nonces (another ``--workers``
worker, or this server before a restart) carry another key's tag and are
refused as ``badNonce``, never accepted twice. The client retries with the
``Replay-Nonce`` of that refusal (RFC 8555 6.5).

The book is sans-IO and deterministic: the host passes the key (random, made at
start) and the time, and serialises calls (it is not thread-safe).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime, timedelta

from ..errors import BadRequest
from ..jose import b64url_decode, b64url_encode
from .problems import bad_nonce

NONCE_LIFETIME = timedelta(hours=1)
#: Redeemed-or-not bits kept: 2**20 counters, 128 KiB.
NONCE_WINDOW = 1 << 20
KEY_BYTES = 32
_COUNTER_BYTES = 8
_EXPIRY_BYTES = 8
_TAG_BYTES = 16
_PAYLOAD_BYTES = _COUNTER_BYTES + _EXPIRY_BYTES
_RAW_BYTES = _PAYLOAD_BYTES + _TAG_BYTES
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_CONTEXT = b"devid acme nonce v1\x00"


def well_formed(value: str) -> bool:
    """Whether *value* could be one of ours (a base64url string of sane length)."""
    return bool(_NONCE.match(value))


class NonceBook:
    """Mints nonces and accepts each at most once, until it expires."""

    def __init__(
        self, key: bytes, *, lifetime: timedelta = NONCE_LIFETIME, window: int = NONCE_WINDOW
    ) -> None:
        if len(key) < 16:
            raise ValueError("a nonce key needs at least 16 bytes")
        if window < 8 or window % 8:
            raise ValueError("the nonce window must be a positive multiple of 8")
        if lifetime <= timedelta(0):
            raise ValueError("the nonce lifetime must be positive")
        self._key = _CONTEXT + key
        self._lifetime = int(lifetime.total_seconds())
        self._window = window
        self._redeemed = bytearray(window // 8)
        self._next = 0  # the counter of the next nonce minted

    @property
    def issued(self) -> int:
        """How many nonces this book minted."""
        return self._next

    def _tag(self, payload: bytes) -> bytes:
        return hmac.digest(self._key, payload, hashlib.sha256)[:_TAG_BYTES]

    def mint(self, now: datetime) -> str:
        """A new nonce, valid from *now* for the book's lifetime."""
        counter = self._next
        self._next = counter + 1
        # The bit this counter takes over belonged to counter - window, now outside the window.
        index = counter % self._window
        self._redeemed[index >> 3] &= ~(1 << (index & 7)) & 0xFF
        expires = int(now.timestamp()) + self._lifetime
        payload = counter.to_bytes(_COUNTER_BYTES, "big") + expires.to_bytes(_EXPIRY_BYTES, "big")
        return b64url_encode(payload + self._tag(payload))

    def redeem(self, value: str, now: datetime) -> None:
        """Accept *value* once; ``badNonce`` if it is not ours, expired, too old or used."""
        if not well_formed(value):
            raise bad_nonce("the nonce is not one this server issues")
        try:
            raw = b64url_decode(value, what="the nonce")
        except BadRequest:
            raise bad_nonce("the nonce is not one this server issues") from None
        if len(raw) != _RAW_BYTES:
            raise bad_nonce("the nonce is not one this server issues")
        payload, tag = raw[:_PAYLOAD_BYTES], raw[_PAYLOAD_BYTES:]
        if not hmac.compare_digest(tag, self._tag(payload)):
            raise bad_nonce(
                "the nonce is unknown here (issued by another server process or before a"
                " restart); retry with the Replay-Nonce of this response"
            )
        counter = int.from_bytes(payload[:_COUNTER_BYTES], "big")
        expires = int.from_bytes(payload[_COUNTER_BYTES:], "big")
        if expires <= now.timestamp():
            raise bad_nonce("the nonce has expired; get a new one")
        if counter >= self._next:  # a valid tag on a counter never minted: fail closed
            raise bad_nonce("the nonce is unknown here; get a new one")
        if counter < self._next - self._window:
            raise bad_nonce("the nonce is too old; get a new one")
        index = counter % self._window
        bit = 1 << (index & 7)
        if self._redeemed[index >> 3] & bit:
            raise bad_nonce("the nonce was used already; get a new one")
        self._redeemed[index >> 3] |= bit
