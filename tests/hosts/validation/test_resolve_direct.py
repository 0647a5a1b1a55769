"""The direct A/AAAA lookup (one UDP socket, both queries at once): it takes only a
plain answer and leaves everything else to dnspython's resolver, so that the
addresses found and the wording of a failure are the same either way."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest
import trio

from hosts.validation import ValidationConfig
from hosts.validation import resolve as resolve_module
from hosts.validation.resolve import _NOT_OURS, _reply, _wire_name, resolve
from hosts.validation.trace import Trace

NAME = "host.devid.test"
QNAME = _wire_name(NAME)
ID = 4242


def _response(
    rdtype: str = "A",
    *,
    name: str = NAME,
    records: tuple[tuple[str, str, str], ...] = (),
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR,
    ident: int = ID,
    flags: int = 0,
) -> bytes:
    """A reply to our query for *name* / *rdtype*, with *records* (owner, type, value)."""
    query = dns.message.make_query(name + ".", rdtype)
    query.id = ident
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    reply.flags |= flags
    for owner, kind, value in records:
        reply.answer.append(dns.rrset.from_text(owner + ".", 60, "IN", kind, value))
    return reply.to_wire()


def test_wire_name() -> None:
    assert _wire_name("a.bc") == b"\x01a\x02bc\x00"
    assert _wire_name("a..b") is None
    assert _wire_name("x" * 64 + ".test") is None
    assert _wire_name("é.test") is None
    assert _wire_name(".".join(["x" * 63] * 4)) is None  # over 255 bytes


def test_addresses_of_the_type_asked() -> None:
    assert QNAME is not None
    data = _response(records=((NAME, "A", "192.0.2.1"), (NAME, "A", "192.0.2.2")))
    assert _reply(data, ID, QNAME, 1) == [
        ipaddress.ip_address("192.0.2.1"),
        ipaddress.ip_address("192.0.2.2"),
    ]
    data = _response("AAAA", records=((NAME, "AAAA", "2001:db8::1"),))
    assert _reply(data, ID, QNAME, 28) == [ipaddress.ip_address("2001:db8::1")]


def test_no_records_and_nxdomain() -> None:
    assert QNAME is not None
    assert _reply(_response(), ID, QNAME, 1) == "no records"
    assert _reply(_response(rcode=dns.rcode.NXDOMAIN), ID, QNAME, 1) == "NXDOMAIN"


@pytest.mark.parametrize(
    "data",
    [
        _response(rcode=dns.rcode.SERVFAIL),
        _response(rcode=dns.rcode.REFUSED),
        _response(flags=dns.flags.TC),
        _response(records=((NAME, "CNAME", "other.devid.test."),)),
        _response(records=((NAME, "TXT", '"x"'),)),
        _response(records=(("other.devid.test", "A", "192.0.2.9"),)),
        _response(rcode=dns.rcode.NXDOMAIN, records=((NAME, "CNAME", "other.devid.test."),)),
        _response(records=((NAME, "A", "192.0.2.1"),))[:-2],  # cut short
    ],
    ids=[
        "servfail",
        "refused",
        "truncated",
        "cname",
        "other-type",
        "other-owner",
        "nxdomain-cname",
        "short",
    ],
)
def test_anything_else_goes_to_the_resolver(data: bytes) -> None:
    assert QNAME is not None
    assert _reply(data, ID, QNAME, 1) is None


@pytest.mark.parametrize(
    "make",
    [
        lambda: _response(ident=ID + 1),
        lambda: _response(name="other.devid.test"),
        lambda: _response("AAAA"),
        lambda: dns.message.make_query(NAME + ".", "A", id=ID).to_wire(),  # not a reply
        lambda: b"\x10\x92",
    ],
    ids=["other-id", "other-name", "other-type", "a-query", "runt"],
)
def test_replies_to_other_queries_are_ignored(make: Callable[[], bytes]) -> None:
    assert QNAME is not None
    assert _reply(make(), ID, QNAME, 1) is _NOT_OURS


def test_the_question_is_matched_without_regard_to_case() -> None:
    assert QNAME is not None
    data = _response(name="HOST.DeVid.test", records=(("host.devid.test", "A", "192.0.2.1"),))
    assert _reply(data, ID, QNAME, 1) == [ipaddress.ip_address("192.0.2.1")]


async def _serve(
    sock: trio.socket.SocketType, answer: Callable[[dns.message.Message], list[bytes]]
) -> None:
    while True:
        data, peer = await sock.recvfrom(4096)
        for reply in answer(dns.message.from_wire(data)):
            await sock.sendto(reply, peer)


async def _with_server(
    nursery: trio.Nursery, answer: Callable[[dns.message.Message], list[bytes]]
) -> ValidationConfig:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    nursery.start_soon(_serve, sock, answer)
    return ValidationConfig(dns_resolver=("127.0.0.1", sock.getsockname()[1]), timeout=5.0)


async def test_stray_datagrams_are_skipped(nursery: trio.Nursery) -> None:
    """A reply to another query before the real one does not end the lookup."""

    def answer(query: dns.message.Message) -> list[bytes]:
        reply = dns.message.make_response(query)
        if query.question[0].rdtype == dns.rdatatype.A:
            reply.answer.append(dns.rrset.from_text(NAME + ".", 60, "IN", "A", "192.0.2.7"))
        stray = dns.message.make_response(query)
        stray.id = (query.id + 7) & 0xFFFF
        stray.answer.append(dns.rrset.from_text(NAME + ".", 60, "IN", "A", "203.0.113.66"))
        return [stray.to_wire(), reply.to_wire()]

    config = await _with_server(nursery, answer)
    assert await resolve(NAME, config, Trace("t")) == [ipaddress.ip_address("192.0.2.7")]


async def test_a_cname_is_followed_by_the_resolver(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The direct lookup gives up on a CNAME; dnspython's resolver follows it."""
    fallbacks: list[str] = []
    real_lookup = resolve_module.lookup

    async def counting(resolver: object, name: str, rdtype: str) -> object:
        fallbacks.append(rdtype)
        return await real_lookup(resolver, name, rdtype)  # type: ignore[arg-type]

    monkeypatch.setattr(resolve_module, "lookup", counting)

    def answer(query: dns.message.Message) -> list[bytes]:
        reply = dns.message.make_response(query)
        question = query.question[0]
        if question.rdtype == dns.rdatatype.A:
            reply.answer.append(
                dns.rrset.from_text(NAME + ".", 60, "IN", "CNAME", "real.devid.test.")
            )
            reply.answer.append(dns.rrset.from_text("real.devid.test.", 60, "IN", "A", "192.0.2.8"))
        return [reply.to_wire()]

    config = await _with_server(nursery, answer)
    assert await resolve(NAME, config, Trace("t")) == [ipaddress.ip_address("192.0.2.8")]
    assert sorted(fallbacks) == ["A", "AAAA"]
