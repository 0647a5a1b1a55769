"""Bringing a data directory made by an older devid up to this version's layout.

Older versions had three intermediates and issued everything that was not an AK or an
account certificate from the Agent CA. This version adds the TLS CA and keeps the Agent
CA for device certificates only, so the first load with the CA password:

- creates the TLS CA (key encrypted with the password like the others, certificate
  signed by the root) as DIR/certs/tls_ca.crt and DIR/secrets/tls_ca.key;
- adds ``[ca.intermediates.tls]`` to devid.toml;
- moves every provisioner that issued other certificates from the Agent CA (JWK, X5C,
  ACME without device-attest-01), and every configured provisioner on the Account CA
  (which now issues only through devid's own accounts), to ``issuer = "tls"``.

devid.toml is edited line by line, so comments and everything else stay as they were;
the edit is checked by parsing the result, and only if that does not give exactly the
expected values is the file rewritten from its values (comments lost; logged). The
previous file is kept as ``devid.toml.bak-<UTC timestamp>``. Nothing that exists is
re-keyed: the root and the other intermediates, and every certificate they issued, stay
valid. It is idempotent, and concurrent processes serialise on a lock of devid.toml
(the loser finds the work done).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w
from cryptography import x509

from engine.acme.identifiers import DEVICE_ATTEST_01
from engine.errors import ConfigurationError
from engine.keys import KeyType, key_type_of

from .config import CONFIG_NAME, LEGACY_ISSUER_NAMES
from .pki import (
    create_intermediate,
    intermediate_files,
    load_certificate,
    load_private_key,
)

log = logging.getLogger("devid.upgrade")

NEW_ISSUER = "tls"
# What provisioner types issued from, in older versions, when their table names no issuer.
_OLD_DEFAULT_ISSUERS = {"jwk": "agent", "acme": "agent", "x5c": "account"}
_HEADER = re.compile(r"^\s*\[")
_INTERMEDIATE_HEADER = re.compile(r"^\s*\[\s*ca\s*\.\s*intermediates\s*\.[^\]]+\]\s*(#.*)?$")
_PROVISIONER_HEADER = re.compile(r"^\s*\[\[\s*provisioners\s*\]\]\s*(#.*)?$")
_NAME_KEY = re.compile(r"^\s*name\s*=")
_OLD_ISSUER = re.compile(r"""^(\s*issuer\s*=\s*)(["'])(?:agent|account)\2(\s*(#.*)?)$""")


def upgrade_data_dir(data_dir: Path, password: bytes) -> list[str]:
    """Bring *data_dir* to this version's layout; the changes made, one line each
    (logged too), or [] when it already is (the common case: one TOML parse)."""
    path = data_dir / CONFIG_NAME
    if not _needs_tls_ca(path):
        return []
    with _locked(path):
        if not _needs_tls_ca(path):  # another process did it while we waited
            return []
        return _add_tls_ca(data_dir, path, password)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return tomllib.loads(path.read_text())
    except (FileNotFoundError, tomllib.TOMLDecodeError):
        return None  # load_config reports these


def _needs_tls_ca(path: Path) -> bool:
    raw = _read(path)
    if raw is None:
        return False
    ca = raw.get("ca")
    intermediates = ca.get("intermediates") if isinstance(ca, Mapping) else None
    if not isinstance(intermediates, Mapping) or NEW_ISSUER in intermediates:
        return False
    # Only a complete older layout is upgraded; anything else load_config explains.
    return all(isinstance(intermediates.get(name), Mapping) for name in LEGACY_ISSUER_NAMES)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("rb") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _resolve(data_dir: Path, value: Any, what: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{data_dir / CONFIG_NAME}: {what} must be a path")
    path = Path(value)
    return path if path.is_absolute() else data_dir / path


def _moves(provisioners: Any) -> tuple[list[int], list[str]]:
    """Which [[provisioners]] tables (by index) move to the TLS CA; and the names of
    those that stay on the Agent CA although they offer more than device-attest-01.

    Account certificates come only from devid's accounts (``devid account add``), whose
    provisioners are not in devid.toml: a configured one on the Account CA moves too."""
    moved: list[int] = []
    mixed: list[str] = []
    if not isinstance(provisioners, list):
        return moved, mixed
    for index, table in enumerate(provisioners):
        if not isinstance(table, Mapping):
            continue
        kind = str(table.get("type", "")).lower()
        issuer = table.get("issuer", _OLD_DEFAULT_ISSUERS.get(kind))
        if issuer == "account":
            moved.append(index)
            continue
        if issuer != "agent":
            continue
        challenges = table.get("challenges", []) if kind == "acme" else []
        if kind == "acme" and "challenges" not in table:
            challenges = ["http-01", "dns-01", "tls-alpn-01"]  # the ACME default
        if isinstance(challenges, list) and DEVICE_ATTEST_01 in challenges:
            if set(challenges) != {DEVICE_ATTEST_01}:
                mixed.append(str(table.get("name")))
            continue
        moved.append(index)
    return moved, mixed


def _tls_ca(
    data_dir: Path, raw: Mapping[str, Any], password: bytes
) -> tuple[Path, Path, list[str]]:
    """The TLS CA's files, made now (or kept from an interrupted upgrade if they are sound)."""
    ca = raw["ca"]
    root_table = ca.get("root", {})
    root_path = _resolve(data_dir, root_table.get("certificate"), "ca.root.certificate")
    root = load_certificate(root_path)
    root_key = load_private_key(_resolve(data_dir, root_table.get("key"), "ca.root.key"), password)
    if root_key.public_key() != root.public_key():
        raise ConfigurationError("the root key does not belong to the root certificate")
    relative = intermediate_files(NEW_ISSUER)
    cert_path, key_path = data_dir / relative.certificate, data_dir / relative.key
    if cert_path.exists() or key_path.exists():
        if _sound(cert_path, key_path, root, password):
            return relative.certificate, relative.key, [f"kept the TLS CA in {cert_path}"]
        raise ConfigurationError(
            f"{cert_path} or {key_path} exists but is not a TLS CA of this root with a key"
            " this password opens; move them away and start again"
        )
    text = ca.get("key_type")
    key_type = KeyType.parse(text) if isinstance(text, str) else key_type_of(root.public_key())
    create_intermediate(
        data_dir, NEW_ISSUER, str(ca.get("name", "devid")), root, root_key, password, key_type
    )
    return (
        relative.certificate,
        relative.key,
        [f"created the TLS CA {cert_path} ({key_type.value}, signed by the root)"],
    )


def _sound(cert_path: Path, key_path: Path, root: x509.Certificate, password: bytes) -> bool:
    try:
        cert = load_certificate(cert_path)
        key = load_private_key(key_path, password)
        cert.verify_directly_issued_by(root)
    except Exception:  # any flaw means: not ours to reuse
        return False
    return key.public_key() == cert.public_key()


def _edit_text(text: str, table: dict[str, str], moved: list[int]) -> str:
    """The line-by-line edit: the new intermediate after the last one, issuers changed."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    starts = [i for i, line in enumerate(lines) if _PROVISIONER_HEADER.match(line)]
    replaced: dict[int, str] = {}
    inserted: dict[int, str] = {}
    for index in moved:
        if index >= len(starts):
            raise ValueError("provisioner tables are not all [[provisioners]] headers")
        start = starts[index]
        end = next((i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])), len(lines))
        for i in range(start + 1, end):
            match = _OLD_ISSUER.match(lines[i].rstrip("\n"))
            if match:
                prefix, quote, rest = match.group(1), match.group(2), match.group(3)
                replaced[i] = f"{prefix}{quote}{NEW_ISSUER}{quote}{rest}\n"
                break
        else:  # it relied on the default: say it after its name
            named = next((i for i in range(start + 1, end) if _NAME_KEY.match(lines[i])), start)
            inserted[named] = f'issuer = "{NEW_ISSUER}"\n'
    headers = [i for i, line in enumerate(lines) if _INTERMEDIATE_HEADER.match(line)]
    if not headers:
        raise ValueError("the intermediates are not written as [ca.intermediates.NAME] tables")
    after = next(
        (i for i in range(headers[-1] + 1, len(lines)) if _HEADER.match(lines[i])), len(lines)
    )
    block = (
        f"[ca.intermediates.{NEW_ISSUER}]\n"
        f"certificate = {tomli_w.dumps({'v': table['certificate']})[4:]}"
        f"key = {tomli_w.dumps({'v': table['key']})[4:]}"
    )
    out: list[str] = []
    for i, line in enumerate(lines):
        if i == after:
            if out and out[-1].strip():
                out.append("\n")
            out.append(block)
            out.append("\n")
        out.append(replaced.get(i, line))
        if i in inserted:
            out.append(inserted[i])
    if after == len(lines):
        if out and out[-1].strip():
            out.append("\n")
        out.append(block)
    return "".join(out)


def _replace(path: Path, backup: Path, text: str) -> None:
    """Keep *path* as *backup*, then put *text* in its place in one rename."""
    shutil.copy2(path, backup)
    temporary = path.with_name(f".{path.name}.upgrade")
    with temporary.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    shutil.copymode(path, temporary)
    os.replace(temporary, path)


def _add_tls_ca(data_dir: Path, path: Path, password: bytes) -> list[str]:
    text = path.read_text()
    raw = tomllib.loads(text)
    moved, mixed = _moves(raw.get("provisioners"))
    cert, key, changes = _tls_ca(data_dir, raw, password)
    entry = {"certificate": str(cert), "key": str(key)}
    expected = tomllib.loads(text)
    expected["ca"]["intermediates"][NEW_ISSUER] = entry
    for index in moved:
        expected["provisioners"][index]["issuer"] = NEW_ISSUER
    try:
        new_text = _edit_text(text, entry, moved)
        kept_comments = tomllib.loads(new_text) == expected
    except (ValueError, tomllib.TOMLDecodeError):
        kept_comments = False
    if not kept_comments:
        new_text = "# devid configuration; see README.md and `devid --help`.\n" + tomli_w.dumps(
            expected
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    backup = path.with_name(f"{path.name}.bak-{stamp}")
    try:
        _replace(path, backup, new_text)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot update {path} to add the TLS CA ({exc.strerror or exc}); devid needs"
            " to write it once after this upgrade (docs/ca.md)"
        ) from None
    changes.append(f"added [ca.intermediates.{NEW_ISSUER}] to {path} (previous file: {backup})")
    if not kept_comments:
        changes.append(
            f"rewrote {path} from its values: its layout could not be edited in place,"
            " so its comments are only in the backup"
        )
    for index in moved:
        table = raw["provisioners"][index]
        kind = str(table.get("type", "")).lower()
        was = table.get("issuer", _OLD_DEFAULT_ISSUERS.get(kind))
        title = "Account CA" if was == "account" else "Agent CA"
        changes.append(
            f"provisioner {table.get('name')!r} ({table.get('type')}) moved from the {title}"
            f' to the TLS CA (issuer = "{NEW_ISSUER}")'
        )
    for name in mixed:
        changes.append(
            f"provisioner {name!r} stays on the Agent CA but offers more than device-attest-01;"
            " devid refuses it until it is split in two (see the error that follows)"
        )
    for change in changes:
        log.warning("upgrade: %s", change)
    return changes
