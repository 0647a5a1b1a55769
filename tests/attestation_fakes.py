"""A fake device for attestation tests.

software TPM stand-in: the real swtpm exchange is tested in tests/agent.

Everything a TPM would produce for ``POST /attest`` is built here with software
keys and marshalled with :mod:`engine.tpm`'s own classes: the EK public area
(the default TCG template around a software RSA-2048 or P-256 key), an AK
public area, its TPMS_CREATION_DATA, the TPMS_ATTEST of TPM2_CertifyCreation and
the AK's TPMT_SIGNATURE over it. Each piece can be spoiled on purpose (missing
attributes, SHA-1, a foreign signer...) so tests can cover every refusal
precisely. ``activate`` plays TPM2_ActivateCredential with the EK private key.

Keys are cached per (kind, slot): generating RSA keys is the slow part, and
tests only need distinct keys where they compare two devices. :func:`new_device`
makes a device with keys of its own instead (a fleet of many distinct devices,
as the benchmark's ``fleet`` section simulates), and :meth:`FakeAK.certify`
plays TPM2_Certify for device-attest-01 (the AK vouching for a signing key made
with :func:`signing_key_public_area`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID, ObjectIdentifier

from engine.inventory import ek_urn
from engine.tpm import (
    CertifyInfo,
    ClockInfo,
    CreationInfo,
    ECCParms,
    ECCSignature,
    MakeCredentialResult,
    ObjectAttributes,
    PCRSelection,
    PCRSelectionList,
    RSAParms,
    RSASignature,
    Scheme,
    TPMAlg,
    TPMEccCurve,
    TPMSAttest,
    TPMSCreationData,
    TPMTPublic,
    TPMTSignature,
    activate_credential,
    ecc_point_of,
    ek_public_from_key,
)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

TCG_AT_TPM_MANUFACTURER = ObjectIdentifier("2.23.133.2.1")
TCG_AT_TPM_MODEL = ObjectIdentifier("2.23.133.2.2")
TCG_AT_TPM_VERSION = ObjectIdentifier("2.23.133.2.3")
TCG_KP_EK_CERTIFICATE = ObjectIdentifier("2.23.133.8.1")

#: What a real AK has: fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth |
#: restricted | sign (tpm2-tools and go-attestation add noDA too).
AK_ATTRIBUTES = (
    ObjectAttributes.FIXED_TPM
    | ObjectAttributes.FIXED_PARENT
    | ObjectAttributes.SENSITIVE_DATA_ORIGIN
    | ObjectAttributes.USER_WITH_AUTH
    | ObjectAttributes.RESTRICTED
    | ObjectAttributes.SIGN
)
#: A TPM-resident signing key as devid's agent creates one for device-attest-01 (not
#: restricted: it signs CSRs and TLS handshakes).
SIGNING_KEY_ATTRIBUTES = (
    ObjectAttributes.FIXED_TPM
    | ObjectAttributes.FIXED_PARENT
    | ObjectAttributes.SENSITIVE_DATA_ORIGIN
    | ObjectAttributes.USER_WITH_AUTH
    | ObjectAttributes.SIGN
)

_HASHES: dict[TPMAlg, hashes.HashAlgorithm] = {
    TPMAlg.SHA1: hashes.SHA1(),
    TPMAlg.SHA256: hashes.SHA256(),
    TPMAlg.SHA384: hashes.SHA384(),
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- keys -------------------------------------------------------------------------


@functools.cache
def rsa_key(slot: int = 0) -> rsa.RSAPrivateKey:
    """An RSA-2048 key; the same one for the same *slot* within a test run."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ec_key(slot: int = 0) -> ec.EllipticCurvePrivateKey:
    """A P-256 key; the same one for the same *slot* within a test run."""
    return ec.generate_private_key(ec.SECP256R1())


def spki(key: PrivateKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    public = key.public_key() if isinstance(key, PrivateKey) else key
    return public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


# --- the Endorsement Key --------------------------------------------------------


@attrs.frozen
class FakeEK:
    """An EK: its private key (which a real TPM never reveals) and its public area."""

    private_key: PrivateKey
    public: TPMTPublic  # the default TCG EK template with this key in ``unique``
    certificate: x509.Certificate | None = None

    @property
    def public_key(self) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    @property
    def urn(self) -> str:
        return ek_urn(self.public_key)

    @property
    def spki(self) -> bytes:
        return spki(self.private_key)

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.spki).digest()

    def with_certificate(self, certificate: x509.Certificate | None) -> FakeEK:
        return attrs.evolve(self, certificate=certificate)


def make_ek(kind: str = "rsa", slot: int = 0) -> FakeEK:
    """An RSA-2048 (template L-1) or ECC P-256 (template L-2) EK."""
    key: PrivateKey = rsa_key(slot) if kind == "rsa" else ec_key(slot)
    return FakeEK(key, ek_public_from_key(key.public_key()))


# --- the EK vendor (the TPM manufacturer's CA) --------------------------------------


@attrs.frozen
class Vendor:
    """A TPM manufacturer's EK CA: a self-signed root that signs EK certificates."""

    key: ec.EllipticCurvePrivateKey
    root: x509.Certificate

    @property
    def root_pem(self) -> bytes:
        return self.root.public_bytes(Encoding.PEM)

    def write_root(self, path: Path) -> Path:
        path.write_bytes(self.root_pem)
        return path

    def ek_certificate(
        self,
        ek_public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        *,
        manufacturer: str = "id:53544D20",
        model: str = "SW   TPM",
        version: str = "id:00010002",
        not_after: datetime | None = None,
        not_before: datetime | None = None,
    ) -> x509.Certificate:
        """An EK certificate as the TCG EK Credential Profile shapes it: empty subject, a
        critical SAN with a directoryName holding the TPM's manufacturer, model, version."""
        now = datetime.now(UTC)
        attributes = [
            x509.NameAttribute(TCG_AT_TPM_MANUFACTURER, manufacturer),
            x509.NameAttribute(TCG_AT_TPM_MODEL, model),
            x509.NameAttribute(TCG_AT_TPM_VERSION, version),
        ]
        directory = x509.DirectoryName(x509.Name([x509.RelativeDistinguishedName(attributes)]))
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.root.subject)
            .public_key(ek_public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(days=1))
            .not_valid_after(not_after or now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=isinstance(ek_public, rsa.RSAPublicKey),
                    data_encipherment=False,
                    key_agreement=isinstance(ek_public, ec.EllipticCurvePublicKey),
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectAlternativeName([directory]), critical=True)
            .add_extension(x509.ExtendedKeyUsage([TCG_KP_EK_CERTIFICATE]), critical=False)
            .sign(self.key, hashes.SHA256())
        )


def make_vendor(name: str = "Test TPM Vendor EK Root", slot: int = 0) -> Vendor:
    return _vendor(name, slot)


@functools.cache
def _vendor(name: str, slot: int) -> Vendor:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    root = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=7300))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Vendor(key, root)


# --- the Attestation Key and its creation evidence ----------------------------------


@attrs.frozen
class FakeAK:
    """An AK and TPM2_CertifyCreation's evidence for it, marshalled as the TPM would."""

    private_key: PrivateKey
    public: TPMTPublic
    public_bytes: bytes  # TPMT_PUBLIC
    creation_data: bytes  # TPMS_CREATION_DATA
    attestation: bytes  # TPMS_ATTEST (ATTEST_CREATION)
    signature: bytes  # TPMT_SIGNATURE

    @property
    def name(self) -> bytes:
        return self.public.name()

    def params(self) -> dict[str, str]:
        """The ``params`` object of the /attest body."""
        return {
            "public": b64(self.public_bytes),
            "createData": b64(self.creation_data),
            "createAttestation": b64(self.attestation),
            "createSignature": b64(self.signature),
        }

    def certify(self, public: TPMTPublic, qualifying_data: bytes) -> tuple[bytes, bytes]:
        """TPM2_Certify by this AK of the object whose public area is *public*, with
        *qualifying_data* as extraData: (TPMS_ATTEST, TPMT_SIGNATURE over it)."""
        attest = TPMSAttest(
            qualified_signer=self.name,
            extra_data=qualifying_data,
            clock_info=ClockInfo(clock=123456, reset_count=3, restart_count=0, safe=True),
            firmware_version=0x0001000200030004,
            attested=CertifyInfo(name=public.name(), qualified_name=public.name()),
        ).to_bytes()
        return attest, tpm_sign(self.private_key, attest, self.public.name_alg)


def ak_public_area(
    key: PrivateKey,
    *,
    attributes: ObjectAttributes = AK_ATTRIBUTES,
    name_alg: TPMAlg = TPMAlg.SHA256,
    scheme_hash: TPMAlg = TPMAlg.SHA256,
) -> TPMTPublic:
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.public_key().public_numbers().n
        return TPMTPublic(
            name_alg=name_alg,
            object_attributes=attributes,
            auth_policy=b"",
            parameters=RSAParms(scheme=Scheme(TPMAlg.RSASSA, scheme_hash), key_bits=2048),
            unique=n.to_bytes(256, "big"),
        )
    return TPMTPublic(
        name_alg=name_alg,
        object_attributes=attributes,
        auth_policy=b"",
        parameters=ECCParms(scheme=Scheme(TPMAlg.ECDSA, scheme_hash), curve=TPMEccCurve.NIST_P256),
        unique=ecc_point_of(key.public_key()),
    )


def creation_data(name_alg: TPMAlg = TPMAlg.SHA256, *, outside_info: bytes = b"") -> bytes:
    """TPMS_CREATION_DATA of an AK created under the storage root key, PCR 7 selected."""
    size = _HASHES[name_alg].digest_size
    parent_name = name_alg.to_bytes(2, "big") + hashlib.sha256(b"fake SRK").digest()[:size]
    data = TPMSCreationData(
        pcr_select=PCRSelectionList((PCRSelection.of(TPMAlg.SHA256, [7]),)),
        pcr_digest=hashlib.sha256(bytes(32)).digest()[:size],
        locality=0,
        parent_name_alg=name_alg,
        parent_name=parent_name,
        parent_qualified_name=parent_name,
        outside_info=outside_info,
    )
    return data.to_bytes()


def tpm_sign(key: PrivateKey, data: bytes, hash_alg: TPMAlg = TPMAlg.SHA256) -> bytes:
    """A TPMT_SIGNATURE over *data*: RSASSA for RSA keys, ECDSA for EC keys."""
    algorithm = _HASHES[hash_alg]
    if isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(data, padding.PKCS1v15(), algorithm)
        return TPMTSignature(TPMAlg.RSASSA, hash_alg, RSASignature(sig)).to_bytes()
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(algorithm)))
    return TPMTSignature(
        TPMAlg.ECDSA, hash_alg, ECCSignature(r.to_bytes(32, "big"), s.to_bytes(32, "big"))
    ).to_bytes()


def make_ak(
    kind: str = "ecc",
    slot: int = 0,
    *,
    attributes: ObjectAttributes = AK_ATTRIBUTES,
    name_alg: TPMAlg = TPMAlg.SHA256,
    signature_hash: TPMAlg | None = None,
    signer: PrivateKey | None = None,
    object_name: bytes | None = None,
    creation_hash: bytes | None = None,
    extra_data: bytes = b"",
) -> FakeAK:
    """An AK (P-256 or RSA-2048) and its creation evidence.

    The defaults make evidence the Attestation CA accepts; the keyword arguments
    spoil one thing each: *attributes* (drop fixedTPM, add decrypt), *name_alg*
    and *signature_hash* (SHA-1), *signer* (another key signs the attestation),
    *object_name* / *creation_hash* (the attestation is about something else).
    """
    key: PrivateKey = ec_key(100 + slot) if kind == "ecc" else rsa_key(100 + slot)
    return ak_from_key(
        key,
        attributes=attributes,
        name_alg=name_alg,
        signature_hash=signature_hash,
        signer=signer,
        object_name=object_name,
        creation_hash=creation_hash,
        extra_data=extra_data,
    )


def ak_from_key(
    key: PrivateKey,
    *,
    attributes: ObjectAttributes = AK_ATTRIBUTES,
    name_alg: TPMAlg = TPMAlg.SHA256,
    signature_hash: TPMAlg | None = None,
    signer: PrivateKey | None = None,
    object_name: bytes | None = None,
    creation_hash: bytes | None = None,
    extra_data: bytes = b"",
) -> FakeAK:
    """An AK with *key* and its creation evidence (the options as for :func:`make_ak`)."""
    sig_hash = signature_hash or name_alg
    public = ak_public_area(key, attributes=attributes, name_alg=name_alg, scheme_hash=sig_hash)
    data = creation_data(name_alg)
    digest = hashlib.new(_HASHES[name_alg].name, data).digest()
    attest = TPMSAttest(
        qualified_signer=public.name(),
        extra_data=extra_data,
        clock_info=ClockInfo(clock=123456, reset_count=3, restart_count=0, safe=True),
        firmware_version=0x0001000200030004,
        attested=CreationInfo(
            object_name=object_name if object_name is not None else public.name(),
            creation_hash=creation_hash if creation_hash is not None else digest,
        ),
    ).to_bytes()
    signature = tpm_sign(signer or key, attest, sig_hash)
    return FakeAK(key, public, public.to_bytes(), data, attest, signature)


# --- the device --------------------------------------------------------------------


@attrs.frozen
class FakeDevice:
    """A device's TPM as the Attestation CA sees it: an EK and an AK."""

    ek: FakeEK
    ak: FakeAK
    tpm_info: dict[str, Any] = attrs.field(
        factory=lambda: {
            "version": 2,
            "manufacturer": "1398033696",  # "STM " as TPM_PT_MANUFACTURER
            "model": "SW   TPM",
            "firmwareVersion": "1.2",
        }
    )

    @property
    def urn(self) -> str:
        return self.ek.urn

    def attest_body(
        self, *, send_ek: bool = True, ek_certs: list[x509.Certificate] | None = None
    ) -> dict[str, Any]:
        """The ``POST /attest`` JSON body (Smallstep's attestation client format)."""
        certs = ek_certs if ek_certs is not None else [self.ek.certificate]
        body: dict[str, Any] = {
            "tpmInfo": dict(self.tpm_info),
            "ekCerts": [b64(c.public_bytes(Encoding.DER)) for c in certs if c is not None],
            "params": self.ak.params(),
        }
        if send_ek:
            body["ek"] = b64(self.ek.spki)
        return body

    def activate(self, challenge: dict[str, Any]) -> dict[str, str]:
        """TPM2_ActivateCredential on the /attest response; returns the /secret body."""
        return {"secret": b64(self.recover(challenge))}

    def recover(self, challenge: dict[str, Any]) -> bytes:
        result = MakeCredentialResult(
            base64.b64decode(challenge["credential"]), base64.b64decode(challenge["secret"])
        )
        return activate_credential(self.ek.private_key, self.ek.public, self.ak.name, result)


def make_device(
    ek_kind: str = "rsa",
    ak_kind: str = "ecc",
    *,
    slot: int = 0,
    vendor: Vendor | None = None,
    **ak_options: Any,
) -> FakeDevice:
    """A device with an EK (certified by *vendor* if given) and an AK."""
    ek = make_ek(ek_kind, slot)
    if vendor is not None:
        ek = ek.with_certificate(vendor.ek_certificate(ek.public_key))
    return FakeDevice(ek, make_ak(ak_kind, slot, **ak_options))


def new_device(vendor: Vendor, *, ek_kind: str = "ecc") -> FakeDevice:
    """A device with keys of its own (never cached): an EK of *ek_kind* (``ecc`` is
    P-256, quick to make; ``rsa`` RSA-2048) certified by *vendor*, and a P-256 AK."""
    ek_key: PrivateKey = (
        ec.generate_private_key(ec.SECP256R1())
        if ek_kind == "ecc"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    ek = FakeEK(ek_key, ek_public_from_key(ek_key.public_key()))
    ek = ek.with_certificate(vendor.ek_certificate(ek.public_key))
    return FakeDevice(ek, ak_from_key(ec.generate_private_key(ec.SECP256R1())))


def signing_key_public_area(key: ec.EllipticCurvePrivateKey) -> TPMTPublic:
    """The TPMT_PUBLIC of a P-256 signing key as the agent creates it in the TPM
    (ECDSA with SHA-256, not restricted), here around a software key."""
    return ak_public_area(key, attributes=SIGNING_KEY_ATTRIBUTES)
