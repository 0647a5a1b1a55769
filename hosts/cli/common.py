"""Options shared by server-side commands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from engine.errors import ConfigurationError
from hosts.core.config import CONFIG_NAME, default_data_dir


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


def ca_data_dir(args: argparse.Namespace) -> Path:
    """The data directory of an existing CA: the error names where devid looked and how to
    point it at the CA (--data, $DEVID_DATA) before suggesting a new CA."""
    directory = data_dir(args)
    if (directory / CONFIG_NAME).is_file():
        return directory
    if args.data is not None:
        source = "--data"
    elif os.environ.get("DEVID_DATA"):
        source = "$DEVID_DATA"
    else:
        source = "the default data directory; neither --data nor $DEVID_DATA is set"
    raise ConfigurationError(
        f"no CA in {directory} ({source}): no {CONFIG_NAME} there. If the CA lives in"
        " another directory, pass --data DIR or set DEVID_DATA=DIR (e.g. `export"
        " DEVID_DATA=$PWD/data` after `make serve`); only to create a new CA, run"
        f" `devid init --data {directory}`"
    )
