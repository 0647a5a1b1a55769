"""Running the raw host: TLS listeners, graceful shutdown, several worker processes."""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

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
    reload_on_hangup,
    request_threads_and_frozen_heap,
    server_names,
    start_background,
    wait_for_signal,
)
from hosts.core.servercert import ServerTLS
from hosts.http.api import build_plain_router, build_router

from .connection import Stream, serve_connection
from .tls import PlainStream, TLSStream

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
    urls = base_urls(names, port)
    authority.set_base_urls(urls)
    default_base = urls[0]

    settings = authority.config.server
    slots = ConnectionSlots(settings.max_connections)
    # SCEP over plain HTTP ([server] scep_http_listen), on the first worker only.
    plain_router = None
    plain_sock: socket.socket | None = None
    plain_base = ""
    if settings.scep_http_listen is not None and worker == 0:
        plain_router = build_plain_router(authority)
        plain_sock = listening_socket(settings.scep_http_listen)
        plain_base = f"http://{names[0]}:{plain_sock.getsockname()[1]}"

    async def handler(
        conn: socket.socket,
        address: Any,
        *,
        plain: bool = False,
    ) -> None:
        # Whatever happens on one connection stays there: an exception here would
        # reach the server's nursery and stop the process.
        client = str(address[0]) if isinstance(address, tuple) else ""
        if not slots.acquire(client):
            conn.close()
            return
        stream: Stream | None = None
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            serving, base = router, default_base
            if plain:
                assert plain_router is not None
                stream = PlainStream(conn)
                serving, base = plain_router, plain_base
            else:
                stream = TLSStream(conn, tls.context)
            await serve_connection(
                stream, serving, base, client=client, idle_timeout=settings.idle_timeout
            )
        except Exception as exc:
            log_connection_failure(client, exc)
            if stream is not None:
                stream.close(notify=False)
            else:
                conn.close()
        finally:
            slots.release()

    async def plain_handler(conn: socket.socket, address: Any) -> None:
        await handler(conn, address, plain=True)

    try:
        with request_threads_and_frozen_heap(threads):
            await _serve_until_shutdown(
                sock,
                handler,
                authority,
                tls,
                urls,
                worker,
                shutdown_trigger,
                task_status,
                plain=None if plain_sock is None else (plain_sock, plain_base, plain_handler),
            )
    finally:
        if owned:
            sock.close()
        if plain_sock is not None:
            plain_sock.close()
        for path in (tls.certfile, tls.keyfile):
            path.unlink(missing_ok=True)
    log.info("stopped", extra={"host": "raw", "worker": worker})


#: accept() errors that concern one connection only (trio's SocketListener ignores these).
_IGNORED_ACCEPT_ERRORS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM})
#: accept() errors of a process out of resources: wait a little, then accept again.
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
RESOURCE_WAIT_S = 0.1

Handler = Callable[[socket.socket, Any], Awaitable[None]]


async def accept_connections(
    sock: socket.socket, handler: Handler, connections: trio.Nursery
) -> None:
    """Accept on the listening *sock* forever, each connection handled in *connections*.

    The accepted sockets stay plain ``socket.socket`` objects, for
    :class:`hosts.raw.tls.TLSStream` to wrap.
    """
    sock.setblocking(False)
    while True:
        try:
            conn, address = sock.accept()
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)
            continue
        except OSError as exc:
            if exc.errno in _IGNORED_ACCEPT_ERRORS:
                continue
            if exc.errno in _RESOURCE_ERRORS:
                log.error(
                    "accept returned %s (%s); waiting %s s",
                    errno.errorcode.get(exc.errno or 0, "?"),
                    os.strerror(exc.errno or 0),
                    RESOURCE_WAIT_S,
                )
                await trio.sleep(RESOURCE_WAIT_S)
                continue
            raise
        connections.start_soon(handler, conn, address)


async def _serve_until_shutdown(
    sock: socket.socket,
    handler: Handler,
    authority: Authority,
    tls: ServerTLS,
    urls: list[str],
    worker: int,
    shutdown_trigger: Callable[[], Awaitable[None]] | None,
    task_status: trio.TaskStatus[list[str]],
    *,
    plain: tuple[socket.socket, str, Handler] | None = None,
) -> None:
    async with trio.open_nursery() as nursery:
        if shutdown_trigger is None:  # this process's own signals
            await nursery.start(reload_on_hangup, authority, tls)
        start_background(nursery, authority, tls, primary=worker == 0)
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as acceptor:
                acceptor.start_soon(accept_connections, sock, handler, connections)
                if plain is not None:
                    plain_sock, plain_url, plain_handler = plain
                    acceptor.start_soon(accept_connections, plain_sock, plain_handler, connections)
                    log.info("SCEP over plain HTTP", extra={"url": plain_url + "/scep/"})
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
