"""Running the raw host: TLS listeners, graceful shutdown, several worker processes."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import trio

from hosts.core.authority import Authority
from hosts.core.config import parse_listen
from hosts.core.runtime import (
    GRACEFUL_TIMEOUT,
    REQUEST_THREADS,
    ConnectionSlots,
    base_urls,
    inventory_sync_interval,
    log_connection_failure,
    peer_address,
    reload_on_hangup,
    request_threads_and_frozen_heap,
    server_names,
    start_background,
    wait_for_signal,
)
from hosts.core.servercert import ServerTLS
from hosts.http.api import build_router

from .connection import serve_connection

log = logging.getLogger("devid.server")


def listening_socket(
    listen: str, *, port: int | None = None, reuse_port: bool = False
) -> socket.socket:
    """A listening TCP socket on *listen* (or on *port* of its host).

    With *reuse_port*, several sockets can listen on the same port (SO_REUSEPORT)
    and the kernel spreads incoming connections over them.
    """
    host, listen_port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, listen_port if port is None else port))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


def worker_sockets(listen: str, workers: int) -> list[socket.socket]:
    """One listening socket per worker, all on the same port.

    With SO_REUSEPORT each worker accepts from a queue of its own, and the kernel
    spreads connections over them (by a hash of the addresses), instead of every
    worker waking for, and racing to accept from, one shared queue. Where the
    option is missing, the workers share one socket.
    """
    if workers > 1 and hasattr(socket, "SO_REUSEPORT"):
        if parse_listen(listen)[1] != 0:
            # A port some other server listens on is an error, as with one socket:
            # SO_REUSEPORT would let a second devid (same user) share it silently.
            listening_socket(listen).close()
        sockets: list[socket.socket] = []
        try:
            first = listening_socket(listen, reuse_port=True)
            sockets.append(first)
            port = first.getsockname()[1]
            for _ in range(workers - 1):
                sockets.append(listening_socket(listen, port=port, reuse_port=True))
        except OSError:
            for sock in sockets:
                sock.close()
        else:
            return sockets
    shared = listening_socket(listen)
    return [shared] * workers


def worker_cpus(workers: int) -> list[set[int]] | None:
    """A CPU of its own for each of several workers, where the process may use enough.

    A worker is one Python process: its threads take turns holding the GIL, and when
    the kernel runs them on different CPUs every hand-over crosses cores (about a
    third more CPU per issuance on a two-CPU machine, measured). Kept on one CPU,
    the threads hand over in place, and the workers do not meet on one CPU.
    """
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    if workers < 2 or len(allowed) < workers:
        return None
    return [{cpu} for cpu in allowed[:workers]]


async def serve(
    authority: Authority,
    listen: str,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    sock: socket.socket | None = None,
    worker: int = 0,
    threads: int = REQUEST_THREADS,
) -> None:
    """Serve on *listen* (or an inherited *sock*) until *shutdown_trigger* returns.

    ``task_status.started`` receives the base URLs, like the quart host's serve.
    At most *threads* requests run their blocking work at a time (:data:`REQUEST_THREADS`).
    """
    host, _ = parse_listen(listen)
    inventory_sync_interval(authority)
    names = server_names(authority, host)
    tls = ServerTLS(authority, names, alpn=("http/1.1",), instance=f"raw-{os.getpid()}")
    router = build_router(authority)
    owned = sock is None
    sock = sock if sock is not None else listening_socket(listen)
    port = sock.getsockname()[1]
    listener = trio.SSLListener(
        trio.SocketListener(trio.socket.from_stdlib_socket(sock)),
        tls.context,
        https_compatible=True,
    )
    urls = base_urls(names, port)
    authority.set_base_urls(urls)
    default_base = urls[0]

    settings = authority.config.server
    slots = ConnectionSlots(settings.max_connections)

    async def handler(stream: trio.SSLStream[trio.SocketStream]) -> None:
        # Whatever happens on one connection stays there: trio.serve_listeners would
        # hand an exception to the server's nursery and stop the process.
        client = peer_address(stream)
        if not slots.acquire(client):
            await trio.aclose_forcefully(stream)
            return
        try:
            await serve_connection(
                stream, router, default_base, client=client, idle_timeout=settings.idle_timeout
            )
        except Exception as exc:
            log_connection_failure(client, exc)
            await trio.aclose_forcefully(stream)
        finally:
            slots.release()

    try:
        with request_threads_and_frozen_heap(threads):
            await _serve_until_shutdown(
                listener, handler, authority, tls, urls, worker, shutdown_trigger, task_status
            )
    finally:
        if owned:
            sock.close()
        for path in (tls.certfile, tls.keyfile):
            path.unlink(missing_ok=True)
    log.info("stopped", extra={"host": "raw", "worker": worker})


async def _serve_until_shutdown(
    listener: trio.SSLListener[trio.SocketStream],
    handler: Callable[[trio.SSLStream[trio.SocketStream]], Awaitable[None]],
    authority: Authority,
    tls: ServerTLS,
    urls: list[str],
    worker: int,
    shutdown_trigger: Callable[[], Awaitable[None]] | None,
    task_status: trio.TaskStatus[list[str]],
) -> None:
    async with trio.open_nursery() as nursery:
        if shutdown_trigger is None:  # this process's own signals
            await nursery.start(reload_on_hangup, authority, tls)
        start_background(nursery, authority, tls, primary=worker == 0)
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as acceptor:
                acceptor.start_soon(
                    partial(trio.serve_listeners, handler, [listener], handler_nursery=connections)
                )
                log.info(
                    "devid CA listening",
                    extra={
                        "urls": urls,
                        "host": "raw",
                        "worker": worker,
                        "root_fingerprint": authority.root_fingerprint,
                    },
                )
                task_status.started(urls)
                await (shutdown_trigger or wait_for_signal)()
                # Stop accepting; requests in flight get GRACEFUL_TIMEOUT to finish.
                acceptor.cancel_scope.cancel()
            connections.cancel_scope.deadline = trio.current_time() + GRACEFUL_TIMEOUT
        nursery.cancel_scope.cancel()


def _worker_main(
    data_dir: Path,
    password: bytes,
    listen: str,
    sockets: list[socket.socket],
    index: int,
    prepare: Callable[[Authority], None] | None = None,
    cpus: set[int] | None = None,
) -> None:
    from hosts.core.logs import configure_logging

    # Not the supervisor's handlers: SIGTERM and SIGINT stop this worker, and SIGHUP stays
    # blocked (pending, not lost) until serve() takes it to reload.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)  # before any thread starts: they all inherit it

    # Keep only this worker's socket: a socket another worker owns, held open here,
    # would keep receiving connections after that worker died, and none would accept them.
    sock = sockets[index]
    for other in sockets:
        if other is not sock:
            other.close()

    configure_logging(
        os.environ.get("DEVID_LOG_LEVEL", "info"), os.environ.get("DEVID_LOG_FORMAT", "json")
    )
    authority = Authority.load(data_dir, password)
    if prepare is not None:
        prepare(authority)
    try:
        trio.run(lambda: serve(authority, listen, sock=sock, worker=index))
    except KeyboardInterrupt:
        pass
    finally:
        authority.close()


def serve_workers(
    data_dir: Path,
    password: bytes,
    listen: str,
    workers: int,
    *,
    on_ready: Callable[[list[str]], None] | None = None,
    prepare: Callable[[Authority], None] | None = None,
    pin_cpus: bool = True,
) -> int:
    """Run *workers* processes listening on one port; SIGINT/SIGTERM stops them all (each
    drains its requests in flight) and SIGHUP is passed on to each (they reload).

    *prepare* runs in each worker on its freshly loaded authority (command-line overrides).
    With *pin_cpus*, each worker keeps to a CPU of its own when there are enough
    (:func:`worker_cpus`).
    """
    sockets = worker_sockets(listen, workers)
    port = sockets[0].getsockname()[1]
    cpus = worker_cpus(workers) if pin_cpus else None
    context = multiprocessing.get_context("fork")
    processes = [
        context.Process(
            target=_worker_main,
            args=(
                data_dir,
                password,
                listen,
                sockets,
                index,
                prepare,
                cpus[index] if cpus is not None else None,
            ),
            name=f"devid-worker-{index}",
            daemon=False,
        )
        for index in range(workers)
    ]
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    def forward(signum: int, _frame: object) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signum)

    # Before the workers start: a signal from then on reaches them (see _worker_main).
    # They start with SIGHUP blocked, until each can reload.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, forward)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        for process in processes:
            process.start()
        # The supervisor itself passes SIGHUP on (one that came while starting, too).
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        for sock in set(sockets):
            sock.close()
        if on_ready is not None:
            host, _ = parse_listen(listen)
            on_ready([f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}"])
        status = 0
        for process in processes:
            process.join()
            if process.exitcode not in (0, -signal.SIGTERM) and not stopping:
                status = 1
                stop(signal.SIGTERM, None)
        log.info("stopped", extra={"host": "raw", "workers": workers})
        return status
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
