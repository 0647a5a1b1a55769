"""Hand the TLS client certificate to the application.

hypercorn verifies client certificates but does not put them in the ASGI
scope. Its trio worker builds one ``TCPServer`` per connection; the subclass
below completes the handshake first, then gives that connection its own copy
of the connection state with the peer's DER certificate in it. hypercorn
copies that state into every request's ``scope["state"]``.
"""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.trio import run as hypercorn_trio_run
from hypercorn.trio.tcp_server import TCPServer

PEER_CERT_KEY = "devid.peer_certificate"


class PeerCertTCPServer(TCPServer):
    async def run(self) -> None:
        stream: Any = self.stream
        if isinstance(stream, trio.SSLStream):
            try:
                with trio.fail_after(self.config.ssl_handshake_timeout):
                    await stream.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError):
                await trio.aclose_forcefully(stream)
                return
            peer = stream.getpeercert(binary_form=True)
            self.state = {**self.state, PEER_CERT_KEY: peer}
        await super().run()


def install() -> None:
    """Make hypercorn's trio worker use :class:`PeerCertTCPServer` (idempotent)."""
    if not hasattr(hypercorn_trio_run, "TCPServer"):
        raise RuntimeError("this hypercorn version has no trio TCPServer hook; pin hypercorn<0.19")
    hypercorn_trio_run.TCPServer = PeerCertTCPServer


def peer_certificate(scope: dict[str, Any]) -> bytes | None:
    state = scope.get("state") or {}
    value = state.get(PEER_CERT_KEY)
    return value if isinstance(value, bytes) and value else None
