"""One HTTP/1.1 connection: requests parsed by :mod:`hosts.raw.http11`, the shared router
answers.

The response is written here in one piece (``HTTP/1.1 STATUS \\r\\n``, the router's
headers, ``content-length``, ``server``, ``connection: close`` when the connection
ends after it). Requests may be pipelined: what arrives past one request stays in
the connection's buffer for the next.

Timeouts: the wait for a request's head (and the TLS handshake before the first)
is bounded by ``idle_timeout``, reading its body by :data:`REQUEST_TIMEOUT`; one
cancel scope per connection carries both, its deadline moved per phase.
"""

from __future__ import annotations

import logging
import math
from urllib.parse import parse_qsl, unquote

import trio

from engine.errors import BadRequest, PayloadTooLarge
from hosts.http.routing import HTTPRequest, HTTPResponse, Router, error_response

from .http11 import MalformedRequest, Request, RequestBuffer
from .tls import TLSStream

log = logging.getLogger("devid.raw")

MAX_RECV = 65536
IDLE_TIMEOUT = 15.0  # the default of [server] idle_timeout
REQUEST_TIMEOUT = 30.0
MAX_HEADER_BYTES = 16 * 1024
SERVER = "devid"
_FORBIDDEN_IN_HEADERS = ("\r", "\n", "\0")


class _Closed(Exception):
    """The peer went away; stop serving this connection."""


class _Requests:
    """The requests arriving on one connection."""

    __slots__ = ("buffer", "stream")

    def __init__(self, stream: TLSStream) -> None:
        self.stream = stream
        self.buffer = RequestBuffer(MAX_HEADER_BYTES)

    async def _receive(self) -> None:
        if self.buffer.closed:
            raise _Closed()
        try:
            data = await self.stream.receive_some(MAX_RECV)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise _Closed() from None
        self.buffer.feed(data)

    async def next_head(self) -> Request | None:
        """The next request's head; None when the client closed the connection between
        requests (a close in the middle of one is :class:`MalformedRequest`)."""
        buffer = self.buffer
        while True:
            request = buffer.take_head()
            if request is not None:
                return request
            if buffer.closed:
                if buffer.data:
                    raise MalformedRequest("the connection closed in the middle of a request")
                return None
            await self._receive()

    async def body(self, request: Request, limit: int) -> bytes:
        """The request's body; PayloadTooLarge past *limit* bytes."""
        buffer = self.buffer
        length = request.content_length
        if length is not None:
            if length > limit:
                raise PayloadTooLarge(f"request body exceeds {limit} bytes")
            while (body := buffer.take(length)) is None:
                await self._receive()
            return body
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = buffer.take_chunk()
            if chunk is None:
                await self._receive()
                continue
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds {limit} bytes")
            chunks.append(chunk)


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


async def _respond(stream: TLSStream, response: HTTPResponse, *, close: bool) -> None:
    # One write for the whole response: one TLS record run and one send.
    try:
        await stream.send_all(response_bytes(response, close=close))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise _Closed() from None


async def _drain(stream: TLSStream, limit: int = 4 * 1024 * 1024) -> None:
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
    stream: TLSStream,
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
                request = await requests.next_head()
                if request is None:
                    break
                if not await _handle(requests, timer, request, router, peer, base_url, client):
                    break
    except MalformedRequest as exc:
        try:
            response = error_response(BadRequest(f"malformed HTTP request: {exc}"))
            await _respond(stream, response, close=True)
        except _Closed:
            pass
    except _Closed:
        pass
    finally:
        stream.close()


async def _handle(
    requests: _Requests,
    timer: trio.CancelScope,
    request: Request,
    router: Router,
    peer: bytes | None,
    base_url: str,
    client: str,
) -> bool:
    """Read the request's body, answer it; whether the connection may serve another."""
    stream = requests.stream
    headers = request.headers
    path, _, query_string = request.target.partition("?")
    method = request.method.upper()
    host = headers.get("host")
    request_base = f"https://{host}" if host is not None else base_url
    try:
        length = request.content_length
        router.check_length(length)
        # Usually the body came with the head: then there is nothing to time.
        body = requests.buffer.take(length) if length is not None else None
        if body is None:
            timer.deadline = trio.current_time() + REQUEST_TIMEOUT
            body = await requests.body(request, router.max_body_bytes)
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
    await _respond(stream, response, close=not request.keep_alive)
    return request.keep_alive
