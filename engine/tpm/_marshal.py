"""Big-endian TPM wire encoding: a bounds-checked reader and small writers.

Every parser in this package reads through :class:`Reader`, so truncation,
oversized TPM2B buffers, unknown enum values and trailing bytes all surface as
one :class:`TPMFormatError` naming the structure and field, never as an
``IndexError`` or ``struct.error``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from .errors import TPMError, TPMFormatError

T = TypeVar("T")
E = TypeVar("E", bound=enum.IntEnum)


class Reader:
    """Sequential reader over one TPM structure; *structure* names it in errors."""

    __slots__ = ("_data", "_field_start", "_pos", "structure")

    def __init__(self, data: bytes, structure: str) -> None:
        self._data = data
        self._pos = 0
        self._field_start = 0
        self.structure = structure

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def error(self, field: str, problem: str) -> TPMFormatError:
        """An error naming the structure, the field and where the last field read began."""
        where = f"at offset {self._field_start}"
        return TPMFormatError(f"{self.structure}.{field}: {problem} ({where})")

    def raw(self, size: int, field: str) -> bytes:
        self._field_start = self._pos
        if size > self.remaining:
            raise self.error(field, f"truncated: need {size} bytes, {self.remaining} left")
        start = self._pos
        self._pos += size
        return self._data[start : self._pos]

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.raw(size, field), "big")

    def u8(self, field: str) -> int:
        return self.uint(1, field)

    def u16(self, field: str) -> int:
        return self.uint(2, field)

    def u32(self, field: str) -> int:
        return self.uint(4, field)

    def u64(self, field: str) -> int:
        return self.uint(8, field)

    def tpm2b(self, field: str, max_size: int) -> bytes:
        """A TPM2B: u16 size then that many bytes, refusing sizes above *max_size*."""
        size = self.u16(f"{field}.size")
        if size > max_size:
            raise self.error(field, f"size {size} exceeds the maximum of {max_size}")
        return self.raw(size, field)

    def enum(self, kind: type[E], size: int, field: str, allowed: Collection[E] = ()) -> E:
        """An enum value of *size* bytes; when *allowed* is given, only those members."""
        value = self.uint(size, field)
        try:
            member = kind(value)
        except ValueError:
            problem = f"unknown {kind.__name__} value 0x{value:0{size * 2}x}"
            raise self.error(field, problem) from None
        if allowed and member not in allowed:
            raise self.error(field, f"{member.name} is not allowed here")
        return member

    def finish(self) -> None:
        if self.remaining:
            raise TPMFormatError(f"{self.structure}: {self.remaining} trailing bytes")


def parse_exact(data: bytes, structure: str, read: Callable[[Reader], T]) -> T:
    """Parse *data* as exactly one structure: no truncation, no trailing bytes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"{structure} must be parsed from bytes, not {type(data).__name__}")
    reader = Reader(bytes(data), structure)
    try:
        value = read(reader)
    except (IndexError, ValueError, OverflowError) as exc:
        if isinstance(exc, TPMError):
            raise
        # A constructor refused a value that is well-formed on the wire.
        raise TPMFormatError(f"{structure}: {exc}") from exc
    reader.finish()
    return value


def u8(value: int) -> bytes:
    return value.to_bytes(1, "big")


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def tpm2b(data: bytes) -> bytes:
    return u16(len(data)) + data


# attrs validators: constructors refuse what the wire format cannot carry, so an
# object that exists can always be marshalled and re-parsed to itself.


def unsigned(bits: int) -> Callable[[Any, Any, int], None]:
    limit = 1 << bits

    def check(_instance: Any, attribute: Any, value: int) -> None:
        if not isinstance(value, int) or not 0 <= value < limit:
            raise TPMFormatError(f"{attribute.name} must be an unsigned {bits}-bit integer")

    return check


def max_len(limit: int) -> Callable[[Any, Any, bytes], None]:
    def check(_instance: Any, attribute: Any, value: bytes) -> None:
        if not isinstance(value, bytes):
            raise TypeError(f"{attribute.name} must be bytes")
        if len(value) > limit:
            raise TPMFormatError(f"{attribute.name} is {len(value)} bytes; at most {limit}")

    return check


def member_of(allowed: Collection[enum.IntEnum]) -> Callable[[Any, Any, Any], None]:
    def check(_instance: Any, attribute: Any, value: Any) -> None:
        if value not in allowed or not isinstance(value, enum.IntEnum):
            names = ", ".join(sorted(m.name for m in allowed))
            raise TPMFormatError(f"{attribute.name} is {value!r}; expected one of {names}")

    return check
