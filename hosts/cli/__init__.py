"""The ``devid`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from engine.errors import ConfigurationError, DevidError

from . import (
    account_commands,
    admin_commands,
    agent_commands,
    ca_commands,
    demo,
    device_commands,
    server_commands,
)

DESCRIPTION = """\
devid: a device-identity PKI. Devices proven by their TPM get short-lived
certificates for Wi-Fi, VPN and internal services.

Server side (on the CA host; --data DIR defaults to $DEVID_DATA or the
per-user data directory):
  devid init        create a CA: root, Attestation/Agent/Account/TLS CAs, config, database
  devid serve       run the CA (HTTPS, HTTP/1.1 and HTTP/2)
  devid token       mint a one-time token from a JWK provisioner
  devid plugins     list loaded plugins, provisioner types and attestation formats
  devid device      the device inventory: add, list, show, disable, remove, import, sync
  devid account     Wi-Fi, VPN and web accounts for devices: add, list, show, remove
  devid admin certificate  an admin client certificate (TLS CA) for the admin API

On the device (TPM through --tcti, default device:/dev/tpmrm0):
  devid agent info      print the EK URN and what else registering the device needs
  devid agent attest    prove the TPM to the Attestation CA and get the AK certificate
  devid agent enroll    get the device certificate through ACME device-attest-01
  devid agent run       enrol, then get and renew the device's account certificates
  devid agent swtpm     start/stop a software TPM for trying devid without hardware

Trying it: devid demo  runs a CA, a software TPM device and the agent, step by step

Client side (against a running CA):
  devid ca root         download the root certificate, checked by fingerprint
  devid ca certificate  create a key and get a certificate with a token
  devid ca renew        renew a certificate (mTLS with the current one)
  devid ca revoke       revoke by token or with the certificate's own key
  devid ca crl          download the CRL
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devid",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    server_commands.register(sub)
    device_commands.register(sub)
    account_commands.register(sub)
    admin_commands.register(sub)
    ca_commands.register(sub)
    agent_commands.register(sub)
    demo.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except ConfigurationError as exc:
        print(f"devid: configuration error: {exc}", file=sys.stderr)
        return 2
    except ca_commands.CAClientError as exc:
        print(f"devid: {exc}", file=sys.stderr)
        return 1
    except DevidError as exc:
        print(f"devid: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
