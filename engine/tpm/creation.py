"""TPMS_CREATION_DATA (Part 2, 15.1): what the TPM recorded when it created a key.

TPM2_CertifyCreation and the creation ticket commit to H_nameAlg of these exact
bytes (``creationHash``), so ``to_bytes()`` reproduces parsed input exactly.
"""

from __future__ import annotations

import attrs

from . import _marshal as m
from .constants import (
    HASH_DIGEST_SIZES,
    MAX_DATA_SIZE,
    MAX_DIGEST_SIZE,
    MAX_NAME_SIZE,
    TPMAlg,
)
from .pcr import PCRSelectionList

_PARENT_NAME_ALGS = frozenset(HASH_DIGEST_SIZES) | {TPMAlg.NULL}


@attrs.frozen
class TPMSCreationData:
    """PCRs, locality and parent at creation time, plus the caller's ``outsideInfo``.

    ``parent_name_alg`` is NULL for a primary key, whose ``parent_name`` is the
    4-byte hierarchy handle.
    """

    pcr_select: PCRSelectionList
    pcr_digest: bytes = attrs.field(validator=m.max_len(MAX_DIGEST_SIZE))
    locality: int = attrs.field(validator=m.unsigned(8))
    parent_name_alg: TPMAlg = attrs.field(validator=m.member_of(_PARENT_NAME_ALGS))
    parent_name: bytes = attrs.field(validator=m.max_len(MAX_NAME_SIZE))
    parent_qualified_name: bytes = attrs.field(validator=m.max_len(MAX_NAME_SIZE))
    outside_info: bytes = attrs.field(validator=m.max_len(MAX_DATA_SIZE))

    def to_bytes(self) -> bytes:
        return (
            self.pcr_select.to_bytes()
            + m.tpm2b(self.pcr_digest)
            + m.u8(self.locality)
            + m.u16(self.parent_name_alg)
            + m.tpm2b(self.parent_name)
            + m.tpm2b(self.parent_qualified_name)
            + m.tpm2b(self.outside_info)
        )

    def to_tpm2b(self) -> bytes:
        """TPM2B_CREATION_DATA, as TPM2_Create returns it."""
        return m.tpm2b(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> TPMSCreationData:
        return m.parse_exact(data, "TPMS_CREATION_DATA", cls._read)

    @classmethod
    def from_tpm2b(cls, data: bytes) -> TPMSCreationData:
        def read(r: m.Reader) -> TPMSCreationData:
            body = r.raw(r.u16("size"), "creationData")
            return m.parse_exact(body, "TPM2B_CREATION_DATA.creationData", cls._read)

        return m.parse_exact(data, "TPM2B_CREATION_DATA", read)

    @classmethod
    def _read(cls, r: m.Reader) -> TPMSCreationData:
        return cls(
            pcr_select=PCRSelectionList._read(r),
            pcr_digest=r.tpm2b("pcrDigest", MAX_DIGEST_SIZE),
            locality=r.u8("locality"),
            parent_name_alg=r.enum(TPMAlg, 2, "parentNameAlg", _PARENT_NAME_ALGS),
            parent_name=r.tpm2b("parentName", MAX_NAME_SIZE),
            parent_qualified_name=r.tpm2b("parentQualifiedName", MAX_NAME_SIZE),
            outside_info=r.tpm2b("outsideInfo", MAX_DATA_SIZE),
        )
