"""``devid backup`` and ``devid restore``: the data directory to a checked copy and back
(docs/operations.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import add_data_options, data_dir

BACKUP_HELP = """\
Copy the CA's data directory into OUT while the server runs and issues: the database
as one consistent snapshot (SQLite's online backup API), devid.toml, the certificates,
the keys as they are on disk (encrypted) and the admin token, with manifest.json (the
devid and schema versions, the time, each file's size and SHA-256) and SHA256SUMS.

OUT is a new directory, or one tar archive if its name ends in .tar. Every file in it
is mode 0600 and every directory 0700. Not copied: the password (DIR/secrets/password,
if `devid init` generated one) -- keep it apart from the backups -- the database's
-wal/-shm files (the snapshot replaces them) and tls/ (the server's own certificate,
issued again at each start).
"""

RESTORE_HELP = """\
Check the backup BACKUP (a directory or a .tar from `devid backup`) and make DIR the
data directory it holds. Nothing is written to DIR until everything checks: the
manifest and every checksum, the database (integrity, a schema version this devid can
open), the root and intermediate certificates (they parse and chain), and the keys
(they decrypt with the password and match their certificates; without a password this
is skipped and said so). The new directory is built beside DIR and renamed into place.

Stop the server first. A non-empty DIR is refused unless --force, which keeps it as
DIR.before-restore-STAMP.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "backup",
        help="copy the data directory (database snapshot, keys, config) while the CA runs",
        description=BACKUP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", metavar="OUT", type=Path, help="new directory, or FILE.tar, to write")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="the CA's data directory (default: $DEVID_DATA, else the per-user data directory)",
    )
    p.set_defaults(func=cmd_backup)

    r = sub.add_parser(
        "restore",
        help="check a backup and restore it into a data directory",
        description=RESTORE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("backup", metavar="BACKUP", type=Path, help="a backup directory or .tar")
    r.add_argument(
        "--force",
        action="store_true",
        help="restore over a non-empty DIR, keeping it as DIR.before-restore-STAMP",
    )
    add_data_options(r)
    r.set_defaults(func=cmd_restore)


def cmd_backup(args: argparse.Namespace) -> int:
    from hosts.core.backup import backup

    result = backup(data_dir(args), args.out, force=args.force)
    kind = "archive" if result.archive else "directory"
    print(
        f"Backup written to {result.out} ({kind}, mode 0600): {result.files} files,"
        f" {result.size} bytes, schema {result.schema_version},"
        f" taken {result.created_at.isoformat(timespec='seconds')}"
    )
    for line in result.skipped:
        print(f"  not copied: {line}")
    print("  The CA password is not in it: keep the password apart from the backup.")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from hosts.core.backup import restore
    from hosts.core.secrets import resolve_password

    directory = data_dir(args)
    password = resolve_password(directory, args.password_file)
    result = restore(
        args.backup,
        directory,
        password=password.value if password is not None else None,
        force=args.force,
    )
    counts = result.counts
    print(
        f"Restored {result.files} files into {result.data_dir} from the backup taken"
        f" {result.created_at} (devid {result.devid_version}, schema {result.schema_version})"
    )
    print(
        f"  {counts.get('certificates', 0)} certificates, {counts.get('devices', 0)} devices,"
        f" {counts.get('accounts', 0)} accounts, {counts.get('scep_transactions', 0)} SCEP"
        f" transactions, {counts.get('scep_challenges', 0)} SCEP challenges"
    )
    if result.keys_checked:
        print("  keys: decrypted with the password and matched to their certificates")
    else:
        print(
            "  keys: NOT checked (no password given); --password-file FILE checks that they decrypt"
        )
    if result.previous is not None:
        print(f"  the directory that was there is kept as {result.previous}")
    print("Next:")
    print(f"  devid config check --data {result.data_dir} --password-file FILE")
    print(f"  devid serve --data {result.data_dir} --password-file FILE")
    print(f"  devid device list --data {result.data_dir}   (and a test issuance)")
    print(
        "  certificates issued after the backup was taken are unknown to this CA:"
        " see docs/operations.md"
    )
    return 0
