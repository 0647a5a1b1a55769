"""One HTTP/1.1 connection: h11 parses each request, the shared router answers.

h11 reads requests (request line, headers, body framing, every protocol error a
400); the response is written here in one piece, in the form h11 would write it
(``HTTP/1.1 STATUS \\r\\n``, the router's headers, ``content-length``, ``server``,
``connection: close`` when the connection ends after it). A request gets an h11
connection of its own, handed what the client sent past the previous request
(pipelining): creating one costs about a microsecond, and h11's own bookkeeping of
the response side cost twenty times that per request.

Timeouts: the wait for a request's head (and the TLS handshake before the first)
is bounded by ``idle_timeout``, reading its body by :data:`REQUEST_TIMEOUT`; one
cancel scope per connection carries both, its deadline moved per phase.
"""

from __future__ import annotations

import logging
import math
from typing import Any
from urllib.parse import parse_qsl, unquote

import h11
import trio

from engine.errors import BadRequest, PayloadTooLarge
from hosts.http.routing import HTTPRequest, HTTPResponse, Router, error_response

from .tls import PlainStream, TLSStream

#: A connection: TLS, or plain TCP for the SCEP-over-HTTP listener.
Stream = TLSStream | PlainStream

log = logging.getLogger("devid.raw")

MAX_RECV = 65536
IDLE_TIMEOUT = 15.0  # the default of [server] idle_timeout
REQUEST_TIMEOUT = 30.0
MAX_HEADER_BYTES = 16 * 1024
SERVER = "devid"
_FORBIDDEN_IN_HEADERS = ("\r", "\n", "\0")


class _Closed(Exception):
    """The peer went away or broke the protocol; stop serving this connection."""


class _Requests:
    """The requests arriving on one connection, each parsed by an h11 connection of its own."""

    __slots__ = ("closed", "conn", "leftover", "stream")

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        # What the client sent past the request being read, and whether it has closed.
        self.leftover = b""
        self.closed = False

    def start_next(self) -> None:
        """A parser for the next request, given what was received past this one."""
        self.leftover, self.closed = self.conn.trailing_data
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        if self.leftover:
            self.conn.receive_data(self.leftover)
        if self.closed:
            self.conn.receive_data(b"")

    async def next_event(self) -> Any:
        conn = self.conn
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await self.stream.receive_some(MAX_RECV)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    raise _Closed() from None
                conn.receive_data(data)
                continue
            return event


def response_bytes(response: HTTPResponse, *, close: bool) -> bytes:
    """The whole response as it goes on the wire."""
    lines = [f"HTTP/1.1 {response.status} \r\n"]
    for name, value in response.headers:
        if any(c in value or c in name for c in _FORBIDDEN_IN_HEADERS):
            raise ValueError(f"the response header {name!r} holds a line break or NUL")
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"content-length: {len(response.body)}\r\nserver: {SERVER}\r\n")
    if close:
        lines.append("connection: close\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1") + response.body


async def _respond(stream: Stream, response: HTTPResponse, *, close: bool) -> None:
    # One write for the whole response: one TLS record run and one send.
    try:
        await stream.send_all(response_bytes(response, close=close))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise _Closed() from None


async def _read_body(requests: _Requests, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await requests.next_event()
        if type(event) is h11.Data:
            size += len(event.data)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds {limit} bytes")
            chunks.append(bytes(event.data))
        elif type(event) is h11.EndOfMessage:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        elif type(event) is h11.ConnectionClosed:
            raise _Closed()


async def _drain(stream: Stream, limit: int = 4 * 1024 * 1024) -> None:
    """Read and discard what the client is still sending, briefly, so that closing
    does not reset the connection before it has read our error response."""
    received = 0
    with trio.move_on_after(1.0):
        while received < limit:
            try:
                data = await stream.receive_some(MAX_RECV)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            received += len(data)


async def serve_connection(
    stream: Stream,
    router: Router,
    base_url: str,
    *,
    client: str = "",
    idle_timeout: float = IDLE_TIMEOUT,
) -> None:
    """Serve requests on one TLS connection until it closes or has been idle (no request
    in progress) for *idle_timeout* seconds, the TLS handshake and the wait for the
    first request included. *client* is the peer's IP address. The stream is closed
    on return."""
    with trio.move_on_after(idle_timeout) as handshake:
        try:
            await stream.do_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            stream.close(notify=False)
            return
    if handshake.cancelled_caught:
        stream.close(notify=False)
        return
    peer = stream.peer_certificate()
    requests = _Requests(stream)
    try:
        with trio.CancelScope() as timer:
            while True:
                timer.deadline = trio.current_time() + idle_timeout
                event = await requests.next_event()
                if type(event) is not h11.Request:  # ConnectionClosed, or not a request
                    break
                if not await _handle(requests, timer, event, router, peer, base_url, client):
                    break
                requests.start_next()
    except h11.RemoteProtocolError as exc:
        try:
            response = error_response(BadRequest(f"malformed HTTP request: {exc}"))
            await _respond(stream, response, close=True)
        except _Closed:
            pass
    except _Closed:
        pass
    finally:
        stream.close()


def _keep_alive(request: h11.Request, headers: dict[str, str]) -> bool:
    """Whether the connection stays open after this request (h11's rule: HTTP/1.1 and no
    ``Connection: close``)."""
    if request.http_version != b"1.1":
        return False
    connection = headers.get("connection")
    if connection is None:
        return True
    return "close" not in (token.strip().lower() for token in connection.split(","))


async def _handle(
    requests: _Requests,
    timer: trio.CancelScope,
    request: h11.Request,
    router: Router,
    peer: bytes | None,
    base_url: str,
    client: str,
) -> bool:
    """Read the request's body, answer it; whether the connection may serve another."""
    stream = requests.stream
    headers: dict[str, str] = {}
    for name, value in request.headers:
        key = name.decode("latin-1")  # h11 gives names in lower case
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    target = request.target.decode("latin-1")
    path, _, query_string = target.partition("?")
    method = request.method.decode("ascii", "replace").upper()
    host = headers.get("host")
    # The scheme is the connection's (base_url's): https, or http on the SCEP listener.
    scheme = base_url.partition("://")[0] or "https"
    request_base = f"{scheme}://{host}" if host is not None else base_url
    try:
        length = headers.get("content-length")
        router.check_length(int(length) if length and length.isdigit() else None)
        timer.deadline = trio.current_time() + REQUEST_TIMEOUT
        body = await _read_body(requests, router.max_body_bytes)
    except PayloadTooLarge as exc:
        timer.deadline = math.inf
        refused = HTTPRequest(
            method=method, path=unquote(path), headers=headers, base_url=request_base, client=client
        )
        await _respond(stream, await router.refuse(refused, exc), close=True)
        await _drain(stream)
        return False
    timer.deadline = math.inf
    http_request = HTTPRequest(
        method=method,
        path=unquote(path),
        query=dict(parse_qsl(query_string, keep_blank_values=True)) if query_string else {},
        headers=headers,
        body=body,
        peer_certificate=peer,
        base_url=request_base,
        client=client,
    )
    response = await router.dispatch(http_request)
    keep_alive = _keep_alive(request, headers)
    await _respond(stream, response, close=not keep_alive)
    return keep_alive
