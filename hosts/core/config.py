"""``DIR/devid.toml``: reading it into typed settings, with clear errors."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import platformdirs

from engine.errors import ConfigurationError

CONFIG_NAME = "devid.toml"
# The intermediates under the root, each vouching for one thing only (docs/ca.md):
# attestation: TPM attestation keys; agent: devices (device-attest-01); account:
# Wi-Fi/VPN accounts of devices; tls: everything else (ACME http-01/dns-01/tls-alpn-01,
# JWK tokens, the server's own certificate, admin client certificates).
ISSUER_NAMES = ("attestation", "agent", "account", "tls")
# The intermediates a data directory made before the TLS CA existed has.
LEGACY_ISSUER_NAMES = ("attestation", "agent", "account")
DEFAULT_LISTEN = "127.0.0.1:8443"


def default_data_dir() -> Path:
    """``$DEVID_DATA``, else the per-user data directory."""
    env = os.environ.get("DEVID_DATA")
    if env:
        return Path(env)
    return Path(platformdirs.user_data_dir("devid", appauthor=False))


@attrs.frozen
class KeyPair:
    certificate: Path
    key: Path


@attrs.frozen
class ServerConfig:
    """``[server]``: where the CA listens, and the limits that keep one client from
    holding up the others (docs/api.md, "Limits")."""

    listen: str = DEFAULT_LISTEN
    dns_names: tuple[str, ...] = ("localhost", "127.0.0.1")
    max_body_bytes: int = 64 * 1024
    # Seconds a connection may stay open without a request in progress (also before
    # its first request, TLS handshake included).
    idle_timeout: float = 15.0
    # Open connections per server process; more are closed before their TLS handshake.
    max_connections: int = 1000
    # Per client address: requests that need no credential (and ones refused for a bad
    # credential) refill at this rate, up to burst at once; 0 turns the limit off.
    rate_limit_per_second: float = 20.0
    rate_limit_burst: int = 200


def _number(
    table: Mapping[str, Any], key: str, default: float, where: str, *, minimum: float
) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ConfigurationError(f"{where}: server.{key} must be a number, not {value!r}")
    if value < minimum:
        raise ConfigurationError(f"{where}: server.{key} must be at least {minimum:g}")
    return float(value)


def _integer(table: Mapping[str, Any], key: str, default: int, where: str, *, minimum: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{where}: server.{key} must be a whole number, not {value!r}")
    if value < minimum:
        raise ConfigurationError(f"{where}: server.{key} must be at least {minimum}")
    return value


def _server_config(server: Mapping[str, Any], where: str) -> ServerConfig:
    listen = server.get("listen", DEFAULT_LISTEN)
    if not isinstance(listen, str):
        raise ConfigurationError(f"{where}: server.listen must be a string HOST:PORT")
    parse_listen(listen)
    dns_names = server.get("dns_names", ["localhost", "127.0.0.1"])
    if not isinstance(dns_names, list) or not all(isinstance(n, str) for n in dns_names):
        raise ConfigurationError(f"{where}: server.dns_names must be a list of strings")
    defaults = ServerConfig()
    idle_timeout = _number(server, "idle_timeout", defaults.idle_timeout, where, minimum=0.1)
    if idle_timeout > 3600:
        raise ConfigurationError(f"{where}: server.idle_timeout must be at most 3600 (seconds)")
    rate = _number(
        server, "rate_limit_per_second", defaults.rate_limit_per_second, where, minimum=0
    )
    burst = _integer(server, "rate_limit_burst", defaults.rate_limit_burst, where, minimum=0)
    if rate > 0 and burst < 1:
        raise ConfigurationError(
            f"{where}: server.rate_limit_burst must be at least 1 while"
            " server.rate_limit_per_second is above 0 (0 turns the rate limit off)"
        )
    return ServerConfig(
        listen=listen,
        dns_names=tuple(dns_names),
        max_body_bytes=_integer(
            server, "max_body_bytes", defaults.max_body_bytes, where, minimum=1024
        ),
        idle_timeout=idle_timeout,
        max_connections=_integer(
            server, "max_connections", defaults.max_connections, where, minimum=1
        ),
        rate_limit_per_second=rate,
        rate_limit_burst=burst,
    )


@attrs.frozen
class AdminConfig:
    """Who may use the admin API: bearer tokens (by SHA-256), or client certificates
    issued by ``devid admin certificate`` (recorded in the store; see check_admin).

    ``client_subjects`` is what older versions matched client certificates by; it is
    still read, so such a config loads, but it grants nothing (Authority.load warns).
    """

    token_sha256: tuple[str, ...] = ()
    client_subjects: tuple[str, ...] = ()


@attrs.frozen
class StoreConfig:
    path: Path
    synchronous: str = "full"


@attrs.frozen
class Config:
    data_dir: Path
    name: str
    root: KeyPair
    issuers: Mapping[str, KeyPair]
    server: ServerConfig
    store: StoreConfig
    plugins_disabled: tuple[str, ...]
    provisioners: tuple[Mapping[str, Any], ...]
    admin: AdminConfig = AdminConfig()
    attestation: Mapping[str, Any] = attrs.field(factory=dict)
    inventory: Mapping[str, Any] = attrs.field(factory=dict)
    # [acme]: how ACME challenges are validated; see hosts/validation/config.py
    acme: Mapping[str, Any] = attrs.field(factory=dict)


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not host:
        raise ConfigurationError(f"listen address {listen!r} must be HOST:PORT")
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        raise ConfigurationError(f"listen address {listen!r} has a bad port") from None
    if not 0 <= number <= 65535:
        raise ConfigurationError(f"listen port {number} is out of range")
    return host, number


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where}: [{key}] must be a table")
    return value


def _path(data_dir: Path, value: Any, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{where} must be a path")
    path = Path(value)
    return path if path.is_absolute() else data_dir / path


def load_config(data_dir: Path) -> Config:
    path = data_dir / CONFIG_NAME
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigurationError(
            f"{path} does not exist; run `devid init --data {data_dir}` first"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None
    where = str(path)
    ca = _table(raw, "ca", where)
    root = _table(ca, "root", where + " [ca]")
    issuers: dict[str, KeyPair] = {}
    intermediates = _table(ca, "intermediates", where + " [ca]")
    for name in ISSUER_NAMES:
        entry = _table(intermediates, name, where + " [ca.intermediates]")
        if not entry and name not in LEGACY_ISSUER_NAMES:
            raise ConfigurationError(
                f"{where}: [ca.intermediates.{name}] is missing: this data directory was made"
                f" by an older devid; `devid serve` (or any command given the CA password)"
                f" adds the {name} CA to it"
            )
        if not entry:
            raise ConfigurationError(f"{where}: [ca.intermediates.{name}] is missing")
        issuers[name] = KeyPair(
            _path(data_dir, entry.get("certificate"), f"{where} [ca.intermediates.{name}]"),
            _path(data_dir, entry.get("key"), f"{where} [ca.intermediates.{name}]"),
        )
    server = _server_config(_table(raw, "server", where), where)
    store = _table(raw, "store", where)
    sync = store.get("synchronous", "full")
    if sync not in ("full", "normal"):
        raise ConfigurationError(f"{where}: store.synchronous must be 'full' or 'normal'")
    plugins = _table(raw, "plugins", where)
    disabled = plugins.get("disabled", [])
    if not isinstance(disabled, list):
        raise ConfigurationError(f"{where}: plugins.disabled must be a list")
    admin = _table(raw, "admin", where)
    tokens = admin.get("token_sha256", [])
    subjects = admin.get("client_subjects", [])
    if not isinstance(tokens, list) or not all(isinstance(t, str) and len(t) == 64 for t in tokens):
        raise ConfigurationError(f"{where}: admin.token_sha256 must be a list of hex SHA-256s")
    if not isinstance(subjects, list) or not all(isinstance(t, str) for t in subjects):
        raise ConfigurationError(f"{where}: admin.client_subjects must be a list of strings")
    provisioners = raw.get("provisioners", [])
    if not isinstance(provisioners, list) or not all(isinstance(p, Mapping) for p in provisioners):
        raise ConfigurationError(f"{where}: [[provisioners]] must be tables")
    return Config(
        data_dir=data_dir,
        name=str(ca.get("name", "devid")),
        root=KeyPair(
            _path(data_dir, root.get("certificate"), f"{where} [ca.root]"),
            _path(data_dir, root.get("key"), f"{where} [ca.root]"),
        ),
        issuers=issuers,
        server=server,
        store=StoreConfig(
            path=_path(data_dir, store.get("path", "db/devid.sqlite"), where), synchronous=sync
        ),
        plugins_disabled=tuple(str(d) for d in disabled),
        provisioners=tuple(provisioners),
        admin=AdminConfig(tuple(t.lower() for t in tokens), tuple(subjects)),
        attestation=_table(raw, "attestation", where),
        inventory=_table(raw, "inventory", where),
        acme=_table(raw, "acme", where),
    )
