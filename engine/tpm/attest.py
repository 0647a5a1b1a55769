"""TPMS_ATTEST (Part 2, 10.12): the structure a TPM signs for quotes, certify, creation.

The parser refuses anything that does not start with TPM_GENERATED_VALUE: the
TPM only signs data with that magic when it built the data itself, which is what
keeps an attestation key from signing look-alike external data.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from . import _marshal as m
from .constants import (
    HASH_DIGEST_SIZES,
    MAX_DATA_SIZE,
    MAX_DIGEST_SIZE,
    MAX_NAME_SIZE,
    MAX_NV_BUFFER_SIZE,
    TPM_GENERATED_VALUE,
    TPMAlg,
    TPMSt,
)
from .pcr import PCRSelectionList


@attrs.frozen
class ClockInfo:
    """TPMS_CLOCK_INFO. Privacy-sensitive TPMs obfuscate all but ``safe`` for
    non-endorsement keys, so a verifier should not rely on the counters."""

    clock: int = attrs.field(validator=m.unsigned(64))
    reset_count: int = attrs.field(validator=m.unsigned(32))
    restart_count: int = attrs.field(validator=m.unsigned(32))
    safe: bool

    def _write(self) -> bytes:
        return (
            m.u64(self.clock)
            + m.u32(self.reset_count)
            + m.u32(self.restart_count)
            + m.u8(int(self.safe))
        )

    @classmethod
    def _read(cls, r: m.Reader) -> ClockInfo:
        clock = r.u64("clockInfo.clock")
        reset_count = r.u32("clockInfo.resetCount")
        restart_count = r.u32("clockInfo.restartCount")
        return cls(clock, reset_count, restart_count, _read_yes_no(r, "clockInfo.safe"))


def _read_yes_no(r: m.Reader, field: str) -> bool:
    value = r.u8(field)
    if value > 1:
        raise r.error(field, f"TPMI_YES_NO must be 0 or 1, not {value}")
    return bool(value)


@attrs.frozen
class CertifyInfo:
    """TPMS_CERTIFY_INFO (TPM2_Certify): the certified object's Name."""

    TAG: ClassVar[TPMSt] = TPMSt.ATTEST_CERTIFY
    name: bytes = attrs.field(validator=m.max_len(MAX_NAME_SIZE))
    qualified_name: bytes = attrs.field(validator=m.max_len(MAX_NAME_SIZE))

    def _write(self) -> bytes:
        return m.tpm2b(self.name) + m.tpm2b(self.qualified_name)

    @classmethod
    def _read(cls, r: m.Reader) -> CertifyInfo:
        name = r.tpm2b("attested.name", MAX_NAME_SIZE)
        return cls(name, r.tpm2b("attested.qualifiedName", MAX_NAME_SIZE))


@attrs.frozen
class CreationInfo:
    """TPMS_CREATION_INFO (TPM2_CertifyCreation): object Name and H(creation data)."""

    TAG: ClassVar[TPMSt] = TPMSt.ATTEST_CREATION
    object_name: bytes = attrs.field(validator=m.max_len(MAX_NAME_SIZE))
    creation_hash: bytes = attrs.field(validator=m.max_len(MAX_DIGEST_SIZE))

    def _write(self) -> bytes:
        return m.tpm2b(self.object_name) + m.tpm2b(self.creation_hash)

    @classmethod
    def _read(cls, r: m.Reader) -> CreationInfo:
        name = r.tpm2b("attested.objectName", MAX_NAME_SIZE)
        return cls(name, r.tpm2b("attested.creationHash", MAX_DIGEST_SIZE))


@attrs.frozen
class QuoteInfo:
    """TPMS_QUOTE_INFO (TPM2_Quote): which PCRs, and the digest of their values."""

    TAG: ClassVar[TPMSt] = TPMSt.ATTEST_QUOTE
    pcr_select: PCRSelectionList
    pcr_digest: bytes = attrs.field(validator=m.max_len(MAX_DIGEST_SIZE))

    def _write(self) -> bytes:
        return self.pcr_select.to_bytes() + m.tpm2b(self.pcr_digest)

    @classmethod
    def _read(cls, r: m.Reader) -> QuoteInfo:
        selection = PCRSelectionList._read(r)
        return cls(selection, r.tpm2b("attested.pcrDigest", MAX_DIGEST_SIZE))


@attrs.frozen
class CommandAuditInfo:
    """TPMS_COMMAND_AUDIT_INFO (TPM2_GetCommandAuditDigest)."""

    TAG: ClassVar[TPMSt] = TPMSt.ATTEST_COMMAND_AUDIT
    audit_counter: int = attrs.field(validator=m.unsigned(64))
    digest_alg: TPMAlg = attrs.field(validator=m.member_of(HASH_DIGEST_SIZES))
    audit_digest: bytes = attrs.field(validator=m.max_len(MAX_DIGEST_SIZE))
    command_digest: bytes = attrs.field(validator=m.max_len(MAX_DIGEST_SIZE))

    def _write(self) -> bytes:
        return (
            m.u64(self.audit_counter)
            + m.u16(self.digest_alg)
            + m.tpm2b(self.audit_digest)
            + m.tpm2b(self.command_digest)
        )

    @classmethod
    def _read(cls, r: m.Reader) -> CommandAuditInfo:
        counter = r.u64("attested.auditCounter")
        alg = r.enum(TPMAlg, 2, "attested.digestAlg", HASH_DIGEST_SIZES)
        audit = r.tpm2b("attested.auditDigest", MAX_DIGEST_SIZE)
        return cls(counter, alg, audit, r.tpm2b("attested.commandDigest", MAX_DIGEST_SIZE))


@attrs.frozen
class SessionAuditInfo:
    """TPMS_SESSION_AUDIT_INFO (TPM2_GetSessionAuditDigest)."""

    TAG: ClassVar[TPMSt] = TPMSt.ATTEST_SESSION_AUDIT
    exclusive_session: bool
    session_digest: bytes = attrs.field(validator=m.max_len(MAX_DIGEST_SIZE))

    def _write(self) -> bytes:
        return m.u8(int(self.exclusive_session)) + m.tpm2b(self.session_digest)

    @classmethod
    def _read(cls, r: m.Reader) -> SessionAuditInfo:
        exclusive = _read_yes_no(r, "attested.exclusiveSession")
        return cls(exclusive, r.tpm2b("attested.sessionDigest", MAX_DIGEST_SIZE))


@attrs.frozen
class TimeAttestInfo:
    """TPMS_TIME_ATTEST_INFO (TPM2_GetTime)."""

    TAG: ClassVar[TPMSt] = TPMSt.ATTEST_TIME
    time: int = attrs.field(validator=m.unsigned(64))
    clock_info: ClockInfo
    firmware_version: int = attrs.field(validator=m.unsigned(64))

    def _write(self) -> bytes:
        return m.u64(self.time) + self.clock_info._write() + m.u64(self.firmware_version)

    @classmethod
    def _read(cls, r: m.Reader) -> TimeAttestInfo:
        time = r.u64("attested.time")
        clock_info = ClockInfo._read(r)
        return cls(time, clock_info, r.u64("attested.firmwareVersion"))


@attrs.frozen
class NVCertifyInfo:
    """TPMS_NV_CERTIFY_INFO (TPM2_NV_Certify): a range of an NV index's contents."""

    TAG: ClassVar[TPMSt] = TPMSt.ATTEST_NV
    index_name: bytes = attrs.field(validator=m.max_len(MAX_NAME_SIZE))
    offset: int = attrs.field(validator=m.unsigned(16))
    nv_contents: bytes = attrs.field(validator=m.max_len(MAX_NV_BUFFER_SIZE))

    def _write(self) -> bytes:
        return m.tpm2b(self.index_name) + m.u16(self.offset) + m.tpm2b(self.nv_contents)

    @classmethod
    def _read(cls, r: m.Reader) -> NVCertifyInfo:
        name = r.tpm2b("attested.indexName", MAX_NAME_SIZE)
        offset = r.u16("attested.offset")
        return cls(name, offset, r.tpm2b("attested.nvContents", MAX_NV_BUFFER_SIZE))


@attrs.frozen
class NVDigestCertifyInfo:
    """TPMS_NV_DIGEST_CERTIFY_INFO (TPM2_NV_Certify with size 0): digest of an NV index."""

    TAG: ClassVar[TPMSt] = TPMSt.ATTEST_NV_DIGEST
    index_name: bytes = attrs.field(validator=m.max_len(MAX_NAME_SIZE))
    nv_digest: bytes = attrs.field(validator=m.max_len(MAX_DIGEST_SIZE))

    def _write(self) -> bytes:
        return m.tpm2b(self.index_name) + m.tpm2b(self.nv_digest)

    @classmethod
    def _read(cls, r: m.Reader) -> NVDigestCertifyInfo:
        name = r.tpm2b("attested.indexName", MAX_NAME_SIZE)
        return cls(name, r.tpm2b("attested.nvDigest", MAX_DIGEST_SIZE))


Attested = (
    CertifyInfo
    | CreationInfo
    | QuoteInfo
    | CommandAuditInfo
    | SessionAuditInfo
    | TimeAttestInfo
    | NVCertifyInfo
    | NVDigestCertifyInfo
)

_ATTESTED_BY_TAG: dict[TPMSt, type[Attested]] = {
    kind.TAG: kind
    for kind in (
        CertifyInfo,
        CreationInfo,
        QuoteInfo,
        CommandAuditInfo,
        SessionAuditInfo,
        TimeAttestInfo,
        NVCertifyInfo,
        NVDigestCertifyInfo,
    )
}


@attrs.frozen
class TPMSAttest:
    """TPMS_ATTEST. ``type`` (TPMI_ST_ATTEST) follows from the class of ``attested``;
    ``magic`` is always TPM_GENERATED_VALUE."""

    qualified_signer: bytes = attrs.field(validator=m.max_len(MAX_NAME_SIZE))
    extra_data: bytes = attrs.field(validator=m.max_len(MAX_DATA_SIZE))
    clock_info: ClockInfo
    firmware_version: int = attrs.field(validator=m.unsigned(64))
    attested: Attested

    magic: ClassVar[int] = TPM_GENERATED_VALUE

    @property
    def type(self) -> TPMSt:
        return self.attested.TAG

    def to_bytes(self) -> bytes:
        return (
            m.u32(TPM_GENERATED_VALUE)
            + m.u16(self.type)
            + m.tpm2b(self.qualified_signer)
            + m.tpm2b(self.extra_data)
            + self.clock_info._write()
            + m.u64(self.firmware_version)
            + self.attested._write()
        )

    def to_tpm2b(self) -> bytes:
        """TPM2B_ATTEST, as the TPM returns it."""
        return m.tpm2b(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> TPMSAttest:
        return m.parse_exact(data, "TPMS_ATTEST", cls._read)

    @classmethod
    def from_tpm2b(cls, data: bytes) -> TPMSAttest:
        def read(r: m.Reader) -> TPMSAttest:
            body = r.raw(r.u16("size"), "attestationData")
            return m.parse_exact(body, "TPM2B_ATTEST.attestationData", cls._read)

        return m.parse_exact(data, "TPM2B_ATTEST", read)

    @classmethod
    def _read(cls, r: m.Reader) -> TPMSAttest:
        magic = r.u32("magic")
        if magic != TPM_GENERATED_VALUE:
            raise r.error("magic", f"0x{magic:08x} is not TPM_GENERATED_VALUE; not TPM-made")
        kind = _ATTESTED_BY_TAG[r.enum(TPMSt, 2, "type")]
        qualified_signer = r.tpm2b("qualifiedSigner", MAX_NAME_SIZE)
        extra_data = r.tpm2b("extraData", MAX_DATA_SIZE)
        clock_info = ClockInfo._read(r)
        firmware_version = r.u64("firmwareVersion")
        return cls(qualified_signer, extra_data, clock_info, firmware_version, kind._read(r))
