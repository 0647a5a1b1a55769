"""``devid device ...``: the device inventory, on the CA host's data directory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.errors import DevidError, ProtocolError
from engine.inventory import Device
from hosts.core.config import load_config
from hosts.core.ports import SystemClock
from hosts.service.inventory import ImportReport, Inventory, parse_import_numbered
from hosts.store import open_sqlite

from .common import add_data_options, ca_data_dir


def register(sub: Any) -> None:
    device = sub.add_parser(
        "device",
        help="the device inventory: add, list, show, disable, remove, import, sync",
        description="Register the devices allowed to attest. A device is its TPM's EK:"
        " `devid agent info` on the device prints its EK URN.",
    )
    dsub = device.add_subparsers(dest="device_command", metavar="COMMAND")

    p = dsub.add_parser("add", help="register a device by its EK URN or EK certificate")
    add_data_options(p)
    p.add_argument("--ek", help="the EK URN, urn:ek:sha256:<base64>")
    p.add_argument("--ek-cert", type=Path, help="the EK certificate (PEM or DER)")
    p.add_argument("--serial", help="serial number")
    p.add_argument("--name", help="a name for people")
    p.add_argument("--owner", help="who the device belongs to")
    p.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    p.add_argument("--disabled", action="store_true", help="register it disabled")
    p.set_defaults(func=cmd_add)

    p = dsub.add_parser("list", help="list devices")
    add_data_options(p)
    p.add_argument("--status", choices=["active", "disabled"])
    p.add_argument("--owner")
    p.add_argument("--tag")
    p.add_argument("--search", help="substring of name or serial, or an exact EK URN")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    for name, helptext, func in (
        ("show", "show one device", cmd_show),
        (
            "disable",
            "disable a device: it can no longer attest, and every certificate issued to it"
            " is revoked",
            cmd_disable,
        ),
        ("enable", "enable a disabled device (revoked certificates stay revoked)", cmd_enable),
        (
            "remove",
            "remove a device from the inventory and revoke every certificate issued to it",
            cmd_remove,
        ),
    ):
        p = dsub.add_parser(name, help=helptext)
        add_data_options(p)
        p.add_argument("ek", help="the EK URN")
        p.set_defaults(func=func)

    p = dsub.add_parser(
        "import",
        help="add or update devices from a CSV or JSON file",
        description="CSV columns: ek, ekCertificate, serial, name, owner, tags (tags"
        " separated by ';'). JSON: a list of objects with the same keys. Each row is"
        " reported; a bad row does not stop the import.",
    )
    add_data_options(p)
    p.add_argument("file", type=Path)
    p.add_argument("--format", choices=["csv", "json"], help="default: from the extension")
    p.add_argument("--report", type=Path, help="write the per-row report as JSON here")
    p.set_defaults(func=cmd_import)

    p = dsub.add_parser("sync", help="pull devices from inventory-source plugins")
    add_data_options(p)
    p.add_argument("--report", type=Path, help="write the per-row report as JSON here")
    p.set_defaults(func=cmd_sync)


def _inventory(args: argparse.Namespace) -> Inventory:
    from plugins.manager import PluginManager

    config = load_config(ca_data_dir(args))
    stores = open_sqlite(config.store.path, synchronous=config.store.synchronous)
    # Every change is audited as made by the OS user, the revocations it causes too.
    from hosts.service.audit import Auditor, cli_actor

    audit = Auditor(stores.audit, PluginManager(disabled=config.plugins_disabled), SystemClock())
    return Inventory(stores, SystemClock(), audit=audit, actor=cli_actor())


def _revoked(serials: tuple[str, ...]) -> str:
    if not serials:
        return ""
    return f"; {len(serials)} certificate{'s' if len(serials) != 1 else ''} revoked"


def _show(device: Device) -> None:
    print(f"{device.ek_urn}")
    for label, value in (
        ("status", device.status.value),
        ("name", device.name),
        ("serial", device.serial),
        ("owner", device.owner),
        ("tags", ", ".join(device.tags)),
        ("EK certificate", "registered" if device.ek_certificate else None),
        ("added", device.created_at.isoformat() if device.created_at else None),
        ("updated", device.updated_at.isoformat() if device.updated_at else None),
    ):
        if value:
            print(f"  {label + ':':16}{value}")


def cmd_add(args: argparse.Namespace) -> int:
    record: dict[str, Any] = {
        "serial": args.serial,
        "name": args.name,
        "owner": args.owner,
        "tags": args.tag,
        "status": "disabled" if args.disabled else "active",
    }
    if args.ek:
        record["ek"] = args.ek
    if args.ek_cert:
        raw = args.ek_cert.read_bytes()
        if raw.lstrip().startswith(b"-----BEGIN"):
            record["ekCertificate"] = raw.decode()
        else:
            import base64

            record["ekCertificate"] = base64.b64encode(raw).decode()
    device = _inventory(args).add({k: v for k, v in record.items() if v not in (None, [])})
    print("Registered device:")
    _show(device)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    query = {
        "status": args.status,
        "owner": args.owner,
        "tag": args.tag,
        "q": args.search,
        "limit": str(args.limit),
        "offset": str(args.offset),
    }
    page = _inventory(args).list({k: v for k, v in query.items() if v})
    if args.json:
        print(json.dumps(page, indent=2))
        return 0
    devices = page["devices"]
    if not devices:
        print("no devices")
    else:
        rows = [
            (d["status"], d["ek"], d["name"] or "-", d["owner"] or "-", ",".join(d["tags"]))
            for d in devices
        ]
        print(_table(("STATUS", "EK", "NAME", "OWNER", "TAGS"), rows))
    shown = page["offset"] + len(devices)
    if page["total"] > shown or page["offset"]:
        print(f"({page['offset'] + 1}-{shown} of {page['total']}; --offset for more)")
    return 0


def _table(header: tuple[str, ...], rows: list[tuple[str, str, str, str, str]]) -> str:
    """Left-aligned columns under a header row; the last column is not padded."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join([*(row[i].ljust(w) for i, w in enumerate(widths)), row[-1]]).rstrip()
        for row in table
    )


def cmd_show(args: argparse.Namespace) -> int:
    device = _inventory(args).get(args.ek)
    _show(device)
    from .cert_commands import open_inventory, print_page

    page = open_inventory(args).of_device(device.ek_urn)
    print(f"  certificates:   {page.total}")
    more = f"`devid cert list --device {device.ek_urn}` for all"
    print_page(page, empty="", indent="    ", more=more)
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    device, revoked = _inventory(args).change(args.ek, {"status": "disabled"})
    print(f"Disabled {device.ek_urn}{_revoked(revoked)}")
    return 0


def cmd_enable(args: argparse.Namespace) -> int:
    device = _inventory(args).update(args.ek, {"status": "active"})
    print(f"Enabled {device.ek_urn}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    inventory = _inventory(args)
    urn = inventory.get(args.ek).ek_urn
    revoked = inventory.remove(urn)
    print(f"Removed {urn}{_revoked(revoked)}")
    return 0


class _ProgressBar:
    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.tty = sys.stderr.isatty()
        self.last = -1

    def __call__(self, done: int) -> None:
        percent = done * 100 // self.total
        if percent == self.last and done != self.total:
            return
        self.last = percent
        filled = percent * 30 // 100
        line = f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total}"
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if done == self.total else ""))
        elif done == self.total or percent % 10 == 0:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _report(report: ImportReport, path: Path | None) -> int:
    for row in report.rows:
        if row.outcome == "error":
            print(f"row {row.row}: error: {row.message}")
    print(
        f"{report.count('added')} added, {report.count('updated')} updated,"
        f" {report.count('unchanged')} unchanged, {report.count('error')} failed"
    )
    if path is not None:
        path.write_text(json.dumps(report.to_json(), indent=2))
        print(f"report written to {path}")
    return 1 if report.count("error") else 0


def cmd_import(args: argparse.Namespace) -> int:
    fmt = args.format or ("json" if args.file.suffix.lower() == ".json" else "csv")
    try:
        text = args.file.read_text()
    except OSError as exc:
        raise ProtocolError(f"cannot read {args.file}: {exc.strerror}") from None
    rows, numbers = parse_import_numbered(text, fmt)
    report = _inventory(args).upsert_many(rows, progress=_ProgressBar(len(rows)), numbers=numbers)
    return _report(report, args.report)


def cmd_sync(args: argparse.Namespace) -> int:
    from plugins.manager import PluginManager

    config = load_config(ca_data_dir(args))
    plugins = PluginManager(disabled=config.plugins_disabled)
    try:
        rows = plugins.inventory_devices(config.inventory)
    except DevidError:
        raise
    except Exception as exc:
        raise DevidError(
            f"an inventory-source plugin failed: {type(exc).__name__}: {exc}"
        ) from None
    if not rows:
        print("no inventory-source plugin reported any device")
        return 0
    report = _inventory(args).upsert_many(rows, progress=_ProgressBar(len(rows)))
    return _report(report, args.report)
