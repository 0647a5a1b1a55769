"""Connections validation makes: to vetted addresses only, within the time limit.

A host is resolved here (:mod:`.resolve`), every address is vetted against the
policy (:mod:`.policy`), and the connection goes to that vetted address: nothing
below re-resolves a name. All connections are made by :func:`_connect`, which
applies the policy once more before it dials.
"""

from __future__ import annotations

import ipaddress

import trio

from . import policy
from .config import ValidationConfig
from .policy import IPAddress
from .resolve import resolve
from .trace import Trace, brief


def host_text(host: str | IPAddress) -> str:
    """A host as it appears in a URL or a Host header (IPv6 bracketed)."""
    if isinstance(host, ipaddress.IPv6Address):
        return f"[{host}]"
    return str(host)


def addr_port(addr: IPAddress, port: int) -> str:
    return f"{host_text(addr)}:{port}"


def _denied(addr: IPAddress, config: ValidationConfig) -> str | None:
    return policy.denied(
        addr, deny_networks=config.deny_networks, allow_private=config.allow_private
    )


async def vetted(
    host: str | IPAddress,
    config: ValidationConfig,
    trace: Trace,
    port: int,
    shown: str | None = None,
) -> list[IPAddress]:
    """The addresses for ``host`` that the policy lets us contact (at least one).

    With ``shown`` (a host a redirect named), problem details call the host that and
    leave out its addresses and port."""
    if isinstance(host, str):
        candidates = await resolve(host, config, trace, shown)
    else:
        candidates = [host]
    allowed = [a for a in candidates if _denied(a, config) is None]
    if not allowed:
        if shown is None:
            refused = "; ".join(f"{a} {_denied(a, config)}" for a in candidates)
            named = host if isinstance(host, str) else host_text(host)
            where = f"{named} port {port}"
        else:
            refused = "; ".join(sorted({str(_denied(a, config)) for a in candidates}))
            where = shown
        raise trace.problem("connection", f"refusing to connect to {where}: {refused}")
    return allowed


async def open_tcp(addr: IPAddress, port: int) -> trio.SocketStream:
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
    addr: IPAddress, port: int, config: ValidationConfig, trace: Trace
) -> trio.SocketStream:
    """The only way out: re-checks the policy, then dials ``addr``."""
    reason = _denied(addr, config)
    if reason is not None:
        raise trace.problem("connection", f"refusing to connect to {addr}: {reason}")
    return await open_tcp(addr, port)


async def connect_any(
    addresses: list[IPAddress],
    port: int,
    config: ValidationConfig,
    trace: Trace,
    what: str,
    *,
    reveal: bool = True,
) -> tuple[IPAddress, trio.SocketStream]:
    """Connect to the first address that accepts; each gets a share of the time.

    Without ``reveal`` (addresses of a host a redirect named), problem details
    number the addresses instead of naming them."""
    failures: list[str] = []
    share = max(config.timeout, 0.0) / len(addresses)
    for index, addr in enumerate(addresses, 1):
        shown = addr_port(addr, port) if reveal else f"address {index}"
        trace.at(f"connecting to {shown} for {what}")
        with trio.move_on_after(share if len(addresses) > 1 else float("inf")):
            try:
                return addr, await _connect(addr, port, config, trace)
            except OSError as exc:
                failures.append(f"{shown}: {brief(exc)}")
                continue
        failures.append(f"{shown}: connect timed out")
    raise trace.problem("connection", f"cannot connect for {what}: " + "; ".join(failures))
