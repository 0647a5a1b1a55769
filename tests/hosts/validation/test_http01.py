"""ACME challenge validation (hosts/validation/) against real servers on
loopback: an HTTP responder (with TLS on the same port for https redirects), TLS
servers presenting hand-made tls-alpn-01 certificates, and pebble-challtestsrv as
the DNS server for every lookup."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import dns.message
import dns.rcode
import pytest
import trio
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.acme.problems import ACMEProblem
from hosts.validation import DEFAULT_DENY, ValidationConfig, dial
from hosts.validation.dns01 import validate_dns01
from hosts.validation.http01 import MAX_BODY, validate_http01
from hosts.validation.policy import denied
from hosts.validation.tlsalpn01 import ID_PE_ACME_IDENTIFIER, validate_tlsalpn01

if TYPE_CHECKING:  # a plain import before registration defeats assert rewriting
    from tests.challtestsrv import ChallTestSrv

pytest_plugins = ["tests.challtestsrv"]

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
KEYAUTH = TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
CHALLENGE_PATH = f"/.well-known/acme-challenge/{TOKEN}"
TXT_VALUE = (
    base64.urlsafe_b64encode(hashlib.sha256(KEYAUTH.encode()).digest()).rstrip(b"=").decode()
)
ACME_EXT = b"\x04\x20" + hashlib.sha256(KEYAUTH.encode()).digest()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def problem_of(call: Awaitable[None]) -> ACMEProblem:
    with pytest.raises(ACMEProblem) as info:
        await call
    return info.value


@pytest.fixture
def dialed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every (address, port) the validator dials."""
    calls: list[tuple[str, int]] = []
    real = dial.open_tcp

    async def spy(addr: Any, port: int) -> trio.SocketStream:
        calls.append((str(addr), port))
        return await real(addr, port)

    monkeypatch.setattr(dial, "open_tcp", spy)
    return calls


def config_for(dns: ChallTestSrv, **overrides: Any) -> ValidationConfig:
    values: dict[str, Any] = {"dns_resolver": dns.dns_resolver, "timeout": 5.0}
    values.update(overrides)
    return ValidationConfig(**values)


# --- an HTTP responder (plain, or TLS on the same port) ------------------------------


@attrs.frozen
class Seen:
    path: str
    host: str
    tls: bool


@attrs.frozen
class Route:
    status: int = 200
    body: bytes = b""
    location: str | None = None
    hang: bool = False


class _Replay(trio.abc.Stream):
    """A stream whose first bytes were already read (to sniff TLS)."""

    def __init__(self, inner: trio.SocketStream, prefix: bytes) -> None:
        self.inner, self.prefix = inner, prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.prefix:
            data, self.prefix = self.prefix, b""
            return data
        return bytes(await self.inner.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


class HTTPResponder:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self.snis: list[str | None] = []
        self.port = 0
        self.tls = tls
        if tls is not None:
            tls.sni_callback = lambda _obj, name, _ctx: self.snis.append(name)

    async def handle(self, tcp: trio.SocketStream) -> None:
        stream: trio.abc.Stream = tcp
        try:
            first = await tcp.receive_some(65536)
            is_tls = bool(first) and first[0] == 0x16 and self.tls is not None
            if is_tls:
                assert self.tls is not None
                stream = trio.SSLStream(_Replay(tcp, bytes(first)), self.tls, server_side=True)
                buf = b""
            else:
                buf = bytes(first)
            while b"\r\n\r\n" not in buf and len(buf) < 65536:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                buf += chunk
            head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            path = head[0].split(" ")[1]
            headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in head[1:])}
            self.seen.append(Seen(path, headers.get("host", ""), is_tls))
            route = self.routes.get(path, Route(404, b"no such challenge"))
            if route.hang:
                await trio.sleep_forever()
            extra = f"Location: {route.location}\r\n" if route.location else ""
            await stream.send_all(
                f"HTTP/1.1 {route.status} X\r\nContent-Length: {len(route.body)}\r\n"
                f"Content-Type: text/plain\r\nConnection: close\r\n{extra}\r\n".encode()
                + route.body
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


async def start_http(
    nursery: trio.Nursery, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> HTTPResponder:
    responder = HTTPResponder(tls)
    listeners = await nursery.start(partial(trio.serve_tcp, responder.handle, 0, host=host))
    responder.port = listeners[0].socket.getsockname()[1]
    return responder


@pytest.fixture
async def web(nursery: trio.Nursery) -> HTTPResponder:
    """An HTTP responder on 127.0.0.1 that also speaks TLS (trustme) on the same port."""
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("y.devid.test").configure_cert(context)
    return await start_http(nursery, tls=context)


# --- http-01 -------------------------------------------------------------------------


async def test_http01_name_through_mock_dns(
    challtestsrv: ChallTestSrv, web: HTTPResponder, dialed: list[tuple[str, int]]
) -> None:
    web.routes[CHALLENGE_PATH] = Route(body=KEYAUTH.encode() + b"\r\n \n")
    await validate_http01(
        "dns", "x.devid.test", TOKEN, KEYAUTH, config_for(challtestsrv, http01_port=web.port)
    )
    assert web.seen == [Seen(CHALLENGE_PATH, "x.devid.test", False)]
    assert dialed == [("127.0.0.1", web.port)]
    assert challtestsrv.dns_requests("x.devid.test")  # resolved through the mock DNS


@pytest.mark.parametrize(
    ("address", "host_header"),
    [("127.0.0.1", "127.0.0.1"), pytest.param("::1", "[::1]", marks=needs_ipv6)],
)
async def test_http01_ip_identifier(
    nursery: trio.Nursery, challtestsrv: ChallTestSrv, address: str, host_header: str
) -> None:
    server = await start_http(nursery, host=address)
    server.routes[CHALLENGE_PATH] = Route(body=KEYAUTH.encode())
    await validate_http01(
        "ip", address, TOKEN, KEYAUTH, config_for(challtestsrv, http01_port=server.port)
    )
    assert server.seen == [Seen(CHALLENGE_PATH, host_header, False)]


@pytest.mark.parametrize(
    ("route", "problem", "found"),
    [
        (Route(body=b"not-the-key-authorization"), "incorrectResponse", "not the key"),
        (Route(body=KEYAUTH.encode() + b"x"), "incorrectResponse", "not the key authorization"),
        (Route(404, b"nothing here"), "unauthorized", "HTTP 404"),
        (Route(500, b""), "unauthorized", "HTTP 500"),
        (Route(302, b""), "unauthorized", "without a Location"),
    ],
)
async def test_http01_wrong_answer(
    challtestsrv: ChallTestSrv, web: HTTPResponder, route: Route, problem: str, found: str
) -> None:
    web.routes[CHALLENGE_PATH] = route
    config = config_for(challtestsrv, http01_port=web.port)
    err = await problem_of(validate_http01("dns", "x.devid.test", TOKEN, KEYAUTH, config))
    assert err.problem == problem
    assert f"http://x.devid.test:{web.port}{CHALLENGE_PATH}" in err.detail
    assert found in err.detail


async def test_http01_oversized_body(challtestsrv: ChallTestSrv, web: HTTPResponder) -> None:
    # Would match after stripping the trailing whitespace, but is far over the cap.
    web.routes[CHALLENGE_PATH] = Route(body=KEYAUTH.encode() + b" " * (1 << 20))
    config = config_for(challtestsrv, http01_port=web.port)
    err = await problem_of(validate_http01("dns", "x.devid.test", TOKEN, KEYAUTH, config))
    assert err.problem == "incorrectResponse"
    assert f"over {MAX_BODY} bytes" in err.detail


async def test_http01_redirect_chain(
    challtestsrv: ChallTestSrv, web: HTTPResponder, dialed: list[tuple[str, int]]
) -> None:
    port = web.port
    web.routes[CHALLENGE_PATH] = Route(302, location="/step1")
    web.routes["/step1"] = Route(301, location=f"http://r.devid.test:{port}/step2?q=1")
    web.routes["/step2?q=1"] = Route(307, location=f"https://y.devid.test:{port}/final")
    web.routes["/final"] = Route(body=KEYAUTH.encode())
    await validate_http01(
        "dns", "x.devid.test", TOKEN, KEYAUTH, config_for(challtestsrv, http01_port=port)
    )
    assert web.seen == [
        Seen(CHALLENGE_PATH, "x.devid.test", False),
        Seen("/step1", f"x.devid.test:{port}", False),
        Seen("/step2?q=1", f"r.devid.test:{port}", False),
        Seen("/final", f"y.devid.test:{port}", True),
    ]
    assert web.snis == ["y.devid.test"]  # https hop: SNI is the name, the peer is the vetted IP
    assert dialed == [("127.0.0.1", port)] * 4


async def test_http01_ten_redirects_are_followed(
    challtestsrv: ChallTestSrv, web: HTTPResponder
) -> None:
    web.routes[CHALLENGE_PATH] = Route(302, location="/r1")
    for i in range(1, 10):
        web.routes[f"/r{i}"] = Route(302, location=f"/r{i + 1}")
    web.routes["/r10"] = Route(body=KEYAUTH.encode())
    config = config_for(challtestsrv, http01_port=web.port)
    await validate_http01("dns", "x.devid.test", TOKEN, KEYAUTH, config)
    assert len(web.seen) == 11


async def test_http01_redirect_loop_is_capped(
    challtestsrv: ChallTestSrv, web: HTTPResponder
) -> None:
    web.routes[CHALLENGE_PATH] = Route(302, location=CHALLENGE_PATH)
    config = config_for(challtestsrv, http01_port=web.port)
    err = await problem_of(validate_http01("dns", "x.devid.test", TOKEN, KEYAUTH, config))
    assert err.problem == "connection"
    assert "too many redirects" in err.detail
    assert len(web.seen) == 11  # the first request and ten redirects, then no more


@pytest.mark.parametrize(
    ("location", "found"),
    [
        ("http://127.0.0.1:8080/x", "port that is not allowed"),
        ("https://x.devid.test:8443/x", "port that is not allowed"),
        ("ftp://127.0.0.1/x", "only http and https"),
        ("http://169.254.169.254/latest/meta-data/", "denied network 169.254.0.0/16"),
        ("http://meta.devid.test/latest/meta-data/", "denied network 169.254.0.0/16"),
        ("http://[fe80::1]/x", "denied network fe80::/10"),
        ("http://[::ffff:169.254.169.254]/x", "denied network 169.254.0.0/16"),
        ("http://bad_host!/x", "invalid host"),
    ],
)
async def test_http01_redirect_refused(
    challtestsrv: ChallTestSrv,
    web: HTTPResponder,
    dialed: list[tuple[str, int]],
    location: str,
    found: str,
) -> None:
    challtestsrv.add_a("meta.devid.test", ["169.254.169.254"])
    web.routes[CHALLENGE_PATH] = Route(302, location=location)
    config = config_for(challtestsrv, http01_port=web.port)
    err = await problem_of(validate_http01("dns", "x.devid.test", TOKEN, KEYAUTH, config))
    assert err.problem == "connection", err.detail
    assert found in err.detail
    assert dialed == [("127.0.0.1", web.port)]  # the target was never contacted


async def test_http01_redirect_target_without_address(
    challtestsrv: ChallTestSrv, web: HTTPResponder
) -> None:
    challtestsrv.set_servfail("broken.devid.test")
    web.routes[CHALLENGE_PATH] = Route(302, location="http://broken.devid.test/x")
    config = config_for(challtestsrv, http01_port=web.port)
    err = await problem_of(validate_http01("dns", "x.devid.test", TOKEN, KEYAUTH, config))
    assert err.problem == "dns"
    assert "no address for redirect 1" in err.detail
    assert "broken.devid.test" not in err.detail


async def test_http01_connection_refused(challtestsrv: ChallTestSrv) -> None:
    port = closed_port()
    config = config_for(challtestsrv, http01_port=port)
    err = await problem_of(validate_http01("dns", "x.devid.test", TOKEN, KEYAUTH, config))
    assert err.problem == "connection"
    assert f"127.0.0.1:{port}: connection refused" in err.detail


async def test_http01_timeout(challtestsrv: ChallTestSrv, web: HTTPResponder) -> None:
    web.routes[CHALLENGE_PATH] = Route(hang=True)  # accepts, reads, never answers
    config = config_for(challtestsrv, http01_port=web.port, timeout=1.0)
    err = await problem_of(validate_http01("dns", "x.devid.test", TOKEN, KEYAUTH, config))
    assert err.problem == "connection"
    assert "timed out" in err.detail
    assert f"127.0.0.1:{web.port}" in err.detail


@pytest.mark.parametrize(
    ("identifier_type", "value", "found"),
    [
        ("ip", "169.254.169.254", "denied network 169.254.0.0/16"),
        ("ip", "fe80::1", "denied network fe80::/10"),
        ("ip", "fd00:ec2::254", "denied network fd00:ec2::254/128"),
        ("ip", "::ffff:169.254.169.254", "denied network 169.254.0.0/16"),
        ("ip", "64:ff9b::a9fe:a9fe", "denied network 169.254.0.0/16"),
        ("ip", "0.0.0.0", "unspecified"),
        ("dns", "meta.devid.test", "denied network 169.254.0.0/16"),
        ("dns", "alias.devid.test", "denied network 169.254.0.0/16"),  # CNAME to meta
    ],
)
async def test_denied_addresses_are_never_contacted(
    challtestsrv: ChallTestSrv,
    dialed: list[tuple[str, int]],
    identifier_type: str,
    value: str,
    found: str,
) -> None:
    challtestsrv.add_a("meta.devid.test", ["169.254.169.254"])
    challtestsrv.set_cname("alias.devid.test", "meta.devid.test")
    config = config_for(challtestsrv)
    calls: list[Callable[[], Awaitable[None]]] = [
        lambda: validate_http01(identifier_type, value, TOKEN, KEYAUTH, config),
        lambda: validate_tlsalpn01(identifier_type, value, KEYAUTH, config),
    ]
    for call in calls:
        err = await problem_of(call())
        assert err.problem == "connection"
        assert "refusing to connect" in err.detail
        assert found in err.detail
    assert dialed == []


@pytest.mark.parametrize(
    ("identifier_type", "value"), [("ip", "127.0.0.1"), ("ip", "10.1.2.3"), ("dns", "x.devid.test")]
)
async def test_private_addresses_refused_when_not_allowed(
    challtestsrv: ChallTestSrv, dialed: list[tuple[str, int]], identifier_type: str, value: str
) -> None:
    config = config_for(challtestsrv, allow_private=False)
    err = await problem_of(validate_http01(identifier_type, value, TOKEN, KEYAUTH, config))
    assert err.problem == "connection"
    assert "private addresses are not allowed" in err.detail
    assert dialed == []


async def test_custom_deny_list(challtestsrv: ChallTestSrv, dialed: list[tuple[str, int]]) -> None:
    config = config_for(challtestsrv, deny_networks=("127.0.0.0/8",))
    err = await problem_of(validate_http01("dns", "x.devid.test", TOKEN, KEYAUTH, config))
    assert err.problem == "connection"
    assert "denied network 127.0.0.0/8" in err.detail
    assert dialed == []


async def test_http01_tries_each_allowed_address(
    challtestsrv: ChallTestSrv, web: HTTPResponder, dialed: list[tuple[str, int]]
) -> None:
    # AAAA ::1 (nothing listens there on this port), A: a denied one and the server.
    challtestsrv.add_a("multi.devid.test", ["169.254.169.254", "127.0.0.1"])
    challtestsrv.add_aaaa("multi.devid.test", ["::1"])
    web.routes[CHALLENGE_PATH] = Route(body=KEYAUTH.encode())
    config = config_for(challtestsrv, http01_port=web.port)
    await validate_http01("dns", "multi.devid.test", TOKEN, KEYAUTH, config)
    assert dialed == [("::1", web.port), ("127.0.0.1", web.port)]


# --- DNS failures (shared by every challenge type) ------------------------------------


@pytest.fixture
async def nxdomain_dns(nursery: trio.Nursery) -> tuple[str, int]:
    """A DNS server that answers NXDOMAIN to everything (pebble-challtestsrv never does)."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))

    async def serve() -> None:
        with sock:
            while True:
                data, peer = await sock.recvfrom(4096)
                reply = dns.message.make_response(dns.message.from_wire(data))
                reply.set_rcode(dns.rcode.NXDOMAIN)
                await sock.sendto(reply.to_wire(), peer)

    nursery.start_soon(serve)
    return ("127.0.0.1", sock.getsockname()[1])


@pytest.fixture
def silent_dns() -> Iterator[tuple[str, int]]:
    """A UDP port that receives queries and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield ("127.0.0.1", sock.getsockname()[1])


async def test_nxdomain(nxdomain_dns: tuple[str, int]) -> None:
    config = ValidationConfig(dns_resolver=nxdomain_dns, timeout=5.0)
    calls: list[tuple[Callable[[], Awaitable[None]], str]] = [
        (lambda: validate_http01("dns", "gone.devid.test", TOKEN, KEYAUTH, config), "gone"),
        (lambda: validate_tlsalpn01("dns", "gone.devid.test", KEYAUTH, config), "gone"),
        (lambda: validate_dns01("gone.devid.test", KEYAUTH, config), "_acme-challenge.gone"),
    ]
    for call, name in calls:
        err = await problem_of(call())
        assert err.problem == "dns"
        assert "NXDOMAIN" in err.detail
        assert name in err.detail


async def test_no_address_records(challtestsrv: ChallTestSrv) -> None:
    challtestsrv.set_default_ipv4("")  # restored when the test ends
    err = await problem_of(
        validate_http01("dns", "x.devid.test", TOKEN, KEYAUTH, config_for(challtestsrv))
    )
    assert err.problem == "dns"
    assert "no address for x.devid.test" in err.detail
    assert "no records" in err.detail


async def test_servfail(challtestsrv: ChallTestSrv) -> None:
    challtestsrv.set_servfail("sf.devid.test")
    challtestsrv.set_servfail("_acme-challenge.sf.devid.test")
    config = config_for(challtestsrv)
    calls: list[Callable[[], Awaitable[None]]] = [
        lambda: validate_http01("dns", "sf.devid.test", TOKEN, KEYAUTH, config),
        lambda: validate_dns01("sf.devid.test", KEYAUTH, config),
    ]
    for call in calls:
        err = await problem_of(call())
        assert err.problem == "dns"
        assert "SERVFAIL" in err.detail


async def test_resolver_timeout(silent_dns: tuple[str, int]) -> None:
    config = ValidationConfig(dns_resolver=silent_dns, timeout=1.0)
    err = await problem_of(validate_dns01("x.devid.test", KEYAUTH, config))
    assert err.problem == "dns"
    assert "timed out" in err.detail
    assert "_acme-challenge.x.devid.test" in err.detail


# --- dns-01 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "record"),
    [
        ("x.devid.test", "_acme-challenge.x.devid.test"),
        ("*.w.devid.test", "_acme-challenge.w.devid.test"),
        ("Mixed.Devid.Test", "_acme-challenge.mixed.devid.test"),
    ],
)
async def test_dns01_success(challtestsrv: ChallTestSrv, domain: str, record: str) -> None:
    challtestsrv.set_txt(record, "some-other-value")
    challtestsrv.set_txt(record, TXT_VALUE)
    await validate_dns01(domain, KEYAUTH, config_for(challtestsrv))


async def test_dns01_follows_cname(challtestsrv: ChallTestSrv) -> None:
    """Delegating _acme-challenge to another zone with a CNAME is common practice."""
    challtestsrv.set_txt("_acme-challenge.validation.devid.test", TXT_VALUE)
    challtestsrv.set_cname(
        "_acme-challenge.delegated.devid.test", "_acme-challenge.validation.devid.test"
    )
    await validate_dns01("delegated.devid.test", KEYAUTH, config_for(challtestsrv))


async def test_dns01_wrong_value(challtestsrv: ChallTestSrv) -> None:
    challtestsrv.set_txt("_acme-challenge.x.devid.test", "wrong-value")
    err = await problem_of(validate_dns01("x.devid.test", KEYAUTH, config_for(challtestsrv)))
    assert err.problem == "incorrectResponse"
    assert "'wrong-value'" not in err.detail
    assert TXT_VALUE in err.detail


async def test_dns01_no_txt(challtestsrv: ChallTestSrv) -> None:
    err = await problem_of(validate_dns01("empty.devid.test", KEYAUTH, config_for(challtestsrv)))
    assert err.problem == "dns"
    assert "no TXT record at _acme-challenge.empty.devid.test" in err.detail


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lambda s: validate_dns01("127.0.0.1", KEYAUTH, s), "rejectedIdentifier"),
        (lambda s: validate_dns01("bad name.test", KEYAUTH, s), "rejectedIdentifier"),
        (
            lambda s: validate_http01("dns", "*.x.devid.test", TOKEN, KEYAUTH, s),
            "rejectedIdentifier",
        ),
        (lambda s: validate_http01("dns", "127.0.0.1", TOKEN, KEYAUTH, s), "rejectedIdentifier"),
        (
            lambda s: validate_http01("email", "a@b.test", TOKEN, KEYAUTH, s),
            "unsupportedIdentifier",
        ),
        (lambda s: validate_http01("ip", "not-an-ip", TOKEN, KEYAUTH, s), "rejectedIdentifier"),
        (lambda s: validate_http01("dns", "x.devid.test", "../etc", KEYAUTH, s), "malformed"),
        (lambda s: validate_tlsalpn01("dns", "*.x.devid.test", KEYAUTH, s), "rejectedIdentifier"),
    ],
)
async def test_bad_identifiers(dialed: list[tuple[str, int]], call: Any, problem: str) -> None:
    err = await problem_of(call(ValidationConfig(dns_resolver=("127.0.0.1", 9), timeout=2.0)))
    assert err.problem == problem
    assert dialed == []


async def test_unexpected_errors_become_problems(
    challtestsrv: ChallTestSrv, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(addr: Any, port: int) -> trio.SocketStream:
        raise RuntimeError("boom")

    monkeypatch.setattr(dial, "open_tcp", broken)
    err = await problem_of(
        validate_tlsalpn01("dns", "x.devid.test", KEYAUTH, config_for(challtestsrv))
    )
    assert err.problem == "serverInternal"
    assert "unexpected RuntimeError" in err.detail


# --- tls-alpn-01 ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def acme_cert(
    key: ec.EllipticCurvePrivateKey,
    sans: list[x509.GeneralName],
    extension: bytes | None = ACME_EXT,
    critical: bool = True,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme validation")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if extension is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(ID_PE_ACME_IDENTIFIER, extension), critical=critical
        )
    return builder.sign(key, hashes.SHA256())


class TLSServer:
    def __init__(self, context: ssl.SSLContext | None) -> None:
        self.context = context
        self.snis: list[str | None] = []
        self.port = 0
        if context is not None:
            context.sni_callback = lambda _obj, name, _ctx: self.snis.append(name)

    async def handle(self, tcp: trio.SocketStream) -> None:
        if self.context is None:  # not TLS at all
            await tcp.send_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            await trio.aclose_forcefully(tcp)
            return
        stream = trio.SSLStream(tcp, self.context, server_side=True)
        try:
            await stream.do_handshake()
            await stream.receive_some(1)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


async def start_tls(
    nursery: trio.Nursery,
    tmp_path: Path,
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate | None,
    *,
    alpn: list[str] | None = None,
    host: str = "127.0.0.1",
) -> TLSServer:
    context: ssl.SSLContext | None = None
    if cert is not None:
        pem = tmp_path / "tls-alpn.pem"
        pem.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            + cert.public_bytes(serialization.Encoding.PEM)
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pem)
        context.set_alpn_protocols(["acme-tls/1"] if alpn is None else alpn)
    server = TLSServer(context)
    listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host=host))
    server.port = listeners[0].socket.getsockname()[1]
    return server


async def test_tlsalpn01_name_success(
    nursery: trio.Nursery,
    tmp_path: Path,
    tls_key: ec.EllipticCurvePrivateKey,
    challtestsrv: ChallTestSrv,
) -> None:
    cert = acme_cert(tls_key, [x509.DNSName("x.devid.test")])
    server = await start_tls(nursery, tmp_path, tls_key, cert)
    config = config_for(challtestsrv, tlsalpn01_port=server.port)
    await validate_tlsalpn01("dns", "x.devid.test", KEYAUTH, config)
    assert server.snis == ["x.devid.test"]


@pytest.mark.parametrize(
    ("address", "sni"),
    [
        ("127.0.0.1", "1.0.0.127.in-addr.arpa"),
        pytest.param("::1", "1." + "0." * 31 + "ip6.arpa", marks=needs_ipv6),
    ],
)
async def test_tlsalpn01_ip_success(
    nursery: trio.Nursery,
    tmp_path: Path,
    tls_key: ec.EllipticCurvePrivateKey,
    challtestsrv: ChallTestSrv,
    address: str,
    sni: str,
) -> None:
    cert = acme_cert(tls_key, [x509.IPAddress(ipaddress.ip_address(address))])
    server = await start_tls(nursery, tmp_path, tls_key, cert, host=address)
    config = config_for(challtestsrv, tlsalpn01_port=server.port)
    await validate_tlsalpn01("ip", address, KEYAUTH, config)
    assert server.snis == [sni]  # RFC 8738: the reverse-DNS name


WRONG_DIGEST = b"\x04\x20" + hashlib.sha256(b"another key authorization").digest()


@pytest.mark.parametrize(
    ("sans", "extension", "critical", "found"),
    [
        (["x.devid.test"], None, True, "no acmeIdentifier extension"),
        (["x.devid.test"], ACME_EXT, False, "not critical"),
        (["x.devid.test"], WRONG_DIGEST, True, "acmeIdentifier that is not the SHA-256"),
        (["x.devid.test"], ACME_EXT[2:], True, "acmeIdentifier that is not"),  # no OCTET STRING
        (["x.devid.test", "y.devid.test"], ACME_EXT, True, "exactly one subjectAltName"),
        (["other.devid.test"], ACME_EXT, True, "does not name the dNSName x.devid.test"),
        (["127.0.0.1"], ACME_EXT, True, "does not name the dNSName x.devid.test"),
        ([], ACME_EXT, True, "no subjectAltName"),
    ],
)
async def test_tlsalpn01_bad_certificate(
    nursery: trio.Nursery,
    tmp_path: Path,
    tls_key: ec.EllipticCurvePrivateKey,
    challtestsrv: ChallTestSrv,
    sans: list[str],
    extension: bytes | None,
    critical: bool,
    found: str,
) -> None:
    names: list[x509.GeneralName] = []
    for san in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    cert = acme_cert(tls_key, names, extension, critical)
    server = await start_tls(nursery, tmp_path, tls_key, cert)
    config = config_for(challtestsrv, tlsalpn01_port=server.port)
    err = await problem_of(validate_tlsalpn01("dns", "x.devid.test", KEYAUTH, config))
    assert err.problem == "incorrectResponse"
    assert found in err.detail
    assert f"127.0.0.1:{server.port}" in err.detail


async def test_tlsalpn01_ip_needs_ip_san(
    nursery: trio.Nursery,
    tmp_path: Path,
    tls_key: ec.EllipticCurvePrivateKey,
    challtestsrv: ChallTestSrv,
) -> None:
    cert = acme_cert(tls_key, [x509.DNSName("1.0.0.127.in-addr.arpa")])
    server = await start_tls(nursery, tmp_path, tls_key, cert)
    config = config_for(challtestsrv, tlsalpn01_port=server.port)
    err = await problem_of(validate_tlsalpn01("ip", "127.0.0.1", KEYAUTH, config))
    assert err.problem == "incorrectResponse"
    assert "does not name the iPAddress 127.0.0.1" in err.detail


@pytest.mark.parametrize(
    ("alpn", "found"), [([], "did not negotiate ALPN"), (["h2", "http/1.1"], "ALPN acme-tls/1")]
)
async def test_tlsalpn01_without_acme_alpn(
    nursery: trio.Nursery,
    tmp_path: Path,
    tls_key: ec.EllipticCurvePrivateKey,
    challtestsrv: ChallTestSrv,
    alpn: list[str],
    found: str,
) -> None:
    cert = acme_cert(tls_key, [x509.DNSName("x.devid.test")])
    server = await start_tls(nursery, tmp_path, tls_key, cert, alpn=alpn)
    config = config_for(challtestsrv, tlsalpn01_port=server.port)
    err = await problem_of(validate_tlsalpn01("dns", "x.devid.test", KEYAUTH, config))
    assert err.problem == "tls"
    assert found in err.detail


async def test_tlsalpn01_not_tls(
    nursery: trio.Nursery,
    tmp_path: Path,
    tls_key: ec.EllipticCurvePrivateKey,
    challtestsrv: ChallTestSrv,
) -> None:
    server = await start_tls(nursery, tmp_path, tls_key, None)
    config = config_for(challtestsrv, tlsalpn01_port=server.port)
    err = await problem_of(validate_tlsalpn01("dns", "x.devid.test", KEYAUTH, config))
    assert err.problem == "tls"
    assert "handshake" in err.detail


async def test_tlsalpn01_connection_refused(challtestsrv: ChallTestSrv) -> None:
    port = closed_port()
    config = config_for(challtestsrv, tlsalpn01_port=port)
    err = await problem_of(validate_tlsalpn01("dns", "x.devid.test", KEYAUTH, config))
    assert err.problem == "connection"
    assert "connection refused" in err.detail


async def test_tlsalpn01_timeout(nursery: trio.Nursery, challtestsrv: ChallTestSrv) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        async with stream:
            await trio.sleep_forever()

    listeners = await nursery.start(partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    config = config_for(challtestsrv, tlsalpn01_port=port, timeout=1.0)
    err = await problem_of(validate_tlsalpn01("dns", "x.devid.test", KEYAUTH, config))
    assert err.problem == "connection"
    assert "timed out" in err.detail
    assert "TLS handshake" in err.detail


# --- the fixture itself ----------------------------------------------------------------


async def test_challtestsrv_dns_hook(challtestsrv: ChallTestSrv, tmp_path: Path) -> None:
    """The lego/certbot hook script writes what validate_dns01 reads."""
    hook = challtestsrv.write_dns_hook(tmp_path / "hook")
    config = config_for(challtestsrv)
    await trio.run_process([str(hook), "present", "_acme-challenge.Hook.devid.test.", TXT_VALUE])
    await validate_dns01("hook.devid.test", KEYAUTH, config)
    await trio.run_process(
        [str(hook), "cleanup"], env={"CERTBOT_DOMAIN": "hook.devid.test", "PATH": "/usr/bin"}
    )
    err = await problem_of(validate_dns01("hook.devid.test", KEYAUTH, config))
    assert err.problem == "dns"


# --- what a failed validation tells the ACME client ------------------------------------
# Validation fetches from addresses an account holder chooses (private ones included by
# default), so a problem document may say what was wrong but must never carry what the
# target sent: no body, no header (a Location included), no banner, TXT value or
# certificate content.

SECRET = "s3cr3t-internal-payload"


@pytest.mark.parametrize(
    ("route", "problem", "said"),
    [
        (Route(body=SECRET.encode()), "incorrectResponse", "not the key authorization"),
        (Route(404, SECRET.encode()), "unauthorized", "HTTP 404"),
        (Route(500, SECRET.encode() * 100), "unauthorized", "HTTP 500"),
        (Route(body=SECRET.encode() * 1000), "incorrectResponse", f"over {MAX_BODY} bytes"),
        (Route(302, location=f"ftp://{SECRET}.devid.test/x"), "connection", "http and https"),
        (Route(302, location=f"http://{SECRET}.devid.test:8080/"), "connection", "port"),
        (Route(302, location=f"http://{SECRET}!/x"), "connection", "invalid host"),
        (Route(302, location=f"http://[{SECRET}/x"), "connection", "invalid URL"),
    ],
)
async def test_http01_problem_never_echoes_the_target(
    challtestsrv: ChallTestSrv, web: HTTPResponder, route: Route, problem: str, said: str
) -> None:
    web.routes[CHALLENGE_PATH] = route
    config = config_for(challtestsrv, http01_port=web.port)
    err = await problem_of(validate_http01("dns", "x.devid.test", TOKEN, KEYAUTH, config))
    assert err.problem == problem, err.detail
    assert said in err.detail
    assert SECRET not in err.detail
    assert "s3cr3t" not in err.detail


async def test_http01_redirect_target_is_not_named(
    challtestsrv: ChallTestSrv, web: HTTPResponder
) -> None:
    # The redirect names an internal host: the problem says a redirect failed, not where.
    host = f"{SECRET}.devid.test"
    challtestsrv.set_servfail(host)
    web.routes[CHALLENGE_PATH] = Route(302, location=f"http://{host}/x")
    config = config_for(challtestsrv, http01_port=web.port)
    err = await problem_of(validate_http01("dns", "x.devid.test", TOKEN, KEYAUTH, config))
    assert err.problem == "dns"
    assert "redirect 1" in err.detail and "SERVFAIL" in err.detail
    assert SECRET not in err.detail


async def test_http01_banner_of_a_non_http_service_is_not_echoed(
    nursery: trio.Nursery, challtestsrv: ChallTestSrv
) -> None:
    async def banner(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(65536)
            await stream.send_all(
                f"SSH-2.0-OpenSSH_{SECRET}\r\nProtocol mismatch.\r\n\r\n".encode()
            )
            await trio.sleep(5)

    listeners = await nursery.start(partial(trio.serve_tcp, banner, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    config = config_for(challtestsrv, http01_port=port)
    err = await problem_of(validate_http01("dns", "x.devid.test", TOKEN, KEYAUTH, config))
    assert err.problem == "connection"
    assert "not valid HTTP/1.1" in err.detail
    assert SECRET not in err.detail and "SSH" not in err.detail


async def test_dns01_problem_does_not_echo_txt_records(challtestsrv: ChallTestSrv) -> None:
    challtestsrv.set_txt("_acme-challenge.x.devid.test", SECRET)
    err = await problem_of(validate_dns01("x.devid.test", KEYAUTH, config_for(challtestsrv)))
    assert err.problem == "incorrectResponse"
    assert "_acme-challenge.x.devid.test" in err.detail and TXT_VALUE in err.detail
    assert SECRET not in err.detail


async def test_tlsalpn01_problem_does_not_echo_the_certificate(
    nursery: trio.Nursery,
    tmp_path: Path,
    tls_key: ec.EllipticCurvePrivateKey,
    challtestsrv: ChallTestSrv,
) -> None:
    cert = acme_cert(tls_key, [x509.DNSName(f"{SECRET}.devid.test")], WRONG_DIGEST)
    server = await start_tls(nursery, tmp_path, tls_key, cert)
    config = config_for(challtestsrv, tlsalpn01_port=server.port)
    err = await problem_of(validate_tlsalpn01("dns", "x.devid.test", KEYAUTH, config))
    assert err.problem == "incorrectResponse"
    assert "does not name the dNSName x.devid.test" in err.detail
    assert SECRET not in err.detail


async def test_tlsalpn01_problem_does_not_echo_the_alpn_or_the_digest(
    nursery: trio.Nursery,
    tmp_path: Path,
    tls_key: ec.EllipticCurvePrivateKey,
    challtestsrv: ChallTestSrv,
) -> None:
    wrong = acme_cert(tls_key, [x509.DNSName("x.devid.test")], WRONG_DIGEST)
    digest_server = await start_tls(nursery, tmp_path, tls_key, wrong)
    err = await problem_of(
        validate_tlsalpn01(
            "dns",
            "x.devid.test",
            KEYAUTH,
            config_for(challtestsrv, tlsalpn01_port=digest_server.port),
        )
    )
    assert err.problem == "incorrectResponse"
    assert WRONG_DIGEST[2:].hex() not in err.detail

    alpn_server = await start_tls(nursery, tmp_path, tls_key, wrong, alpn=[SECRET])
    err = await problem_of(
        validate_tlsalpn01(
            "dns",
            "x.devid.test",
            KEYAUTH,
            config_for(challtestsrv, tlsalpn01_port=alpn_server.port),
        )
    )
    assert err.problem == "tls"
    assert "did not negotiate ALPN acme-tls/1" in err.detail
    assert SECRET not in err.detail


async def test_unexpected_errors_do_not_carry_their_message(
    challtestsrv: ChallTestSrv, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(addr: Any, port: int) -> trio.SocketStream:
        raise RuntimeError(SECRET)

    monkeypatch.setattr(dial, "open_tcp", broken)
    err = await problem_of(
        validate_http01("dns", "x.devid.test", TOKEN, KEYAUTH, config_for(challtestsrv))
    )
    assert err.problem == "serverInternal"
    assert SECRET not in err.detail


# --- cloud metadata endpoints are refused by default -------------------------------------

METADATA = [
    "169.254.169.254",  # AWS, GCP, Azure IMDS, OpenStack...
    "100.100.100.200",  # Alibaba Cloud
    "168.63.129.16",  # Azure wireserver
    "fd00:ec2::254",  # AWS IPv6
    "fd20:ce::254",  # GCP IPv6
    "fe80::a9fe:a9fe",  # link-local IPv6
    "::ffff:100.100.100.200",
    "::ffff:168.63.129.16",
]


@pytest.mark.parametrize("address", METADATA)
def test_metadata_addresses_are_denied_by_default(address: str) -> None:
    addr = ipaddress.ip_address(address)
    reason = denied(addr, deny_networks=DEFAULT_DENY, allow_private=True)
    assert reason is not None and "denied network" in reason
    config = ValidationConfig.from_table({})
    from_config = denied(addr, deny_networks=config.deny_networks, allow_private=True)
    assert from_config is not None


@pytest.mark.parametrize("address", ["100.100.100.200", "168.63.129.16", "fd20:ce::254"])
async def test_new_metadata_addresses_are_never_contacted(
    challtestsrv: ChallTestSrv, dialed: list[tuple[str, int]], address: str
) -> None:
    if ":" in address:  # A records too, or the name would resolve to the default 127.0.0.1
        challtestsrv.add_aaaa("cloud.devid.test", [address])
        challtestsrv.add_a("cloud.devid.test", ["100.100.100.200"])
    else:
        challtestsrv.add_a("cloud.devid.test", [address])
    config = config_for(challtestsrv)
    for identifier_type, value in (("ip", address), ("dns", "cloud.devid.test")):
        err = await problem_of(validate_http01(identifier_type, value, TOKEN, KEYAUTH, config))
        assert err.problem == "connection"
        assert "refusing to connect" in err.detail
        assert f"{address} in denied network" in err.detail
        err = await problem_of(validate_tlsalpn01(identifier_type, value, KEYAUTH, config))
        assert f"{address} in denied network" in err.detail
    assert dialed == []
