"""SCEP (RFC 8894) at ``/scep/{provisioner}``: the CA's side of every operation.

A provisioner serves SCEP when its ``scep()`` capability answers (the built-in
``SCEP`` type does). This service does the protocol around it:

- GetCACaps, GetCACert (the provisioner's RA certificate, then its issuer's chain),
  GetNextCACert (a staged next issuer certificate, signed by the RA);
- PKIOperation: the request's signature is checked, its content decrypted with the RA
  key (AES; 3DES and single DES only where the provisioner allows them, single DES over
  HTTPS only), then by message type:

  - PKCSReq: a transactionID seen before with the same CSR gets the same answer
    (the certificate, PENDING, or the refusal); with another CSR it is refused. Else
    the challenge must pass one of the provisioner's methods (an empty or missing
    challenge never does), the provisioner's policy must allow the CSR, and then the
    certificate is issued at once, or, with manual approval, the request waits
    (PENDING) for ``devid scep approve``;
  - RenewalReq / UpdateReq: the same, except that a request signed by a certificate
    this provisioner issued, still active and unexpired, needs no challenge (under the
    transactionID of the enrolment it renews, too: clients derive it from the key);
  - CertPoll: the answer of the transaction, by transactionID and subject;
  - GetCert: a certificate this provisioner issued; GetCRL: its issuer's CRL;
  - anything else: FAILURE badRequest.

Every reply is a CertRep signed by the RA. A request that fails gets FAILURE with the
failInfo RFC 8894 gives (badAlg, badMessageCheck, badRequest, badCertId) and a
failInfoText saying why, and changes nothing stored; a one-time challenge is used up
only by the request that gets a certificate (or waits for approval) with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import attrs
import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from engine.csr import CSRInfo
from engine.errors import BadRequest, Conflict, NotFound, ProtocolError
from engine.pipeline import IssuedCertificate, Issuer, prepare_certificate
from engine.pipeline import SignRequest as PipelineRequest
from engine.policy import SignPolicy
from engine.scep import (
    ContentEncryption,
    FailInfo,
    MessageType,
    PKIMessage,
    PKIStatus,
    SCEPFailure,
    Signer,
    build_cert_rep,
    certs_only,
    read_csr,
    read_issuer_and_serial,
    read_issuer_and_subject,
    read_pki_message,
)
from engine.scep.content import sign_content
from engine.scep.envelope import open_envelope
from hosts.store import SCEPChallenge, SCEPTransaction, UsedToken
from hosts.store.scep import ISSUED, PENDING, REJECTED
from plugins.enrolment import ChallengeQuery, SCEPEnrolling, SCEPRequest, Webhook
from plugins.provisioner import CertificateFacts

from .ca import CA, serial_hex
from .lookup import certificate_facts

log = logging.getLogger("devid.scep")

SCEP_PATH = "/scep"
ENROLMENTS = (MessageType.PKCS_REQ, MessageType.RENEWAL_REQ, MessageType.UPDATE_REQ)
#: How long a one-time challenge lives unless told (``devid scep challenge --expires``).
CHALLENGE_LIFETIME = timedelta(hours=24)
MAX_CHALLENGE_LIFETIME = timedelta(days=30)
#: The bytes of randomness in a one-time challenge (base32 text of 32 characters).
CHALLENGE_BYTES = 20
_DIGESTS = ("sha256", "sha384", "sha512")
#: The transactionID of a FAILURE to a message whose own could not be read.
UNKNOWN_TRANSACTION = "-"


class RASource(Protocol):
    """Where the service gets each provisioner's RA identity (``hosts.core.scep_ra``)."""

    def signer(self, provisioner: str, issuer: Issuer, now: datetime) -> Signer: ...


class CRLSource(Protocol):
    """The current CRL (DER) of an issuer, by name (``RevocationService.crl``)."""

    def __call__(self, issuer_name: str) -> bytes: ...


class WebhookCaller(Protocol):
    """Asks a webhook about a challenge: True only for an explicit yes."""

    def __call__(self, webhook: Webhook, query: ChallengeQuery) -> bool: ...


def call_webhook(webhook: Webhook, query: ChallengeQuery) -> bool:
    """POST *query* to *webhook*, signed with HMAC-SHA256 of the body; True only for
    ``200`` and ``{"allow": true}`` within the timeout. Never raises."""
    body = json.dumps(query.webhook_body(), separators=(",", ":")).encode()
    signature = hmac.new(webhook.secret, body, hashlib.sha256).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-devid-signature": f"sha256={signature}",
        "user-agent": "devid-scep",
    }
    timeout = webhook.timeout.total_seconds()
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.post(webhook.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        log.warning("SCEP webhook %s did not answer: %s", webhook.url, exc)
        return False
    if response.status_code != 200:
        log.warning("SCEP webhook %s answered %d", webhook.url, response.status_code)
        return False
    try:
        verdict = response.json()
    except ValueError:
        log.warning("SCEP webhook %s answered something that is not JSON", webhook.url)
        return False
    return isinstance(verdict, dict) and verdict.get("allow") is True


@attrs.frozen
class CreatedChallenge:
    """A one-time challenge just made: the text is shown once and never stored."""

    challenge: str = attrs.field(repr=False)
    record: SCEPChallenge


@attrs.frozen
class _Reply:
    status: PKIStatus
    content: bytes | None = None
    fail_info: FailInfo | None = None
    text: str | None = None
    #: The content encryption the request used (known once it was decrypted).
    encryption: ContentEncryption | None = None


class SCEPService:
    """Serves SCEP for every provisioner with the ``scep()`` capability."""

    def __init__(
        self,
        ca: CA,
        ra: RASource,
        *,
        crl: CRLSource,
        webhook: WebhookCaller = call_webhook,
    ) -> None:
        self.ca = ca
        self.ra = ra
        self.crl = crl
        self.webhook = webhook

    # --- lookup --------------------------------------------------------------------------

    def enrolment(self, name: str) -> SCEPEnrolling:
        provisioner = self.ca.provisioners.named(name)
        scep = provisioner.scep() if provisioner is not None else None
        if scep is None:
            raise NotFound(f"no SCEP provisioner named {name!r}")
        return scep

    def _issuer(self, enrolment: SCEPEnrolling) -> Issuer:
        issuer = self.ca.issuers.get(enrolment.issuer)
        if issuer is None:
            raise NotFound(f"SCEP provisioner {enrolment.name!r} names an unknown issuer")
        return issuer

    def ra_signer(self, name: str) -> Signer:
        return self._ra(self.enrolment(name))

    def _ra(self, enrolment: SCEPEnrolling, issuer: Issuer | None = None) -> Signer:
        """The provisioner's RA identity: the one its table names (``ra_certificate``,
        ``ra_key``), else the one devid keeps for it (made on first use)."""
        if enrolment.ra is not None:
            return enrolment.ra
        issuer = issuer or self._issuer(enrolment)
        return self.ra.signer(enrolment.name, issuer, self.ca.clock.now())

    # --- the GET operations ------------------------------------------------------------------

    def ca_caps(self, name: str) -> str:
        return "\n".join(self.enrolment(name).capabilities) + "\n"

    def ca_certificates(self, name: str) -> list[x509.Certificate]:
        """GetCACert: the RA certificate first, then the issuer and its parents."""
        enrolment = self.enrolment(name)
        issuer = self._issuer(enrolment)
        ra = self._ra(enrolment, issuer)
        return [ra.certificate, issuer.certificate, *issuer.parents, self.ca.root]

    def ca_cert(self, name: str) -> bytes:
        return certs_only(self.ca_certificates(name))

    def next_ca_cert(self, name: str) -> bytes:
        """GetNextCACert: the staged next issuer certificate, in SignedData by the RA."""
        enrolment = self.enrolment(name)
        staged = enrolment.next_ca_certificate
        if staged is None:
            raise NotFound(f"SCEP provisioner {name!r} has no next CA certificate staged")
        ra = self._ra(enrolment)
        return sign_content(
            signer=ra,
            content=certs_only([staged, self.ca.root]),
            now=self.ca.clock.now(),
            digest="sha256",
        )

    # --- PKIOperation --------------------------------------------------------------------------

    def pki_operation(self, name: str, body: bytes, *, secure: bool = True) -> bytes:
        """The CertRep for one PKIOperation request; a refused request gets FAILURE
        (NotFound only for a provisioner that does not exist). *secure* says the request
        came over TLS: single DES, where a provisioner allows it, is accepted only then."""
        enrolment = self.enrolment(name)
        ra = self._ra(enrolment)
        try:
            message = read_pki_message(body)
        except SCEPFailure as failure:
            log.info(
                "SCEP %s: refused a message that does not verify: %s (failInfo %s)",
                name,
                failure,
                failure.fail_info.name,
            )
            return self._reply(
                ra,
                transaction_id=failure.transaction_id or UNKNOWN_TRANSACTION,
                nonce=failure.sender_nonce,
                digest=failure.digest,
                reply=_Reply(PKIStatus.FAILURE, fail_info=failure.fail_info, text=str(failure)),
            )
        try:
            reply = self._operation(enrolment, ra, message, secure=secure)
        except SCEPFailure as failure:
            reply = _Reply(PKIStatus.FAILURE, fail_info=failure.fail_info, text=str(failure))
        except ProtocolError as refusal:
            reply = _Reply(PKIStatus.FAILURE, fail_info=FailInfo.BAD_REQUEST, text=refusal.detail)
        if reply.status is PKIStatus.FAILURE:
            log.info(
                "SCEP %s: refused transaction %s (message type %s): %s (failInfo %s)",
                name,
                message.transaction_id,
                message.message_type,
                reply.text,
                reply.fail_info.name if reply.fail_info is not None else "-",
            )
        return self._reply(
            ra,
            transaction_id=message.transaction_id,
            nonce=message.sender_nonce,
            digest=message.digest,
            reply=reply,
            recipient=message.signer,
            # The request's own cipher (a client that sent DES3 may know nothing else),
            # else the provisioner's.
            encryption=reply.encryption or enrolment.reply_encryption,
        )

    def _reply(
        self,
        ra: Signer,
        *,
        transaction_id: str,
        nonce: bytes | None,
        digest: str | None,
        reply: _Reply,
        recipient: x509.Certificate | None = None,
        encryption: ContentEncryption = ContentEncryption.AES256_CBC,
    ) -> bytes:
        return build_cert_rep(
            signer=ra,
            transaction_id=transaction_id,
            recipient_nonce=nonce,
            sender_nonce=self.ca.random.bytes(16),
            status=reply.status,
            now=self.ca.clock.now(),
            random=self.ca.random,
            digest=digest if digest in _DIGESTS else "sha256",
            fail_info=reply.fail_info,
            fail_text=reply.text,
            content=reply.content,
            recipient=recipient if reply.status is PKIStatus.SUCCESS else None,
            encryption=encryption,
            certificates=[ra.certificate],
        )

    def _operation(
        self, enrolment: SCEPEnrolling, ra: Signer, message: PKIMessage, *, secure: bool
    ) -> _Reply:
        kind = message.message_type
        if kind not in (
            *ENROLMENTS,
            MessageType.CERT_POLL,
            MessageType.GET_CERT,
            MessageType.GET_CRL,
        ):
            raise SCEPFailure(FailInfo.BAD_REQUEST, f"unknown message type {kind}")
        if message.enveloped is None:
            raise SCEPFailure(FailInfo.BAD_REQUEST, "the message carries no encrypted content")
        if not isinstance(message.signer.public_key(), rsa.RSAPublicKey):
            # Replies are encrypted to the signer certificate's key: RSA key transport.
            raise SCEPFailure(
                FailInfo.BAD_ALG,
                "the signer certificate's key must be RSA (replies are encrypted to it)",
            )
        if not isinstance(ra.key, rsa.RSAPrivateKey):
            raise SCEPFailure(FailInfo.BAD_ALG, "the RA key cannot decrypt (it is not RSA)")
        allowed = enrolment.encryptions
        if not secure:
            allowed = allowed - {ContentEncryption.DES_CBC}
        content, used = open_envelope(message.enveloped, ra.certificate, ra.key, allowed=allowed)
        if kind in ENROLMENTS:
            reply = self._enrol(enrolment, message, content)
        elif kind == MessageType.CERT_POLL:
            reply = self._poll(enrolment, message, content)
        elif kind == MessageType.GET_CERT:
            reply = self._get_cert(enrolment, content)
        else:
            reply = self._get_crl(enrolment, content)
        return attrs.evolve(reply, encryption=used)

    # --- enrolment ------------------------------------------------------------------------------

    def _enrol(self, enrolment: SCEPEnrolling, message: PKIMessage, content: bytes) -> _Reply:
        ca = self.ca
        csr = read_csr(content)
        request_sha256 = hashlib.sha256(csr.info.der).hexdigest()
        store = ca.stores.scep
        renewed: CertificateFacts | None = None
        renewed_certificate: x509.Certificate | None = None
        method: str | None = None
        if message.message_type != MessageType.PKCS_REQ:
            renewed, renewed_certificate = self._renewable(enrolment, message)
            if renewed is not None:
                method = "renewal"
        seen = store.get_transaction(enrolment.name, message.transaction_id)
        if seen is not None:
            # Clients derive the transactionID from the key, so a renewal with the same
            # key comes under the transactionID of the enrolment it renews: a renewal
            # unless it is this transaction's own, resent.
            fresh_renewal = (
                renewed is not None
                and seen.status == ISSUED
                and not self._renewed_in(seen, renewed)
            )
            if not fresh_renewal:
                if seen.request_sha256 != request_sha256:
                    raise SCEPFailure(
                        FailInfo.BAD_REQUEST,
                        f"transactionID {message.transaction_id} was used for another request",
                    )
                return self._answer(seen)
        one_time: SCEPChallenge | None = None
        if method is None:
            method, one_time = self._check_challenge(enrolment, message, csr.challenge, csr.info)
        request = SCEPRequest(
            transaction_id=message.transaction_id,
            message_type=message.message_type,
            csr=csr.info,
            method=method,
            renewed=renewed,
            renewed_certificate=renewed_certificate,
        )
        policy, issuer = self._authorize(enrolment, request)
        prepared = prepare_certificate(PipelineRequest(csr=csr.info), policy, issuer, ca.clock)
        now = ca.clock.now()
        if one_time is not None and not store.use_challenge(
            enrolment.name,
            one_time.challenge_sha256,
            now=now,
            transaction_id=message.transaction_id,
        ):
            raise SCEPFailure(FailInfo.BAD_REQUEST, "the one-time challenge was used already")
        transaction = SCEPTransaction(
            provisioner=enrolment.name,
            transaction_id=message.transaction_id,
            request_sha256=request_sha256,
            message_type=message.message_type,
            status=PENDING,
            subject=csr.info.csr.subject.rfc4514_string(),
            csr_der=csr.info.der,
            signer_der=message.signer.public_bytes(Encoding.DER),
            created_at=now,
            updated_at=now,
            reason="awaiting an operator's approval",
            method=method,
        )
        if enrolment.manual_approval and method != "renewal":
            if not store.add_transaction(transaction):
                raise SCEPFailure(
                    FailInfo.BAD_REQUEST, "a request with this transactionID is in progress"
                )
            ca.auditor.record(
                f"scep:{enrolment.name}",
                "scep.pending",
                message.transaction_id,
                provisioner=enrolment.name,
                subject=transaction.subject,
                challenge=method,
            )
            return _Reply(PKIStatus.PENDING)
        issued = prepared.sign(ca.random)
        self._record(enrolment, transaction, issued, renewed=renewed, seen=seen)
        return _Reply(PKIStatus.SUCCESS, content=certs_only([issued.certificate]))

    def _renewed_in(self, transaction: SCEPTransaction, renewed: CertificateFacts) -> bool:
        """Whether *transaction*'s certificate is the renewal of *renewed* already."""
        if not transaction.serial:
            return False
        current = self.ca.stores.certificates.get_certificate(transaction.serial)
        return current is not None and current.evidence.get("renewed_serial") == renewed.serial

    def _authorize(
        self, enrolment: SCEPEnrolling, request: SCEPRequest
    ) -> tuple[SignPolicy, Issuer]:
        ca = self.ca
        authorization = enrolment.authorize_enrolment(request, ca.context(SCEP_PATH))
        policy = authorization.policy
        if not isinstance(policy, SignPolicy):
            raise SCEPFailure(
                FailInfo.BAD_REQUEST, f"provisioner {enrolment.name!r} authorized no certificate"
            )
        provisioner = ca.provisioners.named(enrolment.name)
        if provisioner is not None:
            ca.plugins.check_sign(provisioner, request.csr, policy)
        issuer = ca.issuers.get(policy.issuer)
        if issuer is None:
            raise SCEPFailure(
                FailInfo.BAD_REQUEST, f"provisioner {enrolment.name!r} names an unknown issuer"
            )
        return policy, issuer

    def _record(
        self,
        enrolment: SCEPEnrolling,
        transaction: SCEPTransaction,
        issued: IssuedCertificate,
        *,
        renewed: CertificateFacts | None = None,
        seen: SCEPTransaction | None = None,
        actor: str | None = None,
        **details: Any,
    ) -> SCEPTransaction:
        """Store the certificate, its audit event, the transactionID as used (for a
        renewal: once per certificate renewed) and the transaction as issued, in one
        commit; then log and announce it. SCEPFailure, storing nothing, when the
        transactionID got its certificate meanwhile."""
        ca = self.ca
        now = ca.clock.now()
        token_id = f"scep:{transaction.transaction_id}"
        if renewed is not None:
            token_id += f":renews:{renewed.serial}"
        use = UsedToken(enrolment.name, token_id, issued.not_after, now)
        event = ca.issued_event(
            issued,
            actor=actor,
            transaction_id=transaction.transaction_id,
            challenge=transaction.method,
            **details,
        )
        done = attrs.evolve(
            transaction,
            status=ISSUED,
            serial=issued.serial_hex,
            updated_at=now,
            decided_by=actor,
            reason=None,
        )
        renewal = seen is not None and seen.status == ISSUED
        if not ca.stores.scep.record_issued(
            done, ca.certificate_record(issued), use, event, renewal=renewal
        ):
            raise SCEPFailure(
                FailInfo.BAD_REQUEST,
                f"transactionID {transaction.transaction_id} has a certificate already",
            )
        ca.announce_issued(event)
        return done

    def _renewable(
        self, enrolment: SCEPEnrolling, message: PKIMessage
    ) -> tuple[CertificateFacts | None, x509.Certificate | None]:
        """For a RenewalReq/UpdateReq: the certificate that signed it, if this provisioner
        issued it and it is active and unexpired (then no challenge is needed). A signer
        that is not such a certificate leaves the request to its challenge."""
        if not enrolment.allow_renewal:
            raise SCEPFailure(
                FailInfo.BAD_REQUEST,
                f"provisioner {enrolment.name!r} does not renew: enrol again with PKCSReq",
            )
        signer = message.signer
        if not any(i.certificate.subject == signer.issuer for i in self.ca.issuers.values()):
            return None, None
        try:
            record, _ = self.ca.known_certificate(signer)
        except ProtocolError as refusal:
            raise SCEPFailure(
                FailInfo.BAD_REQUEST, f"the certificate renewed cannot be: {refusal.detail}"
            ) from None
        if record.provisioner_name != enrolment.name:
            raise SCEPFailure(
                FailInfo.BAD_REQUEST,
                f"the certificate renewed was not issued through provisioner {enrolment.name!r}",
            )
        facts = certificate_facts(record)
        return facts, signer

    def _check_challenge(
        self,
        enrolment: SCEPEnrolling,
        message: PKIMessage,
        challenge: str | None,
        csr: CSRInfo,
    ) -> tuple[str, SCEPChallenge | None]:
        """Which method accepts the challenge (and the one-time challenge to use up);
        SCEPFailure when none does. Nothing is written here."""
        if not challenge:
            raise SCEPFailure(FailInfo.BAD_REQUEST, "the request carries no challenge password")
        if enrolment.check_static_challenge(challenge):
            return "static", None
        ca = self.ca
        if enrolment.one_time_challenges:
            record = ca.stores.scep.get_challenge(enrolment.name, _challenge_digest(challenge))
            if record is not None:
                now = ca.clock.now()
                if record.used_at is not None:
                    raise SCEPFailure(
                        FailInfo.BAD_REQUEST, "the one-time challenge was used already"
                    )
                if record.expires_at <= now:
                    raise SCEPFailure(FailInfo.BAD_REQUEST, "the one-time challenge has expired")
                if record.subject is not None and record.subject != csr.common_name:
                    raise SCEPFailure(
                        FailInfo.BAD_REQUEST,
                        f"the one-time challenge is for the subject {record.subject!r}",
                    )
                return "one-time", record
        query = ChallengeQuery(
            provisioner=enrolment.name,
            transaction_id=message.transaction_id,
            challenge=challenge,
            csr=csr,
            message_type=message.message_type,
        )
        if enrolment.challenge_hook and ca.plugins.scep_challenge(query):
            return "hook", None
        if enrolment.webhook is not None and self.webhook(enrolment.webhook, query):
            return "webhook", None
        raise SCEPFailure(FailInfo.BAD_REQUEST, "the challenge password is not valid")

    def _answer(self, transaction: SCEPTransaction) -> _Reply:
        """The answer a transaction already recorded gives (a resend, or CertPoll)."""
        if transaction.status == ISSUED and transaction.serial:
            record = self.ca.stores.certificates.get_certificate(transaction.serial)
            if record is None:
                raise SCEPFailure(FailInfo.BAD_CERT_ID, "the issued certificate is not on record")
            certificate = x509.load_der_x509_certificate(record.der)
            return _Reply(PKIStatus.SUCCESS, content=certs_only([certificate]))
        if transaction.status == PENDING:
            return _Reply(PKIStatus.PENDING)
        reason = transaction.reason or "an operator rejected the request"
        return _Reply(PKIStatus.FAILURE, fail_info=FailInfo.BAD_REQUEST, text=f"rejected: {reason}")

    # --- CertPoll, GetCert, GetCRL -----------------------------------------------------------

    def _poll(self, enrolment: SCEPEnrolling, message: PKIMessage, content: bytes) -> _Reply:
        _, subject = read_issuer_and_subject(content)
        transaction = self.ca.stores.scep.get_transaction(enrolment.name, message.transaction_id)
        if transaction is None:
            raise SCEPFailure(FailInfo.BAD_CERT_ID, "no request with this transactionID")
        if subject.rfc4514_string() != transaction.subject:
            raise SCEPFailure(FailInfo.BAD_CERT_ID, "the subject is not the request's")
        return self._answer(transaction)

    def _get_cert(self, enrolment: SCEPEnrolling, content: bytes) -> _Reply:
        issuer_name, serial = read_issuer_and_serial(content)
        if not any(i.certificate.subject == issuer_name for i in self.ca.issuers.values()):
            raise SCEPFailure(FailInfo.BAD_CERT_ID, "the issuer is not a CA of this server")
        record = self.ca.stores.certificates.get_certificate(serial_hex(serial))
        if record is None or record.provisioner_name != enrolment.name:
            raise SCEPFailure(
                FailInfo.BAD_CERT_ID,
                f"no certificate {serial_hex(serial)} was issued through {enrolment.name!r}",
            )
        certificate = x509.load_der_x509_certificate(record.der)
        return _Reply(PKIStatus.SUCCESS, content=certs_only([certificate]))

    def _get_crl(self, enrolment: SCEPEnrolling, content: bytes) -> _Reply:
        issuer_name, _ = read_issuer_and_serial(content)
        for issuer in self.ca.issuers.values():
            if issuer.certificate.subject == issuer_name:
                return _Reply(
                    PKIStatus.SUCCESS, content=certs_only([], crls=[self.crl(issuer.name)])
                )
        raise SCEPFailure(FailInfo.BAD_CERT_ID, "the issuer is not a CA of this server")

    # --- operators: pending requests and one-time challenges ---------------------------------

    def pending(
        self, provisioner: str | None = None, limit: int = 100
    ) -> Sequence[SCEPTransaction]:
        return self.requests(provisioner, status=PENDING, limit=limit)

    def requests(
        self, provisioner: str | None = None, *, status: str | None = None, limit: int = 100
    ) -> Sequence[SCEPTransaction]:
        """Requests newest first, of one SCEP provisioner (NotFound if it is none) and in
        one status when given."""
        if provisioner is not None:
            self.enrolment(provisioner)
        return self.ca.stores.scep.transactions(provisioner=provisioner, status=status, limit=limit)

    def transaction(self, provisioner: str, transaction_id: str) -> SCEPTransaction:
        found = self.ca.stores.scep.get_transaction(provisioner, transaction_id)
        if found is None:
            raise NotFound(f"no SCEP request {transaction_id!r} for provisioner {provisioner!r}")
        return found

    def approve(self, provisioner: str, transaction_id: str, actor: str) -> SCEPTransaction:
        """Issue the certificate of a pending request; the client's next CertPoll gets it."""
        enrolment = self.enrolment(provisioner)
        pending = self.transaction(provisioner, transaction_id)
        if pending.status != PENDING:
            raise Conflict(f"SCEP request {transaction_id!r} is {pending.status}, not pending")
        try:
            csr = read_csr(pending.csr_der).info
        except SCEPFailure as failure:
            raise Conflict(f"the stored request cannot be read: {failure}") from None
        request = SCEPRequest(
            transaction_id=transaction_id,
            message_type=pending.message_type,
            csr=csr,
            method=pending.method or "approval",
        )
        try:
            policy, issuer = self._authorize(enrolment, request)
        except SCEPFailure as failure:
            raise Conflict(f"the provisioner no longer allows this request: {failure}") from None
        ca = self.ca
        prepared = prepare_certificate(PipelineRequest(csr=csr), policy, issuer, ca.clock)
        issued = prepared.sign(ca.random)
        try:
            self._record(enrolment, pending, issued, actor=actor, approved_by=actor)
        except SCEPFailure:
            current = self.transaction(provisioner, transaction_id)
            raise Conflict(
                f"SCEP request {transaction_id!r} is {current.status}, not pending"
            ) from None
        return self.transaction(provisioner, transaction_id)

    def reject(
        self, provisioner: str, transaction_id: str, actor: str, reason: str
    ) -> SCEPTransaction:
        """Refuse a pending request; the client's next CertPoll gets FAILURE."""
        self.enrolment(provisioner)
        reason = reason.strip() or "rejected by an operator"
        if len(reason) > 500:
            raise BadRequest("the reason must be at most 500 characters")
        if not self.ca.stores.scep.update_transaction(
            provisioner,
            transaction_id,
            expect_status=PENDING,
            status=REJECTED,
            updated_at=self.ca.clock.now(),
            decided_by=actor,
            reason=reason,
        ):
            current = self.transaction(provisioner, transaction_id)
            raise Conflict(f"SCEP request {transaction_id!r} is {current.status}, not pending")
        self.ca.auditor.record(
            actor, "scep.rejected", transaction_id, provisioner=provisioner, reason=reason
        )
        return self.transaction(provisioner, transaction_id)

    def create_challenge(
        self,
        provisioner: str,
        actor: str,
        *,
        subject: str | None = None,
        lifetime: timedelta = CHALLENGE_LIFETIME,
    ) -> CreatedChallenge:
        """A new one-time challenge (bound to *subject* when given), shown once."""
        enrolment = self.enrolment(provisioner)
        if not enrolment.one_time_challenges:
            raise Conflict(
                f"provisioner {provisioner!r} does not accept one-time challenges"
                " (set one_time_challenges = true in its [[provisioners]] table)"
            )
        if not timedelta(minutes=1) <= lifetime <= MAX_CHALLENGE_LIFETIME:
            raise BadRequest("a one-time challenge lives between 1 minute and 30 days")
        if subject is not None and not (0 < len(subject) <= 64):
            raise BadRequest("the subject is a common name of 1 to 64 characters")
        now = self.ca.clock.now()
        text = _challenge_text(self.ca.random.bytes(CHALLENGE_BYTES))
        record = SCEPChallenge(
            provisioner=provisioner,
            challenge_sha256=_challenge_digest(text),
            created_at=now,
            expires_at=now + lifetime,
            created_by=actor,
            subject=subject,
        )
        self.ca.stores.scep.add_challenge(record)
        self.ca.stores.scep.delete_expired_challenges(now)
        self.ca.auditor.record(
            actor,
            "scep.challenge.created",
            record.challenge_sha256[:16],
            provisioner=provisioner,
            subject=subject,
            expires_at=record.expires_at.isoformat(),
        )
        return CreatedChallenge(text, record)


def _challenge_digest(challenge: str) -> str:
    return hashlib.sha256(challenge.encode("utf-8")).hexdigest()


def _challenge_text(random: bytes) -> str:
    """Base32 without padding, in groups of 8 for reading aloud."""
    text = base64.b32encode(random).decode().rstrip("=")
    return "-".join(text[i : i + 8] for i in range(0, len(text), 8))
