"""Signing with a credential (``POST /1.0/sign``): route it, let its provisioner decide,
apply the policy through the one signing pipeline, record the certificate.

The credential is routed by asking every loaded provisioner type to read it
(:meth:`plugins.api.Provisioner.read_credential`); it reaches the provisioner it names
only if that provisioner is of the type that read it. The token is marked used in the
same commit that stores the certificate, and only a request that passed every check
gets that far.
"""

from __future__ import annotations

import logging
from datetime import datetime

import attrs

from engine.csr import CSRInfo
from engine.errors import Forbidden, ProtocolError, Unauthorized
from engine.pipeline import IssuedCertificate, prepare_certificate
from engine.pipeline import SignRequest as PipelineRequest
from engine.policy import SignPolicy
from plugins.base import Credential, Provisioner

from .ca import CA

log = logging.getLogger("devid.ca")

SIGN_PATH = "/1.0/sign"


@attrs.frozen
class SignRequest:
    """A parsed ``/1.0/sign`` request: the CSR (its signature verified), the credential
    as sent, and the validity the client asked for (None: the provisioner's default)."""

    csr: CSRInfo
    credential: str
    not_before: datetime | None = None
    not_after: datetime | None = None


def route_credential(ca: CA, text: str) -> tuple[Provisioner, Credential]:
    """The provisioner a credential addresses, and the reading of it by that provisioner's
    type. Refuses with the error of the type the addressed provisioner has when that type
    could not read it, else with the first reader's error when no type reads it."""
    errors: list[tuple[type[Provisioner], ProtocolError]] = []
    addressed: str | None = None
    registry = ca.provisioners
    for cls in registry.credential_types:
        try:
            reading = cls.read_credential(text)
        except ProtocolError as exc:
            errors.append((cls, exc))
            continue
        if reading is None:
            continue
        addressed = addressed or reading.provisioner
        provisioner = registry.named(reading.provisioner)
        if provisioner is not None and isinstance(provisioner, cls):
            return provisioner, reading
    if addressed is not None:
        # Addressed to a provisioner whose own type refused to read it: say why.
        target = registry.named(addressed)
        for cls, refusal in errors:
            if target is not None and isinstance(target, cls):
                raise refusal
        raise Unauthorized(
            f"token issuer {addressed!r} is not a provisioner that signs tokens here"
        )
    if errors:
        raise errors[0][1]
    raise Unauthorized("no provisioner here reads this kind of credential")


class SigningService:
    """Issues certificates for requests a provisioner authorizes with a credential."""

    def __init__(self, ca: CA) -> None:
        self.ca = ca

    def sign(self, request: SignRequest) -> IssuedCertificate:
        ca = self.ca
        provisioner, credential = route_credential(ca, request.credential)
        authorization = provisioner.authorize_sign(credential, request.csr, ca.context(SIGN_PATH))
        policy = authorization.policy
        if not isinstance(policy, SignPolicy):
            log.error("provisioner %s authorized a signing with no sign policy", provisioner.name)
            raise Forbidden(f"provisioner {provisioner.name!r} authorized no certificate")
        self._check_presented_certificate(policy)
        ca.plugins.check_sign(provisioner, request.csr, policy)
        issuer = ca.issuers.get(policy.issuer)
        if issuer is None:
            log.error("provisioner %s names unknown issuer %r", provisioner.name, policy.issuer)
            raise Forbidden(f"provisioner {provisioner.name!r} names an unknown issuer")
        prepared = prepare_certificate(
            PipelineRequest(
                csr=request.csr, not_before=request.not_before, not_after=request.not_after
            ),
            policy,
            issuer,
            ca.clock,
        )
        issued = prepared.sign(ca.random)
        ca.record_issued(issued, authorization.token)
        return issued

    def _check_presented_certificate(self, policy: SignPolicy) -> None:
        """A credential certificate this CA issued (an X5C leaf) must still be active here.

        Revocation of such a certificate is enforced once, for every provisioner, at
        this point (a provisioner may also check it through the lookup).
        """
        serial = policy.evidence.get("leaf_serial")  # lowercase hex, as the store keys it
        if not isinstance(serial, str):
            return
        record = self.ca.stores.certificates.get_certificate(serial.lower())
        if record is not None and record.status != "active":
            raise Unauthorized(f"the certificate that signed the token is {record.status}")
