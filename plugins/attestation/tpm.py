"""The ``tpm`` attestation-statement format (device-attest-01, WebAuthn section 8.3 layout).

attStmt = ``{ver: "2.0", alg, x5c: [AK certificate, intermediates...], sig,
certInfo: TPMS_ATTEST, pubArea: TPMT_PUBLIC}``: a TPM attestation key (AK),
vouched for by its AK certificate, certifies (TPM2_Certify) the key in
``pubArea``. The verifier checks, in this order:

1. the statement's shape and sizes; ``ver`` is "2.0"; ``alg`` is an RSA or
   ECDSA COSE algorithm, and not SHA-1 (RS1, -65535) unless the context allows it;
2. the AK certificate chains to the configured roots at ``context.now``
   (x5c[1:] and the configured intermediates build the path);
3. the AK certificate: X.509 v3, extensions parseable, not a CA, extendedKeyUsage
   (if present) contains tcg-kp-AIKCertificate, keyUsage (if present) allows
   digitalSignature;
4. ``certInfo`` is a TPMS_ATTEST (magic TPM_GENERATED) of type ATTEST_CERTIFY,
   signed by the AK certificate's key (``sig`` as a TPMT_SIGNATURE or as the
   raw signature WebAuthn authenticators send);
5. ``certInfo.extraData`` is SHA-256(key authorization);
6. ``certInfo.attested.name`` is the Name of ``pubArea`` (nameAlg || H(pubArea),
   computed here from the received bytes);
7. the certified key is a TPM-bound signing key: sign, fixedTPM, fixedParent and
   sensitiveDataOrigin set.

The identities are what the AK certificate's SAN binds: PermanentIdentifier
values, ``urn:ek:sha256:`` URIs and TCG hardwareModuleName serial numbers. A
valid AK certificate that binds none (Windows AIK certificates, for example)
gives a result with no identities, and the ACME server then rejects every
identifier: a TPM signature alone proves a TPM, not which device it is.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ObjectIdentifier

from engine import der
from engine.attestation import TCG_KP_AIK_CERTIFICATE, TPMInfo, identities_of_ak_certificate
from engine.errors import BadRequest
from engine.tpm import (
    CertifyInfo,
    ObjectAttributes,
    RSASignature,
    TPMAlg,
    TPMError,
    TPMPublicKey,
    TPMSAttest,
    TPMTPublic,
    TPMTSignature,
    public_key_from_tpmt,
    verify_signature,
)
from engine.tpm.hashing import digest
from engine.tpm.signature import ECCSignature

from .base import AttestationContext, AttestationResult
from .common import (
    MAX_SIGNATURE_BYTES,
    MAX_TPM_STRUCTURE_BYTES,
    CoseAlgorithm,
    bad_statement,
    certificate_sha256,
    certified_public_key,
    cose_algorithm,
    extensions_of,
    field_bytes,
    field_int,
    guarded,
    parse_x5c,
    require_end_entity,
    statement_map,
    subject_text,
    verify_path,
)

HARDWARE_MODULE_NAME_OID = ObjectIdentifier("1.3.6.1.5.5.7.8.4")

#: What the certified key must be: a signing key the TPM generated and can never export.
REQUIRED_ATTRIBUTES = (
    ObjectAttributes.SIGN
    | ObjectAttributes.FIXED_TPM
    | ObjectAttributes.FIXED_PARENT
    | ObjectAttributes.SENSITIVE_DATA_ORIGIN
)

_TPM_SCHEMES = {"RSASSA": TPMAlg.RSASSA, "RSAPSS": TPMAlg.RSAPSS, "ECDSA": TPMAlg.ECDSA}
_TPM_HASHES = {
    "SHA1": TPMAlg.SHA1,
    "SHA256": TPMAlg.SHA256,
    "SHA384": TPMAlg.SHA384,
    "SHA512": TPMAlg.SHA512,
}
_MAX_ECC_BYTES = 80


def key_authorization_digest(key_authorization: str) -> bytes:
    """device-attest-01's expected ``certInfo.extraData``: SHA-256 of the key authorization."""
    return hashlib.sha256(key_authorization.encode("utf-8")).digest()


class TPMFormat:
    """``fmt: "tpm"``."""

    format_name: ClassVar[str] = "tpm"

    def verify(
        self,
        statement: Mapping[str, Any],
        key_authorization: str,
        context: AttestationContext,
    ) -> AttestationResult:
        return guarded(
            self.format_name,
            lambda: verify_tpm_statement(
                statement, key_authorization_digest(key_authorization), context
            ),
        )


@attrs.frozen
class Certification:
    """What a checked TPM2_Certify statement establishes about the certified key."""

    public: TPMTPublic
    key: TPMPublicKey
    name: bytes
    signature_encoding: str  # "TPMT_SIGNATURE" or "raw"


def verify_tpm_statement(
    statement: Mapping[str, Any], expected_extra_data: bytes, context: AttestationContext
) -> AttestationResult:
    """Verify a ``tpm`` attStmt whose ``certInfo.extraData`` must be *expected_extra_data*.

    device-attest-01 expects SHA-256(key authorization) (:class:`TPMFormat`);
    WebAuthn expects H_alg(authData || clientDataHash). Raises ``ACMEProblem``
    (or, called directly, whatever :func:`plugins.attestation.guarded` maps).
    """
    st = statement_map(statement, "tpm")
    if "ecdaaKeyId" in st:
        raise bad_statement("ECDAA TPM attestation is not supported")
    if "ver" not in st:
        raise bad_statement("attStmt.ver is missing")
    if st["ver"] != "2.0" or not isinstance(st["ver"], str):
        raise bad_statement('attStmt.ver must be "2.0"')
    alg = cose_algorithm(
        field_int(st, "alg"), context, allowed=frozenset({"RSASSA", "RSAPSS", "ECDSA"})
    )
    sig = field_bytes(st, "sig", MAX_SIGNATURE_BYTES)
    cert_info = field_bytes(st, "certInfo", MAX_TPM_STRUCTURE_BYTES)
    pub_area = field_bytes(st, "pubArea", MAX_TPM_STRUCTURE_BYTES)
    x5c = parse_x5c(st)

    path = verify_path(x5c, context, "AK certificate")
    ak_certificate = x5c[0]
    extensions = check_ak_certificate(ak_certificate)
    ak_key = certified_public_key(ak_certificate, "AK certificate")
    if not isinstance(ak_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise bad_statement("the AK certificate's key is neither RSA nor ECC")

    certified = check_certification(
        ak_key,
        alg,
        sig,
        cert_info,
        pub_area,
        expected_extra_data,
        allow_sha1=context.allow_sha1,
    )

    try:
        ak_ids = identities_of_ak_certificate(ak_certificate)
    except BadRequest as exc:
        raise bad_statement(exc.detail) from None
    serials = tuple(dict.fromkeys((*ak_ids.hardware_serials, *hardware_serials(extensions))))
    identities = {
        "permanent_identifiers": list(ak_ids.permanent_identifiers),
        "ek_urns": list(ak_ids.ek_urns),
        "serial_numbers": list(serials),
    }
    evidence: dict[str, Any] = {
        "format": "tpm",
        "alg": alg.name,
        "ak_certificate_sha256": certificate_sha256(ak_certificate),
        "ak_chain": [subject_text(cert) for cert in path],
        "certified_key_name": certified.name.hex(),
        "certified_key_attributes": f"0x{int(certified.public.object_attributes):08x}",
        "signature_encoding": certified.signature_encoding,
        "identities": identities,
    }
    tpm = TPMInfo.from_ek_certificate(ak_certificate)
    if tpm is not None:
        evidence["tpm"] = {
            "manufacturer": tpm.manufacturer,
            "model": tpm.model,
            "version": tpm.version,
        }
    return AttestationResult(
        format="tpm",
        public_key=certified.key,
        permanent_identifiers=ak_ids.permanent_identifiers,
        ek_urns=ak_ids.ek_urns,
        serial_numbers=serials,
        chain=tuple(path),
        evidence=evidence,
    )


def check_ak_certificate(cert: x509.Certificate) -> x509.Extensions:
    """The AK certificate profile checks that do not depend on devid's own issuance."""
    if cert.version is not x509.Version.v3:
        raise bad_statement("the AK certificate is not an X.509 v3 certificate")
    extensions = extensions_of(cert, "AK certificate")
    require_end_entity(extensions, "AK certificate")
    try:
        eku = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and TCG_KP_AIK_CERTIFICATE not in list(eku):
        raise bad_statement(
            "the AK certificate's extendedKeyUsage lacks tcg-kp-AIKCertificate (2.23.133.8.3)"
        )
    try:
        key_usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        key_usage = None
    if key_usage is not None and not key_usage.digital_signature:
        raise bad_statement("the AK certificate's keyUsage does not allow digitalSignature")
    return extensions


def hardware_serials(extensions: x509.Extensions) -> list[str]:
    """Serial numbers from TCG hardwareModuleName otherNames (RFC 4108) in the SAN.

    Each serial gives its lowercase hex and, when it is printable ASCII, its text.
    Malformed values are skipped, as ``identities_of_ak_certificate`` skips them.
    """
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out: list[str] = []
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id != HARDWARE_MODULE_NAME_OID:
            continue
        serial = _read_hardware_module_name(other.value)
        if serial is None:
            continue
        out.append(serial.hex())
        if serial.isascii() and serial.decode("ascii").isprintable():
            out.append(serial.decode("ascii"))
    return out


def _read_hardware_module_name(value: bytes) -> bytes | None:
    """HardwareModuleName ::= SEQUENCE { hwType OBJECT IDENTIFIER, hwSerialNum OCTET STRING }."""
    try:
        tag, body, end = der.read_tlv(value)
        if tag != 0x30 or end != len(value):
            return None
        oid_tag, _, position = der.read_tlv(body)
        serial_tag, serial, position = der.read_tlv(body, position)
    except BadRequest:
        return None
    if oid_tag != 0x06 or serial_tag != 0x04 or position != len(body):
        return None
    if not serial or len(serial) > 64:
        return None
    return serial


def check_certification(
    ak_key: TPMPublicKey,
    alg: CoseAlgorithm,
    sig: bytes,
    cert_info: bytes,
    pub_area: bytes,
    expected_extra_data: bytes,
    *,
    allow_sha1: bool,
) -> Certification:
    """Steps 4-7: the AK's TPM2_Certify over ``pubArea``, bound to *expected_extra_data*."""
    try:
        attest = TPMSAttest.from_bytes(cert_info)
    except TPMError as exc:
        raise bad_statement(f"certInfo is not a TPMS_ATTEST: {exc.detail}") from None
    if not isinstance(attest.attested, CertifyInfo):
        raise bad_statement(
            f"certInfo is a {attest.type.name} attestation, not TPM_ST_ATTEST_CERTIFY"
        )
    encoding = _verify_certinfo_signature(ak_key, alg, sig, cert_info, allow_sha1=allow_sha1)
    if not hmac.compare_digest(attest.extra_data, expected_extra_data):
        raise bad_statement("certInfo.extraData is not the expected digest of the challenge")
    try:
        public = TPMTPublic.from_bytes(pub_area)
    except TPMError as exc:
        raise bad_statement(f"pubArea is not a supported TPMT_PUBLIC: {exc.detail}") from None
    if public.name_alg == TPMAlg.NULL:
        raise bad_statement("pubArea's nameAlg is NULL: the key has no Name to certify")
    if public.name_alg == TPMAlg.SHA1 and not allow_sha1:
        raise bad_statement("pubArea's nameAlg is SHA-1, which is refused")
    if public.to_bytes() != pub_area:
        raise bad_statement("pubArea does not re-encode to the bytes received")
    # The Name the TPM certified, computed here from the bytes received (keylime CVE-2021-3406).
    name = int(public.name_alg).to_bytes(2, "big") + digest(public.name_alg, pub_area)
    if not hmac.compare_digest(attest.attested.name, name):
        raise bad_statement("certInfo.attested.name is not the Name of pubArea")
    missing = [
        flag.name or hex(flag.value)
        for flag in (
            ObjectAttributes.SIGN,
            ObjectAttributes.FIXED_TPM,
            ObjectAttributes.FIXED_PARENT,
            ObjectAttributes.SENSITIVE_DATA_ORIGIN,
        )
        if not public.object_attributes & flag
    ]
    if missing:
        raise bad_statement(
            "the certified key is not a TPM-bound signing key: it lacks " + ", ".join(missing)
        )
    try:
        key = public_key_from_tpmt(public)
    except TPMError as exc:
        raise bad_statement(f"pubArea's key is unusable: {exc.detail}") from None
    return Certification(public, key, name, encoding)


def _verify_certinfo_signature(
    ak_key: TPMPublicKey, alg: CoseAlgorithm, sig: bytes, cert_info: bytes, *, allow_sha1: bool
) -> str:
    """Check ``sig`` over ``certInfo``; return how it was encoded.

    A TPM returns a TPMT_SIGNATURE; WebAuthn authenticators (Windows Hello)
    send the bare signature. The TPMT_SIGNATURE reading is tried first, and
    must name exactly ``alg``'s scheme and hash.
    """
    scheme = _TPM_SCHEMES[alg.family]
    hash_alg = _TPM_HASHES[str(alg.hash_name)]
    rsa_family = alg.family in ("RSASSA", "RSAPSS")
    if rsa_family != isinstance(ak_key, rsa.RSAPublicKey):
        kind = "an RSA" if isinstance(ak_key, rsa.RSAPublicKey) else "an ECC"
        raise bad_statement(f"the AK certificate has {kind} key; attStmt.alg is {alg.name}")
    mismatch = ""
    try:
        parsed: TPMTSignature | None = TPMTSignature.from_bytes(sig)
    except TPMError:
        parsed = None
    if parsed is not None:
        if parsed.sig_alg == scheme and parsed.hash_alg == hash_alg:
            if _verifies(ak_key, parsed, cert_info, allow_sha1=allow_sha1):
                return "TPMT_SIGNATURE"
        else:
            mismatch = f"{parsed.sig_alg.name}/{parsed.hash_alg.name}"
    # The bare reading is tried only when the TPMT_SIGNATURE one did not verify.
    raw = _raw_signature(sig, scheme, hash_alg, rsa_family=rsa_family)
    if raw is not None and _verifies(ak_key, raw, cert_info, allow_sha1=allow_sha1):
        return "raw"
    if mismatch:
        raise bad_statement(
            f"sig is a TPMT_SIGNATURE for {mismatch}, which is not attStmt.alg {alg.name}"
        )
    raise bad_statement("sig is not a valid signature over certInfo by the AK certificate's key")


def _verifies(
    key: TPMPublicKey, signature: TPMTSignature, data: bytes, *, allow_sha1: bool
) -> bool:
    try:
        verify_signature(key, signature, data, allow_sha1=allow_sha1)
    except TPMError:
        return False
    return True


def _raw_signature(
    sig: bytes, scheme: TPMAlg, hash_alg: TPMAlg, *, rsa_family: bool
) -> TPMTSignature | None:
    """``sig`` read as a bare signature: the RSA signature value, or a DER ECDSA-Sig-Value."""
    try:
        if rsa_family:
            return TPMTSignature(scheme, hash_alg, RSASignature(sig))
        r, s = decode_dss_signature(sig)
        if r <= 0 or s <= 0:
            return None
        r_bytes = r.to_bytes((r.bit_length() + 7) // 8, "big")
        s_bytes = s.to_bytes((s.bit_length() + 7) // 8, "big")
        if len(r_bytes) > _MAX_ECC_BYTES or len(s_bytes) > _MAX_ECC_BYTES:
            return None
        return TPMTSignature(scheme, hash_alg, ECCSignature(r_bytes, s_bytes))
    except (ValueError, TypeError):
        return None
