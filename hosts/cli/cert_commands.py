"""``devid cert ...``: the certificates this CA issued, on the CA host's data directory.

Reading needs no CA key: the stores and the CA certificates (for the chain) are opened
as they are, so ``devid cert`` works while ``devid serve`` runs.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from engine.accounts import Account
from engine.errors import ConfigurationError
from engine.inventory import Device
from engine.ports import Clock
from hosts.core.config import Config, load_config
from hosts.core.ports import SystemClock
from hosts.service.certificates import (
    CertificateInventory,
    CertificatePage,
    IssuerChain,
    certificate_query,
)
from hosts.store import CertificateRecord, Stores, open_sqlite
from hosts.store.certificates import CERTIFICATE_STATUSES

from .common import add_data_options, ca_data_dir

HELP = "the certificates this CA issued: list, show"
LIST_HEADER = ("SERIAL", "STATUS", "ISSUER", "PROVISIONER", "NOT AFTER", "SUBJECT")


def register(sub: Any) -> None:
    cert = sub.add_parser(
        "cert",
        help=HELP,
        description="List and inspect the certificates this CA issued (device, account,"
        " AK and server certificates). Serials print as 0x-hex; `devid cert show` and"
        " `devid ca revoke` take them so, or in decimal.",
    )
    csub = cert.add_subparsers(dest="cert_command", metavar="COMMAND")

    p = csub.add_parser("list", help="list certificates, newest first")
    add_data_options(p)
    p.add_argument("--device", metavar="EK", help="issued to this device (EK URN)")
    p.add_argument("--account", metavar="NAME", help="certificates of this account")
    p.add_argument("--provisioner", metavar="NAME", help="issued by this provisioner")
    p.add_argument("--issuer", metavar="CA", help="issued by this CA: agent, account, …")
    p.add_argument("--status", choices=CERTIFICATE_STATUSES)
    p.add_argument(
        "--expiring-within",
        metavar="DURATION",
        help="active and ending within DURATION, e.g. 7d (implies --status expiring)",
    )
    p.add_argument("--search", metavar="TEXT", help="substring of the subject or a SAN")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON (as the admin API does)")
    p.set_defaults(func=cmd_list)

    p = csub.add_parser(
        "show", help="one certificate: chain, device, account, renewals, revocation"
    )
    add_data_options(p)
    p.add_argument("serial", help="the serial: decimal, or hex with 0x")
    p.add_argument("--json", action="store_true", help="print JSON (as the admin API does)")
    p.add_argument("--pem", action="store_true", help="print the chain as PEM only")
    p.set_defaults(func=cmd_show)


@attrs.frozen
class _IssuerCertificates:
    chain_pem: tuple[str, ...]


@attrs.frozen
class _DataDirectory:
    """What the inventory reads, from a data directory: no key is decrypted."""

    stores: Stores
    clock: Clock
    root_pem: str
    issuers: Mapping[str, IssuerChain]


def _read_pem(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _source(config: Config) -> _DataDirectory:
    issuers: dict[str, IssuerChain] = {}
    for name, files in config.issuers.items():
        pem = _read_pem(files.certificate)
        if pem is not None:
            issuers[name] = _IssuerCertificates((pem,))
    root = _read_pem(config.root.certificate)
    if root is None:
        raise ConfigurationError(f"the root certificate {config.root.certificate} is missing")
    stores = open_sqlite(config.store.path, synchronous=config.store.synchronous)
    return _DataDirectory(stores, SystemClock(), root, issuers)


def open_inventory(args: argparse.Namespace) -> CertificateInventory:
    """The certificate inventory of the data directory *args* name (``--data``)."""
    return CertificateInventory(_source(load_config(ca_data_dir(args))))


def serial_text(serial: str) -> str:
    """A stored serial (lowercase hex) as the commands print it: ``0x`` and the hex."""
    return f"0x{serial}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """*rows* under *header*, each column as wide as its widest cell (the last unpadded)."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    lines = []
    for row in (header, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def certificate_rows(page: CertificatePage) -> list[tuple[str, ...]]:
    def row(record: CertificateRecord) -> tuple[str, ...]:
        return (
            serial_text(record.serial),
            page.status(record),
            record.issuer,
            record.provisioner_name,
            record.not_after.strftime("%Y-%m-%d %H:%M"),
            record.subject or ", ".join(record.sans) or "-",
        )

    return [row(r) for r in page.certificates]


def print_page(
    page: CertificatePage,
    *,
    empty: str = "no certificates",
    indent: str = "",
    more: str = "--offset for more",
) -> None:
    """*page* as a table under a header row, and where it sits among all that match."""
    if not page.certificates:
        if empty:
            print(indent + empty)
    else:
        for line in table(LIST_HEADER, certificate_rows(page)).splitlines():
            print(indent + line)
    shown = page.offset + len(page.certificates)
    if page.total > shown or (page.offset and page.certificates):
        print(f"{indent}({page.offset + 1}-{shown} of {page.total}; {more})")


def cmd_list(args: argparse.Namespace) -> int:
    params = {
        "device": args.device,
        "account": args.account,
        "provisioner": args.provisioner,
        "issuer": args.issuer,
        "status": args.status,
        "expiring": args.expiring_within,
        "search": args.search,
        "limit": str(args.limit),
        "offset": str(args.offset),
    }
    query = certificate_query({k: v for k, v in params.items() if v})
    page = open_inventory(args).list(query)
    if args.json:
        from hosts.http import wire

        print(json.dumps(wire.certificate_page_json(page), indent=2))
        return 0
    print_page(page)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from hosts.http import wire
    from hosts.service.ca import serial_hex

    serial = serial_hex(wire.parse_serial(args.serial.strip()))
    detail = open_inventory(args).show(serial)
    if args.json:
        print(json.dumps(wire.certificate_detail_json(detail), indent=2))
        return 0
    if args.pem:
        print("".join(detail.chain_pem), end="")
        return 0
    record = detail.record
    print(f"certificate {serial_text(record.serial)} ({int(record.serial, 16)})")
    revocation = detail.revocation
    lines: list[tuple[str, str | None]] = [
        ("status", detail.status),
        ("subject", record.subject),
        ("SANs", ", ".join(record.sans)),
        ("issuer", record.issuer),
        ("provisioner", f"{record.provisioner_name} ({record.provisioner_type})"),
        ("not before", record.not_before.isoformat()),
        ("not after", record.not_after.isoformat()),
        ("issued", record.created_at.isoformat() if record.created_at else None),
        ("device", _device_line(detail.record.device, detail.device)),
        ("account", _account_line(detail.account_name, detail.account)),
        ("renewed from", _renewed_from(detail.renewed_from, detail.renewed_from_record)),
        ("renewed by", ", ".join(serial_text(r.serial) for r in detail.renewed_by)),
    ]
    if revocation is not None:
        lines += [
            ("revoked", revocation.revoked_at.isoformat()),
            ("revoked by", revocation.revoked_by),
            ("reason", f"{revocation.reason_code} {revocation.reason}".strip()),
        ]
    for label, value in lines:
        if value:
            print(f"  {label + ':':16}{value}")
    print(f"  {'chain:':16}{len(detail.chain_pem)} certificates (--pem prints them)")
    return 0


def _device_line(ek: str | None, device: Device | None) -> str | None:
    if ek is None:
        return None
    if device is None:
        return f"{ek} (not in the inventory)"
    name = f" {device.name}" if device.name else ""
    return f"{ek}{name} ({device.status.value})"


def _account_line(name: str | None, account: Account | None) -> str | None:
    if name is None:
        return None
    if account is None:
        return f"{name} (removed)"
    return f"{name} ({account.status.value})"


def _renewed_from(serial: str | None, record: CertificateRecord | None) -> str | None:
    if serial is None:
        return None
    return serial_text(serial) + ("" if record is not None else " (not stored)")
