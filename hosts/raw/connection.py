"""One HTTP/1.1 connection: h11 parses, the shared router answers."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, unquote

import h11
import trio

from engine.errors import BadRequest, PayloadTooLarge
from hosts.http.routing import HTTPRequest, HTTPResponse, Router, error_response

log = logging.getLogger("devid.raw")

MAX_RECV = 65536
IDLE_TIMEOUT = 15.0  # the default of [server] idle_timeout
REQUEST_TIMEOUT = 30.0
MAX_HEADER_BYTES = 16 * 1024
SERVER = b"devid"


class _Closed(Exception):
    """The peer went away or broke the protocol; stop serving this connection."""


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream) -> Any:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive_some(MAX_RECV)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise _Closed() from None
            conn.receive_data(bytes(data))
            continue
        return event


async def _respond(
    conn: h11.Connection, stream: trio.abc.Stream, response: HTTPResponse, *, close: bool
) -> None:
    headers = [(name.encode(), value.encode("latin-1")) for name, value in response.headers]
    headers.append((b"content-length", str(len(response.body)).encode()))
    headers.append((b"server", SERVER))
    if close:
        headers.append((b"connection", b"close"))
    # One write for the whole response: one TLS record run and one send, not three.
    data = conn.send(h11.Response(status_code=response.status, headers=headers)) or b""
    if response.body:
        data += conn.send(h11.Data(data=response.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise _Closed() from None


async def _read_body(conn: h11.Connection, stream: trio.abc.Stream, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await _next_event(conn, stream)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds {limit} bytes")
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(chunks)
        elif isinstance(event, h11.ConnectionClosed):
            raise _Closed()


async def _drain(stream: trio.abc.Stream, limit: int = 4 * 1024 * 1024) -> None:
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
    stream: trio.SSLStream[Any],
    router: Router,
    base_url: str,
    *,
    client: str = "",
    idle_timeout: float = IDLE_TIMEOUT,
) -> None:
    """Serve requests on one TLS connection until it closes or has been idle (no request
    in progress) for *idle_timeout* seconds, the TLS handshake and the wait for the
    first request included. *client* is the peer's IP address."""
    try:
        with trio.fail_after(idle_timeout):
            await stream.do_handshake()
    except (trio.BrokenResourceError, trio.TooSlowError, trio.ClosedResourceError):
        await trio.aclose_forcefully(stream)
        return
    peer = stream.getpeercert(binary_form=True) or None
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
    try:
        while True:
            try:
                with trio.fail_after(idle_timeout):
                    event = await _next_event(conn, stream)
            except trio.TooSlowError:
                break
            if isinstance(event, h11.ConnectionClosed):
                break
            if not isinstance(event, h11.Request):
                break
            await _handle(conn, stream, event, router, peer, base_url, client)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                break
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                break
    except h11.RemoteProtocolError as exc:
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                response = error_response(BadRequest(f"malformed HTTP request: {exc}"))
                await _respond(conn, stream, response, close=True)
            except (_Closed, h11.LocalProtocolError):
                pass
    except _Closed:
        pass
    finally:
        try:
            with trio.move_on_after(1):
                await stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def _handle(
    conn: h11.Connection,
    stream: trio.SSLStream[Any],
    request: h11.Request,
    router: Router,
    peer: bytes | None,
    base_url: str,
    client: str,
) -> None:
    headers: dict[str, str] = {}
    for name, value in request.headers:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    target = request.target.decode("latin-1")
    path, _, query_string = target.partition("?")
    close = False
    try:
        length = headers.get("content-length")
        router.check_length(int(length) if length and length.isdigit() else None)
        with trio.fail_after(REQUEST_TIMEOUT):
            body = await _read_body(conn, stream, router.max_body_bytes)
    except PayloadTooLarge as exc:
        refused = HTTPRequest(
            method=request.method.decode("ascii", "replace").upper(),
            path=unquote(path),
            headers=headers,
            base_url=f"https://{headers['host']}" if "host" in headers else base_url,
            client=client,
        )
        await _respond(conn, stream, await router.refuse(refused, exc), close=True)
        await _drain(stream)
        return
    except trio.TooSlowError:
        return
    http_request = HTTPRequest(
        method=request.method.decode("ascii", "replace").upper(),
        path=unquote(path),
        query=dict(parse_qsl(query_string, keep_blank_values=True)),
        headers=headers,
        body=body,
        peer_certificate=peer,
        base_url=f"https://{headers['host']}" if "host" in headers else base_url,
        client=client,
    )
    response = await router.dispatch(http_request)
    if headers.get("connection", "").lower() == "close":
        close = True
    await _respond(conn, stream, response, close=close)
