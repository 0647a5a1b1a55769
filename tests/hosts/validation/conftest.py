"""Fixtures of the validation tests: what the validator dials, and an HTTP responder."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
import trio
import trustme

from hosts.validation import dial

from .servers import HTTPResponder, start_http


@pytest.fixture
def dialed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every (address, port) the validator dials."""
    calls: list[tuple[str, int]] = []
    real = dial.open_tcp

    async def spy(addr: Any, port: int) -> trio.SocketStream:
        calls.append((str(addr), port))
        return await real(addr, port)

    monkeypatch.setattr(dial, "open_tcp", spy)
    return calls


@pytest.fixture
async def web(nursery: trio.Nursery) -> HTTPResponder:
    """An HTTP responder on 127.0.0.1 that also speaks TLS (trustme) on the same port."""
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("y.devid.test").configure_cert(context)
    return await start_http(nursery, tls=context)
