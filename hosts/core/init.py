"""``devid init``: a new data directory with a CA hierarchy, config and database."""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import attrs
import tomli_w

from engine.errors import ConfigurationError
from engine.keys import KeyType
from hosts.service.attestation import DEFAULT_EK_ROOTS_DIR
from hosts.store import open_sqlite
from plugins.manager import PluginManager
from plugins.provisioner import ProvisionerEnvironment

from .config import CONFIG_NAME, DEFAULT_LISTEN, ISSUER_NAMES
from .pki import create_hierarchy, fingerprint, write_private
from .secrets import Password, generate_password

DEFAULT_PROVISIONER = "admin"
# ACME: `acme` for servers (http-01, dns-01, tls-alpn-01; TLS CA), `devices` for TPM-attested
# devices (device-attest-01 only; the Agent CA, which issues nothing else).
ACME_PROVISIONER = "acme"
DEVICES_PROVISIONER = "devices"
DEVICES_OPTIONS: dict[str, Any] = {
    "issuer": "agent",
    "challenges": ["device-attest-01"],
    # Registered devices only: the inventory holds TPM devices by EK, so `apple` and
    # `step` (no EK) belong on a provisioner of their own without require_inventory.
    "attestation_formats": ["tpm"],
    "allowed_domains": [],
    "require_inventory": True,
    "template": {"ekus": ["clientAuth"]},
}


@attrs.frozen
class InitResult:
    data_dir: Path
    root_fingerprint: str
    root_path: Path
    generated_password: Path | None
    provisioner: str
    admin_token: Path


def is_initialised(data_dir: Path) -> bool:
    return (data_dir / CONFIG_NAME).exists()


def init_data_dir(
    data_dir: Path,
    password: Password | None,
    *,
    name: str = "devid",
    key_type: KeyType = KeyType.P256,
    listen: str = DEFAULT_LISTEN,
    dns_names: tuple[str, ...] = ("localhost", "127.0.0.1"),
    provisioner: str = DEFAULT_PROVISIONER,
    plugins: PluginManager | None = None,
) -> InitResult:
    """Create everything under *data_dir*; refuses to touch an initialised one."""
    if is_initialised(data_dir):
        raise ConfigurationError(f"{data_dir} is already initialised ({CONFIG_NAME} exists)")
    for sub in ("certs", "secrets", "db"):
        if (data_dir / sub).exists() and any((data_dir / sub).iterdir()):
            raise ConfigurationError(
                f"{data_dir / sub} is not empty; refusing to overwrite an existing CA"
            )
    data_dir.mkdir(parents=True, exist_ok=True)
    generated: Path | None = None
    if password is None:
        password = generate_password(data_dir)
        generated = data_dir / "secrets" / "password"
    (data_dir / "secrets").mkdir(exist_ok=True)
    os.chmod(data_dir / "secrets", stat.S_IRWXU)
    hierarchy = create_hierarchy(data_dir, name, password.value, key_type)
    plugins = plugins or PluginManager()
    jwk_type = plugins.provisioner_type("JWK")
    env = ProvisionerEnvironment(
        data_dir=data_dir, issuers=frozenset(ISSUER_NAMES), password=password.value
    )
    provisioners: list[dict[str, Any]] = [jwk_type.default_config(provisioner, env)]
    acme_type = plugins.provisioner_types().get("ACME")
    if acme_type is not None:
        provisioners.append(acme_type.default_config(ACME_PROVISIONER, env))
        provisioners.append(
            {**acme_type.default_config(DEVICES_PROVISIONER, env), **DEVICES_OPTIONS}
        )
    admin_token = secrets.token_urlsafe(32)
    admin_token_path = data_dir / "secrets" / "admin-token"
    write_private(admin_token_path, (admin_token + "\n").encode())

    def rel(path: Path) -> str:
        return str(path.relative_to(data_dir))

    config: dict[str, Any] = {
        "ca": {
            "name": name,
            "key_type": key_type.value,
            "root": {
                "certificate": rel(hierarchy.files.certificate),
                "key": rel(hierarchy.files.key),
            },
            "intermediates": {
                issuer: {"certificate": rel(files.certificate), "key": rel(files.key)}
                for issuer, files in hierarchy.issuers.items()
            },
        },
        "server": {"listen": listen, "dns_names": list(dns_names)},
        "store": {"path": "db/devid.sqlite", "synchronous": "full"},
        "plugins": {"disabled": []},
        # Admin client certificates come from `devid admin certificate` (see check_admin).
        "admin": {"token_sha256": [hashlib.sha256(admin_token.encode()).hexdigest()]},
        "provisioners": provisioners,
    }
    (data_dir / DEFAULT_EK_ROOTS_DIR).mkdir(exist_ok=True)
    open_sqlite(data_dir / "db" / "devid.sqlite").close()
    (data_dir / CONFIG_NAME).write_text(
        "# devid configuration; see README.md and `devid --help`.\n" + tomli_w.dumps(config)
    )
    return InitResult(
        data_dir=data_dir,
        root_fingerprint=fingerprint(hierarchy.root),
        root_path=hierarchy.files.certificate,
        generated_password=generated,
        provisioner=provisioner,
        admin_token=admin_token_path,
    )
