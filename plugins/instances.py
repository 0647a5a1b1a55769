"""What the cloud provisioner types share once a cloud has vouched for an instance: the
names its certificate may carry, the record of its first certificate (trust on first
use) and the sign policy of its certificate.

- :func:`instance_names`: the instance's own names, plus the names a CSR asks for
  beyond them when the provisioner's ``allowed_names`` admits them (403 otherwise);
- :func:`first_use`: the token use that records an instance's first certificate
  (``instance:<ID>``), remembered for good (:data:`FIRST_USE_REMEMBERED`), so a later
  identity of the same instance gets none; ``devid cloud forget`` lifts it;
- :func:`instance_policy`: the certificate names exactly the instance (its common name,
  its names), has the provisioner's EKUs and the ``cloud-instance`` assurance marker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from engine.assurance import Assurance, SetAssurance
from engine.csr import CSRInfo
from engine.errors import Forbidden
from engine.extensions import ProvisionerRef
from engine.keys import KeyType
from engine.names import SAN
from engine.policy import DurationLimits, KeyTypeIn, SetSubjectAndSANs, SignPolicy

from .policy import NamePatterns, NamesWithin, SetExtendedKeyUsage
from .provisioner import TokenUse

__all__ = [
    "FIRST_USE_REMEMBERED",
    "INSTANCE_TOKEN_PREFIX",
    "first_use",
    "instance_names",
    "instance_policy",
]

#: How long an instance's first certificate is remembered: for good, in practice.
FIRST_USE_REMEMBERED = timedelta(days=36525)
#: The used token that records an instance's first certificate: this prefix and its ID.
INSTANCE_TOKEN_PREFIX = "instance:"


def first_use(provisioner: str, instance: str, now: datetime) -> TokenUse:
    """The token use recording *instance*'s first certificate from *provisioner*."""
    return TokenUse(
        provisioner=provisioner,
        token_id=INSTANCE_TOKEN_PREFIX + instance,
        expires_at=now + FIRST_USE_REMEMBERED,
    )


def instance_names(
    own: Sequence[SAN], csr: CSRInfo, allowed: NamePatterns, who: str
) -> tuple[SAN, ...]:
    """*own* (the instance's names) and the CSR's names beyond them that *allowed*
    matches; Forbidden naming *who* ("instance 'web-1'") and the names it may not have
    otherwise."""
    extra = sorted(set(csr.sans) - set(own))
    refused = [str(s) for s in extra if not (allowed and allowed.allows_san(s))]
    if refused:
        raise Forbidden(f"CSR names that {who} may not have: {', '.join(refused)}")
    return (*own, *extra)


def instance_policy(
    *,
    provisioner: ProvisionerRef,
    issuer: str,
    durations: DurationLimits,
    key_types: frozenset[KeyType],
    ekus: tuple[x509.ObjectIdentifier, ...],
    common_name: str,
    sans: Sequence[SAN],
    evidence: Mapping[str, Any],
) -> SignPolicy:
    """The sign policy of an instance's certificate: a CSR of one of *key_types* asking
    for some of *sans* (and *common_name*), answered with exactly *common_name* and
    *sans*, *ekus* and the ``cloud-instance`` marker."""
    names = tuple(sans)
    return SignPolicy(
        provisioner=provisioner,
        issuer=issuer,
        durations=durations,
        validators=(
            KeyTypeIn(key_types),
            NamesWithin(frozenset(names), frozenset({common_name})),
        ),
        modifiers=(
            SetSubjectAndSANs(common_name, names),
            SetExtendedKeyUsage(ekus),
            SetAssurance(Assurance.CLOUD_INSTANCE),
        ),
        not_after_limit=None,
        evidence=evidence,
    )
