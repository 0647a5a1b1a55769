"""The limits of ``[server]`` on both hosts: idle connections are closed, the number of
open connections is capped, and anonymous clients are rate-limited (429 + Retry-After).

Every server here is started with its limits set low in devid.toml, so that the
tests stay fast; each is a real HTTPS server on a loopback port.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h11
import httpx
import pytest
import trio

from engine.errors import ConfigurationError
from hosts.core.config import load_config
from hosts.http.ratelimit import RateLimiter, client_key
from tests.conftest import CA, HOSTS, RunningServer, new_csr, start_server

from .helpers import assert_json_error, client, tls_context

# How long a test waits for the server to close a connection before it fails: far
# above the idle timeouts configured here, so that a slow machine does not fail them.
PATIENCE = 30


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)  # numbers and plain strings read the same in TOML


def configure(ca: CA, **settings: Any) -> None:
    """Put *settings* into ``[server]`` of the CA's devid.toml (before its server starts)."""
    path = ca.data_dir / "devid.toml"
    text = path.read_text()
    assert "[server]\n" in text
    lines = "".join(f"{key} = {toml_value(value)}\n" for key, value in settings.items())
    path.write_text(text.replace("[server]\n", "[server]\n" + lines, 1))


@asynccontextmanager
async def serving(ca: CA, host: str, **settings: Any) -> AsyncIterator[RunningServer]:
    configure(ca, **settings)
    async with trio.open_nursery() as nursery:
        running, stop = await start_server(ca, nursery, host)
        try:
            yield running
        finally:
            await stop.close()


def port_of(server: RunningServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


async def tcp(server: RunningServer) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", port_of(server))


async def tls(server: RunningServer, alpn: str = "http/1.1") -> trio.SSLStream[trio.SocketStream]:
    context = tls_context(server.root_path)
    context.set_alpn_protocols([alpn])
    stream = trio.SSLStream(await tcp(server), context, server_hostname="127.0.0.1")
    await stream.do_handshake()
    assert stream.selected_alpn_protocol() == alpn
    return stream


async def closed_by_server(stream: trio.abc.Stream) -> bool:
    """Read until the server closes the connection; True once it has (fails after PATIENCE)."""
    with trio.fail_after(PATIENCE):
        while True:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, ssl.SSLError):
                return True
            if not data:
                return True


async def h1_get(stream: trio.abc.Stream, path: str = "/health") -> h11.Response:
    """One HTTP/1.1 GET on an open connection, the connection kept alive."""
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(method="GET", target=path, headers=[("host", "127.0.0.1")])
    await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
    response: h11.Response | None = None
    with trio.fail_after(PATIENCE):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                return response
            elif isinstance(event, h11.ConnectionClosed):
                raise AssertionError("the server closed the connection instead of answering")


async def h2_get(stream: trio.abc.Stream, path: str = "/health") -> int:
    """One HTTP/2 GET on a fresh HTTP/2 connection; the status."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    headers = [(":method", "GET"), (":path", path), (":scheme", "https"), (":authority", "x")]
    conn.send_headers(1, headers, end_stream=True)
    await stream.send_all(conn.data_to_send())
    status = 0
    with trio.fail_after(PATIENCE):
        while True:
            for event in conn.receive_data(await stream.receive_some(65536)):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.StreamEnded):
                    await stream.send_all(conn.data_to_send())
                    return status
            await stream.send_all(conn.data_to_send())


# --- idle connections ---------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
async def test_a_connection_that_never_starts_tls_is_closed(ca: CA, host: str) -> None:
    async with serving(ca, host, idle_timeout=1) as server:
        stream = await tcp(server)
        assert await closed_by_server(stream)
        await stream.aclose()


@pytest.mark.parametrize("host", HOSTS)
async def test_a_connection_that_never_sends_a_request_is_closed(ca: CA, host: str) -> None:
    async with serving(ca, host, idle_timeout=1) as server:
        stream = await tls(server)
        assert await closed_by_server(stream)


@pytest.mark.parametrize("host", HOSTS)
async def test_an_idle_keep_alive_connection_is_closed(ca: CA, host: str) -> None:
    async with serving(ca, host, idle_timeout=1) as server:
        stream = await tls(server)
        response = await h1_get(stream)
        assert response.status_code == 200
        assert await closed_by_server(stream)


async def test_an_idle_http2_connection_is_closed(ca: CA) -> None:
    async with serving(ca, "quart", idle_timeout=1) as server:
        silent = await tls(server, "h2")
        used = await tls(server, "h2")
        assert await h2_get(used) == 200
        assert await closed_by_server(used)
        assert await closed_by_server(silent)


async def slow_body(pieces: list[bytes], pause: float) -> AsyncIterator[bytes]:
    for piece in pieces:
        await trio.sleep(pause)
        yield piece


@pytest.mark.parametrize(
    ("host", "http2"), [("quart", False), ("quart", True), ("raw", False)], ids=str
)
async def test_a_request_in_progress_is_not_idle(ca: CA, host: str, http2: bool) -> None:
    """A body that takes longer than the idle timeout to arrive still gets its answer."""
    async with (
        serving(ca, host, idle_timeout=0.5) as server,
        client(server, http2=http2) as http,
    ):
        pieces = [b'{"ekPub"', b": ", b'"not', b' a key"', b"}"]
        r = await http.post(
            "/attest",
            content=slow_body(pieces, 0.4),  # 2 s in all
            headers={"content-type": "application/json"},
        )
        assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        assert_json_error(r, 400)


def test_the_idle_timeout_defaults_to_15_seconds(ca: CA) -> None:
    assert load_config(ca.data_dir).server.idle_timeout == 15.0


# --- the connection cap ---------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
async def test_connections_past_the_cap_are_closed_and_open_ones_keep_working(
    ca: CA, host: str
) -> None:
    cap = 3
    async with serving(ca, host, max_connections=cap, idle_timeout=120) as server:
        open_ones = [await tls(server) for _ in range(cap)]
        for stream in open_ones:
            assert (await h1_get(stream)).status_code == 200

        # The next one is closed before its TLS handshake completes.
        with pytest.raises((trio.BrokenResourceError, ssl.SSLError)):
            await tls(server)

        for stream in open_ones:  # the ones already open are untouched
            assert (await h1_get(stream)).status_code == 200

        # Once one of them ends, a new connection is served again.
        await open_ones.pop().aclose()
        served = None
        with trio.fail_after(PATIENCE):
            while served is None:
                try:
                    served = await tls(server)
                except (trio.BrokenResourceError, ssl.SSLError):
                    await trio.sleep(0.05)  # the server has not seen the close yet
        assert (await h1_get(served)).status_code == 200
        for stream in [*open_ones, served]:
            await stream.aclose()


def test_the_connection_cap_defaults_to_1000(ca: CA) -> None:
    assert load_config(ca.data_dir).server.max_connections == 1000


# --- configuration errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"idle_timeout": "15s"}, "server.idle_timeout must be a number"),
        ({"idle_timeout": 0}, "server.idle_timeout must be at least 0.1"),
        ({"idle_timeout": 86400}, "server.idle_timeout must be at most 3600"),
        ({"max_connections": 0}, "server.max_connections must be at least 1"),
        ({"max_connections": 10.5}, "server.max_connections must be a whole number"),
        ({"max_body_bytes": "64k"}, "server.max_body_bytes must be a whole number"),
        ({"rate_limit_per_second": -1}, "server.rate_limit_per_second must be at least 0"),
        ({"rate_limit_per_second": True}, "server.rate_limit_per_second must be a number"),
        ({"rate_limit_burst": 0}, "server.rate_limit_burst must be at least 1 while"),
    ],
)
def test_bad_limits_are_refused_with_a_clear_error(
    ca: CA, settings: dict[str, Any], message: str
) -> None:
    configure(ca, **settings)
    with pytest.raises(ConfigurationError, match=message):
        load_config(ca.data_dir)


def test_a_rate_limit_of_zero_needs_no_burst(ca: CA) -> None:
    configure(ca, rate_limit_per_second=0, rate_limit_burst=0)
    assert load_config(ca.data_dir).server.rate_limit_per_second == 0


# --- rate limits for anonymous clients ----------------------------------------------------


def assert_rate_limited(response: httpx.Response) -> int:
    """A 429 with Retry-After (whole seconds) and a JSON error body; the Retry-After."""
    body = assert_json_error(response, 429)
    assert body["error"] == "rateLimited"
    retry = int(response.headers["retry-after"])
    assert retry >= 1
    return retry


@pytest.mark.parametrize("host", HOSTS)
async def test_anonymous_requests_past_the_burst_get_429_until_the_bucket_refills(
    ca: CA, host: str
) -> None:
    async with (
        serving(ca, host, rate_limit_per_second=1, rate_limit_burst=3) as server,
        client(server) as http,
    ):
        for path in ("/roots.pem", "/provisioners", "/crl"):
            assert (await http.get(path)).status_code == 200
        retry = assert_rate_limited(await http.get("/roots.pem"))
        assert_rate_limited(await http.post("/attest", json={}))

        # While the bucket is empty, requests with a credential wait too ...
        _, _, csr = new_csr("limited.example.com")
        signed = await http.post(
            "/1.0/sign", json={"csr": csr, "ott": server.token("limited.example.com")}
        )
        assert_rate_limited(signed)
        # ... but /health answers, for monitoring.
        assert (await http.get("/health")).status_code == 200

        await trio.sleep(retry)  # what Retry-After asked for: a token is back
        assert (await http.get("/roots.pem")).status_code == 200


@pytest.mark.parametrize("host", HOSTS)
async def test_acme_gets_a_rate_limited_problem_with_a_nonce(ca: CA, host: str) -> None:
    async with (
        serving(ca, host, rate_limit_per_second=1, rate_limit_burst=2) as server,
        client(server) as http,
    ):
        assert (await http.get("/acme/acme/directory")).status_code == 200
        assert (await http.head("/acme/acme/new-nonce")).status_code == 200
        r = await http.head("/acme/acme/new-nonce")
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["replay-nonce"]
        r = await http.post(
            "/acme/acme/new-account",
            content=b"{}",
            headers={"content-type": "application/jose+json"},
        )
        assert r.status_code == 429
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"] == "urn:ietf:params:acme:error:rateLimited"
        assert r.json()["status"] == 429
        assert r.headers["replay-nonce"]
        assert int(r.headers["retry-after"]) >= 1


def forged(token: str) -> str:
    """*token* with a signature that no longer verifies."""
    header, claims, signature = token.split(".")
    flipped = "B" if signature[10] != "B" else "C"
    return f"{header}.{claims}.{signature[:10]}{flipped}{signature[11:]}"


@pytest.mark.parametrize("host", HOSTS)
async def test_requests_refused_for_a_bad_credential_use_up_the_bucket(ca: CA, host: str) -> None:
    async with (
        serving(ca, host, rate_limit_per_second=1, rate_limit_burst=3) as server,
        client(server) as http,
    ):
        _, _, csr = new_csr("guess.example.com")
        for _ in range(3):
            ott = forged(server.token("guess.example.com"))
            r = await http.post("/1.0/sign", json={"csr": csr, "ott": ott})
            assert_json_error(r, 401)
        ott = forged(server.token("guess.example.com"))
        assert_rate_limited(await http.post("/1.0/sign", json={"csr": csr, "ott": ott}))
        assert_rate_limited(
            await http.get("/api/v1/devices", headers={"authorization": "Bearer x"})
        )


@pytest.mark.parametrize("host", HOSTS)
async def test_valid_credentials_do_not_use_up_the_bucket(ca: CA, host: str) -> None:
    async with (
        serving(ca, host, rate_limit_per_second=1, rate_limit_burst=2) as server,
        client(server) as http,
    ):
        for n in range(4):
            subject = f"fleet-{n}.example.com"
            _, _, csr = new_csr(subject)
            r = await http.post("/1.0/sign", json={"csr": csr, "ott": server.token(subject)})
            assert r.status_code == 201, r.text
        assert (await http.get("/roots.pem")).status_code == 200


async def test_a_rate_limit_of_zero_turns_it_off(ca: CA) -> None:
    async with (
        serving(ca, "raw", rate_limit_per_second=0) as server,
        client(server) as http,
    ):
        for _ in range(30):
            assert (await http.get("/roots.pem")).status_code == 200


def test_the_default_rate_limit(ca: CA) -> None:
    settings = load_config(ca.data_dir).server
    assert (settings.rate_limit_per_second, settings.rate_limit_burst) == (20.0, 200)


# --- the token buckets themselves ---------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_refills_at_the_configured_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, 4, clock=clock)
    assert [limiter.take("192.0.2.1") for _ in range(4)] == [0.0] * 4
    assert limiter.take("192.0.2.1") == pytest.approx(0.5)
    assert limiter.wait("192.0.2.1") == pytest.approx(0.5)
    assert limiter.take("192.0.2.2") == 0.0  # another client has its own bucket
    clock.now += 0.5
    assert limiter.take("192.0.2.1") == 0.0
    assert limiter.take("192.0.2.1") > 0
    clock.now += 3600  # never more than the burst
    assert [limiter.take("192.0.2.1") for _ in range(4)] == [0.0] * 4
    assert limiter.take("192.0.2.1") > 0


def test_a_flood_of_distinct_addresses_keeps_memory_bounded() -> None:
    limiter = RateLimiter(1, 1, max_clients=1000, clock=FakeClock())
    for n in range(50_000):
        limiter.take(str(ipaddress.IPv4Address(0x0A000000 + n)))
        assert len(limiter) <= 1000
    # The most recent clients are the ones kept: their buckets are still empty.
    assert limiter.take("10.0.195.79") > 0


def test_ipv6_clients_share_a_bucket_per_64_and_mapped_ipv4_is_ipv4() -> None:
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    limiter = RateLimiter(1, 1, clock=FakeClock())
    assert limiter.take("2001:db8::1") == 0.0
    assert limiter.take("2001:db8::2") > 0


def test_benchmark_cas_run_without_the_rate_limit(tmp_path: Path) -> None:
    """Every benchmark request comes from 127.0.0.1: the limit would be measured, not devid."""
    from benchmarks.common import create_ca
    from engine.keys import KeyType

    create_ca(tmp_path / "ca", KeyType.P256)
    assert load_config(tmp_path / "ca").server.rate_limit_per_second == 0
