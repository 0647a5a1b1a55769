"""PCR selections (TPMS_PCR_SELECTION, TPML_PCR_SELECTION) and the PCR digest.

Quotes and creation data both say which PCRs they cover with these; the
verifier needs the selected indices in order to recompute ``pcrDigest``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from . import _marshal as m
from .constants import HASH_DIGEST_SIZES, TPMAlg
from .errors import TPMFormatError
from .hashing import digest

#: Bytes of PCR bitmap one selection may carry (PCR_SELECT_MAX; 8 covers 64 PCRs).
MAX_PCR_SELECT_BYTES = 8
#: Selections in one list: one per hash bank at most (HASH_COUNT, generously).
MAX_PCR_BANKS = 16


@attrs.frozen
class PCRSelection:
    """TPMS_PCR_SELECTION: one hash bank and a bitmap of its PCRs (bit i = PCR i)."""

    hash_alg: TPMAlg = attrs.field(validator=m.member_of(HASH_DIGEST_SIZES))
    select: bytes = attrs.field(validator=m.max_len(MAX_PCR_SELECT_BYTES))

    @classmethod
    def of(cls, hash_alg: TPMAlg, indices: Iterable[int], size: int = 3) -> PCRSelection:
        """Select *indices* in a bitmap of *size* bytes (3 bytes: PCRs 0-23)."""
        bitmap = bytearray(size)
        for index in indices:
            if not 0 <= index < 8 * size:
                raise ValueError(f"PCR {index} does not fit a {size}-byte selection")
            bitmap[index // 8] |= 1 << (index % 8)
        return cls(hash_alg, bytes(bitmap))

    @property
    def indices(self) -> tuple[int, ...]:
        """Selected PCR indices, ascending: the order their values enter pcrDigest."""
        return tuple(
            8 * octet + bit
            for octet, value in enumerate(self.select)
            for bit in range(8)
            if value >> bit & 1
        )

    def _write(self) -> bytes:
        return m.u16(self.hash_alg) + m.u8(len(self.select)) + self.select

    @classmethod
    def _read(cls, r: m.Reader) -> PCRSelection:
        hash_alg = r.enum(TPMAlg, 2, "hash", HASH_DIGEST_SIZES)
        size = r.u8("sizeofSelect")
        if size > MAX_PCR_SELECT_BYTES:
            raise r.error("sizeofSelect", f"{size} exceeds the maximum of {MAX_PCR_SELECT_BYTES}")
        return cls(hash_alg, r.raw(size, "pcrSelect"))


@attrs.frozen
class PCRSelectionList:
    """TPML_PCR_SELECTION: the banks and PCRs a quote or creation covers."""

    selections: tuple[PCRSelection, ...] = attrs.field(default=())

    @selections.validator
    def _check(self, _attribute: object, value: tuple[PCRSelection, ...]) -> None:
        if len(value) > MAX_PCR_BANKS:
            raise TPMFormatError(f"at most {MAX_PCR_BANKS} PCR selections")

    def to_bytes(self) -> bytes:
        return m.u32(len(self.selections)) + b"".join(s._write() for s in self.selections)

    @classmethod
    def from_bytes(cls, data: bytes) -> PCRSelectionList:
        return m.parse_exact(data, "TPML_PCR_SELECTION", cls._read)

    @classmethod
    def _read(cls, r: m.Reader) -> PCRSelectionList:
        count = r.u32("count")
        if count > MAX_PCR_BANKS:
            raise r.error("count", f"{count} selections exceed the maximum of {MAX_PCR_BANKS}")
        return cls(tuple(PCRSelection._read(r) for _ in range(count)))


def pcr_digest(hash_alg: TPMAlg, values: Sequence[bytes]) -> bytes:
    """pcrDigest: H(value_1 || ... || value_n) over the selected PCRs in selection order.

    The TPM hashes with the signing scheme's hash (quote) or the object's nameAlg
    (creation data), which need not be the bank's own hash.
    """
    return digest(hash_alg, b"".join(values))
