"""The few DER encodings devid writes itself (its own extension values)."""

from __future__ import annotations

from .errors import BadRequest


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _length(len(value)) + value


def utf8_string(text: str) -> bytes:
    return tlv(0x0C, text.encode("utf-8"))


def sequence(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """Return (tag, value, next offset); raise BadRequest on malformed input."""
    if offset + 2 > len(data):
        raise BadRequest("truncated DER")
    tag = data[offset]
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise BadRequest("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise BadRequest("truncated DER")
    return tag, data[pos : pos + length], pos + length


def read_utf8_sequence(data: bytes) -> list[str]:
    """Decode a SEQUENCE OF UTF8String written by :func:`sequence`."""
    tag, body, end = read_tlv(data)
    if tag != 0x30 or end != len(data):
        raise BadRequest("expected a DER SEQUENCE")
    out: list[str] = []
    pos = 0
    while pos < len(body):
        t, value, pos = read_tlv(body, pos)
        if t != 0x0C:
            raise BadRequest("expected UTF8String")
        out.append(value.decode("utf-8"))
    return out


def object_identifier(dotted: str) -> bytes:
    """DER OBJECT IDENTIFIER for a dotted string such as "1.3.6.1.5.5.7.8.3"."""
    arcs = [int(part) for part in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2:
        raise ValueError(f"invalid OID {dotted!r}")
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return tlv(0x06, bytes(body))
