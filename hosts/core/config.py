"""``DIR/devid.toml``: reading it into typed settings, with clear errors."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Collection, Iterator, Mapping
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
    # A second, plain-HTTP listener that serves SCEP (/scep/...) and nothing else, for
    # network gear and MDM clients that speak SCEP over HTTP only (None: none).
    scep_http_listen: str | None = None


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
    try:
        parse_listen(listen)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: server.listen: {exc}") from None
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
    scep_http_listen = server.get("scep_http_listen")
    if scep_http_listen is not None:
        if not isinstance(scep_http_listen, str):
            raise ConfigurationError(f"{where}: server.scep_http_listen must be a string HOST:PORT")
        try:
            parse_listen(scep_http_listen)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}: server.scep_http_listen: {exc}") from None
        if scep_http_listen == listen:
            raise ConfigurationError(
                f"{where}: server.scep_http_listen must differ from server.listen (HTTPS)"
            )
    return ServerConfig(
        scep_http_listen=scep_http_listen,
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


# --- every table and key devid.toml may hold (docs/config.md) -------------------------------

#: A key devid reads a value from.
VALUE = "value"
#: A table whose keys are checked elsewhere: each ``[[provisioners]]`` table by its
#: provisioner type, ``[inventory]`` by the inventory-source plugins that read it.
OPEN = "open"

_KEY_PAIR: Mapping[str, Any] = {"certificate": VALUE, "key": VALUE}

#: The tables and keys of devid.toml; anything else is refused at load with its line.
SCHEMA: Mapping[str, Any] = {
    "ca": {
        "name": VALUE,
        "key_type": VALUE,
        "root": _KEY_PAIR,
        "intermediates": {name: _KEY_PAIR for name in ISSUER_NAMES},
    },
    "server": {
        "listen": VALUE,
        "dns_names": VALUE,
        "max_body_bytes": VALUE,
        "idle_timeout": VALUE,
        "max_connections": VALUE,
        "rate_limit_per_second": VALUE,
        "rate_limit_burst": VALUE,
        "scep_http_listen": VALUE,
    },
    "store": {"path": VALUE, "synchronous": VALUE},
    "plugins": {"disabled": VALUE},
    "admin": {"token_sha256": VALUE, "client_subjects": VALUE},
    # Read by hosts/service/attestation.py (load_attestation_policy).
    "attestation": {
        "bundled_ek_roots": VALUE,
        "ek_roots": VALUE,
        "ek_roots_dir": VALUE,
        "unverifiable_ek_certificate": VALUE,
        "require_ek_certificate": VALUE,
        "challenge_lifetime": VALUE,
        "ak_certificate_lifetime": VALUE,
    },
    # Read by hosts/validation/config.py (ValidationConfig.from_table).
    "acme": {
        "http01_port": VALUE,
        "tlsalpn01_port": VALUE,
        "dns_resolver": VALUE,
        "allow_private": VALUE,
        "deny_networks": VALUE,
        "validation_timeout": VALUE,
        "validation_retry_for": VALUE,
    },
    "inventory": OPEN,
    "provisioners": OPEN,
}

#: A place in a TOML document: table and key names, and the index of an element of an
#: array of tables (``("provisioners", 0, "durations")``).
KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _skip_space(line: str, i: int) -> int:
    while i < len(line) and line[i] in " \t\r":
        i += 1
    return i


def _basic_string_end(line: str, i: int) -> int:
    """Just past the ``"..."`` string that starts at *i*."""
    j = i + 1
    while j < len(line):
        if line[j] == "\\":
            j += 2
        elif line[j] == '"':
            return j + 1
        else:
            j += 1
    return len(line)


def _dotted_key(line: str, i: int) -> tuple[list[str], int]:
    """The parts of the (dotted, maybe quoted) key at *i*, and where it ends."""
    parts: list[str] = []
    while True:
        i = _skip_space(line, i)
        if line.startswith('"', i):
            end = _basic_string_end(line, i)
            parts.append(str(tomllib.loads("k = " + line[i:end])["k"]))
        elif line.startswith("'", i):
            end = line.find("'", i + 1) + 1 or len(line)
            parts.append(line[i + 1 : end - 1])
        else:
            match = _BARE_KEY.match(line, i)
            if match is None:
                return parts, i
            end = match.end()
            parts.append(match.group())
        i = _skip_space(line, end)
        if not line.startswith(".", i):
            return parts, i
        i += 1


class KeyLines:
    """The line of every table header and key in a TOML text (tomllib gives no positions).

    A line scanner, enough for devid.toml as devid writes it and as operators edit it:
    ``[table]`` and ``[[array]]`` headers, dotted and quoted keys, and values that span
    lines (arrays, multi-line strings) skipped. A table made implicitly (``[ca]`` by
    ``[ca.root]``, ``server`` by ``server.listen = ...``) has the line that first names it.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[KeyPath, int] = {}
        self._arrays: dict[KeyPath, int] = {}
        self._string: str | None = None  # the delimiter of an open multi-line string
        self._depth = 0  # open brackets of a value
        table: KeyPath = ()
        for number, line in enumerate(text.split("\n"), start=1):
            if self._string is not None or self._depth > 0:
                self._skip_value(line, 0)
                continue
            i = _skip_space(line, 0)
            if line.startswith("[[", i):
                parts, _ = _dotted_key(line, i + 2)
                if not parts:
                    continue
                array = (*self._resolve(parts[:-1]), parts[-1])
                self._arrays[array] = self._arrays.get(array, -1) + 1
                table = (*array, self._arrays[array])
                self._note(table, number)
            elif line.startswith("[", i):
                parts, _ = _dotted_key(line, i + 1)
                if parts:
                    table = self._resolve(parts)
                    self._note(table, number)
            elif not line.startswith("#", i):
                parts, j = _dotted_key(line, i)
                if parts:
                    self._note((*table, *parts), number)
                    j = _skip_space(line, j)
                    if line.startswith("=", j):
                        self._skip_value(line, j + 1)

    def find(self, key: KeyPath) -> int | None:
        """The line of *key*, else of the nearest table above it that is found."""
        while key:
            if key in self._lines:
                return self._lines[key]
            key = key[:-1]
        return None

    def _resolve(self, parts: list[str]) -> KeyPath:
        """*parts* of a header, with the current element of each array of tables in it."""
        path: KeyPath = ()
        for part in parts:
            path = (*path, part)
            if path in self._arrays:
                path = (*path, self._arrays[path])
        return path

    def _note(self, key: KeyPath, number: int) -> None:
        self._lines[key] = number
        for end in range(1, len(key)):
            self._lines.setdefault(key[:end], number)

    def _skip_value(self, line: str, i: int) -> None:
        """Follow a value through *line*: strings, comments and brackets."""
        while i < len(line):
            if self._string is not None:
                if line.startswith(self._string, i):
                    i += 3
                    while i < len(line) and line[i] == self._string[0]:
                        i += 1  # up to two quotes before the delimiter belong to the string
                    self._string = None
                else:
                    i += 2 if line[i] == "\\" and self._string == '"""' else 1
                continue
            char = line[i]
            if char == "#":
                return
            if line.startswith('"""', i) or line.startswith("'''", i):
                self._string = line[i : i + 3]
                i += 3
            elif char == '"':
                i = _basic_string_end(line, i)
            elif char == "'":
                i = line.find("'", i + 1) + 1 or len(line)
            else:
                self._depth += char in "[{"
                self._depth -= char in "]}"
                i += 1


@attrs.frozen
class Problem:
    """One thing wrong in a configuration file, and its line where known."""

    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = str(self.path) if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"


class ConfigProblems(ConfigurationError):
    """devid.toml holds tables or keys devid does not know (each a :class:`Problem`)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _table_name(key: KeyPath) -> str:
    return "[" + ".".join(str(k) for k in key) + "]"


def _unknown_message(prefix: KeyPath, name: str, value: Any, schema: Mapping[str, Any]) -> str:
    def shown(candidate: str) -> str:
        is_table = isinstance(schema[candidate], Mapping) or schema[candidate] is OPEN
        return _table_name((*prefix, candidate)) if is_table else repr(candidate)

    if isinstance(value, Mapping):
        message = f"unknown table {_table_name((*prefix, name))}"
    else:
        message = f"unknown key {name!r} " + (f"in {_table_name(prefix)}" if prefix else "")
        message = message.rstrip() + ("" if prefix else " at the top level")
    close = difflib.get_close_matches(name, list(schema), n=1)
    if close:
        return f"{message}; did you mean {shown(close[0])}?"
    return f"{message} (known: {', '.join(shown(c) for c in schema)})"


def _unknown(
    table: Mapping[str, Any], schema: Mapping[str, Any], prefix: KeyPath
) -> Iterator[tuple[KeyPath, str]]:
    for name, value in table.items():
        expected = schema.get(name)
        if expected is None:
            yield (*prefix, name), _unknown_message(prefix, name, value, schema)
        elif isinstance(expected, Mapping) and isinstance(value, Mapping):
            yield from _unknown(value, expected, (*prefix, name))


def unknown_names(raw: Mapping[str, Any], text: str, path: Path) -> list[Problem]:
    """Every table and key of *raw* (parsed from *text*, the file at *path*) that is not
    in :data:`SCHEMA`, each with its line and the nearest known name."""
    lines = KeyLines(text)
    found = [Problem(path, lines.find(key), message) for key, message in _unknown(raw, SCHEMA, ())]
    return sorted(found, key=lambda problem: problem.line or 0)


def installed_plugins() -> list[str]:
    """The names of the installed devid plugins (the ``devid`` entry-point group)."""
    from importlib.metadata import entry_points

    from plugins.manager import ENTRY_POINT_GROUP

    return sorted({entry.name for entry in entry_points(group=ENTRY_POINT_GROUP)})


def check_disabled_plugins(config: Config, installed: Collection[str]) -> None:
    """Refuse a name in ``[plugins] disabled`` that no installed plugin has (a typo would
    otherwise leave the plugin it meant enabled)."""
    unknown = [name for name in config.plugins_disabled if name not in installed]
    if not unknown:
        return
    path = config.data_dir / CONFIG_NAME
    try:
        line = KeyLines(path.read_text()).find(("plugins", "disabled"))
    except OSError:
        line = None
    problems = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(installed), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        problems.append(
            Problem(
                path,
                line,
                f"[plugins] disabled names {name!r}, which is not an installed plugin;"
                f" {hint}installed: {', '.join(sorted(installed)) or 'none'}",
            )
        )
    raise ConfigProblems(problems)


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


def _table(data: Mapping[str, Any], key: str, where: str, within: str = "") -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where}: [{within}{key}] must be a table")
    return value


def _path(data_dir: Path, value: Any, where: str, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{where}: {key} must be a path")
    path = Path(value)
    return path if path.is_absolute() else data_dir / path


def load_config(data_dir: Path) -> Config:
    path = data_dir / CONFIG_NAME
    try:
        text = path.read_text()
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigurationError(
            f"no CA in {data_dir} ({path} does not exist): point devid at your CA with"
            f" --data DIR or DEVID_DATA=DIR, or create a new one with"
            f" `devid init --data {data_dir}`"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None
    problems = unknown_names(raw, text, path)
    if problems:
        raise ConfigProblems(problems)
    try:
        return _config(data_dir, raw, str(path))
    except ConfigurationError as exc:
        raise ConfigurationError(_with_line(str(exc), str(path), KeyLines(text))) from None


_NAMED = re.compile(r"\[{1,2}([\w.-]+)\]{1,2}|([\w-]+(?:\.[\w-]+)+)")


def _with_line(message: str, where: str, lines: KeyLines) -> str:
    """*message* (``WHERE: table.key ...`` or ``WHERE: [table] ...``) with the line of the
    table or key it names first."""
    rest = message.removeprefix(f"{where}: ")
    named = _NAMED.match(rest)
    if rest == message or named is None:
        return message
    line = lines.find(tuple((named.group(1) or named.group(2)).split(".")))
    return message if line is None else f"{where}:{line}: {rest}"


def _config(data_dir: Path, raw: Mapping[str, Any], where: str) -> Config:
    ca = _table(raw, "ca", where)
    root = _table(ca, "root", where, "ca.")
    issuers: dict[str, KeyPair] = {}
    intermediates = _table(ca, "intermediates", where, "ca.")
    for name in ISSUER_NAMES:
        entry = _table(intermediates, name, where, "ca.intermediates.")
        if not entry and name not in LEGACY_ISSUER_NAMES:
            raise ConfigurationError(
                f"{where}: [ca.intermediates.{name}] is missing: this data directory was made"
                f" by an older devid; `devid serve` (or any command given the CA password)"
                f" adds the {name} CA to it"
            )
        if not entry:
            raise ConfigurationError(f"{where}: [ca.intermediates.{name}] is missing")
        issuers[name] = KeyPair(
            _path(
                data_dir, entry.get("certificate"), where, f"ca.intermediates.{name}.certificate"
            ),
            _path(data_dir, entry.get("key"), where, f"ca.intermediates.{name}.key"),
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
            _path(data_dir, root.get("certificate"), where, "ca.root.certificate"),
            _path(data_dir, root.get("key"), where, "ca.root.key"),
        ),
        issuers=issuers,
        server=server,
        store=StoreConfig(
            path=_path(data_dir, store.get("path", "db/devid.sqlite"), where, "store.path"),
            synchronous=sync,
        ),
        plugins_disabled=tuple(str(d) for d in disabled),
        provisioners=tuple(provisioners),
        admin=AdminConfig(tuple(t.lower() for t in tokens), tuple(subjects)),
        attestation=_table(raw, "attestation", where),
        inventory=_table(raw, "inventory", where),
        acme=_table(raw, "acme", where),
    )
