"""hosts.testing.ports: free ports are on loopback, free, distinct; only loopback is accepted."""

from __future__ import annotations

import socket

import pytest

from hosts.testing.ports import (
    LOOPBACK,
    free_port,
    free_ports,
    is_loopback,
    listening,
    occupied,
    require_loopback,
)


def test_a_free_port_can_be_bound_on_loopback() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind((LOOPBACK, port))
        sock.listen()
        assert sock.getsockname() == (LOOPBACK, port)


def test_a_udp_port_is_free_for_both_protocols() -> None:
    port = free_port(udp=True)
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind((LOOPBACK, port))
        udp.bind((LOOPBACK, port))


def test_free_ports_differ() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    assert free_ports(0) == []


def test_an_occupied_port_is_in_use_until_the_block_ends() -> None:
    port = free_port()
    assert not listening(port)
    with occupied(port):
        assert listening(port)
        with socket.socket() as sock, pytest.raises(OSError):
            sock.bind((LOOPBACK, port))
    assert not listening(port)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    assert require_loopback(f"{host}:0") == f"{host}:0"


@pytest.mark.parametrize("listen", ["0.0.0.0:8443", "[::]:0", "192.0.2.1:80", "ca.test:443", "1"])
def test_anything_else_is_refused(listen: str) -> None:
    with pytest.raises(ValueError, match="not a loopback"):
        require_loopback(listen)
