"""``devid scep ...``: SCEP requests awaiting approval, one-time challenges, the RA.

Each command works on the CA host's data directory (it opens the CA as the server
does, so the server may keep running; both share the database). The same actions
are in the admin API under ``/api/v1/scep/{provisioner}/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from engine.durations import parse_duration
from engine.errors import BadRequest, ConfigurationError
from hosts.core.secrets import require_password

from .common import add_data_options, ca_data_dir

OPERATOR = "cli"


def register(sub: Any) -> None:
    scep = sub.add_parser(
        "scep",
        help="SCEP: pending requests (approve, reject), one-time challenges, the RA",
        description="Operate the SCEP provisioners (docs/scep.md): requests that wait for"
        ' approval (approval = "manual"), one-time challenges for MDM profiles or'
        " network gear, and each provisioner's RA certificate.",
    )
    ssub = scep.add_subparsers(dest="scep_command", metavar="COMMAND")

    p = ssub.add_parser("pending", help="list requests awaiting approval")
    add_data_options(p)
    p.add_argument("--provisioner", help="only this SCEP provisioner's")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_pending, status="pending")

    p = ssub.add_parser("requests", help="list requests in any state")
    add_data_options(p)
    p.add_argument("--provisioner", help="only this SCEP provisioner's")
    p.add_argument("--status", choices=["pending", "issued", "rejected"])
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_pending)

    p = ssub.add_parser(
        "approve", help="issue the certificate of a pending request (the client polls for it)"
    )
    add_data_options(p)
    p.add_argument("provisioner", help="the SCEP provisioner")
    p.add_argument("transaction_id", help="the request's transactionID (see `devid scep pending`)")
    p.set_defaults(func=cmd_approve)

    p = ssub.add_parser("reject", help="refuse a pending request (the client's next poll fails)")
    add_data_options(p)
    p.add_argument("provisioner", help="the SCEP provisioner")
    p.add_argument("transaction_id", help="the request's transactionID")
    p.add_argument("--reason", default="", help="why, for the audit log and the client")
    p.set_defaults(func=cmd_reject)

    p = ssub.add_parser(
        "challenge",
        help="make a one-time challenge password (shown once)",
        description="A one-time challenge enrols one request, before it expires, and only"
        " for the subject common name given with --subject (when given). The provisioner"
        " needs one_time_challenges = true.",
    )
    add_data_options(p)
    p.add_argument("provisioner", help="the SCEP provisioner")
    p.add_argument("--subject", help="the common name a request using it must carry")
    p.add_argument("--expires", default="24h", help="lifetime, e.g. 30m, 24h, 7d (default 24h)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_challenge)

    p = ssub.add_parser(
        "ra", help="print a provisioner's RA certificate and the CA chain GetCACert serves"
    )
    add_data_options(p)
    p.add_argument("provisioner", help="the SCEP provisioner")
    p.add_argument(
        "--fingerprint",
        action="store_true",
        help="print only the RA certificate's SHA-256 (what scepclient -ca-fingerprint takes)",
    )
    p.set_defaults(func=cmd_ra)

    scep.set_defaults(func=lambda args: _usage(scep))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _authority(args: argparse.Namespace) -> Any:
    from hosts.core.authority import Authority

    directory = ca_data_dir(args)
    password = require_password(directory, args.password_file)
    return Authority.load(directory, password.value)


def cmd_pending(args: argparse.Namespace) -> int:
    from hosts.http.scep import transaction_json

    authority = _authority(args)
    try:
        found = authority.scep.requests(args.provisioner or None, status=args.status)
        rows = [transaction_json(t) for t in found]
    finally:
        authority.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no pending requests" if args.status == "pending" else "no requests")
        return 0
    for row in rows:
        print(
            f"{row['status']:<9} {row['provisioner']}  {row['transactionID']}\n"
            f"          subject {row['subject']}, since {row['createdAt']},"
            f" challenge {row['challenge'] or '-'}"
            + (f", serial {row['serial']}" if row["serial"] else "")
            + (f"\n          {row['reason']}" if row["reason"] else "")
        )
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    authority = _authority(args)
    try:
        done = authority.scep.approve(args.provisioner, args.transaction_id, OPERATOR)
    finally:
        authority.close()
    print(f"approved {done.transaction_id}: certificate {done.serial} issued for {done.subject}")
    print("the client receives it at its next CertPoll")
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    authority = _authority(args)
    try:
        done = authority.scep.reject(args.provisioner, args.transaction_id, OPERATOR, args.reason)
    finally:
        authority.close()
    print(f"rejected {done.transaction_id} ({done.subject}): {done.reason}")
    return 0


def cmd_challenge(args: argparse.Namespace) -> int:
    try:
        lifetime = parse_duration(args.expires)
    except BadRequest as exc:
        raise ConfigurationError(f"--expires: {exc.detail}") from None
    authority = _authority(args)
    try:
        created = authority.scep.create_challenge(
            args.provisioner, OPERATOR, subject=args.subject, lifetime=lifetime
        )
    finally:
        authority.close()
    record = created.record
    if args.json:
        from hosts.http.scep import challenge_json

        print(json.dumps(challenge_json(created), indent=2))
        return 0
    print(created.challenge)
    bound = f" for subject {record.subject!r}" if record.subject else " for any subject"
    print(
        f"(one-time challenge of {record.provisioner}{bound}, valid until"
        f" {record.expires_at.isoformat()}; it is shown only now)",
    )
    return 0


def cmd_ra(args: argparse.Namespace) -> int:
    authority = _authority(args)
    try:
        certificates = authority.scep.ca_certificates(args.provisioner)
    finally:
        authority.close()
    if args.fingerprint:
        print(hashlib.sha256(certificates[0].public_bytes(Encoding.DER)).hexdigest())
        return 0
    for cert in certificates:
        print(f"# {cert.subject.rfc4514_string()} (until {cert.not_valid_after_utc.date()})")
        print(cert.public_bytes(Encoding.PEM).decode(), end="")
    return 0
