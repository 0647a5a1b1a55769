"""hosts.remote.RemoteKeySets against a real loopback HTTP server and a frozen clock:
discovery, the URL policy, key lookup, refresh on an unknown kid, cache headers, a
provider that is down, refused answers, and threads asking at once."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from engine.errors import ServiceUnavailable, Unauthorized
from engine.jose import PrivateKey, PublicKey, jwk_from_public_key
from engine.ports import FrozenClock
from hosts.remote import RemoteKeySets
from plugins.remote import DISCOVERY_PATH, RemoteKeys

KEYS_PATH = "/keys"
MINUTE = timedelta(minutes=1)


# --- a programmable provider -------------------------------------------------------------


@attrs.define
class Answer:
    status: int = 200
    headers: dict[str, str] = attrs.field(factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds to wait before answering
    content_length: bool = True


class Provider:
    """A ThreadingHTTPServer on 127.0.0.1 answering each path as told, counting requests."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with provider._lock:
                    provider.requests[self.path] += 1
                    answer = provider.answers.get(self.path, Answer(404, body=b"{}"))
                if answer.delay:
                    threading.Event().wait(answer.delay)
                self.send_response_only(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if answer.content_length:
                    self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        self._stopped = False

    def url(self, path: str) -> str:
        return self.base + path

    def serve_json(self, path: str, value: Any, **headers: str) -> None:
        self.answers[path] = Answer(
            headers={"Content-Type": "application/json", **headers},
            body=json.dumps(value).encode(),
        )

    def serve_keys(self, *jwks: dict[str, str], **headers: str) -> None:
        self.serve_json(KEYS_PATH, {"keys": list(jwks)}, **headers)

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.server.shutdown()
            self.server.server_close()
            self._thread.join()


@pytest.fixture
def provider() -> Iterator[Provider]:
    server = Provider()
    yield server
    server.stop()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def keysets(clock: FrozenClock) -> Iterator[RemoteKeySets]:
    remote = RemoteKeySets(clock, timeout=2.0)
    yield remote
    remote.close()


# --- keys -----------------------------------------------------------------------------------


@cache
def private_key(kind: str) -> PrivateKey:
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind.startswith("p256"):
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def public(kind: str) -> PublicKey:
    return private_key(kind).public_key()


def jwk(
    kind: str, kid: str | None, alg: str | None = None, use: str | None = "sig"
) -> dict[str, str]:
    published = jwk_from_public_key(public(kind))
    for name, value in (("kid", kid), ("alg", alg), ("use", use)):
        if value is not None:
            published[name] = value
    return published


def same(a: PublicKey, b: PublicKey) -> bool:
    return jwk_from_public_key(a) == jwk_from_public_key(b)


def discovery(provider: Provider, issuer: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"issuer": issuer or provider.base, "jwks_uri": provider.url(KEYS_PATH), **extra}


# --- discovery ------------------------------------------------------------------------------


def test_the_discovery_document_is_parsed(provider: Provider, keysets: RemoteKeySets) -> None:
    document = discovery(
        provider,
        authorization_endpoint=provider.url("/authorize"),
        token_endpoint=provider.url("/token"),
        id_token_signing_alg_values_supported=["RS256", "ES256"],
        scopes_supported=["openid", "email"],
    )
    provider.serve_json(DISCOVERY_PATH, document)
    remote: RemoteKeys = keysets
    found = remote.provider(provider.base)
    assert found.issuer == provider.base
    assert found.jwks_uri == provider.url(KEYS_PATH)
    assert found.authorization_endpoint == provider.url("/authorize")
    assert found.token_endpoint == provider.url("/token")
    assert found.device_authorization_endpoint is None
    assert found.id_token_signing_alg_values_supported == ("RS256", "ES256")
    assert found.document["scopes_supported"] == ["openid", "email"]
    # Cached: asked again, nothing is fetched.
    assert keysets.provider(provider.base) == found
    assert provider.requests[DISCOVERY_PATH] == 1


def test_an_issuer_with_a_path_and_a_trailing_slash(
    provider: Provider, keysets: RemoteKeySets
) -> None:
    issuer = provider.url("/realms/people/")
    provider.serve_json("/realms/people" + DISCOVERY_PATH, discovery(provider, issuer))
    assert keysets.provider(issuer).issuer == issuer


def test_a_discovery_document_naming_another_issuer_is_refused(
    provider: Provider, keysets: RemoteKeySets
) -> None:
    provider.serve_json(DISCOVERY_PATH, discovery(provider, "https://elsewhere.example"))
    with pytest.raises(ServiceUnavailable) as refused:
        keysets.provider(provider.base)
    message = refused.value.detail
    assert message.startswith(f"the OpenID provider {provider.base} cannot be reached: ")
    assert f"names issuer https://elsewhere.example, not {provider.base}" in message


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {"jwks_uri": "http://example.com/keys"},
            "jwks_uri: 'http://example.com/keys' is not HTTPS",
        ),
        ({"jwks_uri": None}, "has no jwks_uri"),
        ({"token_endpoint": 7}, "token_endpoint in the discovery document"),
        ({"id_token_signing_alg_values_supported": "RS256"}, "is not a list of strings"),
    ],
)
def test_a_discovery_document_with_bad_members_is_refused(
    provider: Provider, keysets: RemoteKeySets, change: dict[str, Any], reason: str
) -> None:
    document = {**discovery(provider), **change}
    provider.serve_json(DISCOVERY_PATH, {k: v for k, v in document.items() if v is not None})
    with pytest.raises(ServiceUnavailable, match=reason):
        keysets.provider(provider.base)


# --- the URL policy -----------------------------------------------------------------------


def test_plain_http_is_refused_beyond_loopback_without_network_use(clock: FrozenClock) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path == KEYS_PATH:
            return httpx.Response(200, json={"keys": [jwk("p256", "k")]})
        issuer = f"{request.url.scheme}://{request.url.netloc.decode()}"
        return httpx.Response(200, json={"issuer": issuer, "jwks_uri": issuer + KEYS_PATH})

    remote = RemoteKeySets(clock, transport=httpx.MockTransport(answer))
    with pytest.raises(ServiceUnavailable, match=r"issuer: 'http://example\.com' is not HTTPS"):
        remote.provider("http://example.com")
    with pytest.raises(
        ServiceUnavailable, match=r"jwks_uri: 'http://example\.com/keys' is not HTTPS"
    ):
        remote.key("http://example.com/keys", "k", "ES256")
    with pytest.raises(ServiceUnavailable, match="is not an https:// URL"):
        remote.key("ftp://example.com/keys", "k", "ES256")
    with pytest.raises(ServiceUnavailable, match="carries credentials"):
        remote.key("https://user:secret@example.com/keys", "k", "ES256")
    assert seen == []
    # https anywhere, and plain http to loopback, are fetched.
    assert remote.provider("https://example.com").jwks_uri == "https://example.com/keys"
    assert same(remote.key("https://example.com/keys", "k", "ES256"), public("p256"))
    for loopback in ("http://localhost:8080", "http://127.0.0.2", "http://[::1]:9000"):
        assert remote.provider(loopback).issuer == loopback
    assert len(seen) == 5
    remote.close()


# --- keys by kid ---------------------------------------------------------------------------


def test_keys_are_found_by_kid(provider: Provider, keysets: RemoteKeySets) -> None:
    provider.serve_keys(
        jwk("rsa", "r", "RS256"), jwk("p256", "e", "ES256"), jwk("ed", "o"), jwk("rsa2", "ps")
    )
    url = provider.url(KEYS_PATH)
    assert same(keysets.key(url, "r", "RS256"), public("rsa"))
    assert same(keysets.key(url, "e", "ES256"), public("p256"))
    assert same(keysets.key(url, "o", "EdDSA"), public("ed"))
    # A JWK without alg fits every algorithm its key type allows.
    assert same(keysets.key(url, "ps", "PS384"), public("rsa2"))
    assert provider.requests[KEYS_PATH] == 1


def test_an_unknown_kid_refetches_at_most_once_per_interval(
    provider: Provider, keysets: RemoteKeySets, clock: FrozenClock
) -> None:
    provider.serve_keys(jwk("p256", "e"), **{"Cache-Control": "max-age=86400"})
    url = provider.url(KEYS_PATH)
    expected = f"token key 'nope' is not among the signing keys of {url}"
    interval = 5 * MINUTE
    # A set fetched just now for this very call is not fetched a second time.
    with pytest.raises(Unauthorized) as refused:
        keysets.key(url, "nope", "ES256", refresh_interval=interval)
    assert refused.value.detail == expected
    assert provider.requests[KEYS_PATH] == 1
    clock.advance(interval)
    with pytest.raises(Unauthorized, match=expected):
        keysets.key(url, "nope", "ES256", refresh_interval=interval)
    assert provider.requests[KEYS_PATH] == 2  # one refresh
    clock.advance(interval - timedelta(seconds=1))
    for _ in range(3):
        with pytest.raises(Unauthorized, match=expected):
            keysets.key(url, "nope", "ES256", refresh_interval=interval)
    assert provider.requests[KEYS_PATH] == 2
    clock.advance(timedelta(seconds=1))
    with pytest.raises(Unauthorized, match=expected):
        keysets.key(url, "nope", "ES256", refresh_interval=interval)
    assert provider.requests[KEYS_PATH] == 3
    # The known key is served from the cache all along.
    assert same(keysets.key(url, "e", "ES256"), public("p256"))
    assert provider.requests[KEYS_PATH] == 3


def test_a_rotated_key_is_found_after_one_refresh(
    provider: Provider, keysets: RemoteKeySets, clock: FrozenClock
) -> None:
    provider.serve_keys(jwk("rsa", "old", "RS256"), **{"Cache-Control": "max-age=3600"})
    url = provider.url(KEYS_PATH)
    assert same(keysets.key(url, "old", "RS256"), public("rsa"))
    clock.advance(2 * MINUTE)
    provider.serve_keys(jwk("rsa", "old", "RS256"), jwk("p256", "new", "ES256"))
    assert same(keysets.key(url, "new", "ES256"), public("p256"))
    assert provider.requests[KEYS_PATH] == 2
    assert same(keysets.key(url, "old", "RS256"), public("rsa"))
    assert provider.requests[KEYS_PATH] == 2


# --- cache headers -----------------------------------------------------------------------


def _fetches_at(
    provider: Provider, keysets: RemoteKeySets, clock: FrozenClock, steps: list[timedelta]
) -> list[int]:
    """The request count after asking for key "e" at each of *steps* (clock advances)."""
    counts = []
    for step in steps:
        clock.advance(step)
        keysets.key(provider.url(KEYS_PATH), "e", "ES256")
        counts.append(provider.requests[KEYS_PATH])
    return counts


def test_max_age_is_honoured(
    provider: Provider, keysets: RemoteKeySets, clock: FrozenClock
) -> None:
    provider.serve_keys(jwk("p256", "e"), **{"Cache-Control": "public, max-age=600"})
    second = timedelta(seconds=1)
    steps = [timedelta(0), 599 * second, second, 599 * second, second]
    assert _fetches_at(provider, keysets, clock, steps) == [1, 1, 2, 2, 3]


def test_age_counts_against_max_age(
    provider: Provider, keysets: RemoteKeySets, clock: FrozenClock
) -> None:
    provider.serve_keys(jwk("p256", "e"), **{"Cache-Control": "max-age=600", "Age": "300"})
    second = timedelta(seconds=1)
    assert _fetches_at(provider, keysets, clock, [timedelta(0), 299 * second, second]) == [1, 1, 2]


@pytest.mark.parametrize(
    ("cache_control", "kept"),
    [
        ("max-age=5", MINUTE),  # raised to min_ttl
        ("max-age=999999999", timedelta(hours=24)),  # lowered to max_ttl
        ("no-store", MINUTE),
        ("no-cache, max-age=3600", MINUTE),
        ("max-age=soon", MINUTE),  # invalid: stale at once
    ],
)
def test_cache_control_is_kept_within_bounds(
    provider: Provider,
    keysets: RemoteKeySets,
    clock: FrozenClock,
    cache_control: str,
    kept: timedelta,
) -> None:
    provider.serve_keys(jwk("p256", "e"), **{"Cache-Control": cache_control})
    second = timedelta(seconds=1)
    steps = [timedelta(0), kept - second, second]
    assert _fetches_at(provider, keysets, clock, steps) == [1, 1, 2]


def test_expires_counts_from_the_date_header(
    provider: Provider, keysets: RemoteKeySets, clock: FrozenClock
) -> None:
    # The provider's clock is a year off; only the difference of its headers counts.
    date = datetime(2025, 1, 1, tzinfo=UTC)
    headers = {
        "Date": format_datetime(date, usegmt=True),
        "Expires": format_datetime(date + timedelta(seconds=300), usegmt=True),
    }
    provider.serve_keys(jwk("p256", "e"), **headers)
    second = timedelta(seconds=1)
    assert _fetches_at(provider, keysets, clock, [timedelta(0), 299 * second, second]) == [1, 1, 2]


def test_expires_without_date_counts_from_the_clock(
    provider: Provider, keysets: RemoteKeySets, clock: FrozenClock
) -> None:
    expires = clock.now() + timedelta(minutes=10)
    provider.serve_keys(jwk("p256", "e"), Expires=format_datetime(expires, usegmt=True))
    steps = [timedelta(0), 10 * MINUTE - timedelta(seconds=1), timedelta(seconds=1)]
    assert _fetches_at(provider, keysets, clock, steps) == [1, 1, 2]


def test_without_cache_headers_the_default_ttl_applies(
    provider: Provider, clock: FrozenClock
) -> None:
    provider.serve_keys(jwk("p256", "e"))
    remote = RemoteKeySets(clock, default_ttl=timedelta(minutes=30))
    steps = [timedelta(0), 30 * MINUTE - timedelta(seconds=1), timedelta(seconds=1)]
    assert _fetches_at(provider, remote, clock, steps) == [1, 1, 2]
    remote.close()


# --- a provider that is down ---------------------------------------------------------------


def test_known_keys_stay_usable_while_the_provider_fails(
    provider: Provider,
    keysets: RemoteKeySets,
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider.serve_keys(jwk("p256", "e"), **{"Cache-Control": "max-age=300"})
    url = provider.url(KEYS_PATH)
    keysets.key(url, "e", "ES256")
    provider.answers[KEYS_PATH] = Answer(500, body=b"oops")
    clock.advance(timedelta(seconds=301))
    with caplog.at_level(logging.WARNING, logger="devid.remote"):
        for _ in range(3):
            assert same(keysets.key(url, "e", "ES256"), public("p256"))
        with pytest.raises(ServiceUnavailable) as refused:
            keysets.key(url, "other", "ES256")
    assert refused.value.detail == (
        f"token key 'other' is not among the signing keys of {url}, "
        "and the set cannot be fetched again: HTTP 500"
    )
    # One failed attempt, one warning naming the reason; the next waits min_ttl.
    assert provider.requests[KEYS_PATH] == 2
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "devid.remote" and r.levelno >= logging.WARNING
    ]
    assert len(warnings) == 1
    assert f"the keys of {url} cannot be fetched: HTTP 500" in warnings[0]
    assert "still using what was fetched 5 min 1 s ago, next attempt in 1 min" in warnings[0]
    clock.advance(MINUTE)
    assert same(keysets.key(url, "e", "ES256"), public("p256"))
    assert provider.requests[KEYS_PATH] == 3
    # Back up: the next attempt takes the new set.
    provider.serve_keys(jwk("p256", "e"), jwk("ed", "other"))
    clock.advance(MINUTE)
    assert same(keysets.key(url, "other", "EdDSA"), public("ed"))
    assert provider.requests[KEYS_PATH] == 4


def test_known_keys_stay_usable_when_the_provider_is_gone(
    provider: Provider, keysets: RemoteKeySets, clock: FrozenClock
) -> None:
    provider.serve_keys(jwk("p256", "e"), **{"Cache-Control": "max-age=300"})
    provider.serve_json(DISCOVERY_PATH, discovery(provider), **{"Cache-Control": "max-age=300"})
    url = provider.url(KEYS_PATH)
    keysets.key(url, "e", "ES256")
    found = keysets.provider(provider.base)
    provider.stop()
    clock.advance(timedelta(hours=2))
    assert keysets.provider(provider.base) == found
    assert same(keysets.key(url, "e", "ES256"), public("p256"))
    with pytest.raises(ServiceUnavailable, match="cannot be fetched again: ConnectError: "):
        keysets.key(url, "other", "ES256")


def test_nothing_cached_and_the_provider_down(provider: Provider, keysets: RemoteKeySets) -> None:
    url = provider.url(KEYS_PATH)
    provider.stop()
    with pytest.raises(ServiceUnavailable) as refused:
        keysets.key(url, "e", "ES256")
    assert refused.value.detail.startswith(f"the keys of {url} cannot be fetched: ConnectError: ")
    with pytest.raises(ServiceUnavailable) as refused:
        keysets.provider(provider.base)
    assert refused.value.detail.startswith(
        f"the OpenID provider {provider.base} cannot be reached: ConnectError: "
    )


def test_nothing_cached_is_tried_again_after_retry_after(
    provider: Provider, keysets: RemoteKeySets, clock: FrozenClock
) -> None:
    url = provider.url(KEYS_PATH)
    provider.answers[KEYS_PATH] = Answer(503)
    with pytest.raises(ServiceUnavailable, match=f"the keys of {url} cannot be fetched: HTTP 503"):
        keysets.key(url, "e", "ES256")
    provider.serve_keys(jwk("p256", "e"))
    # Within retry_after (10 s) the failure is the answer, with no request to the provider:
    # anonymous requests cannot each make the CA wait on a provider that is down.
    clock.advance(timedelta(seconds=9))
    with pytest.raises(ServiceUnavailable, match="HTTP 503"):
        keysets.key(url, "e", "ES256")
    assert provider.requests[KEYS_PATH] == 1
    clock.advance(timedelta(seconds=1))
    assert same(keysets.key(url, "e", "ES256"), public("p256"))
    assert provider.requests[KEYS_PATH] == 2


# --- answers refused -----------------------------------------------------------------------


def _refusal(provider: Provider, remote: RemoteKeySets) -> str:
    with pytest.raises(ServiceUnavailable) as refused:
        remote.key(provider.url(KEYS_PATH), "e", "ES256")
    prefix = f"the keys of {provider.url(KEYS_PATH)} cannot be fetched: "
    assert refused.value.detail.startswith(prefix)
    return refused.value.detail.removeprefix(prefix)


@pytest.mark.parametrize("declared", [True, False])
def test_an_oversized_answer_is_refused(
    provider: Provider, keysets: RemoteKeySets, declared: bool
) -> None:
    padding = "x" * (1 << 20)
    body = json.dumps({"keys": [jwk("p256", "e")], "padding": padding}).encode()
    provider.answers[KEYS_PATH] = Answer(body=body, content_length=declared)
    assert _refusal(provider, keysets) == "the answer is larger than 1 MiB"


def test_a_small_limit_is_named_in_the_reason(provider: Provider, clock: FrozenClock) -> None:
    provider.serve_json(KEYS_PATH, {"keys": [jwk("p256", "e")], "padding": "x" * 1024})
    remote = RemoteKeySets(clock, max_bytes=1024)
    assert _refusal(provider, remote) == "the answer is larger than 1 KiB"
    remote.close()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>sign in</html>", "the answer is not JSON"),
        (b'[{"kty": "EC"}]', "the answer is a JSON array, not an object"),
        (b'{"keys": {}}', 'the answer is not a JWK set (no "keys" array)'),
    ],
)
def test_an_answer_that_is_not_a_key_set_is_refused(
    provider: Provider, keysets: RemoteKeySets, body: bytes, reason: str
) -> None:
    provider.answers[KEYS_PATH] = Answer(body=body)
    assert _refusal(provider, keysets) == reason


def test_a_redirect_is_not_followed(provider: Provider, keysets: RemoteKeySets) -> None:
    provider.serve_json("/elsewhere", {"keys": [jwk("p256", "e")]})
    provider.answers[KEYS_PATH] = Answer(302, headers={"Location": provider.url("/elsewhere")})
    assert _refusal(provider, keysets) == (
        f"HTTP 302, a redirect to {provider.url('/elsewhere')} (redirects are not followed)"
    )
    assert provider.requests["/elsewhere"] == 0


def test_a_slow_provider_times_out(provider: Provider, clock: FrozenClock) -> None:
    provider.serve_keys(jwk("p256", "e"))
    provider.answers[KEYS_PATH].delay = 1.0
    remote = RemoteKeySets(clock, timeout=0.3)
    assert _refusal(provider, remote) == "no answer within 0.3 s"
    remote.close()


# --- which keys match ----------------------------------------------------------------------


def test_keys_for_another_use_or_unreadable_are_skipped(
    provider: Provider, keysets: RemoteKeySets
) -> None:
    small_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    provider.serve_keys(
        jwk("p256", "enc", use="enc"),
        {**jwk_from_public_key(small_rsa), "kid": "small"},
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "EC", "crv": "P-256", "x": 1, "y": 2, "kid": "broken"},
        jwk("ed", "sig"),
        jwk("rsa", "nouse", use=None),
    )
    url = provider.url(KEYS_PATH)
    assert same(keysets.key(url, "sig", "EdDSA"), public("ed"))
    assert same(keysets.key(url, "nouse", "RS256"), public("rsa"))
    for kid, alg in (("enc", "ES256"), ("small", "RS256"), ("hmac", "HS256"), ("broken", "ES256")):
        with pytest.raises(Unauthorized, match="is not among the signing keys"):
            keysets.key(url, kid, alg)


def test_a_key_used_with_another_algorithm_is_refused(
    provider: Provider, keysets: RemoteKeySets
) -> None:
    provider.serve_keys(jwk("rsa", "r", "RS256"), jwk("p256", "e"))
    url = provider.url(KEYS_PATH)
    with pytest.raises(Unauthorized, match=f"token key 'r' of {url} is for RS256, not PS256"):
        keysets.key(url, "r", "PS256")
    for alg in ("RS256", "ES384", "HS256", "none"):
        with pytest.raises(Unauthorized, match=f"token key 'e' of {url} cannot be used with {alg}"):
            keysets.key(url, "e", alg)
    # A definite refusal does not refetch the set.
    assert provider.requests[KEYS_PATH] == 1


def test_a_token_without_kid(
    provider: Provider, keysets: RemoteKeySets, clock: FrozenClock
) -> None:
    url = provider.url(KEYS_PATH)
    provider.serve_keys(jwk("p256", "e"), **{"Cache-Control": "max-age=600"})
    assert same(keysets.key(url, None, "ES256"), public("p256"))
    # Several keys, but only one for this algorithm: that one.
    clock.advance(timedelta(minutes=11))
    provider.serve_keys(jwk("p256", "e"), jwk("rsa", "r", "RS256"), jwk("rsa2", "s", "RS256"))
    assert same(keysets.key(url, None, "ES256"), public("p256"))
    with pytest.raises(Unauthorized) as refused:
        keysets.key(url, None, "RS256")
    assert refused.value.detail == "token names no key (kid) and the provider has several"
    with pytest.raises(
        Unauthorized, match=f"token names no key \\(kid\\) and {url} has no key for EdDSA"
    ):
        keysets.key(url, None, "EdDSA")


# --- threads --------------------------------------------------------------------------------


def _all_at_once(count: int, work: Any) -> list[Any]:
    results: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = work()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_threads_asking_at_once_share_one_fetch(provider: Provider, keysets: RemoteKeySets) -> None:
    provider.serve_keys(jwk("p256", "e"))
    provider.answers[KEYS_PATH].delay = 0.3
    url = provider.url(KEYS_PATH)
    results = _all_at_once(8, lambda: keysets.key(url, "e", "ES256"))
    assert all(same(found, public("p256")) for found in results)
    assert provider.requests[KEYS_PATH] == 1


def test_threads_asking_at_once_share_one_failure(
    provider: Provider, keysets: RemoteKeySets
) -> None:
    provider.answers[KEYS_PATH] = Answer(500, delay=0.5)
    url = provider.url(KEYS_PATH)
    results = _all_at_once(8, lambda: keysets.key(url, "e", "ES256"))
    assert all(isinstance(found, ServiceUnavailable) for found in results)
    assert {found.detail for found in results} == {f"the keys of {url} cannot be fetched: HTTP 500"}
    assert provider.requests[KEYS_PATH] == 1


def test_threads_with_the_same_unknown_kid_share_one_refresh(
    provider: Provider, keysets: RemoteKeySets, clock: FrozenClock
) -> None:
    url = provider.url(KEYS_PATH)
    provider.serve_keys(jwk("p256", "e"), **{"Cache-Control": "max-age=3600"})
    keysets.key(url, "e", "ES256")
    clock.advance(MINUTE)
    provider.serve_keys(jwk("p256", "e"), jwk("ed", "new"))
    provider.answers[KEYS_PATH].delay = 0.3
    results = _all_at_once(8, lambda: keysets.key(url, "new", "EdDSA", refresh_interval=MINUTE))
    assert all(same(found, public("ed")) for found in results)
    assert provider.requests[KEYS_PATH] == 2


def test_a_known_key_is_not_held_up_by_a_refresh_for_an_unknown_one(
    provider: Provider, keysets: RemoteKeySets, clock: FrozenClock
) -> None:
    url = provider.url(KEYS_PATH)
    provider.serve_keys(jwk("p256", "e"), **{"Cache-Control": "max-age=3600"})
    keysets.key(url, "e", "ES256")
    clock.advance(MINUTE)
    # A forged kid (anyone can send one) makes a slow refresh; the known key is answered
    # from the cache meanwhile, without waiting for it.
    provider.answers[KEYS_PATH].delay = 1.0
    refused: list[BaseException] = []

    def forged() -> None:
        try:
            keysets.key(url, "forged", "ES256", refresh_interval=MINUTE)
        except Unauthorized as exc:
            refused.append(exc)

    refresh = threading.Thread(target=forged)
    refresh.start()
    deadline = time.monotonic() + 5
    while provider.requests.get(KEYS_PATH, 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert provider.requests[KEYS_PATH] == 2  # the refresh is in flight
    assert refresh.is_alive()
    assert same(keysets.key(url, "e", "ES256"), public("p256"))
    assert refresh.is_alive()  # the known key did not wait for it
    refresh.join()
    assert len(refused) == 1
