"""Authorizations and challenges (RFC 8555 7.5, 8): responding, and recording results.

A network challenge (http-01, dns-01, tls-alpn-01) goes ``processing`` when
the client responds; the host validates it in the background and feeds the
result back through :func:`validation_succeeded` / :func:`validation_failed`.
device-attest-01 needs no network: the host verifies the attestation while
the client waits and reports through :func:`attestation_verified` /
:func:`attestation_failed`, so the response already says valid or invalid.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from . import _state
from ._state import Event
from .accounts import require_owner
from .context import Context
from .device_attest import AttestedDevice, check_binding
from .effects import RETRY_AFTER_SECONDS, Audit, Outcome, Respond, StartValidation, Write
from .identifiers import DEVICE_ATTEST_01
from .jws import SignedRequest
from .orders import authorization_status
from .problems import ACMEProblem, malformed
from .records import Account, Authorization, AuthorizationStatus, Challenge, ChallengeStatus
from .resources import authorization_json, challenge_json


def key_authorization(token: str, thumbprint: str) -> str:
    """RFC 8555 8.1: ``token || '.' || base64url(JWK thumbprint of the account key)``."""
    return f"{token}.{thumbprint}"


# --- authorizations ------------------------------------------------------------------------


def _authorization_view(
    ctx: Context, authorization: Authorization, challenges: Sequence[Challenge]
) -> Respond:
    status = authorization_status(authorization, ctx.now)
    processing = any(c.status is ChallengeStatus.PROCESSING for c in challenges)
    return Respond(
        200,
        authorization_json(authorization, status, challenges, ctx.urls),
        retry_after=RETRY_AFTER_SECONDS
        if processing and status is AuthorizationStatus.PENDING
        else None,
    )


def update_authorization(
    ctx: Context,
    account: Account,
    authorization: Authorization,
    challenges: Sequence[Challenge],
    request: SignedRequest,
) -> Outcome:
    """POST to an authorization: read it, or deactivate it (RFC 8555 7.5.2)."""
    require_owner(account, authorization.account_id)
    if request.post_as_get:
        return Outcome(_authorization_view(ctx, authorization, challenges))
    payload = request.payload_object()
    status = payload.get("status")
    if status is None:
        return Outcome(_authorization_view(ctx, authorization, challenges))
    if status != AuthorizationStatus.DEACTIVATED.value:
        raise malformed("an authorization's status can only be changed to deactivated")
    current = authorization_status(authorization, ctx.now)
    deactivated = attrs.evolve(
        authorization,
        status=_state.advance(
            _state.AUTHORIZATION,
            current,
            Event.DEACTIVATE,
            lambda: malformed(f"a {current.value} authorization cannot be deactivated"),
        ),
    )
    return Outcome(
        _authorization_view(ctx, deactivated, challenges),
        write=Write(authorizations=(deactivated,)),
    )


# --- challenges ------------------------------------------------------------------------------


def _challenge_view(ctx: Context, challenge: Challenge, authorization: Authorization) -> Respond:
    return Respond(
        200,
        challenge_json(challenge, ctx.urls),
        links=((ctx.urls.authorization(authorization.id), "up"),),
        retry_after=RETRY_AFTER_SECONDS if challenge.status is ChallengeStatus.PROCESSING else None,
    )


def _answerable(
    ctx: Context, account: Account, authorization: Authorization, challenge: Challenge
) -> bool:
    """Whether a response to *challenge* starts a validation now (else: show its state)."""
    require_owner(account, authorization.account_id)
    if challenge.status is not ChallengeStatus.PENDING:
        return False  # RFC 8555 7.5.1: a repeated response changes nothing
    status = authorization_status(authorization, ctx.now)
    if status is AuthorizationStatus.EXPIRED:
        raise malformed("the authorization has expired; create a new order")
    return status is AuthorizationStatus.PENDING


def respond(
    ctx: Context,
    account: Account,
    authorization: Authorization,
    challenge: Challenge,
    request: SignedRequest,
) -> Outcome:
    """POST to a network challenge: ``{}`` starts validation (pending -> processing)."""
    if request.post_as_get:
        require_owner(account, authorization.account_id)
        return Outcome(_challenge_view(ctx, challenge, authorization))
    request.payload_object()
    if not _answerable(ctx, account, authorization, challenge):
        return Outcome(_challenge_view(ctx, challenge, authorization))
    if challenge.type == DEVICE_ATTEST_01:
        raise malformed('device-attest-01 is answered with {"attObj": ...}')
    processing = attrs.evolve(
        challenge,
        status=_state.advance(
            _state.CHALLENGE,
            challenge.status,
            Event.RESPOND,
            lambda: malformed(f"the challenge is {challenge.status.value}"),
        ),
        started_at=ctx.now,
    )
    job = StartValidation(
        provisioner=ctx.profile.name,
        challenge_id=challenge.id,
        authorization_id=authorization.id,
        challenge_type=challenge.type,
        identifier=authorization.identifier,
        token=challenge.token,
        key_authorization=key_authorization(challenge.token, account.thumbprint),
    )
    return Outcome(
        _challenge_view(ctx, processing, authorization),
        write=Write(challenges=(processing,)),
        validations=(job,),
    )


def _finish(
    now: datetime,
    authorization: Authorization,
    challenge: Challenge,
    problem: ACMEProblem | None,
    device: AttestedDevice | None = None,
) -> tuple[Authorization, Challenge]:
    """Move the challenge (and a pending authorization) to valid or invalid."""
    event = Event.VALIDATED if problem is None else Event.FAILED
    if problem is None and now >= authorization.expires_at:
        problem = malformed("the authorization expired before its validation completed")
        event = Event.FAILED

    def refused() -> ACMEProblem:
        return malformed(f"the challenge is already {challenge.status.value}")

    finished = attrs.evolve(
        challenge,
        status=_state.advance(_state.CHALLENGE, challenge.status, event, refused),
        validated_at=now if problem is None else None,
        error=None if problem is None else problem.to_json(),
    )
    updated = authorization
    if authorization.status is AuthorizationStatus.PENDING:
        updated = attrs.evolve(
            authorization,
            status=_state.advance(_state.AUTHORIZATION, authorization.status, event, refused),
        )
        if device is not None and problem is None:
            updated = attrs.evolve(
                updated, attested_key=device.public_key, attestation=device.evidence_record()
            )
    return updated, finished


def _result_audit(ctx_name: str, authorization: Authorization, challenge: Challenge) -> Audit:
    return Audit(
        f"acme.challenge.{challenge.status.value}",
        {
            "provisioner": ctx_name,
            "authorization": authorization.id,
            "challenge": challenge.id,
            "type": challenge.type,
            "identifier": authorization.identifier.to_json(),
            "error": dict(challenge.error) if challenge.error else None,
        },
    )


def validation_succeeded(
    now: datetime, authorization: Authorization, challenge: Challenge
) -> tuple[Write, Audit] | None:
    """A background validation passed; None if the challenge is no longer processing."""
    if challenge.status is not ChallengeStatus.PROCESSING:
        return None
    updated, finished = _finish(now, authorization, challenge, None)
    return (
        Write(authorizations=(updated,), challenges=(finished,)),
        _result_audit(challenge.provisioner, updated, finished),
    )


def validation_failed(
    now: datetime, authorization: Authorization, challenge: Challenge, problem: ACMEProblem
) -> tuple[Write, Audit] | None:
    """A background validation failed for good (its retries are exhausted)."""
    if challenge.status is not ChallengeStatus.PROCESSING:
        return None
    updated, finished = _finish(now, authorization, challenge, problem)
    return (
        Write(authorizations=(updated,), challenges=(finished,)),
        _result_audit(challenge.provisioner, updated, finished),
    )


# --- device-attest-01 ------------------------------------------------------------------------


def attestation_answerable(
    ctx: Context,
    account: Account,
    authorization: Authorization,
    challenge: Challenge,
    request: SignedRequest,
) -> bool:
    """Whether this POST is an attestation to verify now (else the host shows the state)."""
    if challenge.type != DEVICE_ATTEST_01:
        raise malformed("not a device-attest-01 challenge")
    if request.post_as_get:
        require_owner(account, authorization.account_id)
        return False
    request.payload_object()
    return _answerable(ctx, account, authorization, challenge)


def attestation_verified(
    ctx: Context,
    authorization: Authorization,
    challenge: Challenge,
    device: AttestedDevice,
) -> Outcome:
    """The format verified the statement; the identifier must be bound to the device."""
    try:
        check_binding(authorization.identifier, device)
    except ACMEProblem as problem:
        return attestation_failed(ctx, authorization, challenge, problem)
    updated, finished = _finish(
        ctx.now,
        authorization,
        challenge,
        None,
        device,
    )
    return Outcome(
        _challenge_view(ctx, finished, updated),
        write=Write(authorizations=(updated,), challenges=(finished,)),
        audit=(_result_audit(ctx.profile.name, updated, finished),),
    )


def attestation_failed(
    ctx: Context, authorization: Authorization, challenge: Challenge, problem: ACMEProblem
) -> Outcome:
    updated, finished = _finish(ctx.now, authorization, challenge, problem)
    return Outcome(
        _challenge_view(ctx, finished, updated),
        write=Write(authorizations=(updated,), challenges=(finished,)),
        audit=(_result_audit(ctx.profile.name, updated, finished),),
    )


def view_challenge(
    ctx: Context, account: Account, authorization: Authorization, challenge: Challenge
) -> Outcome:
    require_owner(account, authorization.account_id)
    return Outcome(_challenge_view(ctx, challenge, authorization))
