"""The host's cache of OpenID provider metadata, JWK sets and CA certificates
(:class:`RemoteKeySets`).

Every URL fetched (an issuer's discovery document, a ``jwks_uri``) is ``https://``, or
``http://`` to a loopback host for development and tests; redirects are not followed.
An answer counts only if it is ``200``, at most ``max_bytes`` and a JSON object that
parses as what was asked for; anything else is a failed fetch with its reason.

Each URL's document is kept, parsed, for as long as its response's cache headers say
(``Cache-Control: max-age``, else ``Expires``, else ``default_ttl``), within
``[min_ttl, max_ttl]``; ``no-store`` and ``no-cache`` keep it for ``min_ttl``. When an
expired document cannot be fetched again, the one held stays in use, a warning gives the
reason, and the next attempt waits ``min_ttl``; with nothing held, the failure is a
:class:`~engine.errors.ServiceUnavailable` naming the reason, and the next attempt waits
``retry_after`` (calls in between get that failure at once: a provider that is down
never has every request wait on a fetch of its own). A JWK set is also fetched again
when a token names a key it does not hold, at most once per ``refresh_interval`` (the
caller's), since anyone can send such a token.

A certificate asked for by URL (:meth:`RemoteKeySets.certificate`, an AIA ``caIssuers``
URL a provisioner has allowed) may be ``http://`` to any host: what it says counts only
once the provisioner has verified its signature. Its answer must be ``200``, at most
``certificate_max_bytes`` and one certificate (DER, or PEM, returned as DER); it is kept
for ``certificate_ttl`` whatever the cache headers say (a certificate at a URL does not
change), and a failure is retried after ``retry_after`` as above.

Each URL has its own lock: while one thread fetches, the others asking for that URL
wait and take its result, success or failure, instead of fetching themselves. No lock
shared between URLs is held during network I/O. Cache times come from the ``Clock``;
only the bound on one fetch's duration is measured with :func:`time.monotonic`.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlsplit

import attrs
import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.errors import BadRequest, ServiceUnavailable, Unauthorized
from engine.jose import PublicKey, allowed_algorithms, json_value, public_key_from_jwk
from engine.ports import Clock
from plugins.remote import DISCOVERY_PATH, OpenIDProvider, RemoteKeys, url_problem

log = logging.getLogger("devid.remote")

T = TypeVar("T")

_REQUEST_HEADERS = {
    "accept": "application/json",
    # A compressed answer is still read (and its size counted decompressed), but
    # asking for none keeps a small body from growing large in memory.
    "accept-encoding": "identity",
    "user-agent": "devid",
}
_OPTIONAL_ENDPOINTS = (
    "authorization_endpoint",
    "token_endpoint",
    "device_authorization_endpoint",
)
_CERTIFICATE_HEADERS = {
    "accept": "application/pkix-cert, application/x-x509-ca-cert, application/x-pem-file, */*",
    "accept-encoding": "identity",
    "user-agent": "devid",
}
_LONGEST_LOCATION = 200


class _FetchFailed(Exception):
    """A fetch that gave nothing usable; ``reason`` says why, for logs and errors."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@attrs.frozen
class _Key:
    """One signing key of a JWK set, with what its JWK says about it."""

    kid: str | None
    alg: str | None
    key: PublicKey
    algorithms: frozenset[str]


class _Cached(Generic[T]):
    """One URL's document, parsed, and the state of fetching it; every field but the
    constants is read and written under ``lock``, except ``attempts``, which a thread
    reads before waiting for the lock to tell whether another fetched meanwhile."""

    def __init__(
        self,
        url: str,
        unavailable: str,
        parse: Callable[[Any], T],
        describe: Callable[[T], str],
        *,
        certificate: bool = False,
    ) -> None:
        self.url = url
        #: A certificate (the body as bytes, kept for ``certificate_ttl``), not JSON.
        self.certificate = certificate
        self.unavailable = unavailable
        self.parse = parse
        self.describe = describe
        self.lock = threading.Lock()
        self.value: T | None = None
        self.fetched = datetime.min.replace(tzinfo=UTC)
        self.expires = datetime.min.replace(tzinfo=UTC)
        self.attempted: datetime | None = None
        self.failure: str | None = None
        self.attempts = 0


class RemoteKeySets:
    """Fetches and caches OpenID discovery documents and JWK sets for provisioners
    (:class:`plugins.remote.RemoteKeys`); safe to call from many threads at once.

    *transport* and *verify* go to the one :class:`httpx.Client` (made on first use);
    *timeout* bounds each fetch as a whole, *max_bytes* each answer's body. Call
    :meth:`close` when done (a later fetch opens a new client).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 5.0,
        max_bytes: int = 1 << 20,
        default_ttl: timedelta = timedelta(hours=1),
        min_ttl: timedelta = timedelta(minutes=1),
        max_ttl: timedelta = timedelta(hours=24),
        retry_after: timedelta = timedelta(seconds=10),
        certificate_ttl: timedelta = timedelta(hours=24),
        certificate_max_bytes: int = 64 << 10,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        if certificate_max_bytes < 1:
            raise ValueError("certificate_max_bytes must be positive")
        if not timedelta(0) <= min_ttl <= max_ttl:
            raise ValueError("min_ttl must be at least zero and at most max_ttl")
        #: Where time comes from (the CA's clock; tests move it).
        self.clock = clock
        self._transport = transport
        self._verify = verify
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._default_ttl = default_ttl
        self._min_ttl = min_ttl
        self._retry_after = retry_after
        self._max_ttl = max_ttl
        self._certificate_ttl = certificate_ttl
        self._certificate_max_bytes = certificate_max_bytes
        # Guards the client and the three tables (never held during I/O).
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._providers: dict[str, _Cached[OpenIDProvider]] = {}
        self._key_sets: dict[str, _Cached[tuple[_Key, ...]]] = {}
        self._certificates: dict[str, _Cached[bytes]] = {}

    # --- RemoteKeys ---------------------------------------------------------------------

    def provider(self, issuer: str) -> OpenIDProvider:
        """The discovery document of *issuer*, whose ``issuer`` must be *issuer* exactly."""
        with self._lock:
            cached = self._providers.get(issuer)
        if cached is None:
            # An issuer in the table has passed these checks.
            _check_url(issuer, "issuer")
            url = issuer.rstrip("/") + DISCOVERY_PATH
            _check_url(url, "discovery URL")
            new: _Cached[OpenIDProvider] = _Cached(
                url,
                f"the OpenID provider {issuer} cannot be reached",
                lambda document: _parse_discovery(document, issuer, url),
                lambda found: f"the OpenID configuration of {found.issuer}",
            )
            with self._lock:
                cached = self._providers.setdefault(issuer, new)
        provider, _ = self._current(cached)
        return provider

    def key(
        self,
        jwks_uri: str,
        kid: str | None,
        alg: str,
        *,
        refresh_interval: timedelta = timedelta(minutes=1),
    ) -> PublicKey:
        """The key of the JWK set at *jwks_uri* named *kid* that signs *alg* (see
        :meth:`plugins.remote.RemoteKeys.key`).

        ``Unauthorized`` when the set, fetched again if allowed, holds no such key, or
        holds it for another algorithm; ``ServiceUnavailable`` when the set cannot be
        fetched and either none is held or the key may be in a newer one.
        """
        with self._lock:
            cached = self._key_sets.get(jwks_uri)
        if cached is None:
            _check_url(jwks_uri, "jwks_uri")  # a URL in the table has passed it
            new: _Cached[tuple[_Key, ...]] = _Cached(
                jwks_uri, f"the keys of {jwks_uri} cannot be fetched", _parse_key_set, _count_keys
            )
            with self._lock:
                cached = self._key_sets.setdefault(jwks_uri, new)
        keys, seen = self._current(cached)
        found = _select(keys, kid, alg, jwks_uri)
        if found is not None:
            return found
        keys, failure = self._refetch(cached, seen, refresh_interval)
        found = _select(keys, kid, alg, jwks_uri)
        if found is not None:
            return found
        if kid is None:
            missing = f"token names no key (kid) and {jwks_uri} has no key for {alg}"
        else:
            missing = f"token key {kid!r} is not among the signing keys of {jwks_uri}"
        if failure is not None:
            raise ServiceUnavailable(f"{missing}, and the set cannot be fetched again: {failure}")
        raise Unauthorized(missing)

    def certificate(self, url: str) -> bytes:
        """The DER of the certificate served at *url*, ``http://`` or ``https://`` to any
        host (see :meth:`plugins.remote.RemoteKeys.certificate`: the caller allows the
        host and verifies the certificate); ServiceUnavailable when it cannot be had."""
        with self._lock:
            cached = self._certificates.get(url)
        if cached is None:
            _check_certificate_url(url)  # a URL in the table has passed it
            new: _Cached[bytes] = _Cached(
                url,
                f"the certificate at {url} cannot be fetched",
                _parse_certificate,
                _describe_certificate,
                certificate=True,
            )
            with self._lock:
                cached = self._certificates.setdefault(url, new)
        der, _ = self._current(cached)
        return der

    def close(self) -> None:
        """Close the HTTP client's connections."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # --- the cache ----------------------------------------------------------------------

    def _current(self, cached: _Cached[T]) -> tuple[T, int]:
        """The document held for *cached*, fetched first when there is none or it has
        expired (unless the last attempt failed less than ``min_ttl`` ago), with the
        number of attempts made so far."""
        seen = cached.attempts
        value, now = cached.value, self.clock.now()
        if value is not None and now < cached.expires:
            # Fresh: no lock, so a refetch in flight for an unknown kid (which anyone
            # can cause) never holds up requests whose key is known.
            return value, seen
        with cached.lock:
            now = self.clock.now()
            # A fetch that finished while this thread waited for the lock is its answer.
            if cached.attempts == seen and self._due(cached, now):
                self._fetch(cached, now)
            if cached.value is None:
                raise ServiceUnavailable(f"{cached.unavailable}: {cached.failure}")
            return cached.value, cached.attempts

    def _refetch(self, cached: _Cached[T], seen: int, interval: timedelta) -> tuple[T, str | None]:
        """Fetch *cached* again for a key it lacks, unless another thread fetched it
        since attempt *seen*, or the last attempt was less than *interval* ago (and
        ``min_ttl`` after a failure). Returns the document held and, when the last
        attempt failed, its reason."""
        with cached.lock:
            now = self.clock.now()
            if cached.attempts == seen:
                wait = interval if cached.failure is None else max(interval, self._min_ttl)
                if cached.attempted is None or now >= cached.attempted + wait:
                    self._fetch(cached, now)
            if cached.value is None:
                raise ServiceUnavailable(f"{cached.unavailable}: {cached.failure}")
            return cached.value, cached.failure

    def _due(self, cached: _Cached[T], now: datetime) -> bool:
        if cached.value is None:
            return not (
                cached.failure is not None
                and cached.attempted is not None
                and now < cached.attempted + self._retry_after
            )
        if now < cached.expires:
            return False
        return not (
            cached.failure is not None
            and cached.attempted is not None
            and now < cached.attempted + self._min_ttl
        )

    def _fetch(self, cached: _Cached[T], now: datetime) -> None:
        """One attempt (``cached.lock`` held): the new document, or the failure recorded.
        ``attempts`` counts it only once it is over, so that a thread that read the
        count while it ran takes its outcome."""
        cached.attempted = now
        try:
            if cached.certificate:
                body, _ = self._body(cached.url, self._certificate_max_bytes, _CERTIFICATE_HEADERS)
                value = cached.parse(body)
                ttl = self._certificate_ttl
            else:
                document, headers = self._get(cached.url)
                value = cached.parse(document)
                ttl = self._ttl(headers, now)
        except _FetchFailed as failed:
            cached.attempts += 1
            cached.failure = failed.reason
            if cached.value is None:
                log.warning("%s: %s", cached.unavailable, failed.reason)
            else:
                log.warning(
                    "%s: %s; still using what was fetched %s ago, next attempt in %s",
                    cached.unavailable,
                    failed.reason,
                    _span(now - cached.fetched),
                    _span(self._min_ttl),
                )
            return
        cached.value = value
        cached.fetched = now
        cached.expires = now + ttl
        cached.failure = None
        cached.attempts += 1
        log.info("fetched %s: %s, cached for %s", cached.url, cached.describe(value), _span(ttl))

    def _ttl(self, headers: httpx.Headers, now: datetime) -> timedelta:
        """How long an answer with *headers* is kept, within ``[min_ttl, max_ttl]``."""
        directives: dict[str, str | None] = {}
        for item in headers.get_list("cache-control", split_commas=True):
            name, sep, value = item.partition("=")
            directives.setdefault(name.strip().lower(), value.strip().strip('"') if sep else None)
        if "no-store" in directives or "no-cache" in directives:
            return self._min_ttl
        if "max-age" in directives:
            max_age = _digits(directives["max-age"])
            if max_age is None:
                return self._min_ttl  # an invalid max-age makes the answer stale (RFC 9111)
            age = _digits(headers.get("age")) or 0
            # RFC 9111 5.1: delta-seconds beyond 2^31 are read as 2^31 (and a timedelta
            # holds no more than about 2.7 * 10^9 days).
            return self._clamp(
                timedelta(seconds=min(max_age, DELTA_SECONDS_CAP) - min(age, DELTA_SECONDS_CAP))
            )
        expires_header = headers.get("expires")
        if expires_header is not None:
            expires = _http_date(expires_header)
            if expires is None:
                return self._min_ttl  # an invalid Expires means already expired (RFC 9111)
            date = _http_date(headers.get("date"))
            return self._clamp(expires - (date if date is not None else now))
        return self._clamp(self._default_ttl)

    def _clamp(self, ttl: timedelta) -> timedelta:
        return min(max(ttl, self._min_ttl), self._max_ttl)

    # --- HTTP ---------------------------------------------------------------------------

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    transport=self._transport,
                    verify=self._verify,
                    timeout=self._timeout,
                    follow_redirects=False,
                )
            return self._client

    def _get(self, url: str) -> tuple[dict[str, Any], httpx.Headers]:
        """GET *url*: its body as a JSON object and the response's headers."""
        body, headers = self._body(url, self._max_bytes, _REQUEST_HEADERS)
        try:
            document = json_value(body, "the answer")
        except BadRequest as exc:
            raise _FetchFailed(exc.detail) from None
        if not isinstance(document, dict):
            raise _FetchFailed(f"the answer is a JSON {_json_type(document)}, not an object")
        return document, headers

    def _body(
        self, url: str, max_bytes: int, request_headers: dict[str, str]
    ) -> tuple[bytes, httpx.Headers]:
        """GET *url*: its body, at most *max_bytes*, and the response's headers."""
        client = self._http()
        deadline = time.monotonic() + self._timeout
        too_large = f"the answer is larger than {_size(max_bytes)}"
        try:
            with client.stream("GET", url, headers=request_headers) as response:
                if response.status_code != 200:
                    raise _FetchFailed(_status_reason(response))
                declared = _digits(response.headers.get("content-length"))
                if declared is not None and declared > max_bytes:
                    raise _FetchFailed(too_large)
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise _FetchFailed(too_large)
                    if time.monotonic() > deadline:
                        raise _FetchFailed(f"no complete answer within {self._timeout:g} s")
                headers = response.headers
        except httpx.TimeoutException:
            raise _FetchFailed(f"no answer within {self._timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise _FetchFailed(
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            ) from None
        return bytes(body), headers


# --- documents --------------------------------------------------------------------------


def _parse_discovery(document: dict[str, Any], issuer: str, url: str) -> OpenIDProvider:
    named = document.get("issuer")
    if named != issuer:
        shown = repr(named) if not isinstance(named, str) else named
        raise _FetchFailed(f"the discovery document {url} names issuer {shown}, not {issuer}")
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise _FetchFailed(f"the discovery document {url} has no jwks_uri")
    try:
        _check_url(jwks_uri, "jwks_uri")
    except ServiceUnavailable as exc:
        raise _FetchFailed(exc.detail) from None
    endpoints: dict[str, str | None] = {}
    for name in _OPTIONAL_ENDPOINTS:
        value = document.get(name)
        if value is not None and not isinstance(value, str):
            raise _FetchFailed(f"{name} in the discovery document {url} is not a string")
        endpoints[name] = value
    algorithms = document.get("id_token_signing_alg_values_supported", [])
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise _FetchFailed(
            f"id_token_signing_alg_values_supported in the discovery document {url} "
            "is not a list of strings"
        )
    return OpenIDProvider(
        issuer=issuer,
        jwks_uri=jwks_uri,
        authorization_endpoint=endpoints["authorization_endpoint"],
        token_endpoint=endpoints["token_endpoint"],
        device_authorization_endpoint=endpoints["device_authorization_endpoint"],
        id_token_signing_alg_values_supported=tuple(algorithms),
        document=MappingProxyType(document),
    )


def _parse_key_set(document: dict[str, Any]) -> tuple[_Key, ...]:
    """The signing keys of a JWK set; keys for another use, with malformed members or of
    a type devid does not read are left out."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise _FetchFailed('the answer is not a JWK set (no "keys" array)')
    keys = []
    for index, jwk in enumerate(entries):
        if not isinstance(jwk, dict):
            log.debug("JWK set entry %d is not an object; skipped", index)
            continue
        use, kid, alg = jwk.get("use"), jwk.get("kid"), jwk.get("alg")
        if use is not None and use != "sig":
            continue
        if not isinstance(kid, str | None) or not isinstance(alg, str | None):
            log.debug("JWK set entry %d has a kid or alg that is not a string; skipped", index)
            continue
        try:
            key = public_key_from_jwk(jwk)
        except BadRequest as exc:
            log.debug("JWK set entry %d (kid %r) skipped: %s", index, kid, exc.detail)
            continue
        keys.append(_Key(kid, alg, key, allowed_algorithms(key)))
    return tuple(keys)


def _count_keys(keys: tuple[_Key, ...]) -> str:
    return "1 signing key" if len(keys) == 1 else f"{len(keys)} signing keys"


def _select(keys: tuple[_Key, ...], kid: str | None, alg: str, url: str) -> PublicKey | None:
    """The key for a token's *kid* and *alg*; None when the set may simply be too old
    to hold it, Unauthorized when it holds the key but not for *alg*, or holds several
    and the token names none."""
    if kid is None:
        usable = [k for k in keys if k.alg in (None, alg) and alg in k.algorithms]
        if len(usable) > 1:
            raise Unauthorized("token names no key (kid) and the provider has several")
        return usable[0].key if usable else None
    named = [k for k in keys if k.kid == kid]
    for candidate in named:
        if candidate.alg in (None, alg) and alg in candidate.algorithms:
            return candidate.key
    if not named:
        return None
    declared = sorted({k.alg for k in named if k.alg is not None and k.alg != alg})
    if declared:
        raise Unauthorized(f"token key {kid!r} of {url} is for {', '.join(declared)}, not {alg}")
    raise Unauthorized(f"token key {kid!r} of {url} cannot be used with {alg}")


def _parse_certificate(body: bytes) -> bytes:
    """The DER of the one certificate *body* holds (DER, or PEM with exactly one)."""
    if body.lstrip().startswith(b"-----BEGIN"):
        try:
            found = x509.load_pem_x509_certificates(body)
        except ValueError:
            raise _FetchFailed("the answer is not a PEM certificate") from None
        if len(found) != 1:
            raise _FetchFailed(f"the answer holds {len(found)} certificates, not one")
        return found[0].public_bytes(Encoding.DER)
    try:
        x509.load_der_x509_certificate(body)
    except ValueError:
        raise _FetchFailed("the answer is not a certificate (DER or PEM)") from None
    return body


def _describe_certificate(der: bytes) -> str:
    try:
        subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    except ValueError:
        return "a certificate"
    return f"the certificate of {subject!r}"


# --- helpers ----------------------------------------------------------------------------


def _check_url(url: str, what: str) -> None:
    """``https://`` with a host and no credentials, or ``http://`` to a loopback host
    (:func:`plugins.remote.url_problem`, the rule config is checked with), and a URL
    the HTTP client reads the same way; else ServiceUnavailable."""
    problem = url_problem(url)
    if problem is not None:
        raise ServiceUnavailable(f"{what}: {problem}")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ServiceUnavailable(f"{what} {url} is not a URL: {exc}") from None
    if not parsed.host or parsed.userinfo or parsed.scheme not in ("https", "http"):
        raise ServiceUnavailable(f"{what} {url} is not a URL keys may be fetched from")


def _check_certificate_url(url: str) -> None:
    """``http://`` or ``https://`` with a host and no credentials (any host: the caller
    allows hosts), read the same way by the HTTP client; else ServiceUnavailable."""
    what = "certificate URL"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        raise ServiceUnavailable(f"{what} {url!r} is not a URL") from None
    if not url.isascii() or not host or parts.scheme not in ("http", "https") or not port_ok:
        raise ServiceUnavailable(f"{what} {url!r} is not an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ServiceUnavailable(f"{what} {url!r} carries credentials")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ServiceUnavailable(f"{what} {url!r} is not a URL: {exc}") from None
    if not parsed.host or parsed.userinfo or parsed.scheme not in ("https", "http"):
        raise ServiceUnavailable(f"{what} {url!r} is not a URL a certificate may be fetched from")


def _status_reason(response: httpx.Response) -> str:
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("location")
        if location is not None:
            if len(location) > _LONGEST_LOCATION:
                location = location[:_LONGEST_LOCATION] + "…"
            return f"HTTP {status}, a redirect to {location} (redirects are not followed)"
        return f"HTTP {status}, a redirect (redirects are not followed)"
    return f"HTTP {status}"


#: The largest delta-seconds a cache header is read as (RFC 9111 section 1.2.2).
DELTA_SECONDS_CAP = 2**31


def _digits(text: str | None) -> int | None:
    """A non-negative decimal integer header value (delta-seconds, Content-Length)."""
    if text is None:
        return None
    text = text.strip()
    if not text.isascii() or not text.isdigit():
        return None
    return int(text)


def _http_date(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        parsed = parsedate_to_datetime(text)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):  # out of range: no date
        return None


def _span(delta: timedelta) -> str:
    """A duration for logs: ``1 h``, ``5 min 1 s``, ``0 s``."""
    seconds = max(0, int(delta.total_seconds()))
    parts = [
        f"{amount} {unit}"
        for amount, unit in (
            (seconds // 3600, "h"),
            (seconds % 3600 // 60, "min"),
            (seconds % 60, "s"),
        )
        if amount
    ]
    return " ".join(parts) or "0 s"


def _size(count: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count % size == 0:
            return f"{count // size} {unit}"
    return f"{count} bytes"


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null"


if TYPE_CHECKING:

    def _is_remote_keys(keys: RemoteKeySets) -> RemoteKeys:
        """mypy checks here that RemoteKeySets satisfies the RemoteKeys protocol."""
        return keys
