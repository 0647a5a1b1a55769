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
ISSUER_NAMES = ("attestation", "agent", "account")
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
    listen: str = DEFAULT_LISTEN
    dns_names: tuple[str, ...] = ("localhost", "127.0.0.1")
    max_body_bytes: int = 64 * 1024


@attrs.frozen
class AdminConfig:
    """Who may use the admin API: bearer tokens (by SHA-256) or client certificates."""

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
    # [acme]: how ACME challenges are validated; see hosts/core/acme_settings.py
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
        if not entry:
            raise ConfigurationError(f"{where}: [ca.intermediates.{name}] is missing")
        issuers[name] = KeyPair(
            _path(data_dir, entry.get("certificate"), f"{where} [ca.intermediates.{name}]"),
            _path(data_dir, entry.get("key"), f"{where} [ca.intermediates.{name}]"),
        )
    server = _table(raw, "server", where)
    listen = server.get("listen", DEFAULT_LISTEN)
    parse_listen(listen)
    dns_names = server.get("dns_names", ["localhost", "127.0.0.1"])
    if not isinstance(dns_names, list) or not all(isinstance(n, str) for n in dns_names):
        raise ConfigurationError(f"{where}: server.dns_names must be a list of strings")
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
        server=ServerConfig(
            listen=listen,
            dns_names=tuple(dns_names),
            max_body_bytes=int(server.get("max_body_bytes", 64 * 1024)),
        ),
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
