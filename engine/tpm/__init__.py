"""Pure-Python, sans-IO TPM 2.0 support for the server side of attestation.

Parse and marshal the structures a verifier receives (TPMT_PUBLIC,
TPMS_CREATION_DATA, TPMS_ATTEST, TPMT_SIGNATURE), compute object Names, verify
TPM signatures, check AK creation evidence, and run TPM2_MakeCredential to an
EK, all without a TSS library. Randomness always comes from the caller.
"""

from __future__ import annotations

from .ak import AKCreation, check_ak_public, verify_ak_creation
from .attest import (
    CertifyInfo,
    ClockInfo,
    CommandAuditInfo,
    CreationInfo,
    NVCertifyInfo,
    NVDigestCertifyInfo,
    QuoteInfo,
    SessionAuditInfo,
    TimeAttestInfo,
    TPMSAttest,
)
from .constants import TPM_GENERATED_VALUE, TPMAlg, TPMEccCurve, TPMSt
from .creation import TPMSCreationData
from .credential import (
    MakeCredentialResult,
    NativeRandomness,
    activate_credential,
    make_credential,
    make_credential_ecc,
    make_credential_rsa,
    unwrap_credential,
    wrap_credential,
)
from .ek import (
    EK_ATTRIBUTES,
    EK_POLICY_A_SHA256,
    EKTemplate,
    default_ek_template,
    ek_public_from_key,
)
from .encapsulation import (
    Encapsulation,
    ecc_decapsulate,
    ecc_encapsulate,
    rsa_decapsulate,
    rsa_encapsulate,
)
from .errors import (
    TPMError,
    TPMFormatError,
    TPMPolicyError,
    TPMSignatureError,
    TPMUnsupportedError,
)
from .kdf import kdfa, kdfe
from .keys import TPMPublicKey, ecc_point_of, public_from_key, public_key_from_tpmt
from .pcr import PCRSelection, PCRSelectionList, pcr_digest
from .public import (
    AES_128_CFB,
    AES_256_CFB,
    ECCParms,
    ECCPoint,
    ObjectAttributes,
    RSAParms,
    Scheme,
    SymDefObject,
    TPMTPublic,
    split_name,
)
from .signature import ECCSignature, RSASignature, TPMTSignature
from .verify import verify_attestation, verify_signature

__all__ = [
    "AES_128_CFB",
    "AES_256_CFB",
    "EK_ATTRIBUTES",
    "EK_POLICY_A_SHA256",
    "TPM_GENERATED_VALUE",
    "AKCreation",
    "CertifyInfo",
    "ClockInfo",
    "CommandAuditInfo",
    "CreationInfo",
    "ECCParms",
    "ECCPoint",
    "ECCSignature",
    "EKTemplate",
    "Encapsulation",
    "MakeCredentialResult",
    "NVCertifyInfo",
    "NVDigestCertifyInfo",
    "NativeRandomness",
    "ObjectAttributes",
    "PCRSelection",
    "PCRSelectionList",
    "QuoteInfo",
    "RSAParms",
    "RSASignature",
    "Scheme",
    "SessionAuditInfo",
    "SymDefObject",
    "TPMAlg",
    "TPMEccCurve",
    "TPMError",
    "TPMFormatError",
    "TPMPolicyError",
    "TPMPublicKey",
    "TPMSAttest",
    "TPMSCreationData",
    "TPMSignatureError",
    "TPMSt",
    "TPMTPublic",
    "TPMTSignature",
    "TPMUnsupportedError",
    "TimeAttestInfo",
    "activate_credential",
    "check_ak_public",
    "default_ek_template",
    "ecc_decapsulate",
    "ecc_encapsulate",
    "ecc_point_of",
    "ek_public_from_key",
    "kdfa",
    "kdfe",
    "make_credential",
    "make_credential_ecc",
    "make_credential_rsa",
    "pcr_digest",
    "public_from_key",
    "public_key_from_tpmt",
    "rsa_decapsulate",
    "rsa_encapsulate",
    "split_name",
    "unwrap_credential",
    "verify_ak_creation",
    "verify_attestation",
    "verify_signature",
    "wrap_credential",
]
