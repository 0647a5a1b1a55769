"""http-01 against an HTTP responder on loopback (TLS on the same port for https
redirects), names resolved through pebble-challtestsrv."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import pytest
import trio

from hosts.testing.ports import free_port
from hosts.validation.http01 import MAX_BODY, validate_http01

from .servers import (
    CHALLENGE_PATH,
    KEYAUTH,
    SECRET,
    TOKEN,
    HTTPResponder,
    Route,
    Seen,
    config_for,
    needs_ipv6,
    problem_of,
    start_http,
)

if TYPE_CHECKING:  # a plain import before registration defeats assert rewriting
    from tests.challtestsrv import ChallTestSrv

pytest_plugins = ["tests.challtestsrv"]


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
    port = free_port()  # nothing listens on it
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


# --- what a failed validation tells the ACME client ------------------------------------
# Validation fetches from addresses an account holder chooses (private ones included by
# default), so a problem document may say what was wrong but must never carry what the
# target sent: no body, no header (a Location included), no banner, TXT value or
# certificate content.


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
