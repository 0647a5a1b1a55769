"""Convert between TPMT_PUBLIC key material and `cryptography` public keys.

A verifier checks signatures and encrypts to TPM keys with `cryptography`, but
names and templates are TPM structures; these two functions are the only bridge,
and both refuse a key that does not match the parameters it claims.
"""

from __future__ import annotations

import attrs
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .constants import TPMEccCurve
from .errors import TPMFormatError, TPMUnsupportedError
from .public import ECCParms, ECCPoint, RSAParms, TPMTPublic

TPMPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@attrs.frozen
class CurveInfo:
    """What the engine needs about a TPM curve: the `cryptography` curve, the
    coordinate size in bytes, and the group order (to draw ephemeral scalars)."""

    curve: ec.EllipticCurve
    size: int
    order: int


CURVES: dict[TPMEccCurve, CurveInfo] = {
    TPMEccCurve.NIST_P224: CurveInfo(
        ec.SECP224R1(), 28, 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFF16A2E0B8F03E13DD29455C5C2A3D
    ),
    TPMEccCurve.NIST_P256: CurveInfo(
        ec.SECP256R1(),
        32,
        0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    ),
    TPMEccCurve.NIST_P384: CurveInfo(
        ec.SECP384R1(),
        48,
        int(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
            "C7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
            16,
        ),
    ),
    TPMEccCurve.NIST_P521: CurveInfo(
        ec.SECP521R1(),
        66,
        int(
            "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
            "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
            16,
        ),
    ),
}


def curve_info(curve: TPMEccCurve) -> CurveInfo:
    try:
        return CURVES[curve]
    except KeyError:
        raise TPMUnsupportedError(f"ECC curve {curve.name} is not supported") from None


def tpm_curve_of(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> TPMEccCurve:
    for tpm_curve, info in CURVES.items():
        if info.curve.name == key.curve.name:
            return tpm_curve
    raise TPMUnsupportedError(f"elliptic curve {key.curve.name} has no TPM curve ID here")


def public_key_from_tpmt(public: TPMTPublic) -> TPMPublicKey:
    """The `cryptography` key in *public*'s ``unique``, checked against its parameters:
    the modulus must have exactly ``keyBits`` bits, the point must be on ``curveID``."""
    parameters = public.parameters
    if isinstance(parameters, RSAParms):
        assert isinstance(public.unique, bytes)
        modulus = int.from_bytes(public.unique, "big")
        if modulus.bit_length() != parameters.key_bits:
            raise TPMFormatError(
                f"RSA modulus has {modulus.bit_length()} bits; keyBits says {parameters.key_bits}"
            )
        try:
            return rsa.RSAPublicNumbers(parameters.public_exponent, modulus).public_key()
        except ValueError as exc:
            raise TPMFormatError(f"invalid RSA public key: {exc}") from None
    assert isinstance(public.unique, ECCPoint)
    info = curve_info(parameters.curve)
    x, y = public.unique.x, public.unique.y
    if not x or len(x) > info.size or len(y) > info.size:
        raise TPMFormatError(f"ECC point coordinates do not fit {parameters.curve.name}")
    encoded = b"\x04" + x.rjust(info.size, b"\0") + y.rjust(info.size, b"\0")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(info.curve, encoded)
    except ValueError:
        raise TPMFormatError(f"ECC point is not on {parameters.curve.name}") from None


def ecc_point_of(key: ec.EllipticCurvePublicKey) -> ECCPoint:
    """TPMS_ECC_POINT of *key*, coordinates padded to the curve size as a TPM does."""
    info = curve_info(tpm_curve_of(key))
    numbers = key.public_numbers()
    return ECCPoint(numbers.x.to_bytes(info.size, "big"), numbers.y.to_bytes(info.size, "big"))


def public_from_key(key: TPMPublicKey, template: TPMTPublic) -> TPMTPublic:
    """*template* with ``unique`` set to *key*: the public area a TPM would report
    for *key* if it had created it from *template*. The key must fit the template."""
    parameters = template.parameters
    if isinstance(key, rsa.RSAPublicKey):
        if not isinstance(parameters, RSAParms):
            raise TPMUnsupportedError("an RSA key does not fit a non-RSA template")
        numbers = key.public_numbers()
        if key.key_size != parameters.key_bits:
            raise TPMUnsupportedError(
                f"RSA-{key.key_size} key does not fit an RSA-{parameters.key_bits} template"
            )
        if numbers.e != parameters.public_exponent:
            raise TPMUnsupportedError(f"RSA exponent {numbers.e} does not fit the template")
        return attrs.evolve(template, unique=numbers.n.to_bytes(key.key_size // 8, "big"))
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(parameters, ECCParms):
            raise TPMUnsupportedError("an ECC key does not fit a non-ECC template")
        if tpm_curve_of(key) != parameters.curve:
            curve = parameters.curve.name
            raise TPMUnsupportedError(f"{key.curve.name} key does not fit a {curve} template")
        return attrs.evolve(template, unique=ecc_point_of(key))
    raise TPMUnsupportedError(f"{type(key).__name__} cannot be a TPM key")
