"""ACME on the host: the `devid serve --acme-*` flags, the ACME provisioners of `devid init`
and a data directory without them (reading [acme] itself: tests/hosts/validation/test_config.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import tomli_w

from hosts.cli import build_parser
from hosts.cli.server_commands import _configure_acme
from hosts.core.authority import Authority
from hosts.validation import ValidationConfig
from plugins.acme import ACMEProvisioner
from tests.conftest import CA

from .helpers import clean_env, run_devid


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
