"""hypercorn's per-connection server, made to hold devid's promises.

hypercorn's trio worker builds one ``TCPServer`` per connection; the subclass
below replaces it (:func:`install`) and, for each connection:

- hands the TLS client certificate to the application: hypercorn verifies it but
  does not put it in the ASGI scope, so the handshake is completed first and the
  connection gets its own copy of the connection state with the peer's DER
  certificate in it (hypercorn copies that state into every request's
  ``scope["state"]``);
- takes a slot of ``[server] max_connections`` (:class:`ConnectionSlots`), or is
  closed before its handshake when there is none;
- closes the connection once it has been idle (no request in progress) for
  ``[server] idle_timeout`` seconds, over HTTP/1.1 and HTTP/2 alike, before its
  first request too (hypercorn's own keep-alive timer misses HTTP/2 connections);
- keeps any exception inside: it is logged in one line and closes this
  connection only, never the server's nursery.

HTTP/2 streams that were answered before their request body ended (a 413, or a
handler that never reads the body) get their remaining DATA frames acknowledged
and dropped; hypercorn 0.18 looks such frames up among its open streams and
raises ``KeyError`` out of the connection.
"""

from __future__ import annotations

import math
from typing import Any

import hypercorn.protocol
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Event, Updated
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.trio import run as hypercorn_trio_run
from hypercorn.trio.tcp_server import TCPServer

from hosts.core.runtime import ConnectionSlots, log_connection_failure, peer_address

PEER_CERT_KEY = "devid.peer_certificate"


class LimitedConfig(HypercornConfig):
    """hypercorn's config with devid's connection limits."""

    def __init__(self, *, idle_timeout: float, max_connections: int) -> None:
        super().__init__()
        self.idle_timeout = idle_timeout
        self.connection_slots = ConnectionSlots(max_connections)
        # hypercorn's own timers, for what they do cover: the same figure.
        self.keep_alive_timeout = idle_timeout
        self.ssl_handshake_timeout = idle_timeout


class _AnsweredStream:
    """Stands in for an HTTP/2 stream that has already been answered and closed."""

    idle = True

    async def handle(self, event: StreamEvent) -> None:
        return None


_ANSWERED = _AnsweredStream()


class _Streams(dict[int, Any]):
    """hypercorn's open HTTP/2 streams; a stream that is no longer open reads as one
    that takes whatever still arrives for it and drops it (its DATA is still
    acknowledged, so flow control goes on)."""

    def __missing__(self, stream_id: int) -> _AnsweredStream:
        return _ANSWERED


class DevidH2Protocol(H2Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.streams = _Streams()


class PeerCertTCPServer(TCPServer):
    _idle: trio.CancelScope | None = None

    async def run(self) -> None:
        config = self.config
        if not isinstance(config, LimitedConfig):
            await self._serve(self.config.ssl_handshake_timeout)
            return
        client = peer_address(self.stream)
        if not config.connection_slots.acquire(client):
            await trio.aclose_forcefully(self.stream)
            return
        try:
            self._idle = trio.CancelScope(deadline=trio.current_time() + config.idle_timeout)
            with self._idle:
                await self._serve(config.idle_timeout)
        except* Exception as group:
            log_connection_failure(client, group)
            await trio.aclose_forcefully(self.stream)
        finally:
            config.connection_slots.release()

    async def _serve(self, handshake_timeout: float) -> None:
        stream: Any = self.stream
        if isinstance(stream, trio.SSLStream):
            try:
                with trio.fail_after(handshake_timeout):
                    await stream.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError, trio.ClosedResourceError):
                await trio.aclose_forcefully(stream)
                return
            peer = stream.getpeercert(binary_form=True)
            self.state = {**self.state, PEER_CERT_KEY: peer}
        await super().run()

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, Updated) and self._idle is not None:
            idle_timeout = getattr(self.config, "idle_timeout", math.inf)
            self._idle.deadline = trio.current_time() + idle_timeout if event.idle else math.inf
        await super().protocol_send(event)


def install() -> None:
    """Make hypercorn's trio worker use :class:`PeerCertTCPServer` and
    :class:`DevidH2Protocol` (idempotent)."""
    if not hasattr(hypercorn_trio_run, "TCPServer") or not hasattr(
        hypercorn.protocol, "H2Protocol"
    ):
        raise RuntimeError("this hypercorn version has no trio TCPServer hook; pin hypercorn<0.19")
    hypercorn_trio_run.TCPServer = PeerCertTCPServer
    hypercorn.protocol.H2Protocol = DevidH2Protocol


def peer_certificate(scope: dict[str, Any]) -> bytes | None:
    state = scope.get("state") or {}
    value = state.get(PEER_CERT_KEY)
    return value if isinstance(value, bytes) and value else None
