"""Name lookups for validation, through dnspython on trio.

``config.dns_resolver``, when set, answers every lookup validation makes (the
A/AAAA of http-01 and tls-alpn-01 as well as the TXT of dns-01); otherwise the
system's resolver (``/etc/resolv.conf``) does. Nothing is cached between lookups
but the resolvers themselves.
"""

from __future__ import annotations

import ipaddress
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

    async def one(rdtype: str) -> None:
        results[rdtype] = await lookup(answering, name, rdtype)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "AAAA")
        nursery.start_soon(one, "A")
    addresses: list[IPAddress] = []
    for rdtype in ("AAAA", "A"):
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
