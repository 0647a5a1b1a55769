"""What every host does besides answering requests: names, signals, background work."""

from __future__ import annotations

import logging
import signal
from datetime import timedelta
from functools import partial

import trio

from engine.durations import parse_duration
from engine.errors import BadRequest, ConfigurationError

from .authority import Authority
from .servercert import ServerTLS

log = logging.getLogger("devid.server")


def server_names(authority: Authority, host: str) -> list[str]:
    """The names in the server certificate: the configured ones plus the listen address."""
    names = [*authority.config.server.dns_names]
    if host not in ("0.0.0.0", "::") and host not in names:
        names.append(host)
    return names


def base_urls(names: list[str], port: int) -> list[str]:
    return [f"https://[{n}]:{port}" if ":" in n else f"https://{n}:{port}" for n in names]


def inventory_sync_interval(authority: Authority) -> timedelta | None:
    value = authority.config.inventory.get("sync_interval")
    if value in (None, "", "0", "0s"):
        return None
    try:
        interval = parse_duration(str(value))
    except BadRequest as exc:
        raise ConfigurationError(f"[inventory] sync_interval: {exc.detail}") from None
    if interval < timedelta(seconds=10):
        raise ConfigurationError("[inventory] sync_interval must be at least 10s")
    return interval


async def wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("shutting down", extra={"signal": signal.Signals(signum).name})
            return


async def rotate_certificate(tls: ServerTLS) -> None:
    while True:
        await trio.sleep(tls.rotate_every.total_seconds())
        await trio.to_thread.run_sync(tls.rotate)
        log.info("server certificate rotated")


async def sync_inventory(authority: Authority, every: timedelta) -> None:
    while True:
        try:
            report = await trio.to_thread.run_sync(authority.sync_inventory)
            log.info(
                "inventory synced",
                extra={
                    "added": report.count("added"),
                    "updated": report.count("updated"),
                    "failed": report.count("error"),
                },
            )
        except Exception:
            log.exception("inventory sync failed; will retry")
        await trio.sleep(every.total_seconds())


def start_background(
    nursery: trio.Nursery, authority: Authority, tls: ServerTLS, *, primary: bool = True
) -> None:
    """Start the host's background tasks; only the primary process syncs the inventory
    (and resumes ACME validations a previous run left unfinished)."""
    nursery.start_soon(rotate_certificate, tls)
    nursery.start_soon(partial(authority.acme.run, resume=primary))
    every = inventory_sync_interval(authority)
    if primary and every is not None:
        nursery.start_soon(sync_inventory, authority, every)
