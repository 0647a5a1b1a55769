"""``devid account ...``: the accounts devices get certificates for, on the CA host's data
directory.

A running server sees the changes at once: it reads an account at every request that
uses it, and builds the provisioner of a new one when a device lists its accounts or
first presents a token for it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from engine.accounts import DEFAULT_COMMON_NAME, DEFAULT_SANS, KEY_TYPES, Account, AccountType
from engine.durations import format_duration
from hosts.core.config import load_config
from hosts.core.ports import SystemClock, SystemRandom
from hosts.service.accounts import Accounts
from hosts.service.audit import Auditor, cli_actor
from hosts.store import open_sqlite
from plugins.manager import PluginManager

from .common import add_data_options, ca_data_dir

TYPES = [t.value for t in AccountType]


def register(sub: Any) -> None:
    account = sub.add_parser(
        "account",
        help="accounts (Wi-Fi, VPN, web, generic): add, list, show, remove",
        description="An account is a resource devices may reach. Each assigned device gets a"
        " short-lived client certificate for it from the Account CA, its names built from"
        " the device's inventory record. Templates may use {device.ek}, {device.id},"
        " {device.name}, {device.serial}, {device.owner}, {account.name}, {account.type}.",
    )
    asub = account.add_subparsers(dest="account_command", metavar="COMMAND")

    p = asub.add_parser(
        "add",
        help="create an account",
        description="Create an account. SAN templates make DNS names, IP addresses, email"
        " addresses or URIs; prefix one with dns:, ip:, email: or uri: when its kind is not"
        " obvious (e.g. 'email:{device.owner}').",
    )
    add_data_options(p)
    p.add_argument("name", help="the account's name, e.g. corp-wifi (lower case, digits, _.-)")
    p.add_argument("--type", required=True, choices=TYPES, help="what the account is for")
    p.add_argument("--description", help="a description for people")
    p.add_argument(
        "--cn",
        "--common-name",
        dest="common_name",
        metavar="TEMPLATE",
        help=f"the subject common name template (default {DEFAULT_COMMON_NAME})",
    )
    p.add_argument("--no-cn", action="store_true", help="no common name (SANs only)")
    p.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="TEMPLATE",
        help=f"a SAN template (repeatable; default {' '.join(DEFAULT_SANS)})",
    )
    p.add_argument("--no-sans", action="store_true", help="no SANs (common name only)")
    p.add_argument(
        "--eku",
        action="append",
        default=[],
        help="an extended key usage: clientAuth, serverAuth, emailProtection, ipsecIKE or an"
        " OID (repeatable; default clientAuth)",
    )
    p.add_argument(
        "--key-type",
        choices=[k.value for k in KEY_TYPES],
        help="the key type devices create (default P-256; RSA-2048 for supplicants that need RSA)",
    )
    p.add_argument("--validity", help="certificate lifetime, e.g. 24h, 8h, 7d (default 24h)")
    p.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="EK",
        help="assign to the device with this EK URN (repeatable)",
    )
    p.add_argument(
        "--tag", action="append", default=[], help="assign to devices with this tag (repeatable)"
    )
    p.add_argument(
        "--no-tpm-key",
        action="store_true",
        help="let devices keep the account key in a file instead of the TPM",
    )
    p.add_argument("--pkcs12", action="store_true", help="devices also deliver a PKCS#12 file")
    p.add_argument("--disabled", action="store_true", help="create it disabled")
    p.add_argument("--json", action="store_true", help="print the account as JSON")
    p.set_defaults(func=cmd_add)

    p = asub.add_parser("list", help="list accounts")
    add_data_options(p)
    p.add_argument("--type", choices=TYPES)
    p.add_argument("--status", choices=["active", "disabled"])
    p.add_argument("--device", metavar="EK", help="only the accounts this device gets")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    p = asub.add_parser("show", help="show one account")
    add_data_options(p)
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_show)

    p = asub.add_parser(
        "remove",
        help="remove an account (its provisioner goes with it, and its certificates are revoked)",
    )
    add_data_options(p)
    p.add_argument("name")
    p.set_defaults(func=cmd_remove)


def _accounts(args: argparse.Namespace) -> Accounts:
    config = load_config(ca_data_dir(args))
    stores = open_sqlite(config.store.path, synchronous=config.store.synchronous)
    # Every change is audited as made by the OS user, the revocations it causes too.
    audit = Auditor(stores.audit, PluginManager(disabled=config.plugins_disabled), SystemClock())
    return Accounts(stores, SystemClock(), SystemRandom(), audit=audit, actor=cli_actor())


def _show(account: Account) -> None:
    print(account.name)
    sans = ", ".join(account.sans)
    for label, value in (
        ("type", account.type.value),
        ("status", account.status.value),
        ("description", account.description),
        ("common name", account.common_name),
        ("SANs", sans),
        ("EKUs", ", ".join(account.eku)),
        ("key type", account.key_type.value),
        ("validity", format_duration(account.validity)),
        ("TPM key", "yes" if account.tpm_key else "no (a key file is allowed)"),
        ("PKCS#12", "yes" if account.pkcs12 else None),
        ("devices", ", ".join(account.devices)),
        ("tags", ", ".join(account.tags)),
        ("provisioner", account.provisioner_name),
        ("added", account.created_at.isoformat() if account.created_at else None),
        ("updated", account.updated_at.isoformat() if account.updated_at else None),
    ):
        if value:
            print(f"  {label + ':':14}{value}")


def cmd_add(args: argparse.Namespace) -> int:
    record: dict[str, Any] = {"name": args.name, "type": args.type}
    if args.description:
        record["description"] = args.description
    if args.no_cn:
        record["commonName"] = None
    elif args.common_name is not None:
        record["commonName"] = args.common_name
    if args.no_sans:
        record["sans"] = []
    elif args.san:
        record["sans"] = args.san
    if args.eku:
        record["eku"] = args.eku
    if args.key_type:
        record["keyType"] = args.key_type
    if args.validity:
        record["validity"] = args.validity
    if args.device:
        record["devices"] = args.device
    if args.tag:
        record["tags"] = args.tag
    if args.no_tpm_key:
        record["tpmKey"] = False
    if args.pkcs12:
        record["pkcs12"] = True
    if args.disabled:
        record["status"] = "disabled"
    account = _accounts(args).add(record)
    if args.json:
        print(json.dumps(account.to_json(), indent=2))
        return 0
    print("Created account:")
    _show(account)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    query = {"type": args.type, "status": args.status, "device": args.device}
    page = _accounts(args).list({k: v for k, v in query.items() if v})
    if args.json:
        print(json.dumps(page, indent=2))
        return 0
    accounts = page["accounts"]
    if not accounts:
        print("no accounts")
    else:
        print(f"{'STATUS':9} {'NAME':24} {'TYPE':8} {'KEY':9} {'VALID':>5}  ASSIGNED TO")
    for a in accounts:
        assigned = [f"{len(a['devices'])} device(s)"] if a["devices"] else []
        assigned += [f"tag {t}" for t in a["tags"]]
        print(
            f"{a['status']:9} {a['name']:24} {a['type']:8} {a['keyType']:9}"
            f" {a['validity']:>5}  {', '.join(assigned) or 'no devices'}"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    account = _accounts(args).get(args.name)
    if args.json:
        print(json.dumps(account.to_json(), indent=2))
    else:
        _show(account)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    _accounts(args).remove(args.name)
    print(f"Removed account {args.name}")
    return 0
