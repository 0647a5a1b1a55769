"""``devid admin certificate``: an admin client certificate, the only kind the admin API
accepts besides the bearer token."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from engine.durations import parse_duration
from engine.errors import BadRequest, ConfigurationError
from hosts.core.pki import fingerprint
from hosts.core.secrets import require_password
from hosts.service.admin import DEFAULT_ADMIN_LIFETIME, issue_admin_certificate

from .common import add_data_options, ca_data_dir

CERTIFICATE_HELP = """\
Issue a client certificate that authenticates NAME at the admin API (/api/v1/devices,
/api/v1/accounts), on the CA host, with the CA password. A new P-256 key is written to
OUT.key (mode 0600, unencrypted: keep it like the admin token) and the certificate with
the TLS CA behind it to OUT.crt; neither file may exist yet.

The certificate comes from the TLS CA through the internal admin-client provisioner and
is recorded in the CA's store. A client certificate opens the admin API only if it is
one of these, unrevoked and unexpired; its subject counts for nothing, so nobody
becomes an admin by getting a certificate for the same name elsewhere (ACME, a token).
A running `devid serve` accepts it at once. Withdraw it with `devid ca revoke SERIAL
--reason R` (the admin token), like any certificate of this CA; it is refused from then
on and listed in the TLS CA's CRL (/crl/tls).

  curl --cert OUT.crt --key OUT.key --cacert root_ca.crt https://HOST:8443/api/v1/devices
"""


def register(sub: Any) -> None:
    admin = sub.add_parser("admin", help="admin credentials: client certificates")
    admin_sub = admin.add_subparsers(dest="admin_command", metavar="COMMAND", required=True)
    p = admin_sub.add_parser(
        "certificate",
        help="issue an admin client certificate",
        description=CERTIFICATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", metavar="NAME", help="who holds it (the certificate's common name)")
    p.add_argument("certificate", metavar="OUT.crt", type=Path, help="certificate file to write")
    p.add_argument("key", metavar="OUT.key", type=Path, help="private key file to write")
    p.add_argument(
        "--validity",
        default="30d",
        metavar="DURATION",
        help=f"how long it is valid, 5m to 365d (default {DEFAULT_ADMIN_LIFETIME.days}d)",
    )
    add_data_options(p)
    p.set_defaults(func=cmd_certificate)


def _create(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def cmd_certificate(args: argparse.Namespace) -> int:
    from hosts.core.authority import Authority

    for path in (args.certificate, args.key):
        if path.exists():
            raise ConfigurationError(f"{path} exists; choose a new file name")
    try:
        lifetime = parse_duration(args.validity)
    except BadRequest as exc:
        raise ConfigurationError(f"--validity: {exc.detail}") from None
    directory = ca_data_dir(args)
    password = require_password(directory, args.password_file)
    authority = Authority.load(directory, password.value)
    try:
        issued, key = issue_admin_certificate(authority.ca, args.name, lifetime)
    finally:
        authority.close()
    _create(
        args.key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    _create(
        args.certificate,
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in issued.chain),
        0o644,
    )
    print(f"Admin certificate for {args.name} written to {args.certificate} (key {args.key})")
    print(f"  serial:      {issued.serial_hex}")
    print(f"  sha256:      {fingerprint(issued.certificate)}")
    print(f"  valid until: {issued.not_after.isoformat()}")
    print(f"  withdraw it with: devid ca revoke 0x{issued.serial_hex} --reason R")
    return 0
