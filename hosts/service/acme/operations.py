"""The ACME requests that need an account or a key: each authenticates the JWS, reads
the records it needs, runs the engine operation and stores what it returns.

Every function here is synchronous (it runs in a worker thread) and has the
signature ``(acme, ctx, provisioner, request, **path params) -> Outcome``;
:class:`hosts.http.acme.ACMEHandlers` turns the outcome into the HTTP
response and schedules the validations it names.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from engine.acme import accounts, challenges, orders
from engine.acme import jws as acme_jws
from engine.acme.context import Context
from engine.acme.device_attest import attestation_bytes
from engine.acme.effects import Audit, Outcome, Respond, Write
from engine.acme.finalize import FinalizeRequest
from engine.acme.identifiers import DEVICE_ATTEST_01
from engine.acme.problems import ACMEProblem, malformed, not_found, unauthorized
from engine.acme.records import Account, AccountStatus, CertificateLink
from engine.acme.revocation import authorize_revocation, parse_revocation
from engine.errors import ProtocolError
from engine.jose import PublicKey
from engine.pipeline import SignRequest, der_to_pem, prepare_certificate
from hosts.service.audit import acme_actor
from hosts.store import Revocation
from plugins.base import ACMEIssuing

from .device import verify_device_attestation
from .state import ACMEPost, ACMEState

log = logging.getLogger("devid.acme")


@attrs.frozen
class Authenticated:
    """A request whose JWS verified: the account (kid) or the key (jwk) that signed it."""

    request: acme_jws.SignedRequest
    account: Account | None
    key: PublicKey
    jwk: dict[str, str]
    thumbprint: str

    @property
    def owner(self) -> Account:
        assert self.account is not None
        return self.account


def authenticate(
    acme: ACMEState,
    ctx: Context,
    request: ACMEPost,
    *,
    jwk: bool = False,
    kid: bool = True,
) -> Authenticated:
    """RFC 8555 6.2-6.5: shape, url, key, signature, then the nonce, then the account."""
    store = acme.ca.stores.acme
    signed = acme_jws.parse_request(request.body, request.content_type)
    acme_jws.check_url(signed, ctx.urls.base + request.path)
    account: Account | None = None
    if signed.kid is not None:
        if not kid:
            raise malformed("this resource needs the request signed with jwk, not kid")
        account_id = ctx.urls.account_id(signed.kid)
        if account_id is not None:
            account = store.acme_account(ctx.profile.name, account_id)
        if account is None:
            raise ACMEProblem("accountDoesNotExist", "the kid names no account here")
        key, canonical, thumbprint = acme_jws.key_from_jwk(account.jwk)
    else:
        if not jwk:
            raise malformed("this resource needs the request signed with the account's kid")
        key, canonical, thumbprint = acme_jws.key_from_jwk(signed.jwk)
    acme_jws.verify(signed, key)
    acme.nonces.redeem(signed.nonce, ctx.now)
    if account is not None and account.status is not AccountStatus.VALID:
        raise unauthorized(f"the account is {account.status.value}")
    return Authenticated(signed, account, key, canonical, thumbprint)


def store(acme: ACMEState, outcome: Outcome) -> Outcome | None:
    """Store the outcome's write with its audit events in one commit, then log and
    announce the events; the outcome left to answer (its events done), or None, storing
    nothing, if a record changed meanwhile."""
    if outcome.write.empty:
        return outcome
    kept = acme.audit_events(outcome.audit)
    if not acme.ca.stores.acme.acme_write(outcome.write, events=kept):
        return None
    acme.announce(outcome.audit, kept)
    return attrs.evolve(outcome, audit=())


def commit(acme: ACMEState, outcome: Outcome) -> Outcome:
    """:func:`store`, with 409 if a record changed meanwhile."""
    stored = store(acme, outcome)
    if stored is None:
        raise ACMEProblem("malformed", "the resource changed meanwhile; retry", status=409)
    return stored


# --- accounts ----------------------------------------------------------------------------


def new_account(acme: ACMEState, ctx: Context, p: ACMEIssuing, request: ACMEPost) -> Outcome:
    auth = authenticate(acme, ctx, request, jwk=True, kid=False)
    existing = acme.ca.stores.acme.acme_account_by_thumbprint(p.name, auth.thumbprint)
    outcome = accounts.new_account(ctx, auth.request, auth.key, auth.jwk, auth.thumbprint, existing)
    stored = store(acme, outcome)
    if stored is None:
        # Another request created the account for this key meanwhile.
        existing = acme.ca.stores.acme.acme_account_by_thumbprint(p.name, auth.thumbprint)
        if existing is None:
            raise ACMEProblem("malformed", "the account could not be stored; retry", status=409)
        return accounts.existing_account(ctx, existing)
    return stored


def account(
    acme: ACMEState, ctx: Context, p: ACMEIssuing, request: ACMEPost, account_id: str
) -> Outcome:
    auth = authenticate(acme, ctx, request)
    return commit(acme, accounts.update_account(ctx, auth.owner, account_id, auth.request))


def account_orders(
    acme: ACMEState, ctx: Context, p: ACMEIssuing, request: ACMEPost, account_id: str
) -> Outcome:
    auth = authenticate(acme, ctx, request)
    accounts.require_owner(auth.owner, account_id)
    found = acme.ca.stores.acme.acme_orders_of(
        p.name, auth.owner.id, limit=orders.MAX_LISTED_ORDERS
    )
    authorizations = acme.ca.stores.acme.acme_authorizations(
        p.name, [i for order in found for i in order.authorization_ids]
    )
    return orders.list_orders(ctx, auth.owner, account_id, found, authorizations)


def key_change(acme: ACMEState, ctx: Context, p: ACMEIssuing, request: ACMEPost) -> Outcome:
    auth = authenticate(acme, ctx, request)
    change = acme_jws.parse_key_change(auth.request)
    holder = acme.ca.stores.acme.acme_account_by_thumbprint(p.name, change.new_thumbprint)
    stored = store(acme, accounts.change_key(ctx, auth.owner, change, holder))
    if stored is None:
        holder = acme.ca.stores.acme.acme_account_by_thumbprint(p.name, change.new_thumbprint)
        if holder is None:
            raise ACMEProblem("malformed", "the account changed meanwhile; retry", status=409)
        return accounts.change_key(ctx, auth.owner, change, holder)
    return stored


# --- orders --------------------------------------------------------------------------


def new_order(acme: ACMEState, ctx: Context, p: ACMEIssuing, request: ACMEPost) -> Outcome:
    auth = authenticate(acme, ctx, request)
    return commit(acme, orders.new_order(ctx, auth.owner, auth.request))


def _load_order(acme: ACMEState, p: ACMEIssuing, order_id: str) -> tuple[Any, list[Any]]:
    order = acme.ca.stores.acme.acme_order(p.name, order_id)
    if order is None:
        raise not_found("no such order")
    return order, list(acme.ca.stores.acme.acme_authorizations(p.name, order.authorization_ids))


def order(
    acme: ACMEState, ctx: Context, p: ACMEIssuing, request: ACMEPost, order_id: str
) -> Outcome:
    auth = authenticate(acme, ctx, request)
    order, authorizations = _load_order(acme, p, order_id)
    return orders.view_order(ctx, auth.owner, order, authorizations)


def finalize(
    acme: ACMEState, ctx: Context, p: ACMEIssuing, request: ACMEPost, order_id: str
) -> Outcome:
    auth = authenticate(acme, ctx, request)
    account = auth.owner
    order, authorizations = _load_order(acme, p, order_id)
    csr = orders.finalize_csr(ctx, account, auth.key, order, authorizations, auth.request)
    try:
        authorization = p.authorize_finalize(
            FinalizeRequest(account, order, tuple(authorizations), csr)
        )
        policy = authorization.policy
        provisioner = acme.ca.provisioners.get(p.name)
        if policy is None or provisioner is None:
            raise unauthorized(f"provisioner {p.name!r} authorized no certificate")
        try:
            acme.ca.plugins.check_sign(provisioner, csr, policy)
        except ACMEProblem:
            raise
        except ProtocolError as exc:  # an organisation-wide policy refused it
            raise unauthorized(exc.detail) from None
        issuer = acme.ca.issuers.get(policy.issuer)
        if issuer is None:
            raise ACMEProblem(
                "serverInternal", f"the provisioner names no issuer {policy.issuer!r}"
            )
        prepared = prepare_certificate(
            SignRequest(
                csr=csr,
                not_before=order.not_before,
                not_after=order.not_after,
                requested_at=order.created_at,
            ),
            policy,
            issuer,
            acme.ca.clock,
        )
    except ACMEProblem:
        raise
    except ProtocolError as exc:
        raise ACMEProblem("badCSR", exc.detail) from None
    # ready -> processing -> valid in one transaction: the processing order is never
    # stored. This process lets one request at a time finalize an order; across
    # processes the revision check of the final write lets exactly one succeed.
    processing = orders.begin_processing(order, authorizations, ctx.now)
    with acme.finalizing(order.id):
        try:
            issued = prepared.sign(acme.ca.random)
        except Exception:
            log.exception("signing failed for ACME order %s", order.id)
            problem = ACMEProblem("serverInternal", "the certificate could not be signed")
            acme.ca.stores.acme.acme_write(Write(orders=(orders.failed(processing, problem),)))
            raise problem from None
        valid, respond = orders.issued(ctx, processing, issued.serial_hex)
        link = CertificateLink(issued.serial_hex, p.name, account.id, order.id)
        # The audit event is written in the certificate's own commit (no second fsync).
        event = acme.ca.issued_event(issued, actor=acme_actor(p.name, account.id), order=order.id)
        stored = acme.ca.stores.acme.acme_write(
            Write(orders=(valid,)),
            certificate=acme.ca.certificate_record(issued),
            link=link,
            events=(event,),
        )
    if not stored:  # another request finalized (or changed) the order meanwhile
        raise ACMEProblem("orderNotReady", "the order was finalized meanwhile")
    acme.ca.announce_issued(event)
    return Outcome(respond)


def certificate(
    acme: ACMEState, ctx: Context, p: ACMEIssuing, request: ACMEPost, serial: str
) -> Outcome:
    auth = authenticate(acme, ctx, request)
    link = acme.ca.stores.acme.acme_certificate(serial)
    if link is None or link.provisioner != p.name:
        raise not_found("no such certificate")
    accounts.require_owner(auth.owner, link.account_id)
    record = acme.ca.stores.certificates.get_certificate(serial)
    issuer = acme.ca.issuers.get(record.issuer) if record is not None else None
    if record is None or issuer is None:
        raise not_found("no such certificate")
    # The stored DER as it was signed, then the issuer's chain (PEM encoded once per issuer).
    pem = der_to_pem(record.der, "CERTIFICATE") + "".join(issuer.chain_pem)
    return Outcome(Respond(200, text=pem, content_type="application/pem-certificate-chain"))


def revoke_cert(acme: ACMEState, ctx: Context, p: ACMEIssuing, request: ACMEPost) -> Outcome:
    auth = authenticate(acme, ctx, request, jwk=True, kid=True)
    wanted = parse_revocation(auth.request.payload_object())
    record = acme.ca.stores.certificates.get_certificate(wanted.serial)
    if record is None:
        raise not_found("this CA issued no certificate with that serial")
    if record.status == "revoked":
        raise ACMEProblem("alreadyRevoked", "the certificate is already revoked")
    link = acme.ca.stores.acme.acme_certificate(wanted.serial)
    revoked_by = authorize_revocation(
        wanted,
        stored_der=record.der,
        issued_here=record.provisioner_type == p.type_name and record.provisioner_name == p.name,
        owner=link.account_id if link is not None else None,
        account=auth.account,
        signer_thumbprint=auth.thumbprint if auth.account is None else None,
    )
    revocation = Revocation(
        serial=record.serial,
        issuer=record.issuer,
        revoked_at=ctx.now,
        reason_code=wanted.reason,
        reason="ACME revokeCert",
        revoked_by=revoked_by,
    )
    if not acme.ca.stores.certificates.revoke(revocation):
        raise ACMEProblem("alreadyRevoked", "the certificate is already revoked")
    fields = {"serial": record.serial, "reason_code": wanted.reason, "by": revoked_by}
    return Outcome(Respond(200), audit=(Audit("certificate.revoked", fields),))


# --- authorizations and challenges ------------------------------------------------------


def authorization(
    acme: ACMEState,
    ctx: Context,
    p: ACMEIssuing,
    request: ACMEPost,
    authorization_id: str,
) -> Outcome:
    auth = authenticate(acme, ctx, request)
    authorization = acme.ca.stores.acme.acme_authorization(p.name, authorization_id)
    if authorization is None:
        raise not_found("no such authorization")
    found = acme.ca.stores.acme.acme_challenges(p.name, authorization.challenge_ids)
    return commit(
        acme, challenges.update_authorization(ctx, auth.owner, authorization, found, auth.request)
    )


def challenge(
    acme: ACMEState, ctx: Context, p: ACMEIssuing, request: ACMEPost, challenge_id: str
) -> Outcome:
    auth = authenticate(acme, ctx, request)
    challenge = acme.ca.stores.acme.acme_challenge(p.name, challenge_id)
    authorization = (
        None
        if challenge is None
        else acme.ca.stores.acme.acme_authorization(p.name, challenge.authorization_id)
    )
    if challenge is None or authorization is None:
        raise not_found("no such challenge")
    account = auth.owner
    if challenge.type == DEVICE_ATTEST_01:
        if not challenges.attestation_answerable(
            ctx, account, authorization, challenge, auth.request
        ):
            return challenges.view_challenge(ctx, account, authorization, challenge)
        raw = attestation_bytes(auth.request.payload_object())
        key_authorization = challenges.key_authorization(challenge.token, account.thumbprint)
        try:
            device = verify_device_attestation(acme.ca, p, raw, key_authorization, ctx.now)
        except ACMEProblem as problem:
            outcome = challenges.attestation_failed(ctx, authorization, challenge, problem)
        else:
            outcome = challenges.attestation_verified(ctx, authorization, challenge, device)
    else:
        outcome = challenges.respond(ctx, account, authorization, challenge, auth.request)
    stored = store(acme, outcome)
    if stored is None:
        # A concurrent response to the same challenge won: show what it recorded.
        current = acme.ca.stores.acme.acme_challenge(p.name, challenge_id)
        assert current is not None
        return challenges.view_challenge(ctx, account, authorization, current)
    return stored
