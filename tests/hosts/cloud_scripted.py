"""Loopback HTTP servers that answer as a test scripts them, for the cloud clients' tests
(``agent.cloud`` against servers that answer wrongly, slowly or not at all)."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from hosts.testing.metadata import POLL_INTERVAL
from hosts.testing.ports import LOOPBACK

#: Answers one request.
Respond = Callable[[http.server.BaseHTTPRequestHandler], None]


@contextmanager
def answering(respond: Respond | Mapping[str, Respond]) -> Iterator[str]:
    """A loopback HTTP server whose every request (GET, PUT) *respond* answers, or, given
    a mapping, the answer for ``"METHOD PATH"`` (404 for any other); its URL."""

    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        if callable(respond):
            respond(handler)
            return
        key = f"{handler.command} {urlsplit(handler.path).path}"
        respond.get(key, reply(404, b"Not Found"))(handler)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _serve(self) -> None:
            route(self)

        do_GET = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, daemon=True
    )
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def reply(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> Respond:
    """Answer *status* with *body* and *headers*."""

    def respond(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return respond


def dripping(count: int, interval: float) -> Respond:
    """Answer 200 and then one byte every *interval* seconds, *count* bytes in all (or
    until the client goes)."""

    def respond(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(count))
        handler.end_headers()
        for _ in range(count):
            try:
                handler.wfile.write(b"A")
                handler.wfile.flush()
            except OSError:
                return
            time.sleep(interval)

    return respond


@contextmanager
def nothing_listening() -> Iterator[str]:
    """A URL whose port is bound and not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        yield f"http://{LOOPBACK}:{sock.getsockname()[1]}"


@contextmanager
def silent() -> Iterator[str]:
    """A URL whose server accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen(1)
        yield f"http://{LOOPBACK}:{sock.getsockname()[1]}"
