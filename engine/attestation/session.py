"""The attestation session: CHALLENGED -> ACTIVATED, or EXPIRED.

``begin_attestation`` checks everything a device sends and returns the
session to keep plus the challenge to send. ``answer_challenge`` checks the
device's answer. The host stores sessions by :func:`session_id_for_secret`, so
the answer itself finds its session (the wire protocol carries no session id)
and a session is taken out of the store exactly once.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
from datetime import datetime
from typing import Any

import attrs
from cryptography import x509

from ..chain import ChainError, verify_chain
from ..errors import BadRequest, Forbidden, Unauthorized
from ..inventory import Device
from ..ports import Random
from ..tpm import NativeRandomness, ek_public_from_key, make_credential, verify_ak_creation
from ..tpm.errors import TPMError
from .akcert import TPMInfo
from .policy import AttestationPolicy, EKCertificatePolicy
from .request import AttestRequest

SECRET_BYTES = 32


class SessionState(enum.Enum):
    CHALLENGED = "challenged"
    ACTIVATED = "activated"
    EXPIRED = "expired"


# Every allowed transition, in one place (a missing entry is a protocol error).
_TRANSITIONS: dict[tuple[SessionState, str], SessionState] = {
    (SessionState.CHALLENGED, "correct-answer"): SessionState.ACTIVATED,
    (SessionState.CHALLENGED, "late-answer"): SessionState.EXPIRED,
}


def _next(state: SessionState, event: str) -> SessionState:
    try:
        return _TRANSITIONS[(state, event)]
    except KeyError:
        raise Unauthorized(f"this attestation session is {state.value}; start again") from None


def session_id_for_secret(secret: bytes) -> str:
    return hashlib.sha256(b"devid-activation\x00" + secret).hexdigest()


@attrs.frozen
class AttestationSession:
    id: str
    state: SessionState
    ek_urn: str
    ek_digest: bytes
    ak_public: bytes  # TPMT_PUBLIC, as checked
    ak_name: bytes
    tpm: TPMInfo
    ek_certificate: bytes | None
    ek_certificate_verified: bool
    created_at: datetime
    expires_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state.value,
            "ek_urn": self.ek_urn,
            "ek_digest": self.ek_digest.hex(),
            "ak_public": self.ak_public.hex(),
            "ak_name": self.ak_name.hex(),
            "tpm": attrs.asdict(self.tpm),
            "ek_certificate": self.ek_certificate.hex() if self.ek_certificate else None,
            "ek_certificate_verified": self.ek_certificate_verified,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AttestationSession:
        return cls(
            id=data["id"],
            state=SessionState(data["state"]),
            ek_urn=data["ek_urn"],
            ek_digest=bytes.fromhex(data["ek_digest"]),
            ak_public=bytes.fromhex(data["ak_public"]),
            ak_name=bytes.fromhex(data["ak_name"]),
            tpm=TPMInfo(**data["tpm"]),
            ek_certificate=bytes.fromhex(data["ek_certificate"])
            if data["ek_certificate"]
            else None,
            ek_certificate_verified=bool(data["ek_certificate_verified"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            expires_at=datetime.fromisoformat(data["expires_at"]),
        )

    def evidence(self) -> dict[str, Any]:
        """What the AK certificate's store record keeps about how it was earned."""
        return {
            "method": "tpm-credential-activation",
            "ek": self.ek_urn,
            "ak_name": self.ak_name.hex(),
            "ek_certificate_sha256": hashlib.sha256(self.ek_certificate).hexdigest()
            if self.ek_certificate
            else None,
            "ek_certificate_verified": self.ek_certificate_verified,
            "tpm": attrs.asdict(self.tpm),
        }


@attrs.frozen
class Challenge:
    """The /attest response: the credential blob and encrypted seed, both TPM2B-sized."""

    credential: bytes
    secret: bytes

    def to_json(self) -> dict[str, str]:
        return {
            "credential": base64.b64encode(self.credential).decode(),
            "secret": base64.b64encode(self.secret).decode(),
        }


def _same_key(cert: x509.Certificate, key: Any) -> bool:
    try:
        return bool(cert.public_key() == key)
    except ValueError:
        return False


def _check_ek_certificate(
    request: AttestRequest, policy: AttestationPolicy, now: datetime
) -> tuple[x509.Certificate | None, bool]:
    """The EK certificate that carries the EK's key, and whether it chains to an EK root."""
    if not request.ek_certificates:
        if policy.require_ek_certificate:
            raise Forbidden("this CA requires an EK certificate")
        return None, False
    matching = [c for c in request.ek_certificates if _same_key(c, request.ek_public)]
    if not matching:
        raise Forbidden("no EK certificate carries the EK's public key")
    cert = matching[0]
    others = [c for c in request.ek_certificates if c is not cert]
    try:
        verify_chain(
            cert,
            [*others, *policy.ek_intermediates],
            policy.ek_roots,
            now,
            what="EK certificate",
        )
    except ChainError as exc:
        if policy.unverifiable_ek_certificate is EKCertificatePolicy.REFUSE:
            raise Forbidden(
                f"{exc.detail}; the device's TPM is not trusted. To trust it, the CA's"
                " operator puts the TPM vendor's EK CA certificate (PEM) into DIR/ek-roots/"
                " of the CA's data directory (or lists it in [attestation] ek_roots) and"
                " restarts the server"
            ) from None
        return cert, False
    return cert, True


def begin_attestation(
    request: AttestRequest,
    device: Device | None,
    policy: AttestationPolicy,
    now: datetime,
    random: Random,
    *,
    native: NativeRandomness | None = None,
) -> tuple[AttestationSession, Challenge]:
    """Check the device, its EK and its AK; make the credential the TPM must release
    (its randomness from *random*, or the OAEP seed or ephemeral key from *native*)."""
    urn = request.ek_urn
    if device is None:
        raise Forbidden(f"the device {urn} is not registered; add it with `devid device add`")
    if not device.active:
        raise Forbidden(f"the device {urn} is disabled")
    if device.ek_certificate is not None:
        registered = x509.load_der_x509_certificate(device.ek_certificate)
        if not _same_key(registered, request.ek_public):
            raise Forbidden("the EK does not match the EK certificate registered for the device")
    ek_cert, verified = _check_ek_certificate(request, policy, now)
    try:
        ek_area = ek_public_from_key(request.ek_public)
    except TPMError as exc:
        raise BadRequest(f"endorsement key rejected: {exc}") from None
    try:
        ak = verify_ak_creation(
            request.ak_public,
            request.create_data,
            request.create_attestation,
            request.create_signature,
            allow_sha1=policy.allow_sha1,
        )
    except TPMError as exc:
        raise BadRequest(f"attestation key rejected: {exc}") from None
    try:
        secret = random.bytes(SECRET_BYTES)
        result = make_credential(ek_area, ak.name, secret, random, native=native)
    except TPMError as exc:
        raise BadRequest(f"cannot make a credential for this EK: {exc}") from None
    tpm = (TPMInfo.from_ek_certificate(ek_cert) if ek_cert is not None and verified else None) or (
        TPMInfo.from_client(request.manufacturer, request.model, request.firmware_version)
    )
    session = AttestationSession(
        id=session_id_for_secret(secret),
        state=SessionState.CHALLENGED,
        ek_urn=urn,
        ek_digest=request.ek_digest,
        ak_public=request.ak_public,
        ak_name=ak.name,
        tpm=tpm,
        ek_certificate=request.ek_certificate_der(ek_cert) if ek_cert is not None else None,
        ek_certificate_verified=verified,
        created_at=now,
        expires_at=now + policy.challenge_lifetime,
    )
    return session, Challenge(result.credential_blob, result.secret)


def parse_answer(body: Any) -> bytes:
    if not isinstance(body, dict) or not isinstance(body.get("secret"), str):
        raise BadRequest('the answer must be {"secret": base64}')
    value = body["secret"]
    if len(value) > 128:
        raise BadRequest("the secret is too long")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise BadRequest("the secret is not valid base64") from None


def answer_challenge(
    session: AttestationSession | None, secret: bytes, now: datetime
) -> AttestationSession:
    """Accept the device's decrypted secret for *session* (looked up by the secret)."""
    if session is None:
        raise Unauthorized(
            "the answer matches no pending attestation: it is wrong, was already used, or expired"
        )
    if not hmac.compare_digest(session.id, session_id_for_secret(secret)):
        raise Unauthorized("the answer does not match this attestation")
    if now > session.expires_at:
        _next(session.state, "late-answer")
        raise Unauthorized("the attestation challenge expired; attest again")
    return attrs.evolve(session, state=_next(session.state, "correct-answer"))
