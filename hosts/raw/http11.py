"""HTTP/1.1 requests parsed for the raw host (RFC 9112), from a buffer the connection fills.

The grammar is h11's (the parser the raw host used before: about 25 µs of CPU per
request went to its general event machinery, against a few here): the request line
``METHOD SP TARGET SP HTTP/d.d``, header fields ``token ":" OWS value OWS`` (no
obsolete line folding), lines ending in CRLF or LF, ``Host`` required exactly once
in HTTP/1.1, ``Content-Length`` digits only (repeated values must agree),
``Transfer-Encoding: chunked`` the only transfer coding, chunk extensions and
trailers read and dropped. Stricter than h11 in one place: a request with both
``Transfer-Encoding`` and ``Content-Length`` is refused (RFC 9112 6.3 allows it;
it is the shape of request smuggling), where h11 let the chunked coding win.

Anything else is :class:`MalformedRequest`, which the host answers with 400 and a
closed connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9]\.[0-9])")
_VCHAR_OR_OBS = rb"[^\x00\s]"
_HEADER_FIELD = re.compile(
    rb"("
    + _TOKEN
    + rb"):[ \t]*((?:"
    + _VCHAR_OR_OBS
    + rb"+(?:[ \t]+"
    + _VCHAR_OR_OBS
    + rb"+)*)?)[ \t]*"
)
_END_OF_HEAD = re.compile(rb"\n\r?\n")
_CHUNK_HEADER = re.compile(rb"([0-9A-Fa-f]{1,20})[ \t]*(?:;.*)?")
_DIGITS = re.compile(rb"[0-9]{1,20}")


class MalformedRequest(Exception):
    """The client broke the protocol: the request cannot be read."""


@dataclass(slots=True)
class Request:
    """A request's head. Header names are in lower case; a header sent several times is
    one entry, its values joined with ``", "``."""

    method: str
    target: str
    http_version: str
    headers: dict[str, str]
    #: The body's framing: its length, or None for the chunked coding.
    content_length: int | None
    #: Whether the connection may carry another request after this one (HTTP/1.1 without
    #: ``Connection: close``).
    keep_alive: bool


def _lines(head: bytes) -> list[bytes]:
    return [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]


def parse_head(head: bytes) -> Request:
    """The request whose head (request line and header fields, the blank line excluded)
    is *head*."""
    lines = _lines(head)
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise MalformedRequest("illegal request line")
    method, target, version = match.groups()
    headers: dict[str, str] = {}
    lengths: set[bytes] = set()
    transfer_encoding: bytes | None = None
    hosts = 0
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise MalformedRequest("obsolete line folding is not supported")
        field = _HEADER_FIELD.fullmatch(line)
        if field is None:
            raise MalformedRequest("illegal header line")
        raw_name, value = field.groups()
        name = raw_name.lower()
        if name == b"content-length":
            for part in value.split(b","):
                part = part.strip()
                if _DIGITS.fullmatch(part) is None:
                    raise MalformedRequest("bad Content-Length")
                lengths.add(part)
            if len(lengths) > 1:
                raise MalformedRequest("conflicting Content-Length headers")
        elif name == b"transfer-encoding":
            if transfer_encoding is not None:
                raise MalformedRequest("multiple Transfer-Encoding headers")
            transfer_encoding = value.lower()
            if transfer_encoding != b"chunked":
                raise MalformedRequest("only Transfer-Encoding: chunked is supported")
        elif name == b"host":
            hosts += 1
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    if version == b"1.1" and hosts != 1:
        raise MalformedRequest(
            "missing mandatory Host: header" if hosts == 0 else "found multiple Host: headers"
        )
    if transfer_encoding is not None and lengths:
        raise MalformedRequest("both Transfer-Encoding and Content-Length are set")
    content_length: int | None = None  # chunked
    if transfer_encoding is None:
        content_length = int(lengths.pop()) if lengths else 0
    connection = headers.get("connection")
    keep_alive = version >= b"1.1" and (
        connection is None
        or "close" not in (token.strip().lower() for token in connection.split(","))
    )
    return Request(
        method=method.decode("ascii"),
        target=target.decode("ascii"),
        http_version=version.decode("ascii"),
        headers=headers,
        content_length=content_length,
        keep_alive=keep_alive,
    )


class RequestBuffer:
    """What a connection has received and not yet parsed, and whether the peer has closed.

    Requests are taken from its front one after another (pipelining): a head with
    :meth:`take_head`, then its body with :meth:`take` (a length) or
    :meth:`take_chunk` (the chunked coding). Each returns None while more data is needed.
    """

    __slots__ = ("closed", "data", "max_line_bytes")

    def __init__(self, max_head_bytes: int) -> None:
        self.data = bytearray()
        self.closed = False
        #: The longest head (and chunk header or trailer line) waited for.
        self.max_line_bytes = max_head_bytes

    def feed(self, data: bytes) -> None:
        """Add received *data*; ``b""`` means the peer has closed."""
        if data:
            self.data += data
        else:
            self.closed = True

    def take_head(self) -> Request | None:
        """The next request's head, or None until it has all arrived."""
        data = self.data
        if data.startswith((b"\n", b"\r")):
            raise MalformedRequest("no request line received")
        end = _END_OF_HEAD.search(data)
        if end is None:
            if len(data) > self.max_line_bytes:
                raise MalformedRequest("request head too long")
            return None
        head = bytes(data[: end.start()])
        del data[: end.end()]
        return parse_head(head)

    def take(self, count: int) -> bytes | None:
        """Exactly *count* bytes, or None until they have arrived."""
        if len(self.data) < count:
            return None
        taken = bytes(self.data[:count])
        del self.data[:count]
        return taken

    def take_chunk(self) -> bytes | None:
        """The next chunk of a chunked body (``b""`` for the last one, its trailers read
        and dropped), or None until it has all arrived."""
        data = self.data
        newline = data.find(b"\n")
        if newline < 0:
            if len(data) > self.max_line_bytes:
                raise MalformedRequest("chunk header too long")
            return None
        line = bytes(data[:newline]).removesuffix(b"\r")
        match = _CHUNK_HEADER.fullmatch(line)
        if match is None:
            raise MalformedRequest("illegal chunk header")
        size = int(match.group(1), 16)
        start = newline + 1
        if size == 0:
            return self._take_trailers(start)
        end = start + size
        if len(data) < end + 1:
            return None
        if data[end : end + 2] == b"\r\n":
            after = end + 2
        elif data[end : end + 1] == b"\n":
            after = end + 1
        elif len(data) < end + 2:
            return None
        else:
            raise MalformedRequest("missing CRLF after a chunk")
        chunk = bytes(data[start:end])
        del data[:after]
        return chunk

    def _take_trailers(self, start: int) -> bytes | None:
        """After the last chunk: trailer fields up to a blank line, checked and dropped."""
        data = self.data
        if data[start : start + 2] == b"\r\n":
            del data[: start + 2]
            return b""
        if data[start : start + 1] == b"\n":
            del data[: start + 1]
            return b""
        end = _END_OF_HEAD.search(data, start)
        if end is None:
            if len(data) - start > self.max_line_bytes:
                raise MalformedRequest("trailers too long")
            return None
        for line in _lines(bytes(data[start : end.start()])):
            if line[:1] in (b" ", b"\t") or _HEADER_FIELD.fullmatch(line) is None:
                raise MalformedRequest("illegal trailer line")
        del data[: end.end()]
        return b""
