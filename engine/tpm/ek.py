"""Default Endorsement Key templates (TCG EK Credential Profile for TPM 2.0, 2.x).

A server that receives only an EK's SubjectPublicKeyInfo (usually from the EK
certificate) must assume the template the TPM used, because MakeCredential
depends on the EK's nameAlg and symmetric algorithm. These are the templates
TPMs and swtpm use for each key type.
"""

from __future__ import annotations

import enum

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .constants import TPMAlg, TPMEccCurve
from .errors import TPMUnsupportedError
from .keys import TPMPublicKey, public_from_key, tpm_curve_of
from .public import (
    AES_128_CFB,
    AES_256_CFB,
    ECCParms,
    ECCPoint,
    ObjectAttributes,
    RSAParms,
    TPMTPublic,
)

#: PolicySecret(TPM_RH_ENDORSEMENT) with SHA-256: the low-range EK authPolicy ("policy A").
EK_POLICY_A_SHA256 = bytes.fromhex(
    "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa"
)
#: High-range EK authPolicy ("policy B") for SHA-384 name algorithms.
EK_POLICY_B_SHA384 = bytes.fromhex(
    "b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4"
    "cb1c0ad9bde419cacb47ba09699646150f9fc000f3f80e12"
)
#: High-range EK authPolicy ("policy B") for SHA-512 name algorithms.
EK_POLICY_B_SHA512 = bytes.fromhex(
    "b8221ca69e8550a4914de3faa6a18c072cc01208073a928d5d66d59ef79e49a4"
    "29c41a6b269571d57edb25fbdb1838425608b413cd616a5f6db5b6071af99bea"
)

#: fixedTPM | fixedParent | sensitiveDataOrigin | adminWithPolicy | restricted | decrypt.
EK_ATTRIBUTES = (
    ObjectAttributes.FIXED_TPM
    | ObjectAttributes.FIXED_PARENT
    | ObjectAttributes.SENSITIVE_DATA_ORIGIN
    | ObjectAttributes.ADMIN_WITH_POLICY
    | ObjectAttributes.RESTRICTED
    | ObjectAttributes.DECRYPT
)
#: High-range templates add userWithAuth.
EK_ATTRIBUTES_HIGH_RANGE = EK_ATTRIBUTES | ObjectAttributes.USER_WITH_AUTH


class EKTemplate(enum.Enum):
    """The profile's templates, by the name the profile gives them."""

    RSA_2048 = "L-1"
    ECC_NIST_P256 = "L-2"
    ECC_NIST_P384 = "H-3"
    ECC_NIST_P521 = "H-4"
    RSA_3072 = "H-6"
    RSA_4096 = "H-7"

    def public(self) -> TPMTPublic:
        """The template as TPM2_CreatePrimary takes it (``unique`` as the profile gives it)."""
        return _TEMPLATES[self]


def _rsa(name_alg: TPMAlg, policy: bytes, bits: int, high: bool) -> TPMTPublic:
    return TPMTPublic(
        name_alg=name_alg,
        object_attributes=EK_ATTRIBUTES_HIGH_RANGE if high else EK_ATTRIBUTES,
        auth_policy=policy,
        parameters=RSAParms(
            symmetric=AES_256_CFB if high else AES_128_CFB, key_bits=bits, exponent=0
        ),
        # Low-range templates carry a zero-filled unique; high-range ones an empty one.
        unique=b"" if high else bytes(bits // 8),
    )


def _ecc(name_alg: TPMAlg, policy: bytes, curve: TPMEccCurve, high: bool) -> TPMTPublic:
    return TPMTPublic(
        name_alg=name_alg,
        object_attributes=EK_ATTRIBUTES_HIGH_RANGE if high else EK_ATTRIBUTES,
        auth_policy=policy,
        parameters=ECCParms(symmetric=AES_256_CFB if high else AES_128_CFB, curve=curve),
        unique=ECCPoint() if high else ECCPoint(bytes(32), bytes(32)),
    )


_TEMPLATES: dict[EKTemplate, TPMTPublic] = {
    EKTemplate.RSA_2048: _rsa(TPMAlg.SHA256, EK_POLICY_A_SHA256, 2048, high=False),
    EKTemplate.ECC_NIST_P256: _ecc(
        TPMAlg.SHA256, EK_POLICY_A_SHA256, TPMEccCurve.NIST_P256, high=False
    ),
    EKTemplate.ECC_NIST_P384: _ecc(
        TPMAlg.SHA384, EK_POLICY_B_SHA384, TPMEccCurve.NIST_P384, high=True
    ),
    EKTemplate.ECC_NIST_P521: _ecc(
        TPMAlg.SHA512, EK_POLICY_B_SHA512, TPMEccCurve.NIST_P521, high=True
    ),
    EKTemplate.RSA_3072: _rsa(TPMAlg.SHA384, EK_POLICY_B_SHA384, 3072, high=True),
    EKTemplate.RSA_4096: _rsa(TPMAlg.SHA384, EK_POLICY_B_SHA384, 4096, high=True),
}

_DEFAULT_RSA = {2048: EKTemplate.RSA_2048, 3072: EKTemplate.RSA_3072, 4096: EKTemplate.RSA_4096}
_DEFAULT_ECC = {
    TPMEccCurve.NIST_P256: EKTemplate.ECC_NIST_P256,
    TPMEccCurve.NIST_P384: EKTemplate.ECC_NIST_P384,
    TPMEccCurve.NIST_P521: EKTemplate.ECC_NIST_P521,
}


def default_ek_template(key: TPMPublicKey) -> EKTemplate:
    """The profile template a TPM uses for an EK of *key*'s type and size."""
    if isinstance(key, rsa.RSAPublicKey):
        template = _DEFAULT_RSA.get(key.key_size)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        template = _DEFAULT_ECC.get(tpm_curve_of(key))
    else:
        raise TPMUnsupportedError(f"{type(key).__name__} cannot be an EK")
    if template is None:
        raise TPMUnsupportedError("no TCG EK template exists for this key size or curve")
    return template


def ek_public_from_key(key: TPMPublicKey, template: EKTemplate | None = None) -> TPMTPublic:
    """The EK public area for *key* (for example from an EK certificate), assuming
    *template*, or the profile's default template for the key's type and size."""
    chosen = template if template is not None else default_ek_template(key)
    return public_from_key(key, chosen.public())
