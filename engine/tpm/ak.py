"""Check an attestation key's creation evidence (the server side of AK enrollment).

The device sends the AK's public area, its creation data, TPM2_CertifyCreation's
attestation and signature. We accept the AK only if the TPM itself vouches that
this public area, with the attributes we require, was created in the TPM. The AK
Name returned here is computed from the checked public area (never taken from
the client), and MakeCredential to that Name lets the EK's TPM enforce the rest.
"""

from __future__ import annotations

import hmac

import attrs

from .attest import CreationInfo, TPMSAttest
from .constants import TPMAlg, TPMEccCurve
from .creation import TPMSCreationData
from .errors import TPMPolicyError
from .hashing import digest
from .keys import public_key_from_tpmt
from .public import ECCParms, ObjectAttributes, TPMTPublic
from .signature import TPMTSignature
from .verify import verify_signature

#: Attributes an AK must have: it cannot leave this TPM, its key was made inside the
#: TPM, and it only signs data the TPM itself produced.
AK_REQUIRED_ATTRIBUTES = (
    ObjectAttributes.FIXED_TPM
    | ObjectAttributes.FIXED_PARENT
    | ObjectAttributes.SENSITIVE_DATA_ORIGIN
    | ObjectAttributes.RESTRICTED
    | ObjectAttributes.SIGN
)
#: Attributes an AK must not have.
AK_FORBIDDEN_ATTRIBUTES = ObjectAttributes.DECRYPT
AK_MIN_RSA_BITS = 2048
AK_ACCEPTED_CURVES = frozenset(
    {TPMEccCurve.NIST_P256, TPMEccCurve.NIST_P384, TPMEccCurve.NIST_P521}
)


@attrs.frozen
class AKCreation:
    """An attestation key whose creation evidence checked out."""

    public: TPMTPublic
    name: bytes
    creation_data: TPMSCreationData
    attestation: TPMSAttest


def check_ak_public(public: TPMTPublic, *, allow_sha1: bool = False) -> None:
    """Refuse a public area that is not a strong, TPM-bound, restricted signing key.

    Attributes are checked by mask: real AKs also set noDA or userWithAuth.
    """
    attributes = public.object_attributes
    missing = AK_REQUIRED_ATTRIBUTES & ~attributes
    if missing:
        raise TPMPolicyError(f"the AK lacks required attributes: {missing.name}")
    if attributes & AK_FORBIDDEN_ATTRIBUTES:
        raise TPMPolicyError("the AK must not be a decryption key")
    if public.name_alg == TPMAlg.NULL or (public.name_alg == TPMAlg.SHA1 and not allow_sha1):
        raise TPMPolicyError(f"AK nameAlg {public.name_alg.name} is not accepted")
    parameters = public.parameters
    if isinstance(parameters, ECCParms):
        if parameters.curve not in AK_ACCEPTED_CURVES:
            raise TPMPolicyError(f"AK curve {parameters.curve.name} is not accepted")
    elif parameters.key_bits < AK_MIN_RSA_BITS:
        raise TPMPolicyError(f"RSA-{parameters.key_bits} AK is below {AK_MIN_RSA_BITS} bits")
    public_key_from_tpmt(public)  # the key material must match what the area claims


def verify_ak_creation(
    public: bytes,
    creation_data: bytes,
    attestation: bytes,
    signature: bytes,
    *,
    allow_sha1: bool = False,
) -> AKCreation:
    """Check AK creation evidence, given as raw TPMT_PUBLIC, TPMS_CREATION_DATA,
    TPMS_ATTEST and TPMT_SIGNATURE bytes (no outer TPM2B sizes).

    *allow_sha1* admits SHA-1 signatures and name algorithms, which some real TPMs
    still produce for AKs; devid's default policy refuses them.
    """
    ak = TPMTPublic.from_bytes(public)
    created = TPMSCreationData.from_bytes(creation_data)
    attest = TPMSAttest.from_bytes(attestation)
    parsed_signature = TPMTSignature.from_bytes(signature)

    check_ak_public(ak, allow_sha1=allow_sha1)
    if not isinstance(attest.attested, CreationInfo):
        raise TPMPolicyError(f"expected a creation attestation, got {attest.type.name}")
    name = ak.name()
    if not hmac.compare_digest(attest.attested.object_name, name):
        raise TPMPolicyError("the creation attestation is for a different object")
    if not hmac.compare_digest(attest.attested.creation_hash, digest(ak.name_alg, creation_data)):
        raise TPMPolicyError("creationHash does not match the creation data")
    verify_signature(ak, parsed_signature, bytes(attestation), allow_sha1=allow_sha1)
    return AKCreation(ak, name, created, attest)
