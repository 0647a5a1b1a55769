"""One challenge job, validated over the network by the check for its type."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from engine.acme.effects import StartValidation
from engine.acme.identifiers import DNS_01, HTTP_01, TLS_ALPN_01
from engine.acme.problems import ACMEProblem

from .config import ValidationConfig
from .dns01 import validate_dns01
from .http01 import validate_http01
from .tlsalpn01 import validate_tlsalpn01

#: Validates one challenge; returns when it is met, raises ACMEProblem otherwise.
ChallengeValidator = Callable[[StartValidation, ValidationConfig], Awaitable[None]]


async def validate_over_network(job: StartValidation, config: ValidationConfig) -> None:
    """The default validator: http-01, dns-01 and tls-alpn-01."""
    identifier = job.identifier
    if job.challenge_type == HTTP_01:
        await validate_http01(
            identifier.type, identifier.value, job.token, job.key_authorization, config
        )
    elif job.challenge_type == DNS_01:
        await validate_dns01(identifier.value, job.key_authorization, config)
    elif job.challenge_type == TLS_ALPN_01:
        await validate_tlsalpn01(identifier.type, identifier.value, job.key_authorization, config)
    else:
        raise ACMEProblem(
            "serverInternal", f"{job.challenge_type} is not validated over the network"
        )
