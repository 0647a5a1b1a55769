"""Options the client commands share (``devid ca …``, ``devid login``): where the CA is,
which root to trust, and how a person signs in. Kept apart so that each command's
module loads only what it runs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from agent.caclient import CAClientError

#: How long a person has to sign in (``--provisioner``, ``devid login``), in seconds.
DEFAULT_TIMEOUT = 300.0


def add_ca_options(parser: argparse.ArgumentParser, *, url_required: bool = False) -> None:
    parser.add_argument(
        "--ca-url",
        default=os.environ.get("DEVID_CA_URL"),
        help="the CA's URL, e.g. https://localhost:8443 (default $DEVID_CA_URL"
        + ("" if url_required else ", or the token's audience")
        + ")",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(os.environ["DEVID_ROOT"]) if os.environ.get("DEVID_ROOT") else None,
        help="the root certificate to trust (default $DEVID_ROOT)",
    )


def add_flow_options(parser: argparse.ArgumentParser) -> None:
    """The sign-in options ``devid login`` and ``devid ca certificate --provisioner`` share
    (here, so that the latter's parser loads nothing of :mod:`hosts.cli.login_commands`)."""
    parser.add_argument(
        "--device",
        action="store_true",
        help="sign in on another device: open the URL printed and enter the code"
        " (the provider must offer device authorization)",
    )
    parser.add_argument(
        "--no-browser",
        action="store_true",
        help="do not open a browser; only print the URL to open",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"how long to wait for the sign-in, in seconds (default {DEFAULT_TIMEOUT:g})",
    )


def need_url(args: argparse.Namespace) -> str:
    if not args.ca_url:
        raise CAClientError("pass --ca-url URL (or set $DEVID_CA_URL)")
    return str(args.ca_url)
