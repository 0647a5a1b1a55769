"""DNS failures, shared by every challenge type: NXDOMAIN, no address records,
SERVFAIL and a resolver that never answers."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

import dns.message
import dns.rcode
import pytest
import trio

from hosts.validation import ValidationConfig
from hosts.validation.dns01 import validate_dns01
from hosts.validation.http01 import validate_http01
from hosts.validation.tlsalpn01 import validate_tlsalpn01

from .servers import KEYAUTH, TOKEN, config_for, problem_of

if TYPE_CHECKING:  # a plain import before registration defeats assert rewriting
    from tests.challtestsrv import ChallTestSrv

pytest_plugins = ["tests.challtestsrv"]


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
