"""SCEP enrolment as a provisioner capability: what the host's SCEP server needs from a
provisioner that serves ``/scep/{name}``, and what it hands the provisioner.

The host does the protocol (messages, the RA identity, transactions, one-time
challenges, the webhook, approval by an operator); the provisioner decides what a
request may get: :meth:`SCEPEnrolling.authorize_enrolment` is pure, like every
``authorize_*`` step, and returns the sign policy. The challenge is checked by the host
before that, by each method the provisioner enables, and is never skipped except for a
renewal signed by a certificate this provisioner issued that is still active.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar, Protocol

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.csr import CSRInfo
from engine.extensions import ProvisionerRef
from engine.scep import ContentEncryption, Signer

from .provisioner import Authorization, AuthorizeContext, CertificateFacts

#: How a request passed the challenge step, as the evidence and the audit log name it.
CHALLENGE_METHODS = ("static", "one-time", "hook", "webhook", "renewal")


@attrs.frozen
class Webhook:
    """An HTTP endpoint that decides on challenges (the pattern MDMs use).

    The host POSTs a JSON body (provisioner, transactionID, challenge, the CSR's subject,
    names and PEM) with header ``X-Devid-Signature: sha256=HEX``, an HMAC-SHA256 of the
    body under *secret*, and accepts the challenge only on ``200`` with
    ``{"allow": true}`` within *timeout*; anything else refuses.
    """

    url: str
    secret: bytes = attrs.field(repr=False)
    timeout: timedelta = timedelta(seconds=5)


@attrs.frozen
class SCEPRequest:
    """An enrolment the host has decrypted, whose challenge (or renewal) passed.

    ``method`` says how (one of :data:`CHALLENGE_METHODS`); ``renewed`` is the record
    of the certificate a RenewalReq or UpdateReq renews (signed with its key).
    """

    transaction_id: str
    message_type: int
    csr: CSRInfo
    method: str
    renewed: CertificateFacts | None = None
    renewed_certificate: x509.Certificate | None = None


@attrs.frozen
class ChallengeQuery:
    """What ``devid_scep_challenge`` hooks (and the webhook) are asked to judge."""

    provisioner: str
    transaction_id: str
    challenge: str = attrs.field(repr=False)
    csr: CSRInfo
    message_type: int

    def webhook_body(self) -> Mapping[str, Any]:
        """The JSON the built-in webhook POSTs."""
        return {
            "provisioner": self.provisioner,
            "transactionID": self.transaction_id,
            "messageType": self.message_type,
            "challenge": self.challenge,
            "subject": self.csr.csr.subject.rfc4514_string(),
            "commonName": self.csr.common_name,
            "sans": [str(s) for s in self.csr.sans],
            "csr": self.csr.csr.public_bytes(Encoding.PEM).decode(),
        }


class SCEPEnrolling(Protocol):
    """What the host's SCEP server needs from a provisioner that serves ``/scep/{name}``."""

    type_name: ClassVar[str]
    name: str
    issuer: str
    ref: ProvisionerRef
    #: The GetCACaps answer, one capability per line.
    capabilities: tuple[str, ...]
    #: Content encryptions accepted in requests (DES3 only where enabled).
    encryptions: frozenset[ContentEncryption]
    #: How replies are encrypted when the request's own algorithm is not accepted.
    reply_encryption: ContentEncryption
    #: Every new enrolment waits for an operator (PENDING) after its challenge passed.
    manual_approval: bool
    #: One-time challenges (``devid scep challenge``) are accepted.
    one_time_challenges: bool
    #: ``devid_scep_challenge`` hooks are asked.
    challenge_hook: bool
    webhook: Webhook | None
    allow_renewal: bool
    #: The issuer's next certificate, staged for GetNextCACert (None: none staged).
    next_ca_certificate: x509.Certificate | None
    #: The RA identity the operator configured (None: the host keeps one per provisioner).
    ra: Signer | None

    def check_static_challenge(self, challenge: str) -> bool | None:
        """Whether *challenge* is the static challenge (compared in constant time); None
        when no static challenge is configured."""
        ...

    def authorize_enrolment(self, request: SCEPRequest, ctx: AuthorizeContext) -> Authorization:
        """The sign policy for an enrolment whose challenge passed; raise a ProtocolError to
        refuse (a name outside the policy, a key type not allowed)."""
        ...
