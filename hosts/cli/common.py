"""Options shared by server-side commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from hosts.core.config import default_data_dir


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="the CA's data directory (default: $DEVID_DATA, else the per-user data directory)",
    )
    parser.add_argument(
        "--password-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="file holding the passphrase of the CA keys (default: $DEVID_PASSWORD, else"
        " DIR/secrets/password if init generated one)",
    )


def data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data) if args.data is not None else default_data_dir()
