"""The device's enrolment with the Agent CA: ACME device-attest-01 with the TPM.

Step 5 of the flow in docs/architecture.md, after ``devid agent attest`` earned an
AK certificate:

1. The identifier is the device's own: ``permanent-identifier`` with the
   PermanentIdentifier value the AK certificate binds (the base64url SHA-256 of
   the EK).
2. newAccount (a software account key in the state directory), newOrder.
3. The authorization's ``device-attest-01`` challenge: a NEW TPM-resident
   signing key (ECC P-256, not restricted), TPM2_Certify'd by the AK with
   qualifyingData = SHA-256(key authorization); the answer is
   ``{"attObj": base64url(CBOR {"fmt": "tpm", "attStmt": {...}})}``
   (draft-ietf-acme-device-attest, the WebAuthn ``tpm`` statement format).
4. Finalize with a CSR for the identifier, signed by that TPM key, and download
   the certificate chain.

The device certificate is held in memory only: nothing here writes it, and the
state directory gains only the ACME account key. The caller gets the chain and
a :class:`TPMSigningKey` that signs with the TPM (for TLS, for X5C tokens, ...).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, NamedTuple

import cbor2
import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    KeySerializationEncryption,
    PrivateFormat,
    PublicFormat,
)
from cryptography.x509.oid import NameOID

from engine.attestation.akcert import identities_of_ak_certificate, permanent_identifier_name
from engine.errors import ProtocolError
from engine.jose import b64url_encode
from engine.tpm import ECCSignature, TPMAlg, TPMTPublic, public_key_from_tpmt

from .acme import ACMEClient, ACMEResource, load_or_create_account_key
from .attestation import _load_roots, ak_certificate_revoked, attest
from .state import AgentError, AgentState, WrappedKey
from .tpm import TPM, Certification, KeyAlgorithm, public_of

log = logging.getLogger("devid.agent")

__all__ = [
    "CHALLENGE_TYPE",
    "IDENTIFIER_TYPE",
    "Enrollment",
    "TPMSigningKey",
    "attestation_object",
    "device_csr",
    "device_identifier",
    "enroll",
]

CHALLENGE_TYPE = "device-attest-01"
IDENTIFIER_TYPE = "permanent-identifier"
# COSE algorithm identifiers of the AK's signature (WebAuthn's "alg").
COSE_ES256 = -7
COSE_RS256 = -257


class TPMSigningKey(ec.EllipticCurvePrivateKey):
    """A TPM-resident ECC P-256 key as a cryptography private key.

    Only :meth:`sign` (ECDSA with SHA-256) works, through TPM2_Sign; the private
    key never leaves the TPM, so serializing it or using it for ECDH raises.
    cryptography's CSR and certificate builders accept it like any EC key. It
    signs through the :class:`TPM` connection it was made with (:meth:`bind`
    moves it to another one, for example after a reconnect).
    """

    def __init__(self, tpm: TPM, key: WrappedKey) -> None:
        public = public_key_from_tpmt(public_of(key))
        if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
            raise AgentError("a TPM signing key for devid must be ECC P-256")
        self._tpm = tpm
        self._wrapped = key
        self._public = public

    @property
    def wrapped(self) -> WrappedKey:
        """The key as the TPM wrapped it (TPM2B_PUBLIC, TPM2B_PRIVATE): useless elsewhere."""
        return self._wrapped

    @property
    def tpm_public(self) -> TPMTPublic:
        return public_of(self._wrapped)

    def bind(self, tpm: TPM) -> TPMSigningKey:
        """The same key, signing through another connection to the same TPM."""
        return TPMSigningKey(tpm, self._wrapped)

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign(
        self,
        data: bytes | bytearray | memoryview,
        signature_algorithm: ec.EllipticCurveSignatureAlgorithm,
    ) -> bytes:
        """ECDSA over SHA-256 by the TPM, DER-encoded like any cryptography EC signature."""
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise TypeError("a TPM signing key only does ECDSA")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, utils.Prehashed):
            if not isinstance(algorithm._algorithm, hashes.SHA256) or len(data) != 32:
                raise TypeError("a TPM signing key signs SHA-256 digests only")
            digest = bytes(data)
        elif isinstance(algorithm, hashes.SHA256):
            digest = hashlib.sha256(data).digest()
        else:
            raise TypeError(f"a TPM signing key signs with SHA-256, not {algorithm.name}")
        signature = self._tpm.sign(self._wrapped, digest)
        body = signature.signature
        if signature.sig_alg != TPMAlg.ECDSA or not isinstance(body, ECCSignature):
            raise AgentError(f"the TPM made a {signature.sig_alg.name} signature, not ECDSA")
        der = utils.encode_dss_signature(
            int.from_bytes(body.r, "big"), int.from_bytes(body.s, "big")
        )
        try:  # cheap, and it catches a wrapped key whose public part was swapped
            self._public.verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        except InvalidSignature:
            raise AgentError(
                "the TPM's signature does not verify with the key's public part"
            ) from None
        return der

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise TypeError("a TPM signing key cannot do ECDH")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise TypeError("the private key never leaves the TPM")

    def private_bytes(
        self,
        encoding: Encoding,
        format: PrivateFormat,
        encryption_algorithm: KeySerializationEncryption,
    ) -> bytes:
        raise TypeError("the private key never leaves the TPM")

    def __copy__(self) -> TPMSigningKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TPMSigningKey:
        return self

    def __repr__(self) -> str:
        return f"<TPMSigningKey ECC P-256 in {self._tpm.tcti}>"


class Enrollment(NamedTuple):
    """What :func:`enroll` returns: the chain (device certificate first) and its TPM key."""

    chain: list[x509.Certificate]
    key: TPMSigningKey

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    def pem(self) -> str:
        """The chain as PEM text, for whoever must see it (it is not written anywhere)."""
        return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in self.chain)


def device_identifier(ak_certificate: x509.Certificate) -> str:
    """The PermanentIdentifier value the AK certificate binds: the ACME identifier's value."""
    try:
        identities = identities_of_ak_certificate(ak_certificate)
    except ProtocolError as exc:
        raise AgentError(f"the AK certificate cannot be read: {exc}") from None
    if not identities.permanent_identifiers:
        raise AgentError(
            "the AK certificate binds no PermanentIdentifier; run `devid agent attest` again"
        )
    return identities.permanent_identifiers[0]


def attestation_object(
    ak_public: TPMTPublic,
    ak_chain: Iterable[x509.Certificate],
    key: WrappedKey,
    certification: Certification,
) -> bytes:
    """The CBOR ``attObj`` of device-attest-01, statement format ``tpm``.

    ``x5c`` is the AK certificate and the Attestation CA (DER), ``sig`` the
    TPMT_SIGNATURE of TPM2_Certify, ``certInfo`` its TPMS_ATTEST, ``pubArea``
    the certified key's TPMT_PUBLIC; ``alg`` names the AK's signature algorithm.
    """
    scheme = ak_public.parameters.scheme.scheme
    alg = COSE_ES256 if scheme == TPMAlg.ECDSA else COSE_RS256
    if scheme not in (TPMAlg.ECDSA, TPMAlg.RSASSA):
        raise AgentError(f"an AK signing with {scheme.name} has no device-attest-01 algorithm")
    statement = {
        "ver": "2.0",
        "alg": alg,
        "x5c": [c.public_bytes(Encoding.DER) for c in ak_chain],
        "sig": certification.signature,
        "certInfo": certification.attestation,
        "pubArea": public_of(key).to_bytes(),
    }
    return bytes(cbor2.dumps({"fmt": "tpm", "attStmt": statement}))


def device_csr(key: ec.EllipticCurvePrivateKey, identifier: str) -> x509.CertificateSigningRequest:
    """The CSR at finalize: CN = the identifier, and the identifier as a PermanentIdentifier
    SAN (the certificate's own form of it), signed by the TPM key (ECDSA-SHA256)."""
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identifier)]))
        .add_extension(
            x509.SubjectAlternativeName([permanent_identifier_name(identifier)]), critical=False
        )
    )
    return builder.sign(key, hashes.SHA256())


def _no_ak_certificate(state: AgentState) -> AgentError:
    return AgentError(
        f"there is no AK certificate in {state.directory}: run `devid agent attest`"
        " first, or pass the CA's URL (--ca) to attest now"
    )


def _ak_material(
    tpm: TPM,
    state: AgentState,
    root: Path | str,
    ca_url: str | None,
    ek_algorithm: Literal["rsa", "ecc"] | None,
    ak_algorithm: KeyAlgorithm,
    client: httpx.Client,
) -> tuple[WrappedKey, list[x509.Certificate]]:
    """The AK and its certificate chain from the state directory, attesting first if needed
    (also when the CA has revoked the stored AK certificate, as it does when a device is
    disabled or removed). The CRL and the attestation go through *client*, the
    enrolment's own connection."""
    chain, ak = state.load_chain(), state.load_ak()
    if chain is not None and ak is not None and ca_url is not None:
        try:
            revoked = ak_certificate_revoked(ca_url, root, chain, client=client)
        except AgentError as exc:
            log.warning("cannot check the AK certificate against the CA's CRL: %s", exc)
            revoked = False
        if revoked:
            log.warning("the CA revoked the AK certificate in %s; attesting again", state.directory)
            chain = None
    if chain is None or ak is None:
        if ca_url is None:
            raise _no_ak_certificate(state)
        attest(
            ca_url,
            root,
            tpm,
            state.directory,
            ak_algorithm=ak_algorithm,
            ek_algorithm=ek_algorithm,
            client=client,
        )
        chain, ak = state.load_chain(), state.load_ak()
        if chain is None or ak is None:
            raise AgentError(f"attestation left no AK certificate in {state.directory}")
    ak_spki = public_key_from_tpmt(public_of(ak)).public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )
    leaf_spki = chain[0].public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if leaf_spki != ak_spki:
        raise AgentError(
            f"the AK certificate in {state.directory} is not for the AK stored there;"
            " run `devid agent attest` again"
        )
    return ak, chain


def _challenge(authz: ACMEResource) -> dict[str, Any]:
    challenges = authz.data.get("challenges")
    offered = []
    if isinstance(challenges, list):
        for challenge in challenges:
            if isinstance(challenge, dict):
                if challenge.get("type") == CHALLENGE_TYPE:
                    return challenge
                offered.append(str(challenge.get("type")))
    raise AgentError(
        f"the ACME server offers no {CHALLENGE_TYPE} challenge for this device"
        f" (offered: {', '.join(offered) or 'none'})"
    )


def _text(challenge: dict[str, Any], member: str) -> str:
    value = challenge.get(member)
    if not isinstance(value, str) or not value:
        raise AgentError(f"the ACME server's {CHALLENGE_TYPE} challenge has no {member!r}")
    return value


def _authorize(
    acme: ACMEClient,
    tpm: TPM,
    ak: WrappedKey,
    ak_chain: list[x509.Certificate],
    order: ACMEResource,
) -> WrappedKey | None:
    """Answer the order's device-attest-01 challenges with one new, certified TPM key.

    Returns None when the server handed out authorizations that were already
    valid: those are deactivated (their key is gone) and the caller orders again.
    """
    device_key: WrappedKey | None = None
    reused = False
    for authz_url in order.urls("authorizations"):
        authz = acme.authorization(authz_url)
        if authz.status == "valid":
            acme.deactivate_authorization(authz_url)
            reused = True
            continue
        challenge = _challenge(authz)
        key_authorization = acme.key_authorization(_text(challenge, "token"))
        if device_key is None:
            device_key = tpm.create_key(KeyAlgorithm.ECC_P256)
        certification = tpm.certify(
            device_key, ak, hashlib.sha256(key_authorization.encode("ascii")).digest()
        )
        att_obj = attestation_object(public_of(ak), ak_chain, device_key, certification)
        acme.respond(_text(challenge, "url"), {"attObj": b64url_encode(att_obj)})
        acme.wait_for_authorization(authz_url)
    return None if reused or device_key is None else device_key


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_device_chain(
    chain: list[x509.Certificate],
    public_key: ec.EllipticCurvePublicKey,
    roots: list[x509.Certificate],
    identifier: str,
) -> None:
    """The issued chain must certify the TPM key, lead to the root, and carry the identifier."""
    if chain[0].public_key() != public_key:
        raise AgentError("the ACME server certified another key than the device's TPM key")
    for child, parent in itertools.pairwise(chain):
        if not _issued_by(child, parent):
            raise AgentError("the device certificate chain from the ACME server is broken")
    last = chain[-1]
    if not any(last == root or _issued_by(last, root) for root in roots):
        raise AgentError("the device certificate chain does not lead to the trusted root")
    try:
        bound = identities_of_ak_certificate(chain[0]).permanent_identifiers
    except ProtocolError:
        bound = ()
    if identifier not in bound:
        raise AgentError(
            f"the device certificate does not carry the PermanentIdentifier {identifier!r}"
        )


def enroll(
    directory_url: str,
    root: Path | str,
    tpm: TPM,
    state: AgentState | Path | str,
    *,
    ca_url: str | None = None,
    contact: Iterable[str] = (),
    identifier: str | None = None,
    ek_algorithm: Literal["rsa", "ecc"] | None = None,
    ak_algorithm: KeyAlgorithm = KeyAlgorithm.ECC_P256,
    poll_timeout: float | None = None,
) -> Enrollment:
    """Enrol the device through ACME device-attest-01; return the chain and the TPM key.

    *directory_url* is the ACME directory (``https://CA/acme/devices/directory``),
    *root* the devid root (PEM) the connection and the issued chain must lead to.
    The AK and its certificate come from *state*; without them, and given
    *ca_url*, the device attests first. *identifier* overrides the ordered
    PermanentIdentifier (by default the AK certificate's own; a devid CA refuses
    any other). The certificate is never written anywhere: keep the returned
    :class:`Enrollment` (and the open *tpm*) for as long as it is used.
    """
    state = state if isinstance(state, AgentState) else AgentState(state)
    state.ensure()
    roots = _load_roots(Path(root))
    if ca_url is None and (state.load_chain() is None or state.load_ak() is None):
        raise _no_ak_certificate(state)  # before anything is written or sent
    account_key = load_or_create_account_key(state)

    options: dict[str, Any] = {}
    if poll_timeout is not None:
        options["poll_timeout"] = poll_timeout
    # One connection for the whole enrolment (when the CA's URL and the directory's share
    # a host): the CRL check, an attestation if one is needed, and the ACME exchange.
    with ACMEClient(directory_url, root, account_key, **options) as acme:
        ak, ak_chain = _ak_material(tpm, state, root, ca_url, ek_algorithm, ak_algorithm, acme.http)
        value = identifier if identifier is not None else device_identifier(ak_chain[0])
        ordered = {"type": IDENTIFIER_TYPE, "value": value}
        acme.new_account(contact=contact, terms_of_service_agreed=True)
        order = acme.new_order([ordered])
        device_key = _authorize(acme, tpm, ak, ak_chain, order)
        if device_key is None:
            # The server reused an authorization validated for an earlier key, which
            # is gone (keys live as long as their certificate, in memory). Deactivated
            # now, so a new order gets a fresh challenge for a new key.
            order = acme.new_order([ordered])
            device_key = _authorize(acme, tpm, ak, ak_chain, order)
            if device_key is None:
                raise AgentError(
                    "the ACME server keeps reusing an earlier authorization for this device,"
                    " so a new TPM key cannot be attested"
                )
        signing_key = TPMSigningKey(tpm, device_key)
        csr = device_csr(signing_key, value)
        order = acme.finalize(order, csr.public_bytes(Encoding.DER))
        chain = acme.certificate_chain(order.text("certificate"))

    _check_device_chain(chain, signing_key.public_key(), roots, value)
    return Enrollment(chain, signing_key)
