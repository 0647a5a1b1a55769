"""ACME: complete orders per second, devid against pebble, side by side (the hook).

What this section measures, once every prerequisite below is met (issue 6):
complete orders per second (new account, new order, the authorization, its
http-01 challenge, finalize, certificate download) against devid's ACME
server and against Debian's ``pebble`` (run with ``PEBBLE_VA_NOSLEEP=1``),
both on 127.0.0.1, in the same run, by the same client, with the same local
http-01 responder. Validation is never skipped: pebble's and devid's
validators both fetch the key authorization from the responder.

The result layout (``results["acme"]``), which :mod:`benchmarks.report`
already renders, is built by :func:`summarise`:

- ``parameters``: :meth:`AcmeParams.describe`;
- ``servers``: a list of :class:`ServerFigures` as dicts, devid first;
- ``ratio_devid_to_pebble``: devid's orders/s ÷ pebble's (the issue's target is >= 2).

Until the prerequisites are met, :func:`run_acme` raises
:class:`~benchmarks.common.SectionSkipped` with the reasons, which the run
records under ``skipped`` (no figure is written for the section).
"""

from __future__ import annotations

import shutil
import ssl
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from engine.keys import KeyType

from .common import BenchmarkError, Progress, SectionSkipped, create_ca, rounded
from .common import write_password_file as _write_password_file
from .http import ServerProcess

#: The default ACME provisioner a new devid CA gets (hosts.core.init.ACME_PROVISIONER).
ACME_PROVISIONER = "acme"
#: Where devid serves that provisioner's directory (engine.acme.resources).
DIRECTORY_PATH = f"/acme/{ACME_PROVISIONER}/directory"
#: pebble's environment for the benchmark: no random sleep before validating.
PEBBLE_ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_VA_ALWAYS_VALID": "0"}


@dataclass(frozen=True)
class AcmeParams:
    orders: int = 200
    concurrency: int = 8
    rounds: int = 3
    host: str = "raw"
    max_duration_s: float = 120.0
    startup_timeout_s: float = 60.0

    def describe(self) -> dict[str, Any]:
        return {
            "orders_per_round": self.orders,
            "concurrency": self.concurrency,
            "rounds": self.rounds,
            "devid_host": self.host,
            "challenge": "http-01, one DNS identifier per order, local responder on 127.0.0.1",
            "pebble_environment": PEBBLE_ENV,
            "max_duration_s": self.max_duration_s,
        }


@dataclass(frozen=True)
class ServerFigures:
    """One ACME server's figures (the median round is the headline)."""

    server: str
    orders_per_s: float
    p50_ms: float
    p99_ms: float
    orders: int
    errors: int
    server_cpu_ms_per_order: float | None
    peak_rss_kib: int | None


def summarise(params: AcmeParams, devid: ServerFigures, pebble: ServerFigures) -> dict[str, Any]:
    """The section's result: both servers and devid ÷ pebble."""
    ratio = devid.orders_per_s / pebble.orders_per_s if pebble.orders_per_s else None
    return {
        "parameters": params.describe(),
        "servers": [asdict(devid), asdict(pebble)],
        "ratio_devid_to_pebble": rounded(ratio, 3) if ratio is not None else None,
    }


def pebble_missing() -> str | None:
    if shutil.which("pebble") is None:
        return (
            "pebble is not installed: scripts/install-system-deps installs it (Debian package"
            " pebble)"
        )
    return None


def devid_acme_missing(work_dir: Path, progress: Progress, params: AcmeParams) -> str | None:
    """Start ``devid serve`` on a fresh CA and ask for the ACME directory; why not, or None."""
    data_dir = work_dir / "acme-probe" / "ca"
    init = create_ca(data_dir, KeyType.P256)
    password = _write_password_file(work_dir / "acme-probe" / "password")
    server = ServerProcess(data_dir, password, work_dir / "acme-probe", params.host)
    try:
        url = server.wait_ready(init.root_path, params.startup_timeout_s)
        context = ssl.create_default_context(cafile=str(init.root_path))
        with httpx.Client(verify=context, timeout=5.0) as client:
            response = client.get(f"{url}{DIRECTORY_PATH}")
        if response.status_code != 200:
            return (
                f"devid serve answers {response.status_code} at {DIRECTORY_PATH}:"
                " its ACME server is not there yet"
            )
        try:
            directory = response.json()
        except ValueError:
            directory = None
        if not isinstance(directory, dict) or "newOrder" not in directory:
            return f"{DIRECTORY_PATH} is not an ACME directory"
    except BenchmarkError as exc:
        return f"devid serve did not start for the ACME probe: {str(exc).splitlines()[0]}"
    finally:
        server.stop()
    progress(f"acme: devid serves an ACME directory at {DIRECTORY_PATH}")
    return None


def order_driver_missing() -> str | None:
    """The client side: one ACME client driving both servers with one http-01 responder.

    It is written together with devid's ACME server; this says so while it is absent.
    """
    return (
        "the order driver (account, order, http-01 through a local responder, finalize,"
        " download; the same client for devid and pebble) is added to benchmarks/acme.py"
        " with devid's ACME server"
    )


def run_acme(params: AcmeParams, work_dir: Path, progress: Progress) -> dict[str, Any]:
    """Skip with every missing prerequisite named; nothing is measured until all are met."""
    reasons = [
        reason
        for reason in (
            pebble_missing(),
            devid_acme_missing(work_dir, progress, params),
            order_driver_missing(),
        )
        if reason is not None
    ]
    raise SectionSkipped("; ".join(reasons))
