"""``devid cloud ...``: the cloud provisioners' trust on first use, on the CA host.

A cloud provisioner with ``trust_on_first_use`` (GCP's default) gives each instance one
certificate from its identity: the first certificate records the instance as used
(token ``instance:<ID>`` of that provisioner), and a later identity token of the same
instance is refused (401, "token has already been used"); the instance renews its
certificate over mTLS instead. When the operator knows why an instance needs a new
first certificate (its disk was rebuilt and the key lost), ``devid cloud forget`` lifts
the record, and the instance's next identity token gets one. Each forget is kept in
the audit log (``cloud.instance_forgotten``, by ``cli:USER``).

The commands work on the data directory's database, while the server runs or not; no
CA key is needed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from engine.errors import DevidError
from hosts.core.config import Config, load_config
from hosts.store import Stores, open_sqlite
from plugins.instances import INSTANCE_TOKEN_PREFIX

from .common import add_data_options, ca_data_dir

#: The provisioner types that record an instance's first certificate.
FIRST_USE_TYPES = ("GCP", "AWS", "Azure")
#: The used token that records an instance's first certificate: this prefix and its ID.
INSTANCE_TOKEN = INSTANCE_TOKEN_PREFIX
#: The audit log's action for a forgotten instance.
FORGOTTEN = "cloud.instance_forgotten"


class CloudCommandError(DevidError):
    """A ``devid cloud`` command cannot do what it was asked; the message says why."""


def register(sub: Any) -> None:
    cloud = sub.add_parser(
        "cloud",
        help="cloud instances' trust on first use: list, forget",
        description="A cloud provisioner with trust_on_first_use gives each instance one"
        " certificate from its identity (the instance renews it over mTLS). `forget` lets"
        " an instance get a first certificate once more (a rebuilt instance that lost its"
        " key); `list` shows the instances that have had one.",
    )
    csub = cloud.add_subparsers(dest="cloud_command", metavar="COMMAND")

    p = csub.add_parser(
        "forget",
        help="let an instance get a certificate from its identity once more",
        description="Forget that the instance INSTANCE_ID got its first certificate through"
        " PROVISIONER: its next identity token gets a certificate. The certificates it has"
        " stay valid (revoke them with `devid ca revoke` if its key was lost or taken).",
    )
    add_data_options(p)
    p.add_argument("provisioner", help="the cloud provisioner (its name in devid.toml)")
    p.add_argument("instance_id", help="the instance's ID (see `devid cloud list`)")
    p.set_defaults(func=cmd_forget)

    p = csub.add_parser(
        "list", help="the instances that got their first certificate through a provisioner"
    )
    add_data_options(p)
    p.add_argument("provisioner", help="the cloud provisioner (its name in devid.toml)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    cloud.set_defaults(func=lambda args: _usage(cloud))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _provisioner(config: Config, name: str) -> Mapping[str, Any]:
    """The configured cloud provisioner *name*; CloudCommandError naming the cloud
    provisioners there are otherwise."""
    tables = [t for t in config.provisioners if t.get("type") in FIRST_USE_TYPES]
    table = next((t for t in config.provisioners if t.get("name") == name), None)
    if table is not None and table.get("type") in FIRST_USE_TYPES:
        return table
    known = ", ".join(sorted(str(t.get("name")) for t in tables)) or "none"
    kinds = [k for k in FIRST_USE_TYPES if any(t.get("type") == k for t in tables)]
    what = (
        f"no provisioner named {name!r}"
        if table is None
        else f"provisioner {name!r} is of type {table.get('type')!r}, not a cloud provisioner"
    )
    raise CloudCommandError(
        f"{what} in {config.data_dir}: the cloud provisioners"
        f" ({', '.join(kinds or FIRST_USE_TYPES)})"
        f" there: {known}"
    )


def _open(args: argparse.Namespace) -> tuple[Config, Stores]:
    config = load_config(ca_data_dir(args))
    _provisioner(config, args.provisioner)
    return config, open_sqlite(config.store.path, synchronous=config.store.synchronous)


def cmd_forget(args: argparse.Namespace) -> int:
    name, instance_id = str(args.provisioner), str(args.instance_id).strip()
    if not instance_id:
        raise CloudCommandError("INSTANCE_ID is empty")
    config, stores = _open(args)
    try:
        if not stores.tokens.forget_token(name, INSTANCE_TOKEN + instance_id):
            raise CloudCommandError(
                f"instance {instance_id} has no certificate from provisioner {name!r} to"
                f" forget (`devid cloud list {name}` shows those that have)"
            )
        from hosts.core.ports import SystemClock
        from hosts.service.audit import Auditor, cli_actor
        from plugins.manager import PluginManager

        plugins = PluginManager(disabled=config.plugins_disabled)
        Auditor(stores.audit, plugins, SystemClock()).record(
            cli_actor(), FORGOTTEN, instance_id, provisioner=name
        )
    finally:
        stores.close()
    print(
        f"Instance {instance_id} is forgotten by provisioner {name!r}: its next identity"
        " token gets a certificate."
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    name = str(args.provisioner)
    _, stores = _open(args)
    try:
        used = stores.tokens.used_tokens(name, INSTANCE_TOKEN)
    finally:
        stores.close()
    instances = [token_id.removeprefix(INSTANCE_TOKEN) for token_id, _ in used]
    if args.json:
        print(json.dumps({"provisioner": name, "instances": instances}, indent=2))
        return 0
    if not instances:
        print(f"no instance has had a certificate from provisioner {name!r}")
        return 0
    for instance_id in instances:
        print(instance_id)
    return 0
