"""ACME challenge validation: http-01, dns-01 (RFC 8555 8.3, 8.4) and tls-alpn-01
(RFC 8737), for DNS names and IP addresses (RFC 8738).

Every function returns ``None`` when the challenge is met and raises
:class:`ACMEProblem` otherwise; nothing else escapes (cancellation from the caller
excepted). Each run is bounded by ``settings.timeout`` as a whole.

Outbound connections are an SSRF path (SECURITY.md, "ACME challenges"): the
account holder chooses where we connect. Problem details therefore say what was
wrong (a status, a refused redirect, a body that is not the key authorization) and
never carry what the target sent: no body, header, redirect target, protocol
banner, TXT value or certificate content. Names are
resolved here, through dnspython on trio (``settings.dns_resolver`` answers every
lookup when set), every address is vetted against the policy, and the connection
goes to that vetted address: nothing below re-resolves a name. All connections are
made by :func:`_connect`, which applies the policy once more before it dials.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import quote, urljoin, urlsplit

import attrs
import dns.asyncbackend
import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver
import h11
import trio
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from engine.acme.problems import ACMEProblem

log = logging.getLogger("devid.acme")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_BODY: Final = 8192  # http-01 response bodies larger than this are refused
MAX_REDIRECTS: Final = 10
ACME_TLS_ALPN: Final = "acme-tls/1"
ID_PE_ACME_IDENTIFIER: Final = ObjectIdentifier("1.3.6.1.5.5.7.1.31")
USER_AGENT: Final = "devid-acme-validation"
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})

# RFC 6052 well-known NAT64 prefix: 64:ff9b::a9fe:a9fe reaches 169.254.169.254.
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME: Final = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")
_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{1,256}")


#: Never contacted by default: link-local networks (AWS, GCP, Azure, OpenStack and
#: Oracle metadata live at 169.254.169.254) and the other clouds' metadata endpoints.
DEFAULT_DENY: tuple[str, ...] = (
    "169.254.0.0/16",  # IPv4 link-local
    "fe80::/10",  # IPv6 link-local
    "fd00:ec2::254/128",  # AWS metadata over IPv6
    "fd20:ce::254/128",  # GCP metadata over IPv6
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "168.63.129.16/32",  # Azure wireserver
)


@attrs.frozen
class ValidationSettings:
    http01_port: int = 80
    tlsalpn01_port: int = 443
    # (host, port); serves EVERY lookup validation makes (http-01 and tls-alpn-01
    # A/AAAA lookups as well as dns-01 TXT); None = system resolver.
    dns_resolver: tuple[str, int] | None = None
    # An internal CA validates private and loopback addresses by default.
    allow_private: bool = True
    deny_networks: tuple[str, ...] = DEFAULT_DENY
    timeout: float = 10.0


# --- public API --------------------------------------------------------------------


async def validate_http01(
    identifier_type: str,
    value: str,
    token: str,
    key_authorization: str,
    settings: ValidationSettings,
) -> None:
    """GET http://VALUE/.well-known/acme-challenge/TOKEN; the body must be the key
    authorization (trailing whitespace ignored)."""
    trace = _Trace("http-01")
    await _guarded(
        trace,
        settings,
        lambda: _http01(identifier_type, value, token, key_authorization, settings, trace),
    )


async def validate_dns01(domain: str, key_authorization: str, settings: ValidationSettings) -> None:
    """A TXT record at _acme-challenge.DOMAIN must hold base64url(SHA-256(key authorization))."""
    trace = _Trace("dns-01")
    await _guarded(trace, settings, lambda: _dns01(domain, key_authorization, settings, trace))


async def validate_tlsalpn01(
    identifier_type: str, value: str, key_authorization: str, settings: ValidationSettings
) -> None:
    """A TLS handshake with ALPN acme-tls/1 must present the RFC 8737 validation certificate."""
    trace = _Trace("tls-alpn-01")
    await _guarded(
        trace,
        settings,
        lambda: _tlsalpn01(identifier_type, value, key_authorization, settings, trace),
    )


# --- plumbing ----------------------------------------------------------------------


@attrs.define
class _Trace:
    """What a run is doing now, so that a timeout or a surprise can say so."""

    label: str
    doing: str = "starting"
    kind: str = "connection"  # problem type of a timeout at this point

    def at(self, doing: str, kind: str = "connection") -> None:
        self.doing = doing
        self.kind = kind

    def problem(self, kind: str, detail: str) -> ACMEProblem:
        return ACMEProblem(kind, f"{self.label}: {detail}")


async def _guarded(
    trace: _Trace, settings: ValidationSettings, run: Callable[[], Awaitable[None]]
) -> None:
    try:
        with trio.move_on_after(max(settings.timeout, 0.0)) as scope:
            await run()
    except ACMEProblem:
        raise
    except ssl.SSLError as exc:
        raise trace.problem("tls", f"{trace.doing}: TLS error: {_brief(exc)}") from exc
    except OSError as exc:
        raise trace.problem("connection", f"{trace.doing}: {_brief(exc)}") from exc
    except Exception as exc:
        # Its message may quote what the target sent: the log has it, the client not.
        log.exception("%s validation failed unexpectedly %s", trace.label, trace.doing)
        raise trace.problem(
            "serverInternal", f"{trace.doing}: unexpected {type(exc).__name__}"
        ) from exc
    if scope.cancelled_caught:
        raise trace.problem(trace.kind, f"timed out after {settings.timeout:g}s {trace.doing}")


def _brief(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# --- identifiers and address policy ------------------------------------------------


def _parse_ip(value: str, trace: _Trace) -> IPAddress:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise trace.problem("rejectedIdentifier", f"{value!r} is not an IP address") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id:
        raise trace.problem("rejectedIdentifier", f"{value!r} carries an IPv6 zone")
    return addr


def _check_name(name: str, trace: _Trace) -> str:
    if len(name) > 253 or not _HOSTNAME.fullmatch(name):
        raise trace.problem("rejectedIdentifier", f"{name!r} is not a valid DNS name")
    return name.lower()


def _target(identifier_type: str, value: str, trace: _Trace) -> str | IPAddress:
    """The identifier as a checked DNS name (lower case) or an IP address."""
    if identifier_type == "ip":
        return _parse_ip(value, trace)
    if identifier_type != "dns":
        raise trace.problem(
            "unsupportedIdentifier", f"identifier type {identifier_type!r} is not supported"
        )
    if value.startswith("*."):
        raise trace.problem(
            "rejectedIdentifier", f"wildcard {value!r} can only be validated with dns-01"
        )
    _not_an_ip(value, trace)
    return _check_name(value, trace)


def _not_an_ip(value: str, trace: _Trace) -> None:
    """RFC 8738 section 3: an IP address is never a "dns" identifier."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return
    raise trace.problem("rejectedIdentifier", f"{value!r} is an IP address, not a DNS name")


@functools.lru_cache(maxsize=32)
def _networks(deny: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in deny)


def _denied(addr: IPAddress, settings: ValidationSettings) -> str | None:
    """Why the policy refuses ``addr``, or None when it may be contacted."""
    views: list[IPAddress] = [addr]
    if isinstance(addr, ipaddress.IPv6Address):
        # The same IPv4 host reached through IPv6 must meet the same rules.
        if addr.ipv4_mapped is not None:
            views.append(addr.ipv4_mapped)
        if addr.sixtofour is not None:
            views.append(addr.sixtofour)
        if addr in _NAT64:
            views.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    try:
        networks = _networks(settings.deny_networks)
    except ValueError as exc:
        return f"the deny list is invalid ({exc})"
    for view in views:
        if view.is_unspecified or view.is_multicast:
            return "unspecified or multicast address"
        for net in networks:
            if view.version == net.version and view in net:
                return f"in denied network {net}"
        if not settings.allow_private and not view.is_global:
            return "not a public address (private addresses are not allowed)"
    return None


def _host_text(host: str | IPAddress) -> str:
    """A host as it appears in a URL or a Host header (IPv6 bracketed)."""
    if isinstance(host, ipaddress.IPv6Address):
        return f"[{host}]"
    return str(host)


def _addr_port(addr: IPAddress, port: int) -> str:
    return f"{_host_text(addr)}:{port}"


# --- DNS ---------------------------------------------------------------------------


# Resolvers by (configured resolver, timeout): a configured one is made once, not per
# lookup; the system one (from /etc/resolv.conf) is made again after a minute, so that
# a changed resolv.conf is picked up.
_RESOLVERS: dict[
    tuple[tuple[str, int] | None, float], tuple[float, dns.asyncresolver.Resolver]
] = {}
_SYSTEM_RESOLVER_TTL = 60.0


def _resolver(settings: ValidationSettings, trace: _Trace) -> dns.asyncresolver.Resolver:
    key = (settings.dns_resolver, settings.timeout)
    now = time.monotonic()
    cached = _RESOLVERS.get(key)
    if cached is not None and (settings.dns_resolver is not None or now < cached[0]):
        return cached[1]
    try:
        if settings.dns_resolver is None:
            resolver = dns.asyncresolver.Resolver()
        else:
            host, port = settings.dns_resolver
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port)]
    except dns.exception.DNSException as exc:
        raise trace.problem("dns", f"no usable DNS resolver: {_brief(exc)}") from exc
    resolver.lifetime = max(settings.timeout, 0.1)
    resolver.timeout = min(2.0, resolver.lifetime)
    resolver.cache = None
    if len(_RESOLVERS) >= 16:
        _RESOLVERS.clear()
    _RESOLVERS[key] = (now + _SYSTEM_RESOLVER_TTL, resolver)
    return resolver


async def _lookup(
    resolver: dns.asyncresolver.Resolver, name: str, rdtype: str
) -> dns.resolver.Answer | str:
    """The answer, or a short reason there is none."""
    try:
        return await resolver.resolve(
            name + ".", rdtype, search=False, backend=dns.asyncbackend.get_backend("trio")
        )
    except dns.resolver.NXDOMAIN:
        return "NXDOMAIN"
    except dns.resolver.NoAnswer:
        return "no records"
    except dns.resolver.LifetimeTimeout:
        return "resolver timed out"
    except dns.resolver.NoNameservers as exc:
        # "All nameservers failed to answer the query N: Server Do53:H@P answered SERVFAIL"
        return f"resolver failure: {_brief(exc).rsplit(': ', 1)[-1]}"
    except dns.exception.DNSException as exc:
        return f"DNS error ({_brief(exc)})"


async def _resolve(
    name: str, settings: ValidationSettings, trace: _Trace, shown: str | None = None
) -> list[IPAddress]:
    """A and AAAA of ``name`` through the configured resolver, IPv6 first.

    ``shown`` names the host in problem details when ``name`` itself must not appear
    (a host a redirect named)."""
    shown = name if shown is None else shown
    trace.at(f"resolving {shown}", "dns")
    resolver = _resolver(settings, trace)
    results: dict[str, list[IPAddress] | dns.resolver.Answer | str] = {}

    async def one(rdtype: str) -> None:
        results[rdtype] = await _lookup(resolver, name, rdtype)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "AAAA")
        nursery.start_soon(one, "A")
    addresses: list[IPAddress] = []
    for rdtype in ("AAAA", "A"):
        answer = results[rdtype]
        if isinstance(answer, list):
            found: list[IPAddress] = answer
        elif isinstance(answer, str):
            found = []
        else:
            found = [ipaddress.ip_address(rdata.address) for rdata in answer]
        for addr in found:
            if addr not in addresses:
                addresses.append(addr)
    if not addresses:
        if results["A"] == results["AAAA"]:
            reasons = f"A/AAAA: {results['A']}"
        else:
            reasons = "; ".join(f"{t}: {results[t]}" for t in ("A", "AAAA"))
        raise trace.problem("dns", f"no address for {shown} ({reasons})")
    return addresses


async def _vetted(
    host: str | IPAddress,
    settings: ValidationSettings,
    trace: _Trace,
    port: int,
    shown: str | None = None,
) -> list[IPAddress]:
    """The addresses for ``host`` that the policy lets us contact (at least one).

    With ``shown`` (a host a redirect named), problem details call the host that and
    leave out its addresses and port."""
    if isinstance(host, str):
        candidates = await _resolve(host, settings, trace, shown)
    else:
        candidates = [host]
    allowed = [a for a in candidates if _denied(a, settings) is None]
    if not allowed:
        if shown is None:
            refused = "; ".join(f"{a} {_denied(a, settings)}" for a in candidates)
            named = host if isinstance(host, str) else _host_text(host)
            where = f"{named} port {port}"
        else:
            refused = "; ".join(sorted({str(_denied(a, settings)) for a in candidates}))
            where = shown
        raise trace.problem("connection", f"refusing to connect to {where}: {refused}")
    return allowed


# --- connections -------------------------------------------------------------------


async def _open_tcp(addr: IPAddress, port: int) -> trio.SocketStream:
    """Dial a literal address (no name resolution happens here)."""
    family = trio.socket.AF_INET6 if addr.version == 6 else trio.socket.AF_INET
    sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
    try:
        await sock.connect((str(addr), port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def _connect(
    addr: IPAddress, port: int, settings: ValidationSettings, trace: _Trace
) -> trio.SocketStream:
    """The only way out: re-checks the policy, then dials ``addr``."""
    reason = _denied(addr, settings)
    if reason is not None:
        raise trace.problem("connection", f"refusing to connect to {addr}: {reason}")
    return await _open_tcp(addr, port)


async def _connect_any(
    addresses: list[IPAddress],
    port: int,
    settings: ValidationSettings,
    trace: _Trace,
    what: str,
    *,
    reveal: bool = True,
) -> tuple[IPAddress, trio.SocketStream]:
    """Connect to the first address that accepts; each gets a share of the time.

    Without ``reveal`` (addresses of a host a redirect named), problem details
    number the addresses instead of naming them."""
    failures: list[str] = []
    share = max(settings.timeout, 0.0) / len(addresses)
    for index, addr in enumerate(addresses, 1):
        shown = _addr_port(addr, port) if reveal else f"address {index}"
        trace.at(f"connecting to {shown} for {what}")
        with trio.move_on_after(share if len(addresses) > 1 else float("inf")):
            try:
                return addr, await _connect(addr, port, settings, trace)
            except OSError as exc:
                failures.append(f"{shown}: {_brief(exc)}")
                continue
        failures.append(f"{shown}: connect timed out")
    raise trace.problem("connection", f"cannot connect for {what}: " + "; ".join(failures))


# --- http-01 -----------------------------------------------------------------------


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
    settings: ValidationSettings,
    trace: _Trace,
) -> None:
    host = _target(identifier_type, value, trace)
    if not _TOKEN.fullmatch(token):
        raise trace.problem("malformed", f"token {token!r} is not base64url")
    path = f"/.well-known/acme-challenge/{token}"
    # The first request names the identifier alone in Host (the port is ours to
    # choose, RFC 8555 8.3 says 80); redirect hops send the usual host[:port].
    scheme, port, host_header = "http", settings.http01_port, _host_text(host)
    url = _url(scheme, host, port, path)
    first = url
    redirects = 0
    while True:
        # A redirect hop is named by its number: where it points is the target's to say.
        hop = None if redirects == 0 else f"redirect {redirects} from {first}"
        response, addr = await _fetch(scheme, host, port, host_header, path, settings, trace, hop)
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
                url, location, settings, trace, f"{where} redirected (redirect {redirects})"
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
    return _host_text(host) if port == default else f"{_host_text(host)}:{port}"


def _redirect(
    current: str, location: str, settings: ValidationSettings, trace: _Trace, where: str
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
    if port not in (80, 443, settings.http01_port):
        raise trace.problem(
            "connection", f"{where} to a port that is not allowed (only 80 and 443)"
        )
    host: str | IPAddress
    try:
        host = ipaddress.ip_address(hostname)
    except ValueError:
        if len(hostname) > 253 or not _HOSTNAME.fullmatch(hostname):
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
    settings: ValidationSettings,
    trace: _Trace,
    hop: str | None,
) -> tuple[_Response, IPAddress]:
    """One GET. ``hop`` names a redirect hop in problem details (its URL and addresses
    are not shown); None for the first request, shown by its URL and address."""
    url = _url(scheme, host, port, path)
    addresses = await _vetted(host, settings, trace, port, hop)
    what = f"GET {url}" if hop is None else hop
    addr, tcp = await _connect_any(addresses, port, settings, trace, what, reveal=hop is None)
    at = _addr_port(addr, port) if hop is None else "the redirect target"
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
                    "tls", f"TLS handshake with {at} for {what} failed: {_brief(cause)}"
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
            raise trace.problem("connection", f"{what} at {at} failed: {_brief(cause)}") from exc
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


# --- dns-01 ------------------------------------------------------------------------


def _txt_digest(key_authorization: str) -> str:
    digest = hashlib.sha256(key_authorization.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


async def _dns01(
    domain: str, key_authorization: str, settings: ValidationSettings, trace: _Trace
) -> None:
    base = domain[2:] if domain.startswith("*.") else domain
    _not_an_ip(base, trace)  # RFC 8738 section 7: no dns-01 for IP identifiers
    name = "_acme-challenge." + _check_name(base, trace)
    trace.at(f"looking up TXT {name}", "dns")
    resolver = _resolver(settings, trace)
    answer = await _lookup(resolver, name, "TXT")
    if isinstance(answer, str):
        raise trace.problem("dns", f"no TXT record at {name}: {answer}")
    expected = _txt_digest(key_authorization)
    for rdata in answer:
        if b"".join(rdata.strings) == expected.encode("ascii"):
            return
    # What the records hold is not repeated: the zone is not ours to publish.
    raise trace.problem(
        "incorrectResponse", f"no TXT record at {name} holds the expected value {expected!r}"
    )


# --- tls-alpn-01 -------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _alpn_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the validation certificate is self-signed
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8737 section 4
    ctx.set_alpn_protocols([ACME_TLS_ALPN])
    return ctx


async def _tlsalpn01(
    identifier_type: str,
    value: str,
    key_authorization: str,
    settings: ValidationSettings,
    trace: _Trace,
) -> None:
    host = _target(identifier_type, value, trace)
    # RFC 8738 section 6: an IP identifier's SNI is its reverse-DNS name.
    sni = host if isinstance(host, str) else host.reverse_pointer
    port = settings.tlsalpn01_port
    addresses = await _vetted(host, settings, trace, port)
    what = f"TLS with SNI {sni}"
    addr, tcp = await _connect_any(addresses, port, settings, trace, what)
    where = f"{_addr_port(addr, port)} (SNI {sni})"
    tls = trio.SSLStream(tcp, _alpn_context(), server_hostname=sni)
    try:
        trace.at(f"during the TLS handshake with {where}")
        try:
            await tls.do_handshake()
        except (trio.BrokenResourceError, ssl.SSLError) as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise trace.problem(
                "tls", f"TLS handshake with {where} failed: {_brief(cause)}"
            ) from exc
        if tls.selected_alpn_protocol() != ACME_TLS_ALPN:
            raise trace.problem("tls", f"{where} did not negotiate ALPN {ACME_TLS_ALPN}")
        der = tls.getpeercert(binary_form=True)
    finally:
        await trio.aclose_forcefully(tls)
    if not der:
        raise trace.problem("tls", f"{where} presented no certificate")
    _check_acme_certificate(der, host, key_authorization, where, trace)


def _check_acme_certificate(
    der: bytes, host: str | IPAddress, key_authorization: str, where: str, trace: _Trace
) -> None:
    """RFC 8737 section 3: one SAN naming the identifier, and the critical
    acmeIdentifier extension holding SHA-256 of the key authorization.

    A refusal says which rule the certificate breaks, not what it contains."""

    def wrong(detail: str) -> ACMEProblem:
        return trace.problem("incorrectResponse", f"certificate from {where} {detail}")

    try:
        cert = x509.load_der_x509_certificate(der)
        extensions = cert.extensions
    except (
        ValueError,
        x509.InvalidVersion,  # a version other than v1, v2 or v3
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
    ) as exc:
        raise wrong("cannot be parsed") from exc
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise wrong("has no subjectAltName") from None
    names = list(san)
    if len(names) != 1:
        raise wrong("does not have exactly one subjectAltName entry")
    entry = names[0]
    if isinstance(host, str):
        ok = isinstance(entry, x509.DNSName) and entry.value.lower() == host
    else:
        ok = isinstance(entry, x509.IPAddress) and entry.value == host
    if not ok:
        kind = "dNSName" if isinstance(host, str) else "iPAddress"
        raise wrong(f"does not name the {kind} {host}")
    try:
        ext = extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER)
    except x509.ExtensionNotFound:
        raise wrong("has no acmeIdentifier extension (1.3.6.1.5.5.7.1.31)") from None
    if not ext.critical:
        raise wrong("has an acmeIdentifier extension that is not critical")
    value = ext.value
    got = value.value if isinstance(value, x509.UnrecognizedExtension) else None
    digest = hashlib.sha256(key_authorization.encode("utf-8")).digest()
    expected = b"\x04\x20" + digest  # DER OCTET STRING of 32 bytes
    if got != expected:
        raise wrong(
            "has an acmeIdentifier that is not the SHA-256 of the key authorization"
            f" ({expected.hex()})"
        )
