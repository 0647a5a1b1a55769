"""The load generator: HTTP/1.1 keep-alive connections over TLS, one request in flight each.

Built from trio's TLS streams and h11, the same pieces as the raw host, so
that the client spends as little CPU per request as Python allows: on a
2-core machine the load generator shares the CPUs with the server (its CPU
time is reported next to every figure). ``httpx.AsyncClient`` costs two to
three times as much per request at 32 connections (its pool is scanned on
every request), which made the client, not the server, the limit there.

Each connection is opened (TCP + TLS handshake, verifying the server against
the CA's root) before the requests it is timed for; a worker task owns one
connection and takes the next body from the shared list until none is left,
so at most ``len(connections)`` requests are in flight. A connection that
breaks is reported as an error and opened again.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import pairwise

import h11
import trio

MAX_RECV = 65536
CONNECT_TIMEOUT_S = 10.0


class ConnectionBroken(Exception):
    """The server closed the connection or broke the protocol."""


class Connection:
    """One keep-alive HTTPS connection speaking HTTP/1.1 through h11."""

    def __init__(self, stream: trio.SSLStream[trio.SocketStream], authority: str) -> None:
        self.stream = stream
        self.authority = authority
        self.h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, host: str, port: int, context: ssl.SSLContext) -> Connection:
        with trio.fail_after(CONNECT_TIMEOUT_S):
            tcp = await trio.open_tcp_stream(host, port)
            stream = trio.SSLStream(tcp, context, server_hostname=host, https_compatible=True)
            try:
                await stream.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        return cls(stream, f"{host}:{port}")

    async def _next_event(self) -> object:
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await self.stream.receive_some(MAX_RECV)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise ConnectionBroken(str(exc)) from None
                self.h11.receive_data(bytes(data))
                continue
            return event

    async def post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        """POST *body*; the status and the whole response body."""
        headers = [
            ("host", self.authority),
            ("content-type", content_type),
            ("content-length", str(len(body))),
        ]
        try:
            data = self.h11.send(h11.Request(method="POST", target=path, headers=headers))
            data += self.h11.send(h11.Data(data=body))
            data += self.h11.send(h11.EndOfMessage())
            await self.stream.send_all(data)
            status = 0
            chunks: list[bytes] = []
            while True:
                event = await self._next_event()
                if isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise ConnectionBroken("the server closed the connection")
            if self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state is h11.MUST_CLOSE:
                raise ConnectionBroken("the server asked to close the connection")
            self.h11.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionBroken(str(exc)) from None
        except h11.ProtocolError as exc:
            raise ConnectionBroken(f"HTTP protocol error: {exc}") from None
        return status, b"".join(chunks)

    async def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
    ) -> Response:
        """Any request; the status, the response headers and the whole body.

        The general form of :meth:`post` (which stays lean for the signing load):
        the ACME client needs the headers (Replay-Nonce, Location) and HEAD.
        """
        sent = [("host", self.authority), *headers]
        if body or method == "POST":
            sent.append(("content-length", str(len(body))))
        try:
            data = self.h11.send(h11.Request(method=method, target=target, headers=sent))
            if body:
                data += self.h11.send(h11.Data(data=body))
            data += self.h11.send(h11.EndOfMessage())
            await self.stream.send_all(data)
            status = 0
            received: list[tuple[bytes, bytes]] = []
            chunks: list[bytes] = []
            while True:
                event = await self._next_event()
                if isinstance(event, h11.Response):
                    status = event.status_code
                    received = [(bytes(k), bytes(v)) for k, v in event.headers]
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise ConnectionBroken("the server closed the connection")
            if self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state is h11.MUST_CLOSE:
                raise ConnectionBroken("the server asked to close the connection")
            self.h11.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionBroken(str(exc)) from None
        except h11.ProtocolError as exc:
            raise ConnectionBroken(f"HTTP protocol error: {exc}") from None
        return Response(status, received, b"".join(chunks))

    async def aclose(self) -> None:
        with trio.move_on_after(1), suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.aclose()


@dataclass(frozen=True)
class Response:
    """What :meth:`Connection.request` got back (header names are lower case)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first header called *name* (lower case), decoded."""
        wanted = name.encode("ascii")
        for key, value in self.headers:
            if key == wanted:
                return value.decode("latin-1")
        return None


@dataclass
class LevelOutcome:
    latencies: list[float]
    errors: list[str]
    elapsed: float
    timed_out: bool
    #: When each accepted request finished, in seconds since the round began (in order).
    finished_at: list[float] = field(default_factory=list)

    def longest_stall(self) -> float:
        """The longest time in the round in which no request finished, in seconds.

        A stall of the whole server (an fsync that takes a second, a garbage
        collection, the server's CPU taken by another process) holds every request in
        flight: at 32 connections one such stall is over 1% of an 800-request round,
        so it alone sets p99. Next to p99 it tells such a pause from a spread tail.
        """
        moments = [0.0, *self.finished_at]
        return max((b - a for a, b in pairwise(moments)), default=0.0)


class Pool:
    """``size`` connections to one server, opened together (handshakes not timed).

    With *client_contexts*, connection ``i`` uses ``client_contexts[i % len]`` (each
    with a client certificate of its own, for mutual TLS) instead of *context*.
    """

    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext,
        size: int,
        *,
        client_contexts: Sequence[ssl.SSLContext] = (),
    ) -> None:
        self.host, self.port, self.context, self.size = host, port, context, size
        self.client_contexts = tuple(client_contexts)
        self.connections: list[Connection] = []

    def context_for(self, index: int) -> ssl.SSLContext:
        """The TLS context of connection *index*."""
        if self.client_contexts:
            return self.client_contexts[index % len(self.client_contexts)]
        return self.context

    async def __aenter__(self) -> Pool:
        opened: dict[int, Connection] = {}

        async def one(index: int) -> None:
            context = self.context_for(index)
            opened[index] = await Connection.open(self.host, self.port, context)

        try:
            async with trio.open_nursery() as nursery:
                for index in range(self.size):
                    nursery.start_soon(one, index)
        except BaseException:
            for connection in opened.values():
                await connection.aclose()
            raise
        self.connections = [opened[index] for index in range(self.size)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for connection in self.connections:
            await connection.aclose()
        self.connections = []

    async def reopen(self, index: int) -> Connection:
        await self.connections[index].aclose()
        self.connections[index] = await Connection.open(
            self.host, self.port, self.context_for(index)
        )
        return self.connections[index]


def accepted(status: int, body: bytes) -> bool:
    """A ``POST /1.0/sign`` that issued a certificate."""
    return status == 201 and b'"crt"' in body


async def drive(
    pool: Pool,
    path: str,
    bodies: Sequence[bytes],
    timeout: float,
    max_errors: int,
    on_response: Callable[[int], None] | None = None,
    *,
    content_type: str = "application/json",
    ok: Callable[[int, bytes], bool] = accepted,
) -> LevelOutcome:
    """Send every body through the pool's connections, one in flight per connection;
    stop at *timeout* seconds or after *max_errors* failures.

    *on_response* gets the number of responses so far (for a live progress line).
    """
    latencies: list[float] = []
    finished_at: list[float] = []
    errors: list[str] = []
    next_index = 0
    clock = time.perf_counter
    began = clock()

    async def worker(slot: int) -> None:
        nonlocal next_index
        connection = pool.connections[slot]
        while next_index < len(bodies) and len(errors) < max_errors:
            body = bodies[next_index]
            next_index += 1  # no await since the check: trio tasks cannot interleave here
            started = clock()
            try:
                status, answer = await connection.post(path, body, content_type)
            except (ConnectionBroken, OSError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                try:
                    connection = await pool.reopen(slot)
                except (OSError, trio.TooSlowError, trio.BrokenResourceError) as again:
                    errors.append(f"reconnecting failed: {type(again).__name__}: {again}")
                    return
                continue
            finished = clock()
            if ok(status, answer):
                latencies.append(finished - started)
                finished_at.append(finished - began)
            else:
                errors.append(f"HTTP {status}: {answer[:300].decode(errors='replace')}")
            if on_response is not None:
                on_response(len(latencies) + len(errors))

    with trio.move_on_after(timeout) as scope:
        async with trio.open_nursery() as nursery:
            for slot in range(min(len(pool.connections), len(bodies))):
                nursery.start_soon(worker, slot)
    return LevelOutcome(latencies, errors, clock() - began, scope.cancelled_caught, finished_at)
