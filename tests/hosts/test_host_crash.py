"""No request, and no fault in one connection, ends the server.

A body over ``max_body_bytes`` over HTTP/2 once made hypercorn's HTTP/2 code
raise out of the connection into the server's nursery, and the process exited
after answering 413. Each test here sends what used to (or could) break a
connection, then checks that the client got its answer and that the same
server still answers ``/health`` on a fresh connection.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer

from .helpers import assert_json_error, client

OVER_LIMIT = 70 * 1024  # the default max_body_bytes is 64 KiB


async def still_alive(server: RunningServer) -> None:
    async with client(server) as http:
        r = await http.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def body_chunks(total: int, size: int = 8192) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        chunk = b"a" * min(size, total - sent)
        sent += len(chunk)
        yield chunk


def oversized(announced: bool) -> dict[str, Any]:
    """A JSON POST body over the limit, with a Content-Length or streamed without one."""
    headers = {"content-type": "application/json"}
    if announced:
        return {"content": b"a" * OVER_LIMIT, "headers": headers}
    return {"content": body_chunks(OVER_LIMIT), "headers": headers}


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "streamed"])
@pytest.mark.parametrize("path", ["/attest", "/1.0/sign", "/health"])
async def test_an_oversized_http2_body_gets_413_and_the_server_lives_on(
    quart_server: RunningServer, path: str, announced: bool
) -> None:
    async with client(quart_server, http2=True) as http:
        method = "POST" if path != "/health" else "GET"
        r = await http.request(method, path, **oversized(announced))
        assert r.http_version == "HTTP/2"
        assert_json_error(r, 413)
        # The connection that carried it still serves the next request.
        again = await http.get("/health")
        assert again.status_code == 200
    await still_alive(quart_server)


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "streamed"])
async def test_an_oversized_http1_body_gets_413_and_the_server_lives_on(
    server: RunningServer, announced: bool
) -> None:
    async with client(server) as http:
        r = await http.post("/attest", **oversized(announced))
        assert r.http_version == "HTTP/1.1"
        assert_json_error(r, 413)
    await still_alive(server)


async def test_http2_data_after_the_answer_is_ignored(quart_server: RunningServer) -> None:
    """DATA on a stream the server has already answered (a small GET with a body the
    handler never reads) is dropped; the connection and the server carry on."""
    async with client(quart_server, http2=True) as http:
        for _ in range(3):
            r = await http.request("GET", "/health", content=body_chunks(20_000, 1000))
            assert r.status_code == 200
        assert r.http_version == "HTTP/2"
    await still_alive(quart_server)


class _Boom(Exception):
    pass


async def test_a_fault_in_one_raw_connection_closes_only_that_connection(
    ca: Any, nursery: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from hosts.raw import connection
    from tests.conftest import start_server

    running, stop = await start_server(ca, nursery, "raw")
    try:
        original = connection._handle
        faults = 0

        async def failing(*args: Any, **kwargs: Any) -> None:
            nonlocal faults
            if faults == 0:
                faults += 1
                raise _Boom("a bug in request handling")
            await original(*args, **kwargs)

        monkeypatch.setattr(connection, "_handle", failing)
        with caplog.at_level(logging.WARNING):
            async with client(running) as http:
                with pytest.raises(httpx.TransportError):
                    await http.get("/health")
        assert faults == 1
        await still_alive(running)
        lines = [r for r in caplog.records if "_Boom" in r.getMessage()]
        assert len(lines) == 1
        assert lines[0].levelno == logging.WARNING
        assert lines[0].exc_info is None  # one line, no traceback
    finally:
        await stop.close()


async def test_a_fault_in_one_quart_connection_closes_only_that_connection(
    quart_server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from hypercorn.protocol import ProtocolWrapper

    original = ProtocolWrapper.handle
    faults = 0

    async def failing(self: ProtocolWrapper, event: Any) -> None:
        nonlocal faults
        if faults == 0:
            faults += 1
            raise _Boom("a bug in the protocol code")
        await original(self, event)

    monkeypatch.setattr(ProtocolWrapper, "handle", failing)
    with caplog.at_level(logging.WARNING):
        async with client(quart_server) as http:
            with pytest.raises(httpx.TransportError):
                await http.get("/health")
    assert faults == 1
    await still_alive(quart_server)
    lines = [r for r in caplog.records if "_Boom" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    assert lines[0].exc_info is None
