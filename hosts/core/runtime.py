"""What every host does besides answering requests: names, signals, background work."""

from __future__ import annotations

import gc
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial

import trio

from engine.durations import parse_duration
from engine.errors import BadRequest, ConfigurationError

from .authority import CONFIG_ACTOR, Authority
from .servercert import ServerTLS

log = logging.getLogger("devid.server")


#: Threads per server process that run the blocking part of requests (signing, SQLite).
#: Every request hands its work to a thread (trio.to_thread, through trio's default
#: CapacityLimiter, 40 by default): with 32 connections, 32 threads took turns at the GIL
#: with each other and with the event loop that reads and writes the TLS streams, so each
#: request advanced a switch interval at a time, the event loop waited behind them, and the
#: process sat idle while they all waited on the same group commit together. A few threads
#: keep the CPU busy while a commit waits on fsync; the other requests wait in the
#: limiter's queue, which is first come, first served.
REQUEST_THREADS = 8


@contextmanager
def request_threads_and_frozen_heap(threads: int = REQUEST_THREADS) -> Iterator[None]:
    """While a host serves: at most *threads* requests run their blocking work at a time,
    and what is loaded by then (the CA, plugins, routes, every imported module) is kept
    out of the garbage collector, which otherwise walks it in each full collection
    (30-50 ms with every request in flight held up, a few times a minute under load).
    Both are undone on exit, for a process that goes on (tests, an embedding program)."""
    if threads < 1:
        raise ValueError("threads must be at least 1")
    limiter = trio.to_thread.current_default_thread_limiter()
    default_threads = limiter.total_tokens
    limiter.total_tokens = threads
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        limiter.total_tokens = default_threads


class ConnectionSlots:
    """At most *limit* open connections per server process (``[server] max_connections``).

    A connection past the limit is closed before its TLS handshake; the ones already
    open are not touched. One warning is logged each time the limit starts refusing.
    Used from one trio thread only (no lock).
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the connection limit must be at least 1")
        self.limit = limit
        self.open = 0
        self._refusing = False

    def acquire(self, client: str) -> bool:
        if self.open >= self.limit:
            if not self._refusing:
                self._refusing = True
                log.warning(
                    "connection limit reached; closing new connections until some end",
                    extra={"max_connections": self.limit, "client": client},
                )
            return False
        self.open += 1
        self._refusing = False
        return True

    def release(self) -> None:
        self.open -= 1


def peer_address(stream: trio.abc.Stream) -> str:
    """The client's IP address of a (TLS over) TCP stream, or "" if it is gone already."""
    transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if not isinstance(transport, trio.SocketStream):
        return ""
    try:
        peer = transport.socket.getpeername()
    except OSError:
        return ""
    return str(peer[0]) if isinstance(peer, tuple) else ""


def log_connection_failure(client: str, exc: BaseException) -> None:
    """One line for a connection that ended with an exception: it is closed, the server
    goes on (the traceback only at debug level)."""
    leaf = exc
    while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
        leaf = leaf.exceptions[0]
    log.warning(
        "connection closed after an error: %s: %s",
        type(leaf).__name__,
        leaf,
        extra={"client": client},
    )
    log.debug("the error that closed the connection", exc_info=exc)


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


#: How long requests in flight may take to finish once a server is told to stop.
GRACEFUL_TIMEOUT = 5.0


async def wait_for_signal() -> None:
    """Return at SIGINT or SIGTERM: the server stops accepting connections and gives the
    requests in flight :data:`GRACEFUL_TIMEOUT` seconds to finish."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info(
                "shutting down: no new connections; requests in flight may finish",
                extra={"signal": signal.Signals(signum).name, "grace_seconds": GRACEFUL_TIMEOUT},
            )
            return


def reload(authority: Authority, tls: ServerTLS) -> bool:
    """Take devid.toml again (provisioners, attestation policy and EK roots), the stored
    accounts, and a fresh server certificate; log what changed. An invalid configuration is
    logged and the running one kept. Blocking: run it in a thread."""
    try:
        change = authority.reload()
    except Exception as exc:  # a plugin's from_config may raise anything
        log.error("reload failed; still running the previous configuration: %s", exc)
        authority.ca.auditor.record(
            CONFIG_ACTOR, "config.reloaded", "devid.toml", "refused", error=str(exc)[:500]
        )
        log.debug("the error that stopped the reload", exc_info=exc)
        return False
    try:
        tls.rotate()
    except Exception as exc:
        log.error("reload: the server certificate was not renewed: %s", exc)
        log.debug("the error that stopped renewing the certificate", exc_info=exc)
    log.info(
        "reloaded: %s",
        change.summary(),
        extra={"added": list(change.added), "removed": list(change.removed)},
    )
    return True


async def reload_on_hangup(
    authority: Authority,
    tls: ServerTLS,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Reload (:func:`reload`) on every SIGHUP; connections stay open throughout.

    ``devid serve`` blocks SIGHUP while it starts; a SIGHUP that came meanwhile (the
    operator changed devid.toml while the server was loading it) is delivered here."""
    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        task_status.started()
        async for _ in signals:
            log.info("SIGHUP: reloading the configuration")
            await trio.to_thread.run_sync(reload, authority, tls)


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
