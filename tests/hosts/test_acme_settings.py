"""ACME on the host: [acme] settings, `devid serve --acme-*` flags, and `devid init`."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from engine.errors import ConfigurationError
from hosts.cli import build_parser
from hosts.cli.server_commands import _configure_acme
from hosts.core.authority import Authority
from hosts.validation import ValidationConfig
from hosts.validation.config import parse_host_port
from plugins.acme import ACMEProvisioner
from tests.conftest import CA

from .helpers import clean_env, run_devid


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


def test_serve_takes_the_acme_flags(authority: Authority) -> None:
    args = build_parser().parse_args(
        [
            "serve",
            "--acme-http01-port",
            "5002",
            "--acme-tlsalpn01-port",
            "5001",
            "--acme-dns-resolver",
            "127.0.0.1:5353",
        ]
    )
    _configure_acme(
        authority,
        http01_port=args.acme_http01_port,
        tlsalpn01_port=args.acme_tlsalpn01_port,
        dns_resolver=args.acme_dns_resolver,
    )
    config = authority.acme.config
    assert (config.http01_port, config.tlsalpn01_port) == (5002, 5001)
    assert config.dns_resolver == ("127.0.0.1", 5353)


def test_serve_refuses_a_bad_resolver_before_listening(ca: CA, tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_bytes(ca.password)
    result = run_devid(
        "serve",
        "--data",
        ca.data_dir,
        "--password-file",
        password,
        "--acme-dns-resolver",
        "resolver.example:53",
        env=clean_env(),
        check=False,
    )
    assert result.returncode == 2
    assert "--acme-dns-resolver" in result.stderr


def test_init_creates_the_acme_and_devices_provisioners(ca: CA) -> None:
    config = tomllib.loads((ca.data_dir / "devid.toml").read_text())
    tables = {p["name"]: p for p in config["provisioners"]}
    assert tables["acme"]["type"] == "ACME"
    assert tables["acme"]["challenges"] == ["http-01", "dns-01", "tls-alpn-01"]
    assert tables["acme"]["allowed_domains"] == ["*"]
    assert tables["acme"]["issuer"] == "tls"  # the Agent CA issues device certificates only
    devices = tables["devices"]
    assert devices["challenges"] == ["device-attest-01"]
    assert devices["attestation_formats"] == ["tpm"]  # registered devices: EKs only
    assert devices["issuer"] == "agent"


def test_a_data_directory_without_acme_provisioners_keeps_working(ca: CA) -> None:
    path = ca.data_dir / "devid.toml"
    config = tomllib.loads(path.read_text())
    config["provisioners"] = [p for p in config["provisioners"] if p["type"] != "ACME"]
    path.write_text(tomli_w.dumps(config))
    authority = Authority.load(ca.data_dir, ca.password)
    try:
        assert not any(isinstance(p, ACMEProvisioner) for p in authority.provisioners.values())
        assert authority.acme.config == ValidationConfig()
    finally:
        authority.close()


def test_devid_plugins_lists_the_acme_type(ca: CA) -> None:
    result = run_devid("plugins", "--data", ca.data_dir)
    assert "provisioner types:   ACME" in result.stdout
