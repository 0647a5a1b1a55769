"""TPM attestation and credential activation: the Attestation CA's state machine.

A device proves that an Attestation Key (AK) lives in the same TPM as its
registered Endorsement Key (EK): the server checks the AK's creation evidence,
computes the AK's name itself, and encrypts a fresh secret to the EK bound to
that name (MakeCredential). Only that TPM can release the secret
(ActivateCredential), and only for an AK with exactly the checked attributes.
The correct answer, once and in time, earns an AK certificate.
"""

from .akcert import (
    EK_URN_SAN_PREFIX,
    PERMANENT_IDENTIFIER_OID,
    TCG_KP_AIK_CERTIFICATE,
    TPMInfo,
    ak_certificate_template,
    identities_of_ak_certificate,
)
from .policy import AttestationPolicy, EKCertificatePolicy
from .request import AttestRequest
from .session import (
    AttestationSession,
    Challenge,
    SessionState,
    answer_challenge,
    begin_attestation,
    session_id_for_secret,
)

__all__ = [
    "EK_URN_SAN_PREFIX",
    "PERMANENT_IDENTIFIER_OID",
    "TCG_KP_AIK_CERTIFICATE",
    "AttestRequest",
    "AttestationPolicy",
    "AttestationSession",
    "Challenge",
    "EKCertificatePolicy",
    "SessionState",
    "TPMInfo",
    "ak_certificate_template",
    "answer_challenge",
    "begin_attestation",
    "identities_of_ak_certificate",
    "session_id_for_secret",
]
