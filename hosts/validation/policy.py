"""What validation may contact: the identifiers it accepts and the addresses it dials.

An identifier is a DNS name (checked, lower-cased) or an IP address (no IPv6
zone); an IP address is never a "dns" identifier (RFC 8738 section 3) and a
wildcard is validated by dns-01 alone. An address is refused when it is
unspecified or multicast, lies in a denied network (:data:`DEFAULT_DENY` unless
the operator lists others) or, without ``allow_private``, is not a public
address; an IPv6 address is also judged as the IPv4 address it embeds (mapped,
6to4, NAT64).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Final

from .trace import Trace

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Never contacted by default: link-local networks (AWS, GCP, Azure, OpenStack and
#: Oracle metadata live at 169.254.169.254) and the other clouds' metadata endpoints.
DEFAULT_DENY: tuple[str, ...] = (
    "169.254.0.0/16",  # IPv4 link-local
    "fe80::/10",  # IPv6 link-local
    "fd00:ec2::254/128",  # AWS metadata over IPv6
    "fd20:ce::254/128",  # GCP metadata over IPv6
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "168.63.129.16/32",  # Azure wireserver
)

# RFC 6052 well-known NAT64 prefix: 64:ff9b::a9fe:a9fe reaches 169.254.169.254.
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
HOSTNAME: Final = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")


# --- identifiers -------------------------------------------------------------------


def _parse_ip(value: str, trace: Trace) -> IPAddress:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise trace.problem("rejectedIdentifier", f"{value!r} is not an IP address") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id:
        raise trace.problem("rejectedIdentifier", f"{value!r} carries an IPv6 zone")
    return addr


def check_name(name: str, trace: Trace) -> str:
    if len(name) > 253 or not HOSTNAME.fullmatch(name):
        raise trace.problem("rejectedIdentifier", f"{name!r} is not a valid DNS name")
    return name.lower()


def target(identifier_type: str, value: str, trace: Trace) -> str | IPAddress:
    """The identifier as a checked DNS name (lower case) or an IP address."""
    if identifier_type == "ip":
        return _parse_ip(value, trace)
    if identifier_type != "dns":
        raise trace.problem(
            "unsupportedIdentifier", f"identifier type {identifier_type!r} is not supported"
        )
    if value.startswith("*."):
        raise trace.problem(
            "rejectedIdentifier", f"wildcard {value!r} can only be validated with dns-01"
        )
    not_an_ip(value, trace)
    return check_name(value, trace)


def not_an_ip(value: str, trace: Trace) -> None:
    """RFC 8738 section 3: an IP address is never a "dns" identifier."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return
    raise trace.problem("rejectedIdentifier", f"{value!r} is an IP address, not a DNS name")


# --- addresses ---------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _networks(deny: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in deny)


def denied(addr: IPAddress, *, deny_networks: tuple[str, ...], allow_private: bool) -> str | None:
    """Why the policy refuses ``addr``, or None when it may be contacted."""
    views: list[IPAddress] = [addr]
    if isinstance(addr, ipaddress.IPv6Address):
        # The same IPv4 host reached through IPv6 must meet the same rules.
        if addr.ipv4_mapped is not None:
            views.append(addr.ipv4_mapped)
        if addr.sixtofour is not None:
            views.append(addr.sixtofour)
        if addr in _NAT64:
            views.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    try:
        networks = _networks(deny_networks)
    except ValueError as exc:
        return f"the deny list is invalid ({exc})"
    for view in views:
        if view.is_unspecified or view.is_multicast:
            return "unspecified or multicast address"
        for net in networks:
            if view.version == net.version and view in net:
                return f"in denied network {net}"
        if not allow_private and not view.is_global:
            return "not a public address (private addresses are not allowed)"
    return None
