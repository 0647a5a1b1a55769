"""How challenges are validated: ``[acme]`` in devid.toml and the ``devid serve`` flags.

``[acme]`` keys (all optional)::

    http01_port = 80            # where http-01 connects (tests and demos: a free port)
    tlsalpn01_port = 443        # where tls-alpn-01 connects
    dns_resolver = "HOST:PORT"  # answers EVERY lookup validation makes (default: the system's)
    allow_private = true        # an internal CA validates private and loopback addresses
    deny_networks = [...]       # replaces DEFAULT_DENY: link-local and cloud metadata
    validation_timeout = "10s"  # one attempt
    validation_retry_for = "30s"  # how long a failing challenge is retried (1 s, 2 s, 4 s...)

``devid serve --acme-http01-port, --acme-tlsalpn01-port, --acme-dns-resolver``
override the file.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import attrs

from engine.errors import ConfigurationError
from plugins.options import Options

from .policy import DEFAULT_DENY


def parse_host_port(text: str, what: str = "dns_resolver") -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) where HOST is an IP address."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        number = int(port)
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigurationError(
            f"{what} {text!r} must be IP:PORT (for example 127.0.0.1:53)"
        ) from None
    if not sep or not 0 < number < 65536:
        raise ConfigurationError(f"{what} {text!r} must be IP:PORT with a port from 1 to 65535")
    return host, number


def _port(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ConfigurationError(f"{what} must be a port number from 1 to 65535")
    return value


@attrs.frozen
class ValidationConfig:
    """Everything challenge validation needs from the operator."""

    http01_port: int = 80
    tlsalpn01_port: int = 443
    # (host, port); serves EVERY lookup validation makes (http-01 and tls-alpn-01
    # A/AAAA lookups as well as dns-01 TXT); None = system resolver.
    dns_resolver: tuple[str, int] | None = None
    # An internal CA validates private and loopback addresses by default.
    allow_private: bool = True
    deny_networks: tuple[str, ...] = DEFAULT_DENY
    # One attempt, as a whole.
    timeout: float = 10.0
    # Retries: the first after first_retry seconds, then doubling up to max_retry_delay,
    # until retry_for seconds after the first attempt.
    retry_for: float = 30.0
    first_retry: float = 1.0
    max_retry_delay: float = 10.0

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> ValidationConfig:
        opts = Options("[acme]", table)
        resolver = opts.get("dns_resolver")
        if resolver is not None and not isinstance(resolver, str):
            raise ConfigurationError("[acme] dns_resolver must be a string HOST:PORT")
        deny = opts.get("deny_networks", list(DEFAULT_DENY))
        if not isinstance(deny, list) or not all(isinstance(n, str) for n in deny):
            raise ConfigurationError("[acme] deny_networks must be a list of CIDR strings")
        for network in deny:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigurationError(f"[acme] deny_networks: {network!r} is not CIDR") from None
        config = cls(
            http01_port=_port(opts.get("http01_port", 80), "[acme] http01_port"),
            tlsalpn01_port=_port(opts.get("tlsalpn01_port", 443), "[acme] tlsalpn01_port"),
            dns_resolver=None if resolver is None else parse_host_port(resolver),
            allow_private=opts.boolean("allow_private", True),
            deny_networks=tuple(deny),
            timeout=opts.duration("validation_timeout", "10s").total_seconds(),
            retry_for=opts.duration("validation_retry_for", "30s").total_seconds(),
        )
        opts.finish()
        return config

    def with_overrides(
        self,
        *,
        http01_port: int | None = None,
        tlsalpn01_port: int | None = None,
        dns_resolver: str | tuple[str, int] | None = None,
    ) -> ValidationConfig:
        """The ``devid serve`` flags win over the file."""
        changes: dict[str, Any] = {}
        if http01_port is not None:
            changes["http01_port"] = _port(http01_port, "--acme-http01-port")
        if tlsalpn01_port is not None:
            changes["tlsalpn01_port"] = _port(tlsalpn01_port, "--acme-tlsalpn01-port")
        if isinstance(dns_resolver, str):
            changes["dns_resolver"] = parse_host_port(dns_resolver, "--acme-dns-resolver")
        elif dns_resolver is not None:
            changes["dns_resolver"] = dns_resolver
        return attrs.evolve(self, **changes)
