"""TLS on a non-blocking socket, driven by trio's readiness waits.

The raw host's connections: OpenSSL reads and writes the socket itself
(``ssl.SSLSocket`` in non-blocking mode) and trio only waits until the socket is
readable or writable. trio's ``SSLStream`` instead moves every byte through memory
BIOs, a receive and a send lock and a retry loop written in Python: for requests of
a few kilobytes that wrapper cost more CPU than the record encryption itself.

Each operation is tried first and waits only when OpenSSL asks for it
(``SSLWantReadError`` / ``SSLWantWriteError``), so data OpenSSL has already decrypted
is never waited for. Errors of the peer or the network are
:class:`trio.BrokenResourceError`; use after :meth:`TLSStream.close` is
:class:`trio.ClosedResourceError`, as with trio's streams.
"""

from __future__ import annotations

import socket
import ssl

import trio

#: What a broken peer or network raises while reading or writing.
_BROKEN = (ssl.SSLError, OSError)


class TLSStream:
    """The server side of one TLS connection over an accepted TCP socket."""

    __slots__ = ("_closed", "_sock")

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        """Take over *sock* (accepted, any blocking mode); the handshake is :meth:`do_handshake`."""
        sock.setblocking(False)
        self._sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self._closed = False

    def _check_open(self) -> ssl.SSLSocket:
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream was closed")
        return self._sock

    async def do_handshake(self) -> None:
        sock = self._check_open()
        while True:
            try:
                sock.do_handshake()
                return
            except ssl.SSLWantReadError:
                await trio.lowlevel.wait_readable(sock)
            except ssl.SSLWantWriteError:
                await trio.lowlevel.wait_writable(sock)
            except _BROKEN as exc:
                raise trio.BrokenResourceError(f"TLS handshake failed: {exc}") from None

    def peer_certificate(self) -> bytes | None:
        """The client's certificate (DER) if it presented one that verified, else None."""
        return self._check_open().getpeercert(binary_form=True) or None

    async def receive_some(self, max_bytes: int) -> bytes:
        """Up to *max_bytes* of application data; ``b""`` once the peer has closed."""
        sock = self._check_open()
        waited = False
        while True:
            try:
                data = sock.recv(max_bytes)
            except ssl.SSLWantReadError:
                waited = True
                await trio.lowlevel.wait_readable(sock)
                continue
            except ssl.SSLWantWriteError:
                waited = True
                await trio.lowlevel.wait_writable(sock)
                continue
            except ssl.SSLZeroReturnError:
                data = b""
            except _BROKEN as exc:
                raise trio.BrokenResourceError(str(exc)) from None
            if not waited:
                # Data was there already (a pipelined request): still let the other
                # connections run, as every trio stream operation does.
                await trio.lowlevel.checkpoint()
            return data

    async def send_all(self, data: bytes) -> None:
        sock = self._check_open()
        view = memoryview(data)
        while view:
            try:
                sent = sock.send(view)
            except ssl.SSLWantWriteError:
                await trio.lowlevel.wait_writable(sock)
                continue
            except ssl.SSLWantReadError:
                await trio.lowlevel.wait_readable(sock)
                continue
            except _BROKEN as exc:
                raise trio.BrokenResourceError(str(exc)) from None
            view = view[sent:]

    def close(self, *, notify: bool = True) -> None:
        """Close the connection, with a TLS close_notify first when *notify* (as trio's
        ``https_compatible`` streams do: sent, not waited for). Idempotent."""
        if self._closed:
            return
        self._closed = True
        sock = self._sock
        if notify:
            try:
                sock.unwrap()  # sends close_notify, then would wait for the peer's
            except (*_BROKEN, ValueError):
                pass
        trio.lowlevel.notify_closing(sock)
        sock.close()


class PlainStream:
    """A plain-TCP connection with :class:`TLSStream`'s interface, for the listener that
    serves SCEP over HTTP (``[server] scep_http_listen``): no handshake, no peer
    certificate."""

    __slots__ = ("_closed", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._closed = False

    def _check_open(self) -> socket.socket:
        if self._closed:
            raise trio.ClosedResourceError("the stream was closed")
        return self._sock

    async def do_handshake(self) -> None:
        self._check_open()

    def peer_certificate(self) -> bytes | None:
        return None

    async def receive_some(self, max_bytes: int) -> bytes:
        sock = self._check_open()
        while True:
            try:
                data = sock.recv(max_bytes)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from None
            await trio.lowlevel.checkpoint()
            return data

    async def send_all(self, data: bytes) -> None:
        sock = self._check_open()
        view = memoryview(data)
        while view:
            try:
                sent = sock.send(view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from None
            view = view[sent:]

    def close(self, *, notify: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        trio.lowlevel.notify_closing(self._sock)
        self._sock.close()
