"""``devid ui user ...``: the operator UI's local accounts, on the CA host.

Each operator has a role (viewer, operator or admin), a password (hashed with argon2id)
and a TOTP secret for the second factor. A password is never taken from the command
line: it is asked twice at a prompt, or read from ``--password-file FILE`` or
``$DEVID_UI_PASSWORD`` for scripts. Every change is kept in the audit log
(``ui.user_added``, ``ui.user_removed``, ``ui.user_reset``, by ``cli:USER``).

The commands work on the data directory's database, while the server runs or not; no
CA key is needed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import DevidError
from hosts.store import ROLES

from .common import ca_data_dir

if TYPE_CHECKING:
    from hosts.service.operators import Enrolment, Operators

#: The environment variable a script can hand the password in.
PASSWORD_ENV = "DEVID_UI_PASSWORD"


class UICommandError(DevidError):
    """A ``devid ui`` command cannot do what it was asked; the message says why."""


def register(sub: Any) -> None:
    ui = sub.add_parser(
        "ui",
        help="the operator UI: its local operator accounts (user add, remove, reset, list)",
        description="The operator UI's local accounts. Each operator signs in with a"
        " password and a TOTP code from an authenticator app, and has a role: viewer"
        " (reads), operator (also acts on devices, accounts and certificates) or admin"
        " (also manages provisioners and operators).",
    )
    usub = ui.add_subparsers(dest="ui_command", metavar="COMMAND")
    user = usub.add_parser(
        "user",
        help="operator accounts: add, remove, reset, list",
        description="Manage the operator accounts in the data directory's database.",
    )
    users = user.add_subparsers(dest="user_command", metavar="COMMAND")

    p = users.add_parser(
        "add",
        help="add an operator; prints the TOTP secret for the authenticator app",
        description="Add operator USERNAME with ROLE and a password (asked twice, or from"
        f" --password-file or ${PASSWORD_ENV}; at least 12 characters). A TOTP secret is"
        " generated and printed once, as an otpauth:// URI and in base32.",
    )
    _data_option(p)
    p.add_argument("username", help="1 to 64 lowercase letters, digits, '.', '-', '_'")
    p.add_argument("--role", required=True, choices=ROLES, help="what the operator may do")
    _password_option(p)
    p.set_defaults(func=cmd_add)

    p = users.add_parser(
        "remove",
        help="remove an operator",
        description="Remove operator USERNAME: they can no longer sign in.",
    )
    _data_option(p)
    p.add_argument("username", help="the operator (see `devid ui user list`)")
    p.set_defaults(func=cmd_remove)

    p = users.add_parser(
        "reset",
        help="give an operator a new password, a new TOTP secret, or both",
        description="Reset operator USERNAME: --password sets a new password (asked twice,"
        f" or from --password-file or ${PASSWORD_ENV}), --totp generates a new TOTP secret"
        " (printed once; the old one stops working).",
    )
    _data_option(p)
    p.add_argument("username", help="the operator (see `devid ui user list`)")
    p.add_argument("--password", action="store_true", help="set a new password")
    p.add_argument("--totp", action="store_true", help="generate a new TOTP secret")
    _password_option(p)
    p.set_defaults(func=cmd_reset)

    p = users.add_parser("list", help="the operators, their roles and whether they are disabled")
    _data_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    user.set_defaults(func=lambda args: _usage(user))
    ui.set_defaults(func=lambda args: _usage(ui))


def _data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="the CA's data directory (default: $DEVID_DATA, else the per-user data directory)",
    )


def _password_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-file",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"file holding the operator's new password (default: ${PASSWORD_ENV}, else a prompt)",
    )


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _password(args: argparse.Namespace) -> str:
    """The new password: from --password-file, $DEVID_UI_PASSWORD, or asked twice."""
    if args.password_file is not None:
        text = Path(args.password_file).read_text(encoding="utf-8")
        return text.removesuffix("\n").removesuffix("\r")
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise UICommandError(
            f"no password: give --password-file FILE or ${PASSWORD_ENV} (there is no"
            " terminal to ask at)"
        )
    first = getpass.getpass("Password for the operator: ")
    if getpass.getpass("The same password again: ") != first:
        raise UICommandError("the two passwords differ; nothing was changed")
    return first


@contextmanager
def _operators(args: argparse.Namespace) -> Iterator[Operators]:
    from hosts.core.config import load_config
    from hosts.core.ports import SystemClock
    from hosts.service.audit import Auditor
    from hosts.service.operators import Operators
    from hosts.store import open_sqlite
    from plugins.manager import PluginManager

    config = load_config(ca_data_dir(args))
    stores = open_sqlite(config.store.path, synchronous=config.store.synchronous)
    try:
        clock = SystemClock()
        auditor = Auditor(stores.audit, PluginManager(disabled=config.plugins_disabled), clock)
        yield Operators(stores.operators, auditor, clock)
    finally:
        stores.close()


def _actor() -> str:
    from hosts.service.audit import cli_actor

    return cli_actor()


def _print_enrolment(enrolment: Enrolment) -> None:
    print(f"TOTP URI: {enrolment.uri}")
    print(f"TOTP secret (base32): {enrolment.secret}")
    print(
        "Add it to an authenticator app now (scan the URI as a QR code, or type the"
        " secret); it is not shown again."
    )


def cmd_add(args: argparse.Namespace) -> int:
    from hosts.service.operators import check_password, check_role, check_username

    username, role = str(args.username), str(args.role)
    check_username(username)
    check_role(role)
    password = check_password(_password(args))
    with _operators(args) as operators:
        enrolment = operators.add(_actor(), username, role, password)
    print(f"Operator {username!r} added with role {role}.")
    _print_enrolment(enrolment)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    username = str(args.username)
    with _operators(args) as operators:
        operators.remove(_actor(), username)
    print(f"Operator {username!r} removed.")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    from hosts.service.operators import check_password

    if not args.password and not args.totp:
        raise UICommandError("nothing to reset: give --password, --totp or both")
    if args.password_file is not None and not args.password:
        raise UICommandError("--password-file gives the new password of --password; add it")
    username = str(args.username)
    password = check_password(_password(args)) if args.password else None
    with _operators(args) as operators:
        enrolment = operators.reset(_actor(), username, password=password, totp=args.totp)
    done = " and ".join(
        what for what, did in (("password", args.password), ("TOTP secret", args.totp)) if did
    )
    print(f"Operator {username!r}: new {done}.")
    if enrolment is not None:
        _print_enrolment(enrolment)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _operators(args) as operators:
        found = operators.list()
    rows = [
        {
            "username": o.username,
            "role": o.role,
            "disabled": o.disabled,
            "created_at": o.created_at.isoformat(),
            "updated_at": o.updated_at.isoformat(),
        }
        for o in found
    ]
    if args.json:
        print(json.dumps({"operators": rows}, indent=2))
        return 0
    if not rows:
        print("no operators (add one with `devid ui user add USERNAME --role ROLE`)")
        return 0
    for row in rows:
        state = "  disabled" if row["disabled"] else ""
        print(f"{row['username']}  {row['role']}  since {row['created_at']}{state}")
    return 0
