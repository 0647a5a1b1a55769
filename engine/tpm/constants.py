"""TPM 2.0 constants (TPM 2.0 Part 2): algorithm IDs, curves, structure tags.

Enums rather than bare ints so that a parsed structure can only hold values the
specification defines, and so that errors and reprs name them.
"""

from __future__ import annotations

import enum

#: TPM_GENERATED_VALUE: the magic that starts every TPMS_ATTEST the TPM signs.
TPM_GENERATED_VALUE = 0xFF544347


class TPMAlg(enum.IntEnum):
    """TPM_ALG_ID (Part 2, table 9; the IDs a TPM 2.0 can put on the wire)."""

    ERROR = 0x0000
    RSA = 0x0001
    TDES = 0x0003
    SHA1 = 0x0004
    HMAC = 0x0005
    AES = 0x0006
    MGF1 = 0x0007
    KEYEDHASH = 0x0008
    XOR = 0x000A
    SHA256 = 0x000B
    SHA384 = 0x000C
    SHA512 = 0x000D
    SHA256_192 = 0x000E
    NULL = 0x0010
    SM3_256 = 0x0012
    SM4 = 0x0013
    RSASSA = 0x0014
    RSAES = 0x0015
    RSAPSS = 0x0016
    OAEP = 0x0017
    ECDSA = 0x0018
    ECDH = 0x0019
    ECDAA = 0x001A
    SM2 = 0x001B
    ECSCHNORR = 0x001C
    ECMQV = 0x001D
    KDF1_SP800_56A = 0x0020
    KDF2 = 0x0021
    KDF1_SP800_108 = 0x0022
    ECC = 0x0023
    SYMCIPHER = 0x0025
    CAMELLIA = 0x0026
    SHA3_256 = 0x0027
    SHA3_384 = 0x0028
    SHA3_512 = 0x0029
    SHAKE128 = 0x002A
    SHAKE256 = 0x002B
    CMAC = 0x003F
    CTR = 0x0040
    OFB = 0x0041
    CBC = 0x0042
    CFB = 0x0043
    ECB = 0x0044


class TPMEccCurve(enum.IntEnum):
    """TPM_ECC_CURVE (Part 2, table 10)."""

    NONE = 0x0000
    NIST_P192 = 0x0001
    NIST_P224 = 0x0002
    NIST_P256 = 0x0003
    NIST_P384 = 0x0004
    NIST_P521 = 0x0005
    BN_P256 = 0x0010
    BN_P638 = 0x0011
    SM2_P256 = 0x0020
    BP_P256_R1 = 0x0030
    BP_P384_R1 = 0x0031
    BP_P512_R1 = 0x0032
    CURVE_25519 = 0x0040
    CURVE_448 = 0x0041


class TPMSt(enum.IntEnum):
    """TPM_ST values that tag a TPMS_ATTEST (Part 2, table 19)."""

    ATTEST_NV = 0x8014
    ATTEST_COMMAND_AUDIT = 0x8015
    ATTEST_SESSION_AUDIT = 0x8016
    ATTEST_CERTIFY = 0x8017
    ATTEST_QUOTE = 0x8018
    ATTEST_TIME = 0x8019
    ATTEST_CREATION = 0x801A
    ATTEST_NV_DIGEST = 0x801C


#: Hash algorithms (TPMI_ALG_HASH) and their digest sizes in bytes.
HASH_DIGEST_SIZES: dict[TPMAlg, int] = {
    TPMAlg.SHA1: 20,
    TPMAlg.SHA256: 32,
    TPMAlg.SHA384: 48,
    TPMAlg.SHA512: 64,
    TPMAlg.SM3_256: 32,
    TPMAlg.SHA3_256: 32,
    TPMAlg.SHA3_384: 48,
    TPMAlg.SHA3_512: 64,
}

#: The largest digest any TPM hash produces (sizeof(TPMU_HA)).
MAX_DIGEST_SIZE = 64
#: sizeof(TPMU_NAME): a digest Name (2 + 64) or a 4-byte handle.
MAX_NAME_SIZE = 2 + MAX_DIGEST_SIZE
#: sizeof(TPMT_HA): TPM2B_DATA (qualifying data, outside info) holds at most this.
MAX_DATA_SIZE = 2 + MAX_DIGEST_SIZE
#: MAX_NV_BUFFER_SIZE, generously: the largest NV read a TPMS_NV_CERTIFY_INFO carries.
MAX_NV_BUFFER_SIZE = 2048
