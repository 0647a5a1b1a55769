"""The device's TPM 2.0, through tpm2-pytss (ESAPI).

Everything the agent asks of the TPM is here: its identity (manufacturer,
vendor string, firmware), the EK certificates in NV, the EK re-created from
its TCG template, an attestation key (AK) with TPM2_CertifyCreation evidence,
TPM2_ActivateCredential, and ordinary TPM-resident signing keys certified by
the AK. TPM structures cross the boundary as raw TPM marshalling and are
parsed with :mod:`engine.tpm`, the same code the server uses.

Keys never leave the TPM: an AK or key is kept as its TPM2B_PUBLIC and the
TPM2B_PRIVATE the TPM wrapped under the storage root key (SRK). The SRK is a
primary key re-created from the standard template whenever it is needed, so
nothing has to be made persistent in the TPM.

Object slots are scarce (swtpm and some real TPMs without a resource manager
hold 3 transient objects), so every object is loaded for one operation and
flushed right after, and objects a crashed process left loaded are flushed
when a :class:`TPM` is opened.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import Any, Literal

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from tpm2_pytss import ESAPI, TSS2_Exception
from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_CAP, TPM2_RC, TPM2_SE
from tpm2_pytss.types import (
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPM2B_PRIVATE,
    TPM2B_PUBLIC,
    TPMT_SIG_SCHEME,
)

from engine.inventory import ek_urn
from engine.tpm import (
    AES_128_CFB,
    ECCParms,
    ECCPoint,
    EKTemplate,
    ObjectAttributes,
    RSAParms,
    Scheme,
    TPMAlg,
    TPMEccCurve,
    TPMError,
    TPMPublicKey,
    TPMTPublic,
    TPMTSignature,
    default_ek_template,
    ek_public_from_key,
    public_key_from_tpmt,
)

from .state import AgentError, WrappedKey

__all__ = [
    "AK_TEMPLATES",
    "DEFAULT_TCTI",
    "EK_CERTIFICATE_INDICES",
    "KEY_TEMPLATES",
    "SRK_TEMPLATE",
    "TPM",
    "AKParameters",
    "AttestationKey",
    "Certification",
    "EKCertificate",
    "EndorsementKey",
    "KeyAlgorithm",
    "TPMAccessError",
    "TPMInfo",
    "WrappedKey",
    "public_of",
]

DEFAULT_TCTI = "device:/dev/tpmrm0"

#: Where the TCG EK Credential Profile stores EK certificates, per EK template, in the
#: order the agent prefers them.
EK_CERTIFICATE_INDICES: dict[EKTemplate, int] = {
    EKTemplate.RSA_2048: 0x01C00002,
    EKTemplate.ECC_NIST_P256: 0x01C0000A,
    EKTemplate.ECC_NIST_P384: 0x01C00016,
}

# TPM_PT values (TPM 2.0 Part 2, 6.13).
_PT_MANUFACTURER = 0x105
_PT_VENDOR_STRING_1 = 0x106
_PT_FIRMWARE_VERSION_1 = 0x10B
_PT_NV_BUFFER_MAX = 0x12C
# Handle ranges (TPM_HT << 24): transient objects, HMAC sessions, policy sessions.
_LEFTOVER_RANGES = (0x80000000, 0x02000000, 0x03000000)
_DEFAULT_NV_CHUNK = 512

_A = ObjectAttributes
_KEY_BASE = _A.FIXED_TPM | _A.FIXED_PARENT | _A.SENSITIVE_DATA_ORIGIN | _A.USER_WITH_AUTH

#: The standard ECC P-256 storage root key template (TCG TPM v2.0 Provisioning Guidance).
SRK_TEMPLATE = TPMTPublic(
    name_alg=TPMAlg.SHA256,
    object_attributes=_KEY_BASE | _A.NO_DA | _A.RESTRICTED | _A.DECRYPT,
    auth_policy=b"",
    parameters=ECCParms(symmetric=AES_128_CFB, curve=TPMEccCurve.NIST_P256),
    unique=ECCPoint(bytes(32), bytes(32)),
)


class KeyAlgorithm(enum.Enum):
    """The key types the agent creates in the TPM (AKs and ordinary keys alike)."""

    ECC_P256 = "ecc"
    RSA_2048 = "rsa"


def _signing_template(algorithm: KeyAlgorithm, attributes: ObjectAttributes) -> TPMTPublic:
    if algorithm is KeyAlgorithm.ECC_P256:
        return TPMTPublic(
            name_alg=TPMAlg.SHA256,
            object_attributes=attributes,
            auth_policy=b"",
            parameters=ECCParms(
                scheme=Scheme(TPMAlg.ECDSA, TPMAlg.SHA256), curve=TPMEccCurve.NIST_P256
            ),
            unique=ECCPoint(),
        )
    return TPMTPublic(
        name_alg=TPMAlg.SHA256,
        object_attributes=attributes,
        auth_policy=b"",
        parameters=RSAParms(scheme=Scheme(TPMAlg.RSASSA, TPMAlg.SHA256), key_bits=2048),
        unique=b"",
    )


#: Attestation keys: restricted signing keys, so they only sign TPM-generated data.
AK_TEMPLATES: dict[KeyAlgorithm, TPMTPublic] = {
    alg: _signing_template(alg, _KEY_BASE | _A.NO_DA | _A.RESTRICTED | _A.SIGN)
    for alg in KeyAlgorithm
}
#: Ordinary TPM-resident signing keys (device identity keys and the like).
KEY_TEMPLATES: dict[KeyAlgorithm, TPMTPublic] = {
    alg: _signing_template(alg, _KEY_BASE | _A.NO_DA | _A.SIGN) for alg in KeyAlgorithm
}


class TPMAccessError(AgentError):
    """The TPM could not be reached or refused a command."""


@attrs.frozen
class TPMInfo:
    """Who made the TPM and what firmware it runs (TPM_PT_* fixed properties)."""

    manufacturer: int  # TPM_PT_MANUFACTURER, four ASCII bytes as a u32
    vendor: str  # TPM_PT_VENDOR_STRING_1..4
    firmware_major: int
    firmware_minor: int

    @property
    def manufacturer_ascii(self) -> str:
        raw = self.manufacturer.to_bytes(4, "big")
        return raw.decode("ascii", "replace").strip("\0 ")

    @property
    def firmware_version(self) -> str:
        return f"{self.firmware_major}.{self.firmware_minor}"

    def to_json(self) -> dict[str, Any]:
        """The ``tpmInfo`` object of the attestation request (Smallstep's encoding)."""
        return {
            "version": 2,
            "manufacturer": str(self.manufacturer),
            "model": self.vendor,
            "firmwareVersion": self.firmware_version,
        }


@attrs.frozen
class EKCertificate:
    """An EK certificate read from NV; ``certificate`` is None if it cannot be parsed."""

    nv_index: int
    der: bytes
    certificate: x509.Certificate | None

    @classmethod
    def from_der(cls, nv_index: int, der: bytes) -> EKCertificate:
        try:
            cert: x509.Certificate | None = x509.load_der_x509_certificate(der)
        except ValueError:
            cert = None
        return cls(nv_index, der, cert)

    @property
    def public_key(self) -> TPMPublicKey | None:
        if self.certificate is None:
            return None
        try:
            key = self.certificate.public_key()
        except ValueError:
            return None
        return key if isinstance(key, TPMPublicKey) else None

    @property
    def template(self) -> EKTemplate | None:
        """The TCG template of the EK this certificate is for."""
        key = self.public_key
        if key is None:
            return None
        try:
            return default_ek_template(key)
        except TPMError:
            return None


@attrs.frozen
class EndorsementKey:
    """The EK as the TPM derives it from a TCG template, with its certificate if any."""

    template: EKTemplate
    public: TPMTPublic
    certificate: EKCertificate | None

    @property
    def public_key(self) -> TPMPublicKey:
        return public_key_from_tpmt(self.public)

    @property
    def spki_der(self) -> bytes:
        return self.public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    @property
    def urn(self) -> str:
        """The device's identity in the inventory: ``urn:ek:sha256:...``."""
        return ek_urn(self.public_key)


@attrs.frozen
class AKParameters:
    """What the Attestation CA checks: the AK's public area and its creation evidence,
    as raw TPM marshalling without outer TPM2B sizes."""

    public: bytes  # TPMT_PUBLIC
    create_data: bytes  # TPMS_CREATION_DATA
    create_attestation: bytes  # TPMS_ATTEST from TPM2_CertifyCreation
    create_signature: bytes  # TPMT_SIGNATURE over create_attestation by the AK

    def to_json(self) -> dict[str, str]:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode("ascii")

        return {
            "public": b64(self.public),
            "createData": b64(self.create_data),
            "createAttestation": b64(self.create_attestation),
            "createSignature": b64(self.create_signature),
        }


@attrs.frozen
class AttestationKey:
    """A freshly created AK: its wrapped blobs, creation evidence and Name."""

    key: WrappedKey
    parameters: AKParameters
    name: bytes

    @property
    def public(self) -> TPMTPublic:
        return TPMTPublic.from_bytes(self.parameters.public)


@attrs.frozen
class Certification:
    """TPM2_Certify's output: TPMS_ATTEST and the TPMT_SIGNATURE over it."""

    attestation: bytes
    signature: bytes


def public_of(key: WrappedKey) -> TPMTPublic:
    """The public area of a wrapped key."""
    try:
        return TPMTPublic.from_tpm2b(key.public)
    except TPMError as exc:
        raise TPMAccessError(f"the stored key's public area cannot be read: {exc}") from None


def _to_pytss(public: TPMTPublic) -> TPM2B_PUBLIC:
    value, _ = TPM2B_PUBLIC.unmarshal(public.to_tpm2b())
    return value


def _from_pytss(public: TPM2B_PUBLIC) -> TPMTPublic:
    """Parse the TPM's public area with engine.tpm; it must reproduce the TPM's bytes."""
    raw = bytes(public.publicArea.marshal())
    try:
        parsed = TPMTPublic.from_bytes(raw)
    except TPMError as exc:
        raise TPMAccessError(f"the TPM returned a public area devid cannot read: {exc}") from None
    if parsed.to_bytes() != raw:
        raise TPMAccessError("engine.tpm does not reproduce the TPM's public area byte for byte")
    return parsed


def _unmarshal_exact(cls: Any, data: bytes, what: str) -> Any:
    try:
        value, used = cls.unmarshal(data)
    except (TSS2_Exception, ValueError, TypeError):
        raise TPMAccessError(f"{what} is not a valid TPM structure") from None
    if used != len(data):
        raise TPMAccessError(f"{what} has {len(data) - used} trailing bytes")
    return value


def _der_length(data: bytes) -> int | None:
    """Length of the DER SEQUENCE at the start of *data* (NV areas may be padded)."""
    if len(data) < 2 or data[0] != 0x30:
        return None
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if not 1 <= count <= 4 or len(data) < 2 + count:
        return None
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")


def _describe(exc: TSS2_Exception) -> str:
    return str(exc).strip() or f"TSS2 error 0x{int(exc.rc):08x}"


def _activation_failure(exc: TSS2_Exception) -> str:
    """Why ActivateCredential failed, in terms of the attestation exchange."""
    if exc.error in (TPM2_RC.INTEGRITY, TPM2_RC.VALUE, TPM2_RC.ECC_POINT, TPM2_RC.SIZE):
        return (
            f"the TPM refused the credential: it was not made for this AK and EK ({_describe(exc)})"
        )
    if exc.error == TPM2_RC.FAILURE:
        # libtpms before 0.10 answers an RSA decryption failure (a seed encrypted to
        # another EK) with TPM_RC_FAILURE without entering failure mode.
        return (
            "the TPM could not decrypt the credential with its EK: it was probably made"
            f" for another EK ({_describe(exc)})"
        )
    return f"ActivateCredential failed: {_describe(exc)}"


class TPM:
    """One connection to a TPM, from a tpm2-tools style TCTI string.

    ``swtpm:host=127.0.0.1,port=2321`` for swtpm, ``device:/dev/tpmrm0`` (the
    default) for the kernel's resource-managed device. Use it as a context
    manager, or call :meth:`close`.
    """

    def __init__(self, tcti: str = DEFAULT_TCTI) -> None:
        self.tcti = tcti
        try:
            self._esapi = ESAPI(tcti)
        except TSS2_Exception as exc:
            raise TPMAccessError(f"cannot open the TPM at {tcti!r}: {_describe(exc)}") from None
        except (RuntimeError, ValueError, TypeError) as exc:
            raise TPMAccessError(f"cannot open the TPM at {tcti!r}: {exc}") from None
        try:
            self.flush_leftovers()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if not self._esapi.is_closed:
            self._esapi.close()

    def __enter__(self) -> TPM:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _command(self, what: str) -> Iterator[None]:
        try:
            yield
        except TSS2_Exception as exc:
            raise TPMAccessError(f"{what} failed: {_describe(exc)}") from None

    def _flush(self, handle: Any) -> None:
        # A handle may already be gone (a session the TPM closed itself): nothing to free.
        with suppress(TSS2_Exception):
            self._esapi.flush_context(handle)

    # --- housekeeping ----------------------------------------------------------

    def _handles(self, first: int) -> list[int]:
        handles: list[int] = []
        more = True
        start = first
        while more:
            more, data = self._esapi.get_capability(TPM2_CAP.HANDLES, start, 64)
            found = [int(h) for h in data.data.handles if (int(h) >> 24) == (first >> 24)]
            handles.extend(found)
            if not found:
                break
            start = found[-1] + 1
        return handles

    def flush_leftovers(self) -> int:
        """Flush transient objects and sessions a crashed process left loaded.

        Behind a resource manager (/dev/tpmrm0) a connection only sees its own,
        so this finds nothing there. Returns how many were flushed.
        """
        flushed = 0
        with self._command("listing loaded objects"):
            for first in _LEFTOVER_RANGES:
                for handle in self._handles(first):
                    try:
                        resource = self._esapi.tr_from_tpmpublic(handle)
                        self._esapi.flush_context(resource)
                        flushed += 1
                    except TSS2_Exception:
                        continue
        return flushed

    def loaded_objects(self) -> int:
        """How many transient objects are loaded (tests use it to find leaks)."""
        with self._command("listing loaded objects"):
            return len(self._handles(0x80000000))

    # --- identity ----------------------------------------------------------------

    def _properties(self, first: int, count: int) -> dict[int, int]:
        with self._command("reading TPM properties"):
            _, data = self._esapi.get_capability(TPM2_CAP.TPM_PROPERTIES, first, count)
        return {int(p.property): int(p.value) for p in data.data.tpmProperties}

    def info(self) -> TPMInfo:
        props = self._properties(_PT_MANUFACTURER, 8)
        vendor = b"".join(
            props.get(_PT_VENDOR_STRING_1 + i, 0).to_bytes(4, "big") for i in range(4)
        )
        firmware = props.get(_PT_FIRMWARE_VERSION_1, 0)
        return TPMInfo(
            manufacturer=props.get(_PT_MANUFACTURER, 0),
            vendor=vendor.decode("ascii", "replace").strip("\0"),
            firmware_major=firmware >> 16,
            firmware_minor=firmware & 0xFFFF,
        )

    def read_nv(self, index: int) -> bytes:
        """The whole contents of an NV index readable with its own (empty) auth."""
        chunk = self._properties(_PT_NV_BUFFER_MAX, 1).get(_PT_NV_BUFFER_MAX) or _DEFAULT_NV_CHUNK
        with self._command(f"reading NV index 0x{index:08x}"):
            resource = self._esapi.tr_from_tpmpublic(index)
            try:
                public, _ = self._esapi.nv_read_public(resource)
                size = int(public.nvPublic.dataSize)
                data = b""
                while len(data) < size:
                    part = self._esapi.nv_read(
                        resource, min(chunk, size - len(data)), len(data), auth_handle=resource
                    )
                    data += bytes(part)
            finally:
                self._esapi.tr_close(resource)
        return data

    def ek_certificates(self) -> list[EKCertificate]:
        """The EK certificates at the TCG indices, in :data:`EK_CERTIFICATE_INDICES` order."""
        with self._command("listing NV indices"):
            present = set(self._handles(0x01C00000))
        certs: list[EKCertificate] = []
        for index in EK_CERTIFICATE_INDICES.values():
            if index not in present:
                continue
            data = self.read_nv(index)
            length = _der_length(data)
            if length is not None and length <= len(data):
                data = data[:length]
            certs.append(EKCertificate.from_der(index, data))
        return certs

    def endorsement_key(
        self,
        template: EKTemplate | None = None,
        *,
        algorithm: Literal["rsa", "ecc"] | None = None,
    ) -> EndorsementKey:
        """The EK, created as a primary key from its TCG template.

        Without *template*, the template follows the first EK certificate in NV
        (RSA, then ECC P-256, then P-384; only ECC ones if *algorithm* is "ecc",
        only RSA if "rsa"), else RSA-2048 L-1 (ECC P-256 L-2 for "ecc"). The EK must
        match its certificate's key, or the certificate belongs to another template.
        """
        certs = self.ek_certificates()
        chosen: EKCertificate | None = None
        if template is None:
            for cert in certs:
                kind = cert.template
                if kind is None:
                    continue
                if algorithm is None or (algorithm == "rsa") == kind.name.startswith("RSA"):
                    chosen, template = cert, kind
                    break
            if template is None:
                template = EKTemplate.ECC_NIST_P256 if algorithm == "ecc" else EKTemplate.RSA_2048
        else:
            chosen = next((c for c in certs if c.template is template), None)
        public = self._ek_public(template)
        if chosen is not None:
            key = chosen.public_key
            assert key is not None
            if ek_public_from_key(key, template) != public:
                raise TPMAccessError(
                    f"the EK certificate at NV 0x{chosen.nv_index:08x} does not match the EK "
                    f"the TPM derives from template {template.value}"
                )
        return EndorsementKey(template, public, chosen)

    # --- primaries -------------------------------------------------------------

    @contextmanager
    def _primary(self, hierarchy: Any, template: TPMTPublic, what: str) -> Iterator[Any]:
        with self._command(f"creating the {what}"):
            handle, *_ = self._esapi.create_primary(None, _to_pytss(template), hierarchy)
        try:
            yield handle
        finally:
            self._flush(handle)

    def _ek_public(self, template: EKTemplate) -> TPMTPublic:
        with (
            self._primary(ESYS_TR.ENDORSEMENT, template.public(), "EK") as handle,
            self._command("reading the EK"),
        ):
            public, _, _ = self._esapi.read_public(handle)
        return _from_pytss(public)

    @contextmanager
    def _srk(self) -> Iterator[Any]:
        with self._primary(ESYS_TR.OWNER, SRK_TEMPLATE, "storage root key") as handle:
            yield handle

    @contextmanager
    def _loaded(self, key: WrappedKey, what: str = "key") -> Iterator[Any]:
        """Load a wrapped key under a fresh SRK; the SRK is flushed at once."""
        public = _unmarshal_exact(TPM2B_PUBLIC, key.public, f"the {what}'s TPM2B_PUBLIC")
        private = _unmarshal_exact(TPM2B_PRIVATE, key.private, f"the {what}'s TPM2B_PRIVATE")
        with self._srk() as srk, self._command(f"loading the {what}"):
            handle = self._esapi.load(srk, private, public)
        try:
            yield handle
        finally:
            self._flush(handle)

    def _create(self, template: TPMTPublic, what: str) -> tuple[WrappedKey, Any, Any, Any]:
        """TPM2_Create under the SRK: the wrapped key, creation data, hash, ticket."""
        with self._srk() as srk, self._command(f"creating the {what}"):
            private, public, creation_data, creation_hash, ticket = self._esapi.create(
                srk, None, _to_pytss(template)
            )
        _from_pytss(public)  # engine.tpm must read and reproduce what the TPM made
        wrapped = WrappedKey(bytes(public.marshal()), bytes(private.marshal()))
        return wrapped, creation_data, creation_hash, ticket

    def name_of(self, key: WrappedKey) -> bytes:
        """The Name the TPM itself reports for a loaded key."""
        with self._loaded(key) as handle, self._command("reading the key's name"):
            return bytes(self._esapi.tr_get_name(handle))

    # --- the attestation key -----------------------------------------------------

    def create_ak(self, algorithm: KeyAlgorithm = KeyAlgorithm.ECC_P256) -> AttestationKey:
        """A new restricted signing key, certified by itself with TPM2_CertifyCreation."""
        wrapped, creation_data, creation_hash, ticket = self._create(
            AK_TEMPLATES[algorithm], "attestation key"
        )
        with self._loaded(wrapped, "attestation key") as handle, self._command("CertifyCreation"):
            attestation, signature = self._esapi.certify_creation(
                handle,
                handle,
                b"",
                creation_hash,
                TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL),
                ticket,
            )
            tpm_name = bytes(self._esapi.tr_get_name(handle))
        public = public_of(wrapped)
        if public.name() != tpm_name:
            raise TPMAccessError("engine.tpm computes a different AK name than the TPM")
        parameters = AKParameters(
            public=public.to_bytes(),
            create_data=bytes(creation_data.creationData.marshal()),
            create_attestation=bytes(attestation),
            create_signature=bytes(signature.marshal()),
        )
        return AttestationKey(wrapped, parameters, tpm_name)

    @contextmanager
    def _ek_authorization(self, ek: EndorsementKey) -> Iterator[Any]:
        """An authorization for the EK's USER role.

        Low-range EK templates clear userWithAuth: their authPolicy is
        PolicySecret(TPM_RH_ENDORSEMENT), so each use needs a policy session.
        High-range ones (swtpm's P-384 EK) set it and accept the empty password.
        """
        if ek.public.object_attributes & ObjectAttributes.USER_WITH_AUTH:
            yield ESYS_TR.PASSWORD
            return
        with self._command("starting the EK policy session"):
            session = self._esapi.start_auth_session(
                ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY, None, TPM2_ALG(int(ek.public.name_alg))
            )
        try:
            with self._command("PolicySecret(TPM_RH_ENDORSEMENT)"):
                self._esapi.policy_secret(ESYS_TR.ENDORSEMENT, session)
            yield session
        finally:
            self._flush(session)

    def activate_credential(
        self, ak: WrappedKey, ek: EndorsementKey, credential_blob: bytes, secret: bytes
    ) -> bytes:
        """TPM2_ActivateCredential: the secret the server wrapped to *ek* for *ak*'s Name.

        *credential_blob* is a TPM2B_ID_OBJECT and *secret* a TPM2B_ENCRYPTED_SECRET,
        both with their 2-byte sizes.
        """
        blob = _unmarshal_exact(TPM2B_ID_OBJECT, credential_blob, "the credential")
        encrypted = _unmarshal_exact(TPM2B_ENCRYPTED_SECRET, secret, "the encrypted secret")
        with (
            self._loaded(ak, "attestation key") as ak_handle,
            self._primary(ESYS_TR.ENDORSEMENT, ek.template.public(), "EK") as ek_handle,
            self._ek_authorization(ek) as session,
        ):
            try:
                released = self._esapi.activate_credential(
                    ak_handle, ek_handle, blob, encrypted, session2=session
                )
            except TSS2_Exception as exc:
                raise TPMAccessError(_activation_failure(exc)) from None
        return bytes(released)

    # --- ordinary TPM-resident keys ----------------------------------------------

    def create_key(self, algorithm: KeyAlgorithm = KeyAlgorithm.ECC_P256) -> WrappedKey:
        """A new non-restricted signing key under the SRK (for device identity keys)."""
        wrapped, *_ = self._create(KEY_TEMPLATES[algorithm], "signing key")
        return wrapped

    def certify(self, key: WrappedKey, ak: WrappedKey, qualifying_data: bytes) -> Certification:
        """TPM2_Certify: the AK vouches that *key* lives in this TPM.

        *qualifying_data* lands in the attestation's extraData (device-attest-01
        puts SHA-256 of the key authorization there).
        """
        with (
            self._loaded(ak, "attestation key") as ak_handle,
            self._loaded(key) as key_handle,
            self._command("Certify"),
        ):
            attestation, signature = self._esapi.certify(
                key_handle, ak_handle, qualifying_data, TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL)
            )
        return Certification(bytes(attestation), bytes(signature.marshal()))

    def sign(self, key: WrappedKey, digest: bytes) -> TPMTSignature:
        """Sign a digest (SHA-256 for devid's keys) with a TPM-resident key."""
        with self._loaded(key) as handle, self._command("Sign"):
            signature = self._esapi.sign(handle, digest, TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL))
        return TPMTSignature.from_bytes(bytes(signature.marshal()))
