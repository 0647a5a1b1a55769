"""The side validation talks to, on loopback: an HTTP responder (with TLS on the same
port for https redirects), TLS servers presenting hand-made tls-alpn-01 certificates,
and the values a challenge must answer with."""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.acme.problems import ACMEProblem
from hosts.validation import ValidationConfig
from hosts.validation.tlsalpn01 import ID_PE_ACME_IDENTIFIER

if TYPE_CHECKING:
    from tests.challtestsrv import ChallTestSrv

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
KEYAUTH = TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
CHALLENGE_PATH = f"/.well-known/acme-challenge/{TOKEN}"
TXT_VALUE = (
    base64.urlsafe_b64encode(hashlib.sha256(KEYAUTH.encode()).digest()).rstrip(b"=").decode()
)
ACME_EXT = b"\x04\x20" + hashlib.sha256(KEYAUTH.encode()).digest()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")


async def problem_of(call: Awaitable[None]) -> ACMEProblem:
    with pytest.raises(ACMEProblem) as info:
        await call
    return info.value


def config_for(dns: ChallTestSrv, **overrides: Any) -> ValidationConfig:
    values: dict[str, Any] = {"dns_resolver": dns.dns_resolver, "timeout": 5.0}
    values.update(overrides)
    return ValidationConfig(**values)


# --- an HTTP responder (plain, or TLS on the same port) ------------------------------


@attrs.frozen
class Seen:
    path: str
    host: str
    tls: bool


@attrs.frozen
class Route:
    status: int = 200
    body: bytes = b""
    location: str | None = None
    hang: bool = False


class _Replay(trio.abc.Stream):
    """A stream whose first bytes were already read (to sniff TLS)."""

    def __init__(self, inner: trio.SocketStream, prefix: bytes) -> None:
        self.inner, self.prefix = inner, prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.prefix:
            data, self.prefix = self.prefix, b""
            return data
        return bytes(await self.inner.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


class HTTPResponder:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self.snis: list[str | None] = []
        self.port = 0
        self.tls = tls
        if tls is not None:
            tls.sni_callback = lambda _obj, name, _ctx: self.snis.append(name)

    async def handle(self, tcp: trio.SocketStream) -> None:
        stream: trio.abc.Stream = tcp
        try:
            first = await tcp.receive_some(65536)
            is_tls = bool(first) and first[0] == 0x16 and self.tls is not None
            if is_tls:
                assert self.tls is not None
                stream = trio.SSLStream(_Replay(tcp, bytes(first)), self.tls, server_side=True)
                buf = b""
            else:
                buf = bytes(first)
            while b"\r\n\r\n" not in buf and len(buf) < 65536:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                buf += chunk
            head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            path = head[0].split(" ")[1]
            headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in head[1:])}
            self.seen.append(Seen(path, headers.get("host", ""), is_tls))
            route = self.routes.get(path, Route(404, b"no such challenge"))
            if route.hang:
                await trio.sleep_forever()
            extra = f"Location: {route.location}\r\n" if route.location else ""
            await stream.send_all(
                f"HTTP/1.1 {route.status} X\r\nContent-Length: {len(route.body)}\r\n"
                f"Content-Type: text/plain\r\nConnection: close\r\n{extra}\r\n".encode()
                + route.body
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


async def start_http(
    nursery: trio.Nursery, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> HTTPResponder:
    responder = HTTPResponder(tls)
    listeners = await nursery.start(partial(trio.serve_tcp, responder.handle, 0, host=host))
    responder.port = listeners[0].socket.getsockname()[1]
    return responder


# --- a TLS server for tls-alpn-01 -------------------------------------------------------


def acme_cert(
    key: ec.EllipticCurvePrivateKey,
    sans: list[x509.GeneralName],
    extension: bytes | None = ACME_EXT,
    critical: bool = True,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme validation")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if extension is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(ID_PE_ACME_IDENTIFIER, extension), critical=critical
        )
    return builder.sign(key, hashes.SHA256())


class TLSServer:
    def __init__(self, context: ssl.SSLContext | None) -> None:
        self.context = context
        self.snis: list[str | None] = []
        self.port = 0
        if context is not None:
            context.sni_callback = lambda _obj, name, _ctx: self.snis.append(name)

    async def handle(self, tcp: trio.SocketStream) -> None:
        if self.context is None:  # not TLS at all
            await tcp.send_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            await trio.aclose_forcefully(tcp)
            return
        stream = trio.SSLStream(tcp, self.context, server_side=True)
        try:
            await stream.do_handshake()
            await stream.receive_some(1)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


async def start_tls(
    nursery: trio.Nursery,
    tmp_path: Path,
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate | None,
    *,
    alpn: list[str] | None = None,
    host: str = "127.0.0.1",
) -> TLSServer:
    context: ssl.SSLContext | None = None
    if cert is not None:
        pem = tmp_path / "tls-alpn.pem"
        pem.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            + cert.public_bytes(serialization.Encoding.PEM)
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pem)
        context.set_alpn_protocols(["acme-tls/1"] if alpn is None else alpn)
    server = TLSServer(context)
    listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host=host))
    server.port = listeners[0].socket.getsockname()[1]
    return server


# --- what a failed validation tells the ACME client ------------------------------------
# Validation fetches from addresses an account holder chooses (private ones included by
# default), so a problem document may say what was wrong but must never carry what the
# target sent: no body, no header (a Location included), no banner, TXT value or
# certificate content.

SECRET = "s3cr3t-internal-payload"
