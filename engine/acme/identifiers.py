"""ACME identifiers (RFC 8555 7.1.3, RFC 8738, draft-ietf-acme-device-attest) and
the identifier policy a provisioner applies to new orders.

An identifier is parsed once, normalised (DNS names in lower case, IP
addresses in their canonical text) and refused with the problem RFC 8555
names: ``malformed`` for what is not an identifier at all,
``unsupportedIdentifier`` for a type this server (or this provisioner) does
not issue for, ``rejectedIdentifier`` for one the policy forbids.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from ..errors import BadRequest
from ..names import SAN, SANKind
from .problems import ACMEProblem, Subproblem

DNS = "dns"
IP = "ip"
PERMANENT_IDENTIFIER = "permanent-identifier"
HARDWARE_MODULE = "hardware-module"
TYPES = (DNS, IP, PERMANENT_IDENTIFIER, HARDWARE_MODULE)
DEVICE_TYPES = frozenset({PERMANENT_IDENTIFIER, HARDWARE_MODULE})

HTTP_01 = "http-01"
DNS_01 = "dns-01"
TLS_ALPN_01 = "tls-alpn-01"
DEVICE_ATTEST_01 = "device-attest-01"
CHALLENGE_TYPES = (HTTP_01, DNS_01, TLS_ALPN_01, DEVICE_ATTEST_01)
# Challenge types whose validation the host runs over the network.
NETWORK_CHALLENGES = frozenset({HTTP_01, DNS_01, TLS_ALPN_01})

MAX_IDENTIFIERS = 100
MAX_DEVICE_VALUE = 256

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@attrs.frozen(order=True)
class Identifier:
    """``{"type", "value"}``; a DNS wildcard keeps its ``*.`` here (the order's form)."""

    type: str
    value: str

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "value": self.value}

    @property
    def wildcard(self) -> bool:
        return self.type == DNS and self.value.startswith("*.")

    def authorization_form(self) -> Identifier:
        """The identifier an authorization names: a wildcard without its ``*.``."""
        return Identifier(DNS, self.value[2:]) if self.wildcard else self

    def san(self) -> SAN | None:
        """The subject alternative name this identifier becomes, for DNS and IP."""
        if self.type == DNS:
            return SAN(SANKind.DNS, self.value)
        if self.type == IP:
            return SAN(SANKind.IP, self.value)
        return None

    @classmethod
    def from_json(cls, data: Any) -> Identifier:
        """Parse and normalise one identifier object from a client."""
        if not isinstance(data, dict):
            raise ACMEProblem("malformed", "an identifier must be a JSON object")
        kind, value = data.get("type"), data.get("value")
        if not isinstance(kind, str) or not isinstance(value, str) or not value:
            raise ACMEProblem("malformed", "an identifier needs string members type and value")
        if kind not in TYPES:
            raise ACMEProblem("unsupportedIdentifier", f"identifier type {kind!r} is not supported")
        if kind == DNS:
            return cls(DNS, _dns_name(value))
        if kind == IP:
            return cls(IP, _ip_address(value))
        return cls(kind, _device_value(kind, value))


def _rejected(value: str, why: str) -> ACMEProblem:
    return ACMEProblem("rejectedIdentifier", f"{value!r}: {why}")


def _dns_name(value: str) -> str:
    if value != value.strip() or value.endswith("."):
        raise _rejected(value, "a DNS identifier has no surrounding spaces or trailing dot")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        raise _rejected(value, "an IP address must use the identifier type 'ip' (RFC 8738)")
    try:
        san = SAN.parse(value)
    except BadRequest as exc:
        raise _rejected(value, exc.detail) from None
    if san.kind is not SANKind.DNS:
        raise _rejected(value, "not a DNS name")
    return san.value


def _ip_address(value: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise _rejected(value, "not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        raise _rejected(value, "an IP identifier has no IPv6 zone")
    return str(address)


def _device_value(kind: str, value: str) -> str:
    if len(value) > MAX_DEVICE_VALUE or not value.isascii() or not value.isprintable():
        raise _rejected(value, f"a {kind} value is printable ASCII of at most 256 characters")
    return value


def parse_identifiers(data: Any) -> tuple[Identifier, ...]:
    """The ``identifiers`` of a newOrder: 1 to 100, duplicates dropped, order kept."""
    if not isinstance(data, list) or not data:
        raise ACMEProblem("malformed", "identifiers must be a non-empty list")
    if len(data) > MAX_IDENTIFIERS:
        raise ACMEProblem("rejectedIdentifier", f"an order names at most {MAX_IDENTIFIERS}")
    found: list[Identifier] = []
    problems: list[Subproblem] = []
    for item in data:
        try:
            identifier = Identifier.from_json(item)
        except ACMEProblem as problem:
            shown = item if isinstance(item, dict) else None
            problems.append(Subproblem(problem.problem, problem.detail, _shown(shown)))
            continue
        if identifier not in found:
            found.append(identifier)
    if problems:
        raise compound(problems)
    return tuple(found)


def _shown(item: dict[str, Any] | None) -> dict[str, str] | None:
    if item is None:
        return None
    kind, value = item.get("type"), item.get("value")
    if isinstance(kind, str) and isinstance(value, str):
        return {"type": kind[:64], "value": value[:256]}
    return None


def compound(problems: Sequence[Subproblem]) -> ACMEProblem:
    """One problem for several identifiers (RFC 8555 6.7.1).

    The top-level type is the subproblems' type when they agree, else ``compound``.
    """
    kinds = {p.type for p in problems}
    top = next(iter(kinds)) if len(kinds) == 1 else "compound"
    if len(problems) == 1:
        detail = problems[0].detail
    else:
        detail = f"{len(problems)} identifiers were refused; see subproblems"
    return ACMEProblem(top, detail, subproblems=problems)


# --- policy --------------------------------------------------------------------------


def _domain_allowed(name: str, allowed: Iterable[str]) -> bool:
    for entry in allowed:
        if entry == "*":
            return True
        suffix = entry.lower().lstrip(".")
        if name == suffix or name.endswith("." + suffix):
            return True
    return False


@attrs.frozen
class IdentifierPolicy:
    """Which identifiers a provisioner issues for, and with which challenges.

    ``allowed_domains`` are suffixes (``example.com`` allows ``example.com`` and
    every name under it; ``*`` allows any name); ``allowed_ip_ranges`` are CIDRs.
    Both default to nothing: a provisioner allows what its config names.
    """

    challenges: frozenset[str]
    allowed_domains: tuple[str, ...] = ()
    allowed_ip_ranges: tuple[IPNetwork, ...] = ()

    def challenge_types(self, identifier: Identifier) -> tuple[str, ...]:
        """The challenges offered for *identifier*, in a stable order."""
        if identifier.type in DEVICE_TYPES:
            candidates: tuple[str, ...] = (DEVICE_ATTEST_01,)
        elif identifier.wildcard:
            candidates = (DNS_01,)  # RFC 8555 7.1.3
        elif identifier.type == IP:
            candidates = (HTTP_01, TLS_ALPN_01)  # RFC 8738 7: no dns-01 for addresses
        else:
            candidates = (HTTP_01, DNS_01, TLS_ALPN_01)
        return tuple(c for c in candidates if c in self.challenges)

    def check(self, identifier: Identifier) -> None:
        """Refuse an identifier this provisioner does not issue for."""
        if not self.challenge_types(identifier):
            if identifier.type in DEVICE_TYPES or not (self.challenges & NETWORK_CHALLENGES):
                raise ACMEProblem(
                    "unsupportedIdentifier",
                    f"this ACME provisioner does not issue for {identifier.type} identifiers",
                )
            if identifier.wildcard:
                raise _rejected(identifier.value, "a wildcard needs dns-01, which is not enabled")
            raise _rejected(identifier.value, "no enabled challenge type can validate it")
        if identifier.type == DNS:
            name = identifier.value[2:] if identifier.wildcard else identifier.value
            if not _domain_allowed(name, self.allowed_domains):
                raise _rejected(identifier.value, "the name is not in this provisioner's domains")
        elif identifier.type == IP:
            address = ipaddress.ip_address(identifier.value)
            if not any(address in network for network in self.allowed_ip_ranges):
                raise _rejected(identifier.value, "the address is not in an allowed IP range")

    def check_order(self, identifiers: Sequence[Identifier]) -> None:
        """Check every identifier; report all refusals at once, each as a subproblem."""
        problems: list[Subproblem] = []
        for identifier in identifiers:
            try:
                self.check(identifier)
            except ACMEProblem as problem:
                problems.append(Subproblem(problem.problem, problem.detail, identifier.to_json()))
        device = [i for i in identifiers if i.type in DEVICE_TYPES]
        if device and len(identifiers) > 1:
            problems.append(
                Subproblem(
                    "rejectedIdentifier",
                    "a device identifier must be the only identifier of its order",
                    device[0].to_json(),
                )
            )
        if problems:
            raise compound(problems)
