"""The raw host's HTTP/1.1 request parser: what it reads (h11, its former parser, as the
oracle for well-formed requests, fed whole and byte by byte), and what it refuses."""

from __future__ import annotations

import re

import h11
import pytest
import trio

from hosts.raw.http11 import MalformedRequest, Request, RequestBuffer
from tests.conftest import CA

MAX = 16 * 1024


def read_all(data: bytes, *, step: int | None = None) -> list[tuple[Request, bytes]]:
    """Every request in *data* with its body, fed whole or *step* bytes at a time."""
    buffer = RequestBuffer(MAX)
    pieces = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    out: list[tuple[Request, bytes]] = []
    request: Request | None = None
    chunks: list[bytes] = []
    for piece in [*pieces, b""]:
        buffer.feed(piece)
        while True:
            if request is None:
                request = buffer.take_head()
                if request is None:
                    break
            if request.content_length is not None:
                body = buffer.take(request.content_length)
                if body is None:
                    break
                out.append((request, body))
                request = None
                continue
            chunk = buffer.take_chunk()
            if chunk is None:
                break
            if chunk:
                chunks.append(chunk)
                continue
            out.append((request, b"".join(chunks)))
            request, chunks = None, []
    assert request is None and not buffer.data, "a request was left incomplete"
    return out


WELL_FORMED = [
    b"GET /health HTTP/1.1\r\nHost: ca.example:8443\r\n\r\n",
    b"POST /1.0/sign HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
    b'Content-Length: 11\r\n\r\n{"csr": 1}\n',
    b"POST /x?a=1&b=%20 HTTP/1.1\r\nhost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer-One: x\r\n\r\n",
    b"GET / HTTP/1.0\n\n",
    b"GET /a HTTP/1.1\r\nHost: a\r\nX-Two: 1\r\nx-two: 2\r\nEmpty:\r\n\r\n"
    b"GET /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
    b"PUT /c HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\nX:  spaced  value \t\r\n\r\nxyz",
]


@pytest.mark.parametrize("data", WELL_FORMED)
@pytest.mark.parametrize("step", [None, 1, 7])
def test_well_formed_requests_read_as_h11_reads_them(data: bytes, step: int | None) -> None:
    ours = read_all(data, step=step)
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    conn.receive_data(b"")
    for request, body in ours:
        event = conn.next_event()
        assert isinstance(event, h11.Request)
        assert request.method == event.method.decode()
        assert request.target == event.target.decode()
        assert request.http_version == event.http_version.decode()
        expected: dict[str, str] = {}
        for name, value in event.headers:
            key, text = name.decode(), value.decode("latin-1")
            expected[key] = f"{expected[key]}, {text}" if key in expected else text
        if "content-length" in expected:  # h11 gives the normalised value
            expected["content-length"] = request.headers["content-length"]
        assert request.headers == expected
        h11_body = b""
        while not isinstance(event := conn.next_event(), h11.EndOfMessage):
            assert isinstance(event, h11.Data)
            h11_body += bytes(event.data)
        assert body == h11_body
        if conn.our_state is h11.SEND_RESPONSE:
            conn.send(h11.Response(status_code=204, headers=[]))
            conn.send(h11.EndOfMessage())
        assert request.keep_alive == (conn.our_state is not h11.MUST_CLOSE)
        if request.keep_alive:
            conn.start_next_cycle()


@pytest.mark.parametrize(
    ("connection", "version", "keep_alive"),
    [
        (None, "1.1", True),
        ("close", "1.1", False),
        ("keep-alive, Close", "1.1", False),
        ("keep-alive", "1.0", False),
        (None, "1.0", False),
    ],
)
def test_keep_alive(connection: str | None, version: str, keep_alive: bool) -> None:
    head = f"GET / HTTP/{version}\r\nHost: a\r\n"
    if connection is not None:
        head += f"Connection: {connection}\r\n"
    [(request, _)] = read_all((head + "\r\n").encode())
    assert request.keep_alive is keep_alive


@pytest.mark.parametrize(
    "data",
    [
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",  # a blank line first
        b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",  # two spaces
        b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
        b"GET / HTTP/11\r\nHost: a\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # no Host
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1e3\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 123456789012345678901\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    ],
)
def test_malformed_heads_are_refused(data: bytes) -> None:
    with pytest.raises(MalformedRequest):
        read_all(data)


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\nab\r\n0\r\n\r\n",  # not hex
        b"2\r\nabc\r\n0\r\n\r\n",  # longer than announced
        b"123456789012345678901\r\n",  # too many digits
        b"0\r\nBad Trailer\r\n\r\n",
    ],
)
def test_malformed_chunks_are_refused(body: bytes) -> None:
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    with pytest.raises(MalformedRequest):
        read_all(head + body)


def test_a_head_past_the_limit_is_refused_before_it_ends() -> None:
    buffer = RequestBuffer(1024)
    buffer.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 1024)
    with pytest.raises(MalformedRequest, match="too long"):
        buffer.take_head()


def test_an_incomplete_request_waits_for_more() -> None:
    buffer = RequestBuffer(MAX)
    buffer.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
    request = buffer.take_head()
    assert request is not None and request.content_length == 4
    assert buffer.take(4) is None
    buffer.feed(b"cdGET")
    assert buffer.take(4) == b"abcd"
    assert buffer.take_head() is None  # the next request has begun
    assert bytes(buffer.data) == b"GET"


async def test_pipelined_chunked_and_malformed_requests_through_the_raw_host(ca: CA) -> None:
    """Two pipelined requests in one write (the second a chunked POST refused for its
    method), then a malformed one: two answers on the kept-alive connection, a 400 that
    closes it."""
    from tests.hosts.test_host_limits import serving, tls

    async with serving(ca, "raw") as server:
        stream = await tls(server)
        await stream.send_all(
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            b"POST /health HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\n{}\r\n0\r\n\r\n"
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n folded: no\r\n\r\n"
        )
        received = b""
        with trio.fail_after(10):
            while data := await stream.receive_some(65536):  # until the server closes
                received += data
        statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 ([0-9]{3}) \r\n", received)]
        assert statuses == [200, 405, 400]
        last = received.rsplit(b"HTTP/1.1 ", 1)[1]
        assert b"connection: close" in last and b"malformed HTTP request" in last
