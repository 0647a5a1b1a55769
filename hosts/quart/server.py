"""Running the quart host: TLS, addresses, graceful shutdown."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable

import trio
from hypercorn.trio import serve as hypercorn_serve
from quart_trio import QuartTrio

from hosts.core.authority import Authority
from hosts.core.config import parse_listen
from hosts.core.runtime import (
    GRACEFUL_TIMEOUT,
    base_urls,
    inventory_sync_interval,
    reload_on_hangup,
    request_threads_and_frozen_heap,
    server_names,
    start_background,
    wait_for_signal,
)
from hosts.core.servercert import ServerTLS

from . import peercert
from .app import create_app

log = logging.getLogger("devid.server")


class _TLSConfig(peercert.LimitedConfig):
    """hypercorn config that serves with our own (rotatable) SSL context, within the
    connection limits of ``[server]``."""

    def __init__(self, tls: ServerTLS, *, idle_timeout: float, max_connections: int) -> None:
        super().__init__(idle_timeout=idle_timeout, max_connections=max_connections)
        self._tls = tls
        self.certfile = str(tls.certfile)
        self.keyfile = str(tls.keyfile)

    def create_ssl_context(self) -> ssl.SSLContext:
        return self._tls.context


async def serve(
    authority: Authority,
    listen: str,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until *shutdown_trigger* returns (default: SIGINT or SIGTERM, and then SIGHUP
    reloads the configuration: :func:`hosts.core.runtime.reload_on_hangup`).

    ``task_status.started`` receives the base URLs, so a test can start the
    server on port 0 inside its nursery and learn where it listens.
    """
    host, port = parse_listen(listen)
    peercert.install()
    inventory_sync_interval(authority)  # a bad setting stops start-up, not a task later
    names = server_names(authority, host)
    tls = ServerTLS(authority, names)
    settings = authority.config.server
    config = _TLSConfig(
        tls, idle_timeout=settings.idle_timeout, max_connections=settings.max_connections
    )
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    if settings.scep_http_listen is not None:
        # SCEP over plain HTTP: the app answers it from a router that serves SCEP only.
        scep_host, scep_port = parse_listen(settings.scep_http_listen)
        bind = f"[{scep_host}]:{scep_port}" if ":" in scep_host else f"{scep_host}:{scep_port}"
        config.insecure_bind = [bind]
    config.alpn_protocols = ["h2", "http/1.1"]
    config.accesslog = None
    # hypercorn's default errorlog "-" adds its own plain-text stderr handler, which
    # breaks --log-format json; hand it our logger so records go through the root handler.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = GRACEFUL_TIMEOUT
    config.worker_class = "trio"
    app = create_app(authority)

    with request_threads_and_frozen_heap():
        await _serve_app(app, config, authority, tls, names, shutdown_trigger, task_status)
    log.info("stopped")


async def _serve_app(
    app: QuartTrio,
    config: _TLSConfig,
    authority: Authority,
    tls: ServerTLS,
    names: list[str],
    shutdown_trigger: Callable[[], Awaitable[None]] | None,
    task_status: trio.TaskStatus[list[str]],
) -> None:
    async with trio.open_nursery() as nursery:
        if shutdown_trigger is None:  # this process's own signals
            await nursery.start(reload_on_hangup, authority, tls)

        async def run_server(task_status: trio.TaskStatus[list[str]]) -> None:
            await hypercorn_serve(
                app,
                config,
                shutdown_trigger=shutdown_trigger or wait_for_signal,
                task_status=task_status,
            )
            nursery.cancel_scope.cancel()

        binds: list[str] = await nursery.start(run_server)
        urls = base_urls(names, int(binds[0].rsplit(":", 1)[1]))
        authority.set_base_urls(urls)
        start_background(nursery, authority, tls)
        log.info(
            "devid CA listening",
            extra={"urls": urls, "root_fingerprint": authority.root_fingerprint},
        )
        task_status.started(urls)
