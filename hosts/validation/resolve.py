"""Name lookups for validation, through dnspython on trio.

``config.dns_resolver``, when set, answers every lookup validation makes (the
A/AAAA of http-01 and tls-alpn-01 as well as the TXT of dns-01); otherwise the
system's resolver (``/etc/resolv.conf``) does. Nothing is cached between lookups
but the resolvers themselves.

The A and AAAA of a host are first asked of the resolver's first nameserver over
one UDP socket, both queries at once (:func:`_direct`), and only a plain answer is
taken from there: NOERROR with the question's own records of the type asked (the
addresses) or none ("no records"), or NXDOMAIN without records. Anything else (no
reply in time, a truncated reply, a CNAME, SERVFAIL, REFUSED...) and the lookup is
made again through dnspython's resolver, which retries, tries every nameserver,
follows CNAMEs, falls back to TCP and words the failure. The answers are the same
either way; the first way costs a fifth of the CPU.
"""

from __future__ import annotations

import ipaddress
import secrets
import struct
import time

import dns.asyncbackend
import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver
import trio

from .config import ValidationConfig
from .policy import IPAddress
from .trace import Trace, brief

# Resolvers by (configured resolver, timeout): a configured one is made once, not per
# lookup; the system one (from /etc/resolv.conf) is made again after a minute, so that
# a changed resolv.conf is picked up.
_RESOLVERS: dict[
    tuple[tuple[str, int] | None, float], tuple[float, dns.asyncresolver.Resolver]
] = {}
_SYSTEM_RESOLVER_TTL = 60.0


def resolver(config: ValidationConfig, trace: Trace) -> dns.asyncresolver.Resolver:
    key = (config.dns_resolver, config.timeout)
    now = time.monotonic()
    cached = _RESOLVERS.get(key)
    if cached is not None and (config.dns_resolver is not None or now < cached[0]):
        return cached[1]
    try:
        if config.dns_resolver is None:
            made = dns.asyncresolver.Resolver()
        else:
            host, port = config.dns_resolver
            made = dns.asyncresolver.Resolver(configure=False)
            made.nameservers = [dns.nameserver.Do53Nameserver(host, port)]
    except dns.exception.DNSException as exc:
        raise trace.problem("dns", f"no usable DNS resolver: {brief(exc)}") from exc
    made.lifetime = max(config.timeout, 0.1)
    made.timeout = min(2.0, made.lifetime)
    made.cache = None
    if len(_RESOLVERS) >= 16:
        _RESOLVERS.clear()
    _RESOLVERS[key] = (now + _SYSTEM_RESOLVER_TTL, made)
    return made


async def lookup(
    resolver: dns.asyncresolver.Resolver, name: str, rdtype: str
) -> dns.resolver.Answer | str:
    """The answer, or a short reason there is none."""
    try:
        return await resolver.resolve(
            name + ".", rdtype, search=False, backend=dns.asyncbackend.get_backend("trio")
        )
    except dns.resolver.NXDOMAIN:
        return "NXDOMAIN"
    except dns.resolver.NoAnswer:
        return "no records"
    except dns.resolver.LifetimeTimeout:
        return "resolver timed out"
    except dns.resolver.NoNameservers as exc:
        # "All nameservers failed to answer the query N: Server Do53:H@P answered SERVFAIL"
        return f"resolver failure: {brief(exc).rsplit(': ', 1)[-1]}"
    except dns.exception.DNSException as exc:
        return f"DNS error ({brief(exc)})"


#: The record types of a host's addresses, in the order they are tried (IPv6 first).
ADDRESS_TYPES = ("AAAA", "A")
_QTYPES = {"AAAA": 28, "A": 1}
_RDATA_LENGTH = {28: 16, 1: 4}
_CLASS_IN = 1
_RD = 0x0100  # "recursion desired", the only flag the resolver's queries set
_QR, _TC, _OPCODE, _RCODE = 0x8000, 0x0200, 0x7800, 0x000F
_NOERROR, _NXDOMAIN = 0, 3
_POINTER_TO_QUESTION = b"\xc0\x0c"  # a compressed owner name: the question's name
_Found = list[IPAddress] | str


class _NotOurs:
    """A datagram that answers none of our queries (ignored, as the resolver does)."""


_NOT_OURS = _NotOurs()


def _wire_name(name: str) -> bytes | None:
    """*name* (ASCII labels, no trailing dot) in DNS wire form; None if it is not one."""
    try:
        labels = [label.encode("ascii") for label in name.split(".")]
    except UnicodeEncodeError:
        return None
    if any(not 0 < len(label) < 64 for label in labels):
        return None
    wire = b"".join(bytes((len(label),)) + label for label in labels) + b"\0"
    return wire if len(wire) <= 255 else None


def _query(ident: int, qname: bytes, qtype: int) -> bytes:
    return struct.pack("!6H", ident, _RD, 1, 0, 0, 0) + qname + struct.pack("!2H", qtype, 1)


def _reply(data: bytes, ident: int, qname: bytes, qtype: int) -> _Found | _NotOurs | None:
    """What a reply to our query (*ident*, *qname*, *qtype*) says: the addresses,
    "no records" or "NXDOMAIN". :data:`_NOT_OURS` if it replies to something else;
    None for anything but the plain answer (a CNAME, a truncated reply, an rcode other
    than NOERROR and NXDOMAIN, records of another type, a name written otherwise):
    only the full resolver concludes on those."""
    if len(data) < 12:
        return _NOT_OURS
    got, flags, questions, answers = struct.unpack_from("!4H", data)
    end = 12 + len(qname)
    if (
        got != ident
        or not flags & _QR
        or flags & _OPCODE
        or questions != 1
        or data[12:end].lower() != qname.lower()
        or data[end : end + 4] != struct.pack("!2H", qtype, _CLASS_IN)
    ):
        return _NOT_OURS
    if flags & _TC:
        return None
    rcode = flags & _RCODE
    if rcode == _NXDOMAIN:
        return "NXDOMAIN" if answers == 0 else None
    if rcode != _NOERROR:
        return None
    position = end + 4
    addresses: list[IPAddress] = []
    for _ in range(answers):
        if data[position : position + 2] == _POINTER_TO_QUESTION:
            position += 2
        elif data[position : position + len(qname)].lower() == qname.lower():
            position += len(qname)
        else:
            return None
        if position + 10 > len(data):
            return None
        rtype, rclass, _ttl, length = struct.unpack_from("!2HIH", data, position)
        position += 10
        if (
            rtype != qtype
            or rclass != _CLASS_IN
            or length != _RDATA_LENGTH[qtype]
            or position + length > len(data)
        ):
            return None
        addresses.append(ipaddress.ip_address(data[position : position + length]))
        position += length
    return addresses if addresses else "no records"


def _first_server(resolver: dns.asyncresolver.Resolver) -> tuple[str, int] | None:
    """The resolver's first nameserver as (address, port), if it is a plain one over
    UDP port and the resolver's queries are plain (no EDNS, no TSIG, default flags)."""
    if resolver.edns >= 0 or resolver.keyname is not None or resolver.flags is not None:
        return None
    servers = resolver.nameservers
    if not servers:
        return None
    first = servers[0]
    if isinstance(first, dns.nameserver.Do53Nameserver):
        return first.address, first.port
    if isinstance(first, str):
        return first, resolver.nameserver_ports.get(first, resolver.port)
    return None


async def _direct(resolver: dns.asyncresolver.Resolver, name: str) -> dict[str, _Found] | None:
    """A and AAAA of *name* from the resolver's first nameserver: both queries over one
    connected UDP socket (only that server's datagrams reach it), each reply matched to
    its query by id and question. None unless both replies are plain answers (see
    :func:`_reply`) within the resolver's per-server timeout."""
    server = _first_server(resolver)
    qname = _wire_name(name)
    if server is None or qname is None:
        return None
    address, port = server
    try:
        family = ipaddress.ip_address(address).version
    except ValueError:
        return None
    first = secrets.randbits(16)
    idents = {rdtype: (first + i) & 0xFFFF for i, rdtype in enumerate(ADDRESS_TYPES)}
    found: dict[str, _Found] = {}
    sock = trio.socket.socket(
        trio.socket.AF_INET6 if family == 6 else trio.socket.AF_INET, trio.socket.SOCK_DGRAM
    )
    with sock, trio.move_on_after(resolver.timeout):
        try:
            await sock.connect((address, port))
            for rdtype, ident in idents.items():
                await sock.send(_query(ident, qname, _QTYPES[rdtype]))
            while len(found) < len(idents):
                data = await sock.recv(4096)
                for rdtype, ident in idents.items():
                    if rdtype in found:
                        continue
                    outcome = _reply(data, ident, qname, _QTYPES[rdtype])
                    if outcome is None:
                        return None
                    if not isinstance(outcome, _NotOurs):
                        found[rdtype] = outcome
                        break
        except OSError:
            return None
    return found if len(found) == len(idents) else None


async def resolve(
    name: str, config: ValidationConfig, trace: Trace, shown: str | None = None
) -> list[IPAddress]:
    """A and AAAA of ``name`` through the configured resolver, IPv6 first.

    ``shown`` names the host in problem details when ``name`` itself must not appear
    (a host a redirect named)."""
    shown = name if shown is None else shown
    trace.at(f"resolving {shown}", "dns")
    answering = resolver(config, trace)
    results: dict[str, list[IPAddress] | dns.resolver.Answer | str] = {}
    direct = await _direct(answering, name)
    if direct is not None:
        results.update(direct)
    else:

        async def one(rdtype: str) -> None:
            results[rdtype] = await lookup(answering, name, rdtype)

        async with trio.open_nursery() as nursery:
            for rdtype in ADDRESS_TYPES:
                nursery.start_soon(one, rdtype)
    addresses: list[IPAddress] = []
    for rdtype in ADDRESS_TYPES:
        answer = results[rdtype]
        if isinstance(answer, list):
            found: list[IPAddress] = answer
        elif isinstance(answer, str):
            found = []
        else:
            found = [ipaddress.ip_address(rdata.address) for rdata in answer]
        for addr in found:
            if addr not in addresses:
                addresses.append(addr)
    if not addresses:
        if results["A"] == results["AAAA"]:
            reasons = f"A/AAAA: {results['A']}"
        else:
            reasons = "; ".join(f"{t}: {results[t]}" for t in ("A", "AAAA"))
        raise trace.problem("dns", f"no address for {shown} ({reasons})")
    return addresses
