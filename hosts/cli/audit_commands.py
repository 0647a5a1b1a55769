"""``devid audit ...``: read and export the audit log, on the CA host's data directory.

Reading needs no CA key, and works while ``devid serve`` runs.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from engine.errors import ProtocolError
from hosts.core.config import load_config
from hosts.core.ports import SystemClock
from hosts.service.audit import MAX_PAGE, RESULTS, audit_query
from hosts.store import AuditEvent, AuditQuery, Stores, open_sqlite

from .common import add_data_options, ca_data_dir

HELP = "the audit log: who changed what, and what was refused: list, export"
LIST_HEADER = ("TIME", "ACTOR", "ACTION", "TARGET", "RESULT", "DETAILS")
CSV_COLUMNS = ("id", "time", "actor", "action", "target", "result", "details")


def _filters(p: argparse.ArgumentParser) -> None:
    add_data_options(p)
    p.add_argument("--actor", help="e.g. cli:alice, admin-token, device:urn:ek:…")
    p.add_argument(
        "--action", help="e.g. device.disabled; ending in a dot, a prefix: device., certificate."
    )
    p.add_argument("--target", help="an EK URN, a certificate serial (hex), an account name")
    p.add_argument("--result", choices=RESULTS)
    p.add_argument("--since", metavar="TIME", help="RFC 3339 time, or a duration back: 24h, 7d")
    p.add_argument("--until", metavar="TIME", help="RFC 3339 time, or a duration back")


def register(sub: Any) -> None:
    audit = sub.add_parser(
        "audit",
        help=HELP,
        description="The audit log: every change to devices, accounts and certificates"
        " (by the CLI, the admin API, devices and ACME clients) and each refusal worth"
        " keeping, newest first.",
    )
    asub = audit.add_subparsers(dest="audit_command", metavar="COMMAND")

    p = asub.add_parser("list", help="list events, newest first")
    _filters(p)
    p.add_argument("--limit", type=int, default=100, help=f"at most this many (1..{MAX_PAGE})")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON (as the admin API does)")
    p.set_defaults(func=cmd_list)

    p = asub.add_parser("export", help="write every matching event as JSON lines or CSV")
    _filters(p)
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    p.add_argument("--out", type=Path, metavar="FILE", help="write here (default: stdout)")
    p.set_defaults(func=cmd_export)


def _query(args: argparse.Namespace, *, paged: bool) -> AuditQuery:
    params = {
        name: getattr(args, name)
        for name in ("actor", "action", "target", "result", "since", "until")
    }
    if paged:
        params["limit"] = str(args.limit)
        params["offset"] = str(args.offset)
    return audit_query(params, SystemClock().now())


@contextmanager
def _stores(args: argparse.Namespace) -> Iterator[Stores]:
    config = load_config(ca_data_dir(args))
    stores = open_sqlite(config.store.path, synchronous=config.store.synchronous)
    try:
        yield stores
    finally:
        stores.close()


def _details(event: AuditEvent) -> str:
    return json.dumps(dict(event.details), sort_keys=True, separators=(",", ":"))


def cmd_list(args: argparse.Namespace) -> int:
    query = _query(args, paged=True)
    with _stores(args) as stores:
        events, total = stores.audit.find(query)
    if args.json:
        from hosts.http.wire import audit_page_json

        print(json.dumps(audit_page_json(events, total, query), indent=2))
        return 0
    if not events:
        print("no events")
    else:
        rows = [
            (
                e.time.isoformat(timespec="seconds"),
                e.actor,
                e.action,
                e.target,
                e.result,
                _details(e),
            )
            for e in events
        ]
        print(_table(LIST_HEADER, rows))
    shown = query.offset + len(events)
    if total > shown or query.offset:
        print(f"({query.offset + 1}-{shown} of {total}; --offset for more)")
    return 0


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns under a header row; the last column is not padded."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(
            [*(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)), row[-1]]
        ).rstrip()
        for row in [header, *rows]
    )


def cmd_export(args: argparse.Namespace) -> int:
    query = _query(args, paged=False)
    with _stores(args) as stores:
        events = _every(stores, query)
    if args.out is None:
        _write(sys.stdout, events, args.format)
        return 0
    text = io.StringIO()
    _write(text, events, args.format)
    try:
        args.out.write_text(text.getvalue(), encoding="utf-8")
    except OSError as exc:
        raise ProtocolError(f"cannot write {args.out}: {exc.strerror}") from None
    print(f"{len(events)} event{'s' if len(events) != 1 else ''} written to {args.out}")
    return 0


def _every(stores: Stores, query: AuditQuery, page: int = MAX_PAGE) -> list[AuditEvent]:
    """Every event *query* matches (its limit and offset aside), newest first."""
    events: list[AuditEvent] = []
    while True:
        found, _ = stores.audit.find(
            AuditQuery(
                actor=query.actor,
                action=query.action,
                target=query.target,
                result=query.result,
                since=query.since,
                until=query.until,
                limit=page,
                offset=len(events),
            )
        )
        events.extend(found)
        if len(found) < page:
            return events


def _write(out: IO[str], events: Sequence[AuditEvent], fmt: str) -> None:
    if fmt == "jsonl":
        for event in events:
            out.write(json.dumps(event.to_json(), sort_keys=True) + "\n")
        return
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for event in events:
        writer.writerow(
            [
                event.id,
                event.time.isoformat(),
                event.actor,
                event.action,
                event.target,
                event.result,
                _details(event),
            ]
        )
