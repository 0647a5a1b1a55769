"""Running the quart host: TLS, addresses, graceful shutdown."""

from __future__ import annotations

import logging
import signal
import ssl
from collections.abc import Awaitable, Callable
from datetime import timedelta

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from engine.durations import parse_duration
from engine.errors import BadRequest, ConfigurationError
from hosts.core.authority import Authority
from hosts.core.config import parse_listen
from hosts.core.servercert import ServerTLS

from . import peercert
from .app import create_app

log = logging.getLogger("devid.server")


class _TLSConfig(HypercornConfig):
    """hypercorn config that serves with our own (rotatable) SSL context."""

    def __init__(self, tls: ServerTLS) -> None:
        super().__init__()
        self._tls = tls
        self.certfile = str(tls.certfile)
        self.keyfile = str(tls.keyfile)

    def create_ssl_context(self) -> ssl.SSLContext:
        return self._tls.context


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


async def serve(
    authority: Authority,
    listen: str,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until *shutdown_trigger* returns (default: SIGINT or SIGTERM).

    ``task_status.started`` receives the base URLs, so a test can start the
    server on port 0 inside its nursery and learn where it listens.
    """
    host, port = parse_listen(listen)
    peercert.install()
    names = [*authority.config.server.dns_names]
    if host not in ("0.0.0.0", "::") and host not in names:
        names.append(host)
    tls = ServerTLS(authority, names)
    config = _TLSConfig(tls)
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.alpn_protocols = ["h2", "http/1.1"]
    config.accesslog = None
    # hypercorn's default errorlog "-" adds its own plain-text stderr handler, which
    # breaks --log-format json; hand it our logger so records go through the root handler.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 5
    config.worker_class = "trio"
    app = create_app(authority)

    async def rotate_certificate() -> None:
        while True:
            await trio.sleep(tls.rotate_every.total_seconds())
            await trio.to_thread.run_sync(tls.rotate)
            log.info("server certificate rotated")

    sync_every = inventory_sync_interval(authority)

    async def sync_inventory() -> None:
        assert sync_every is not None
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
            await trio.sleep(sync_every.total_seconds())

    async with trio.open_nursery() as nursery:

        async def run_server(task_status: trio.TaskStatus[list[str]]) -> None:
            await hypercorn_serve(
                app,
                config,
                shutdown_trigger=shutdown_trigger or wait_for_signal,
                task_status=task_status,
            )
            nursery.cancel_scope.cancel()

        binds: list[str] = await nursery.start(run_server)
        bound_port = int(binds[0].rsplit(":", 1)[1])
        urls = [
            f"https://[{n}]:{bound_port}" if ":" in n else f"https://{n}:{bound_port}"
            for n in names
        ]
        authority.set_base_urls(urls)
        nursery.start_soon(rotate_certificate)
        if sync_every is not None:
            nursery.start_soon(sync_inventory)
        log.info(
            "devid CA listening",
            extra={"urls": urls, "root_fingerprint": authority.root_fingerprint},
        )
        task_status.started(urls)
