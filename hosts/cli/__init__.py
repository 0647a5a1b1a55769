"""The ``devid`` command line.

Only the chosen command's module is imported. ``devid agent ...`` on a device loads
:mod:`agent.cli` and nothing of the server (no web framework, host, store or CA
service), and ``devid --help`` is built from :data:`COMMANDS` without importing any
command module. ``tests/agent/test_agent_lean.py`` checks both.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Collection, Sequence

from engine.errors import ConfigurationError, DevidError

DESCRIPTION = """\
devid: a device-identity PKI. Devices proven by their TPM get short-lived
certificates for Wi-Fi, VPN and internal services.

Server side (on the CA host; --data DIR defaults to $DEVID_DATA or the
per-user data directory):
  devid init        create a CA: root, Attestation/Agent/Account/TLS CAs, config, database
  devid serve       run the CA (HTTPS, HTTP/1.1 and HTTP/2)
  devid token       mint a one-time token from a JWK provisioner
  devid plugins     list loaded plugins, provisioner types and attestation formats
  devid config check  check devid.toml and what the server builds from it, starting nothing
  devid device      the device inventory: add, list, show, disable, remove, import, sync
  devid account     Wi-Fi, VPN and web accounts for devices: add, list, show, remove
  devid cert        the certificates this CA issued: list, show (by device, account, status)
  devid admin certificate  an admin client certificate (TLS CA) for the admin API
  devid audit       the audit log (who changed what, what was refused): list, export
  devid cloud       cloud instances' trust on first use: list, forget
  devid ui user     the operator UI's local accounts: add, remove, reset, list
  devid backup      a consistent copy of the data directory, taken while the CA runs
  devid restore     check a backup and restore it into a data directory

On the device (TPM through --tcti, default device:/dev/tpmrm0):
  devid agent info      print the EK URN and what else registering the device needs
  devid agent attest    prove the TPM to the Attestation CA and get the AK certificate
  devid agent enroll    get the device certificate through ACME device-attest-01
  devid agent run       enrol, then get and renew the device's account certificates
  devid agent swtpm     start/stop a software TPM for trying devid without hardware

Trying it: devid demo  runs a CA, a software TPM device and the agent, step by step

Client side (against a running CA):
  devid ca root         download the root certificate, checked by fingerprint
  devid ca certificate  create a key and get a certificate with a token, by signing in,
                        or as a cloud instance (GCP)
  devid login           sign in through single sign-on (OIDC) and get a certificate for yourself
  devid ca renew        renew a certificate (mTLS with the current one)
  devid ca revoke       revoke by token or with the certificate's own key
  devid ca crl          download the CRL
"""

_SERVER = "hosts.cli.server_commands"

#: Every top-level command, in the order ``devid --help`` lists them: its name, its
#: one-line help (the same words its module registers it with; a test compares them)
#: and the module whose ``register(subparsers)`` adds it.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("init", "create a new CA in the data directory", _SERVER),
    ("serve", "run the CA server", _SERVER),
    ("token", "mint a one-time token for `devid ca certificate` or `devid ca revoke`", _SERVER),
    ("plugins", "list loaded plugins and what they register", _SERVER),
    ("config", "check devid.toml without starting the server", "hosts.cli.config_commands"),
    (
        "device",
        "the device inventory: add, list, show, disable, remove, import, sync",
        "hosts.cli.device_commands",
    ),
    (
        "account",
        "accounts (Wi-Fi, VPN, web, generic): add, list, show, remove",
        "hosts.cli.account_commands",
    ),
    ("cert", "the certificates this CA issued: list, show", "hosts.cli.cert_commands"),
    ("admin", "admin credentials: client certificates", "hosts.cli.admin_commands"),
    (
        "scep",
        "SCEP: pending requests (approve, reject), one-time challenges, the RA",
        "hosts.cli.scep_commands",
    ),
    (
        "audit",
        "the audit log: who changed what, and what was refused: list, export",
        "hosts.cli.audit_commands",
    ),
    (
        "cloud",
        "cloud instances' trust on first use: list, forget",
        "hosts.cli.cloud_commands",
    ),
    (
        "ui",
        "the operator UI: its local operator accounts (user add, remove, reset, list)",
        "hosts.cli.ui_commands",
    ),
    (
        "backup",
        "copy the data directory (database snapshot, keys, config) while the CA runs",
        "hosts.cli.backup_commands",
    ),
    ("restore", "check a backup and restore it into a data directory", "hosts.cli.backup_commands"),
    (
        "ca",
        "talk to a running CA (root, certificate, renew, revoke, crl)",
        "hosts.cli.ca_commands",
    ),
    (
        "login",
        "sign in through single sign-on (OpenID Connect) and get a certificate for yourself",
        "hosts.cli.login_commands",
    ),
    ("agent", "the device agent: TPM identity and AK attestation", "agent.cli"),
    (
        "demo",
        "run the whole flow on this machine: CA, swtpm device, accounts, agent",
        "hosts.cli.demo",
    ),
)


def _parser(modules: Collection[str]) -> argparse.ArgumentParser:
    """The ``devid`` parser with the commands of *modules* fully registered; every other
    command is a placeholder that only lists its name and help."""
    parser = argparse.ArgumentParser(
        prog="devid",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, print the traceback too (also: DEVID_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    registered: set[str] = set()
    for name, helptext, module in COMMANDS:
        if module not in modules:
            sub.add_parser(name, help=helptext, add_help=False)
        elif module not in registered:
            importlib.import_module(module).register(sub)
            registered.add(module)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The whole parser, every command module imported."""
    return _parser({module for _, _, module in COMMANDS})


def _command(argv: Sequence[str]) -> str | None:
    """The command *argv* names: the top level has no options but ``--help``, so it is the
    first argument that is not an option."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


#: The exit status of a command whose reader went away (a shell's 128 + SIGPIPE).
BROKEN_PIPE = 141


def _stdout_gone() -> int:
    """The reader of standard output left (``devid ... | head -1``): end quietly. Standard
    output now points at /dev/null, so flushing it at exit raises nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return BROKEN_PIPE


def _leaf(exc: BaseException) -> BaseException:
    """The one exception inside nested exception groups (trio's nurseries wrap them)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _os_error_line(exc: OSError) -> str:
    """One line for a file the command could not use, with what to do about it."""
    name = exc.filename if exc.filename is not None else ""
    if isinstance(exc, PermissionError):
        return (
            f"devid: permission denied: {name or exc} (run devid as the user that owns the"
            " data directory; key and secret files need that owner and mode 0600)"
        )
    if isinstance(exc, FileNotFoundError):
        return (
            f"devid: no such file or directory: {name or exc} (check --data DIR or DEVID_DATA;"
            " a new CA is made with `devid init --data DIR`)"
        )
    return f"devid: {exc.strerror or exc}{f': {name}' if name else ''}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is taken before or after the command (`devid serve ... --debug`).
    debug = "--debug" in argv or os.environ.get("DEVID_DEBUG", "") not in ("", "0")
    argv = [arg for arg in argv if arg != "--debug"]
    command = _command(argv)
    parser = _parser({module for name, _, module in COMMANDS if name == command})
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
        sys.stdout.flush()  # a reader that left is noticed here, not at exit
    except BrokenPipeError:
        return _stdout_gone()
    except KeyboardInterrupt:
        return 130
    except BaseException as caught:
        exc = _leaf(caught)
        if debug or not isinstance(exc, DevidError | OSError):
            raise
        if isinstance(exc, BrokenPipeError):
            return _stdout_gone()
        if isinstance(exc, ConfigurationError):
            print(f"devid: configuration error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, OSError):
            print(_os_error_line(exc), file=sys.stderr)
            return 1
        print(f"devid: {exc}", file=sys.stderr)  # the CA client's errors (CAClientError) too
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
