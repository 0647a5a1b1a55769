"""The passphrase that protects the CA's private keys at rest."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import attrs

from engine.errors import ConfigurationError

PASSWORD_ENV = "DEVID_PASSWORD"
GENERATED_PASSWORD = Path("secrets") / "password"


@attrs.frozen
class Password:
    value: bytes
    source: str


def _read_password_file(path: Path) -> bytes:
    try:
        value = path.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise ConfigurationError(f"cannot read password file {path}: {exc.strerror}") from None
    if not value:
        raise ConfigurationError(f"password file {path} is empty")
    return value


def resolve_password(data_dir: Path, password_file: Path | None) -> Password | None:
    """--password-file, else $DEVID_PASSWORD, else DIR/secrets/password, else None."""
    if password_file is not None:
        return Password(_read_password_file(password_file), f"file {password_file}")
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return Password(env.encode(), f"${PASSWORD_ENV}")
    generated = data_dir / GENERATED_PASSWORD
    if generated.exists():
        return Password(_read_password_file(generated), f"file {generated}")
    return None


def require_password(data_dir: Path, password_file: Path | None) -> Password:
    found = resolve_password(data_dir, password_file)
    if found is None:
        raise ConfigurationError(
            f"the CA keys in {data_dir} are encrypted: give the password with"
            f" --password-file FILE or ${PASSWORD_ENV}"
        )
    return found


def generate_password(data_dir: Path) -> Password:
    """Create DIR/secrets/password (mode 0600) holding a fresh random passphrase."""
    path = data_dir / GENERATED_PASSWORD
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, stat.S_IRWXU)
    value = secrets.token_urlsafe(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(value + b"\n")
    return Password(value, f"file {path}")
