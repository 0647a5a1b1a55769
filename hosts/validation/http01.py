"""http-01 (RFC 8555 section 8.3), for DNS names and IP addresses (RFC 8738).

GET http://IDENTIFIER/.well-known/acme-challenge/TOKEN on ``config.http01_port``;
the body must be the key authorization. Up to :data:`MAX_REDIRECTS` redirects
are followed, to http or https on port 80 or 443 (or ``http01_port``), each
target vetted like the first (https without certificate checks, as other CAs
do); a body over :data:`MAX_BODY` bytes is refused. A redirect hop is named by
its number in problem details: where it points is the target's to say.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import ssl
from typing import Final
from urllib.parse import quote, urljoin, urlsplit

import attrs
import h11
import trio

from .config import ValidationConfig
from .dial import addr_port, connect_any, host_text, vetted
from .policy import HOSTNAME, IPAddress, target
from .trace import Trace, brief, guarded

MAX_BODY: Final = 8192  # http-01 response bodies larger than this are refused
MAX_REDIRECTS: Final = 10
USER_AGENT: Final = "devid-acme-validation"
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})

_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{1,256}")


async def validate_http01(
    identifier_type: str,
    value: str,
    token: str,
    key_authorization: str,
    config: ValidationConfig,
) -> None:
    """GET http://VALUE/.well-known/acme-challenge/TOKEN; the body must be the key
    authorization (trailing whitespace ignored)."""
    trace = Trace("http-01")
    await guarded(
        trace,
        config.timeout,
        lambda: _http01(identifier_type, value, token, key_authorization, config, trace),
    )


@attrs.frozen
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes
    too_large: bool


async def _http01(
    identifier_type: str,
    value: str,
    token: str,
    key_authorization: str,
    config: ValidationConfig,
    trace: Trace,
) -> None:
    host = target(identifier_type, value, trace)
    if not _TOKEN.fullmatch(token):
        raise trace.problem("malformed", f"token {token!r} is not base64url")
    path = f"/.well-known/acme-challenge/{token}"
    # The first request names the identifier alone in Host (the port is ours to
    # choose, RFC 8555 8.3 says 80); redirect hops send the usual host[:port].
    scheme, port, host_header = "http", config.http01_port, host_text(host)
    url = _url(scheme, host, port, path)
    first = url
    redirects = 0
    while True:
        # A redirect hop is named by its number: where it points is the target's to say.
        hop = None if redirects == 0 else f"redirect {redirects} from {first}"
        response, addr = await _fetch(scheme, host, port, host_header, path, config, trace, hop)
        where = f"{url} (at {addr})" if hop is None else hop
        if response.status in REDIRECT_STATUSES:
            location = response.headers.get("location")
            if not location:
                raise trace.problem(
                    "unauthorized", f"{where} answered {response.status} without a Location"
                )
            if redirects >= MAX_REDIRECTS:
                raise trace.problem(
                    "connection", f"too many redirects (more than {MAX_REDIRECTS}) from {first}"
                )
            redirects += 1
            scheme, host, port, host_header, path = _redirect(
                url, location, config, trace, f"{where} redirected (redirect {redirects})"
            )
            url = _url(scheme, host, port, path)
            continue
        if response.status != 200:
            raise trace.problem("unauthorized", f"{where} answered HTTP {response.status}, not 200")
        if response.too_large:
            raise trace.problem(
                "incorrectResponse", f"{where} answered with a body over {MAX_BODY} bytes"
            )
        if response.body.rstrip() != key_authorization.encode("utf-8"):
            raise trace.problem(
                "incorrectResponse", f"{where} answered a body that is not the key authorization"
            )
        return


def _url(scheme: str, host: str | IPAddress, port: int, path: str) -> str:
    """The URL of a request (shown in problem details for the first request only)."""
    return f"{scheme}://{_host_port(scheme, host, port)}{path}"


def _host_port(scheme: str, host: str | IPAddress, port: int) -> str:
    """host[:port] with the port left out when it is the scheme's default."""
    default = 443 if scheme == "https" else 80
    return host_text(host) if port == default else f"{host_text(host)}:{port}"


def _redirect(
    current: str, location: str, config: ValidationConfig, trace: Trace, where: str
) -> tuple[str, str | IPAddress, int, str, str]:
    """Vet a redirect target: (scheme, host, port, Host header, request target).

    Refusals say which rule the target breaks, never the target itself."""
    try:
        target = urlsplit(urljoin(current, location.strip()))
        port_or_none = target.port
        hostname = target.hostname
    except ValueError:
        raise trace.problem("connection", f"{where} to an invalid URL") from None
    scheme = target.scheme.lower()
    if scheme not in ("http", "https"):
        raise trace.problem(
            "connection", f"{where} to a URL whose scheme is not allowed (only http and https)"
        )
    if not hostname:
        raise trace.problem("connection", f"{where} to a URL without a host")
    port = port_or_none if port_or_none is not None else (443 if scheme == "https" else 80)
    if port not in (80, 443, config.http01_port):
        raise trace.problem(
            "connection", f"{where} to a port that is not allowed (only 80 and 443)"
        )
    host: str | IPAddress
    try:
        host = ipaddress.ip_address(hostname)
    except ValueError:
        if len(hostname) > 253 or not HOSTNAME.fullmatch(hostname):
            raise trace.problem("connection", f"{where} to an invalid host") from None
        host = hostname.lower()
    if isinstance(host, ipaddress.IPv6Address) and host.scope_id:
        raise trace.problem("connection", f"{where} to an IPv6 address with a zone (not allowed)")
    host_header = _host_port(scheme, host, port)
    path = target.path or "/"
    if target.query:
        path = f"{path}?{target.query}"
    return scheme, host, port, host_header, path


async def _fetch(
    scheme: str,
    host: str | IPAddress,
    port: int,
    host_header: str,
    path: str,
    config: ValidationConfig,
    trace: Trace,
    hop: str | None,
) -> tuple[_Response, IPAddress]:
    """One GET. ``hop`` names a redirect hop in problem details (its URL and addresses
    are not shown); None for the first request, shown by its URL and address."""
    url = _url(scheme, host, port, path)
    addresses = await vetted(host, config, trace, port, hop)
    what = f"GET {url}" if hop is None else hop
    addr, tcp = await connect_any(addresses, port, config, trace, what, reveal=hop is None)
    at = addr_port(addr, port) if hop is None else "the redirect target"
    stream: trio.abc.Stream = tcp
    try:
        if scheme == "https":
            trace.at(f"during the TLS handshake with {at} for {what}")
            tls = trio.SSLStream(
                tcp,
                _https_context(),
                server_hostname=host if isinstance(host, str) else None,
                https_compatible=True,
            )
            stream = tls
            try:
                await tls.do_handshake()
            except (trio.BrokenResourceError, ssl.SSLError) as exc:
                cause = exc.__cause__ if exc.__cause__ is not None else exc
                raise trace.problem(
                    "tls", f"TLS handshake with {at} for {what} failed: {brief(cause)}"
                ) from exc
        trace.at(f"waiting for {at} to answer {what}")
        try:
            response = await _exchange(stream, host_header, path)
        except h11.ProtocolError as exc:
            # h11 quotes the offending bytes (a status line, a header): not shown.
            raise trace.problem(
                "connection", f"{what} at {at} failed: the answer is not valid HTTP/1.1"
            ) from exc
        except (trio.BrokenResourceError, OSError) as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise trace.problem("connection", f"{what} at {at} failed: {brief(cause)}") from exc
        return response, addr
    finally:
        await trio.aclose_forcefully(stream)


@functools.lru_cache(maxsize=1)
def _https_context() -> ssl.SSLContext:
    """Redirects to https are followed without certificate checks (as other CAs do):
    the key authorization in the body is what proves control."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def _exchange(stream: trio.abc.Stream, host_header: str, path: str) -> _Response:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=16384)
    request = h11.Request(
        method="GET",
        # Keep existing %-escapes; escape what h11 would refuse (spaces, non-ASCII).
        target=quote(path, safe="/?&=%:@!$'()*+,;-._~"),
        headers=[
            ("Host", host_header),
            ("User-Agent", USER_AGENT),
            ("Accept", "*/*"),
            ("Accept-Encoding", "identity"),
            ("Connection", "close"),
        ],
    )
    await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
    status = 0
    headers: dict[str, str] = {}
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            chunk = await stream.receive_some(16384)
            conn.receive_data(bytes(chunk))
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
            if status in REDIRECT_STATUSES:
                # The body of a redirect does not matter.
                return _Response(status, headers, b"", False)
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                return _Response(status, headers, bytes(body[:MAX_BODY]), True)
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            if not status:
                raise h11.RemoteProtocolError("connection closed before a response")
            return _Response(status, headers, bytes(body), False)
