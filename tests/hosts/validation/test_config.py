"""[acme] in devid.toml read into ValidationConfig, and the ``devid serve`` flags over it."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import ConfigurationError
from hosts.validation import ValidationConfig
from hosts.validation.config import parse_host_port


def test_defaults_are_the_rfc_ports_and_the_system_resolver() -> None:
    config = ValidationConfig.from_table({})
    assert (config.http01_port, config.tlsalpn01_port, config.dns_resolver) == (80, 443, None)
    assert config.allow_private is True
    assert "169.254.0.0/16" in config.deny_networks
    assert config.retry_for == 30.0


def test_the_acme_table_is_read() -> None:
    config = ValidationConfig.from_table(
        {
            "http01_port": 5002,
            "tlsalpn01_port": 5001,
            "dns_resolver": "[::1]:5353",
            "allow_private": False,
            "deny_networks": ["10.0.0.0/8"],
            "validation_timeout": "3s",
            "validation_retry_for": "1m",
        }
    )
    assert (config.http01_port, config.tlsalpn01_port) == (5002, 5001)
    assert config.dns_resolver == ("::1", 5353)
    assert config.allow_private is False and config.deny_networks == ("10.0.0.0/8",)
    assert (config.timeout, config.retry_for) == (3.0, 60.0)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"http01_port": 0}, "port number"),
        ({"http01_port": "80"}, "port number"),
        ({"tlsalpn01_port": 70000}, "port number"),
        ({"dns_resolver": "dns.example:53"}, "IP:PORT"),
        ({"dns_resolver": "127.0.0.1"}, "IP:PORT"),
        ({"dns_resolver": 53}, "HOST:PORT"),
        ({"deny_networks": ["nope"]}, "CIDR"),
        ({"http_port": 80}, "unknown option"),
    ],
)
def test_bad_settings_are_configuration_errors(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ValidationConfig.from_table(table)


def test_flags_override_the_file() -> None:
    config = ValidationConfig.from_table({"http01_port": 8080, "dns_resolver": "10.0.0.1:53"})
    changed = config.with_overrides(http01_port=5002, dns_resolver="127.0.0.1:5353")
    assert changed.http01_port == 5002 and changed.dns_resolver == ("127.0.0.1", 5353)
    assert changed.tlsalpn01_port == 443
    assert config.with_overrides() == config
    assert parse_host_port("[fd00::1]:53") == ("fd00::1", 53)
