"""Per-client rate limits for anonymous requests: one token bucket per client address.

Each client (an IPv4 address, or the /64 network of an IPv6 address, which is what
one customer of an ISP gets) has a bucket of ``[server] rate_limit_burst`` tokens
that refills at ``[server] rate_limit_per_second``. A request that needs no
credential takes a token; so does a request refused for a missing or bad
credential (401 or 403). While a client's bucket is empty, every request from it
except ``/health`` is answered 429 with ``Retry-After`` (see
:meth:`hosts.http.routing.Router.dispatch` and docs/api.md, "Limits").

Memory stays bounded: at most :data:`MAX_CLIENTS` buckets are kept, the least
recently used dropped first. A dropped bucket comes back full, which only ever
gives a client more room, never less: a flood of distinct addresses cannot grow
memory, only make the limit more lenient for clients it pushes out. Each server
process (each raw worker) keeps its own buckets.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from engine.errors import ProtocolError

log = logging.getLogger("devid.http")

#: Buckets kept at most (about 150 bytes each).
MAX_CLIENTS = 16_384


class RateLimited(ProtocolError):
    """Too many requests from one client; ``retry_after`` is in whole seconds."""

    status = 429
    code = "rateLimited"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


def client_key(address: str) -> str:
    """The bucket an address draws from: an IPv4 address itself (also when written as an
    IPv4-mapped IPv6 address), an IPv6 address by its /64 network."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


class _Bucket:
    __slots__ = ("limited", "stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.limited = False


class RateLimiter:
    """Token buckets keyed by client address; used from one trio thread only (no lock)."""

    def __init__(
        self,
        per_second: float,
        burst: int,
        *,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_second <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("a rate limit needs a positive rate, a burst and room for clients")
        self.per_second = per_second
        self.burst = float(burst)
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _refilled(self, key: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.per_second)
            bucket.stamp = now
        return bucket

    def take(self, client: str) -> float:
        """Take a token for *client*: 0.0 if there was one, else the seconds until there is."""
        key = client_key(client)
        now = self._clock()
        bucket = self._refilled(key, now)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            bucket.limited = False
            return 0.0
        return self._refuse(key, bucket)

    def wait(self, client: str) -> float:
        """Without taking a token: 0.0 if *client* has one, else the seconds until it has."""
        key = client_key(client)
        bucket = self._refilled(key, self._clock())
        if bucket is None or bucket.tokens >= 1:
            return 0.0
        return self._refuse(key, bucket)

    def _refuse(self, key: str, bucket: _Bucket) -> float:
        wait = (1 - bucket.tokens) / self.per_second
        if not bucket.limited:  # one line per episode, not one per refused request
            bucket.limited = True
            log.warning(
                "client rate-limited",
                extra={"client": key, "retry_after": retry_after(wait)},
            )
        return wait


def retry_after(wait: float) -> int:
    """A wait as the whole seconds of a Retry-After header (at least 1)."""
    return max(1, math.ceil(wait))


def limiter_for(per_second: float, burst: int) -> RateLimiter | None:
    """The limiter ``[server] rate_limit_per_second`` and ``rate_limit_burst`` ask for;
    None when the rate is 0 (no limit)."""
    return RateLimiter(per_second, burst) if per_second > 0 else None
