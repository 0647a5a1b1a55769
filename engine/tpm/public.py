"""TPMT_PUBLIC and TPM2B_PUBLIC (TPM 2.0 Part 2, 12.2): an object's public area.

The public area is what the verifier checks (attributes, key, policy) and what
the object's Name commits to, so parsing keeps every byte: ``to_bytes()`` of a
parsed area reproduces the input exactly, and ``name()`` hashes those bytes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs

from . import _marshal as m
from .constants import HASH_DIGEST_SIZES, MAX_DIGEST_SIZE, TPMAlg, TPMEccCurve
from .errors import TPMFormatError, TPMUnsupportedError
from .hashing import digest, digest_size

#: Largest RSA modulus a TPM carries (MAX_RSA_KEY_BYTES, RSA-4096).
MAX_RSA_KEY_BYTES = 512
#: Largest ECC coordinate (MAX_ECC_KEY_BYTES; BN P638 is the largest TPM curve).
MAX_ECC_KEY_BYTES = 80


class ObjectAttributes(enum.IntFlag):
    """TPMA_OBJECT (Part 2, 8.3)."""

    FIXED_TPM = 0x00000002
    ST_CLEAR = 0x00000004
    FIXED_PARENT = 0x00000010
    SENSITIVE_DATA_ORIGIN = 0x00000020
    USER_WITH_AUTH = 0x00000040
    ADMIN_WITH_POLICY = 0x00000080
    FIRMWARE_LIMITED = 0x00000100
    SVN_LIMITED = 0x00000200
    NO_DA = 0x00000400
    ENCRYPTED_DUPLICATION = 0x00000800
    RESTRICTED = 0x00010000
    DECRYPT = 0x00020000
    SIGN = 0x00040000
    SIGN_ENCRYPT = 0x00040000
    X509_SIGN = 0x00080000


_DEFINED_ATTRIBUTES = 0
for _flag in ObjectAttributes:
    _DEFINED_ATTRIBUTES |= _flag.value

SYMMETRIC_OBJECT_ALGS = frozenset({TPMAlg.AES, TPMAlg.SM4, TPMAlg.CAMELLIA, TPMAlg.TDES})
SYMMETRIC_MODES = frozenset({TPMAlg.CTR, TPMAlg.OFB, TPMAlg.CBC, TPMAlg.CFB, TPMAlg.ECB})
RSA_SCHEMES = frozenset({TPMAlg.NULL, TPMAlg.RSASSA, TPMAlg.RSAPSS, TPMAlg.RSAES, TPMAlg.OAEP})
ECC_SCHEMES = frozenset(
    {
        TPMAlg.NULL,
        TPMAlg.ECDSA,
        TPMAlg.ECDAA,
        TPMAlg.SM2,
        TPMAlg.ECSCHNORR,
        TPMAlg.ECDH,
        TPMAlg.ECMQV,
    }
)
KDF_SCHEMES = frozenset(
    {TPMAlg.NULL, TPMAlg.MGF1, TPMAlg.KDF1_SP800_56A, TPMAlg.KDF2, TPMAlg.KDF1_SP800_108}
)
_NAME_ALGS = frozenset(HASH_DIGEST_SIZES) | {TPMAlg.NULL}
_SCHEMES_WITHOUT_DETAILS = frozenset({TPMAlg.NULL, TPMAlg.RSAES})


def _check_attributes(_instance: object, _attribute: object, value: ObjectAttributes) -> None:
    if not isinstance(value, ObjectAttributes):
        raise TypeError("object_attributes must be ObjectAttributes")
    reserved = value.value & ~_DEFINED_ATTRIBUTES
    if reserved:
        raise TPMFormatError(f"objectAttributes sets reserved bits 0x{reserved:08x}")


@attrs.frozen
class SymDefObject:
    """TPMT_SYM_DEF_OBJECT: the symmetric cipher a storage/EK key protects children with."""

    algorithm: TPMAlg = TPMAlg.NULL
    key_bits: int = attrs.field(default=0, validator=m.unsigned(16))
    mode: TPMAlg = TPMAlg.NULL

    def __attrs_post_init__(self) -> None:
        if self.algorithm == TPMAlg.NULL:
            if self.key_bits or self.mode != TPMAlg.NULL:
                raise TPMFormatError("a NULL symmetric definition has no keyBits or mode")
            return
        if self.algorithm not in SYMMETRIC_OBJECT_ALGS:
            raise TPMFormatError(f"{self.algorithm!r} is not a symmetric object algorithm")
        if self.mode not in SYMMETRIC_MODES:
            raise TPMFormatError(f"{self.mode!r} is not a symmetric mode")

    def _write(self) -> bytes:
        if self.algorithm == TPMAlg.NULL:
            return m.u16(self.algorithm)
        return m.u16(self.algorithm) + m.u16(self.key_bits) + m.u16(self.mode)

    @classmethod
    def _read(cls, r: m.Reader) -> SymDefObject:
        algorithm = r.enum(TPMAlg, 2, "symmetric.algorithm", SYMMETRIC_OBJECT_ALGS | {TPMAlg.NULL})
        if algorithm == TPMAlg.NULL:
            return cls()
        key_bits = r.u16("symmetric.keyBits")
        return cls(algorithm, key_bits, r.enum(TPMAlg, 2, "symmetric.mode", SYMMETRIC_MODES))


AES_128_CFB = SymDefObject(TPMAlg.AES, 128, TPMAlg.CFB)
AES_256_CFB = SymDefObject(TPMAlg.AES, 256, TPMAlg.CFB)


@attrs.frozen
class Scheme:
    """TPMT_RSA_SCHEME, TPMT_ECC_SCHEME or TPMT_KDF_SCHEME: a scheme and its details.

    Details are a hash algorithm, plus a ``count`` for ECDAA; NULL and RSAES have none.
    Which schemes are allowed depends on the structure that holds it.
    """

    scheme: TPMAlg = TPMAlg.NULL
    hash_alg: TPMAlg = TPMAlg.NULL
    count: int = attrs.field(default=0, validator=m.unsigned(16))

    def __attrs_post_init__(self) -> None:
        if self.scheme in _SCHEMES_WITHOUT_DETAILS:
            if self.hash_alg != TPMAlg.NULL or self.count:
                raise TPMFormatError(f"scheme {self.scheme.name} carries no hash or count")
            return
        if self.hash_alg not in HASH_DIGEST_SIZES:
            raise TPMFormatError(f"scheme {self.scheme.name} needs a hash algorithm")
        if self.count and self.scheme != TPMAlg.ECDAA:
            raise TPMFormatError(f"scheme {self.scheme.name} carries no count")

    def _write(self) -> bytes:
        out = m.u16(self.scheme)
        if self.scheme in _SCHEMES_WITHOUT_DETAILS:
            return out
        out += m.u16(self.hash_alg)
        return out + m.u16(self.count) if self.scheme == TPMAlg.ECDAA else out

    @classmethod
    def _read(cls, r: m.Reader, field: str, allowed: frozenset[TPMAlg]) -> Scheme:
        scheme = r.enum(TPMAlg, 2, f"{field}.scheme", allowed)
        if scheme in _SCHEMES_WITHOUT_DETAILS:
            return cls(scheme)
        hash_alg = r.enum(TPMAlg, 2, f"{field}.hashAlg", HASH_DIGEST_SIZES)
        count = r.u16(f"{field}.count") if scheme == TPMAlg.ECDAA else 0
        return cls(scheme, hash_alg, count)


NULL_SCHEME = Scheme()


def _scheme_in(allowed: frozenset[TPMAlg], what: str) -> Callable[[object, object, Scheme], None]:
    def check(_instance: object, _attribute: object, value: Scheme) -> None:
        if value.scheme not in allowed:
            raise TPMFormatError(f"{value.scheme!r} is not a {what} scheme")

    return check


@attrs.frozen
class RSAParms:
    """TPMS_RSA_PARMS. ``exponent`` 0 means the default, 65537."""

    symmetric: SymDefObject = SymDefObject()
    scheme: Scheme = attrs.field(default=NULL_SCHEME, validator=_scheme_in(RSA_SCHEMES, "RSA"))
    key_bits: int = attrs.field(default=2048, validator=m.unsigned(16))
    exponent: int = attrs.field(default=0, validator=m.unsigned(32))

    @property
    def public_exponent(self) -> int:
        return self.exponent or 65537

    def _write(self) -> bytes:
        return (
            self.symmetric._write()
            + self.scheme._write()
            + m.u16(self.key_bits)
            + m.u32(self.exponent)
        )

    @classmethod
    def _read(cls, r: m.Reader) -> RSAParms:
        symmetric = SymDefObject._read(r)
        scheme = Scheme._read(r, "scheme", RSA_SCHEMES)
        return cls(symmetric, scheme, r.u16("keyBits"), r.u32("exponent"))


@attrs.frozen
class ECCParms:
    """TPMS_ECC_PARMS."""

    symmetric: SymDefObject = SymDefObject()
    scheme: Scheme = attrs.field(default=NULL_SCHEME, validator=_scheme_in(ECC_SCHEMES, "ECC"))
    curve: TPMEccCurve = TPMEccCurve.NIST_P256
    kdf: Scheme = attrs.field(default=NULL_SCHEME, validator=_scheme_in(KDF_SCHEMES, "KDF"))

    def _write(self) -> bytes:
        return (
            self.symmetric._write() + self.scheme._write() + m.u16(self.curve) + self.kdf._write()
        )

    @classmethod
    def _read(cls, r: m.Reader) -> ECCParms:
        symmetric = SymDefObject._read(r)
        scheme = Scheme._read(r, "scheme", ECC_SCHEMES)
        curve = r.enum(TPMEccCurve, 2, "curveID")
        return cls(symmetric, scheme, curve, Scheme._read(r, "kdf", KDF_SCHEMES))


@attrs.frozen
class ECCPoint:
    """TPMS_ECC_POINT: big-endian coordinates, kept with whatever padding they came with."""

    x: bytes = attrs.field(default=b"", validator=m.max_len(MAX_ECC_KEY_BYTES))
    y: bytes = attrs.field(default=b"", validator=m.max_len(MAX_ECC_KEY_BYTES))

    def to_bytes(self) -> bytes:
        return m.tpm2b(self.x) + m.tpm2b(self.y)

    @classmethod
    def from_bytes(cls, data: bytes) -> ECCPoint:
        return m.parse_exact(data, "TPMS_ECC_POINT", cls._read)

    @classmethod
    def _read(cls, r: m.Reader) -> ECCPoint:
        x = r.tpm2b("x", MAX_ECC_KEY_BYTES)
        return cls(x, r.tpm2b("y", MAX_ECC_KEY_BYTES))


@attrs.frozen
class TPMTPublic:
    """TPMT_PUBLIC for RSA and ECC keys.

    ``type`` is derived from ``parameters``, so an inconsistent area cannot be built;
    ``unique`` is the RSA modulus (bytes) or the ECC public point.
    """

    name_alg: TPMAlg = attrs.field(validator=m.member_of(_NAME_ALGS))
    object_attributes: ObjectAttributes = attrs.field(validator=_check_attributes)
    auth_policy: bytes = attrs.field(validator=m.max_len(MAX_DIGEST_SIZE))
    parameters: RSAParms | ECCParms
    unique: bytes | ECCPoint

    def __attrs_post_init__(self) -> None:
        if isinstance(self.parameters, RSAParms):
            if not isinstance(self.unique, bytes) or len(self.unique) > MAX_RSA_KEY_BYTES:
                raise TPMFormatError(f"an RSA unique is at most {MAX_RSA_KEY_BYTES} bytes")
        elif isinstance(self.parameters, ECCParms):
            if not isinstance(self.unique, ECCPoint):
                raise TPMFormatError("an ECC unique is a TPMS_ECC_POINT")
        else:
            raise TypeError("parameters must be RSAParms or ECCParms")

    @property
    def type(self) -> TPMAlg:
        """TPMI_ALG_PUBLIC: RSA or ECC."""
        return TPMAlg.RSA if isinstance(self.parameters, RSAParms) else TPMAlg.ECC

    def to_bytes(self) -> bytes:
        unique = self.unique if isinstance(self.unique, bytes) else self.unique.to_bytes()
        return (
            m.u16(self.type)
            + m.u16(self.name_alg)
            + m.u32(self.object_attributes)
            + m.tpm2b(self.auth_policy)
            + self.parameters._write()
            + (m.tpm2b(unique) if isinstance(self.unique, bytes) else unique)
        )

    def to_tpm2b(self) -> bytes:
        """TPM2B_PUBLIC: the area with its u16 size in front."""
        return m.tpm2b(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> TPMTPublic:
        return m.parse_exact(data, "TPMT_PUBLIC", cls._read)

    @classmethod
    def from_tpm2b(cls, data: bytes) -> TPMTPublic:
        return m.parse_exact(data, "TPM2B_PUBLIC", cls._read_tpm2b)

    @classmethod
    def _read_tpm2b(cls, r: m.Reader) -> TPMTPublic:
        size = r.u16("size")
        if size == 0:
            raise r.error("size", "empty TPM2B_PUBLIC")
        return m.parse_exact(r.raw(size, "publicArea"), "TPM2B_PUBLIC.publicArea", cls._read)

    @classmethod
    def _read(cls, r: m.Reader) -> TPMTPublic:
        kind = r.enum(TPMAlg, 2, "type")
        if kind not in (TPMAlg.RSA, TPMAlg.ECC):
            raise TPMUnsupportedError(f"TPMT_PUBLIC of type {kind.name} is not supported")
        name_alg = r.enum(TPMAlg, 2, "nameAlg", _NAME_ALGS)
        attributes = r.u32("objectAttributes")
        reserved = attributes & ~_DEFINED_ATTRIBUTES
        if reserved:
            raise r.error("objectAttributes", f"reserved bits 0x{reserved:08x} are set")
        auth_policy = r.tpm2b("authPolicy", MAX_DIGEST_SIZE)
        parameters: RSAParms | ECCParms
        unique: bytes | ECCPoint
        if kind == TPMAlg.RSA:
            parameters = RSAParms._read(r)
            unique = r.tpm2b("unique.rsa", MAX_RSA_KEY_BYTES)
        else:
            parameters = ECCParms._read(r)
            unique = ECCPoint._read(r)
        return cls(name_alg, ObjectAttributes(attributes), auth_policy, parameters, unique)

    def name(self) -> bytes:
        """The object's Name: nameAlg (u16) || H_nameAlg(TPMT_PUBLIC)."""
        if self.name_alg == TPMAlg.NULL:
            raise TPMUnsupportedError("an object with nameAlg NULL has no digest Name")
        return m.u16(self.name_alg) + digest(self.name_alg, self.to_bytes())


def split_name(name: bytes) -> tuple[TPMAlg, bytes]:
    """Check that *name* is a digest Name (alg || digest) and return its two parts."""
    if len(name) < 2:
        raise TPMFormatError("a Name is at least a 2-byte algorithm ID")
    alg_id = int.from_bytes(name[:2], "big")
    if alg_id not in HASH_DIGEST_SIZES:
        raise TPMFormatError(f"Name algorithm 0x{alg_id:04x} is not a hash algorithm")
    alg = TPMAlg(alg_id)
    if len(name) - 2 != digest_size(alg):
        raise TPMFormatError(f"a {alg.name} Name carries {digest_size(alg)} digest bytes")
    return alg, name[2:]
