"""Free ports on the loopback interface.

A port is found by binding to port 0 on 127.0.0.1 and reading the number the
kernel chose; the socket is closed before the number is returned, so another
process may take the port in between. Callers that can should let the server
bind port 0 itself and report its address (``devid serve --listen
127.0.0.1:0`` prints its URL); the rest retry when a start fails on a taken
port, as :func:`hosts.testing.challtestsrv.start_challtestsrv` does.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager

#: The only address the scaffolding listens on or connects to.
LOOPBACK = "127.0.0.1"

#: Attempts at a port that is free for UDP too (the TCP one is always free).
ATTEMPTS = 100


class NoFreePort(OSError):
    """No port matching the request could be found."""


def free_port(*, udp: bool = False) -> int:
    """A TCP port free on 127.0.0.1 right now; with *udp*, free for UDP as well."""
    return free_ports(1, udp=udp)[0]


def free_ports(count: int, *, udp: bool = False) -> list[int]:
    """*count* different ports free on 127.0.0.1 right now (TCP; with *udp*, UDP too).

    The sockets stay bound until all the ports are chosen, so the numbers differ.
    """
    if count < 0:
        raise ValueError("count must not be negative")
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(count):
            port, sockets = _bind(udp)
            ports.append(port)
            held.extend(sockets)
        return ports
    finally:
        for sock in held:
            sock.close()


def _bind(udp: bool) -> tuple[int, list[socket.socket]]:
    """A port and the sockets holding it: TCP, plus UDP on the same number with *udp*."""
    for _ in range(ATTEMPTS):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind((LOOPBACK, 0))
        except BaseException:
            tcp.close()
            raise
        port = int(tcp.getsockname()[1])
        if not udp:
            return port, [tcp]
        datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            datagram.bind((LOOPBACK, port))
        except OSError:
            datagram.close()
            tcp.close()
            continue
        return port, [tcp, datagram]
    raise NoFreePort(f"no port on {LOOPBACK} free for TCP and UDP after {ATTEMPTS} attempts")


@contextmanager
def occupied(port: int) -> Iterator[None]:
    """Keep TCP *port* on 127.0.0.1 bound and listening for the block: a port in use."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, port))
        sock.listen()
        yield


def listening(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:*port* right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((LOOPBACK, port)) == 0


def is_loopback(host: str) -> bool:
    """Whether *host* (an address or ``localhost``) names the loopback interface."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_loopback(listen: str) -> str:
    """*listen* (``HOST:PORT``) unchanged if HOST is a loopback address, else ValueError."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not is_loopback(host):
        raise ValueError(f"{listen!r} is not a loopback HOST:PORT")
    return listen
