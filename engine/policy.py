"""Typed sign policies: what a provisioner's authorization allows.

A provisioner never signs. It returns a :class:`SignPolicy`, and the one
signing pipeline (:mod:`engine.pipeline`) applies it: validators first, then
template modifiers, then duration limits. Anything not explicitly allowed is
refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

import attrs

from .csr import CSRInfo
from .durations import format_duration
from .errors import ConfigurationError, Forbidden
from .extensions import ProvisionerRef
from .keys import KeyType
from .names import SAN
from .template import CertificateTemplate, subject_with_common_name


@attrs.frozen
class DurationLimits:
    """How long certificates may live: requested durations must fall in [minimum, maximum],
    and a requested notBefore may differ from the CA's clock by at most ``skew``."""

    minimum: timedelta = timedelta(minutes=5)
    maximum: timedelta = timedelta(hours=24)
    default: timedelta = timedelta(hours=24)
    skew: timedelta = timedelta(minutes=5)

    def __attrs_post_init__(self) -> None:
        if not (timedelta(0) < self.minimum <= self.default <= self.maximum):
            raise ConfigurationError(
                f"durations must satisfy 0 < min ({self.minimum}) <= default ({self.default})"
                f" <= max ({self.maximum})"
            )
        if not timedelta(0) <= self.skew <= timedelta(days=1):
            raise ConfigurationError(f"durations skew ({self.skew}) must be from 0s to 1d")

    def not_before_refusal(self, not_before: datetime, requested_at: datetime) -> str | None:
        """Why a requested notBefore is refused (None if it is not): it must lie within
        ``skew`` of ``requested_at``, the CA's clock when the bounds were asked for.

        Without this a short-lived credential could buy a certificate that starts in
        a year, or one dated long before anybody asked for it."""
        limit = format_duration(self.skew)
        shown = not_before.strftime("%Y-%m-%dT%H:%M:%SZ")
        if not_before - requested_at > self.skew:
            return (
                f"notBefore {shown} is more than {limit} ahead of the CA's clock"
                f" (the provisioner's durations.skew is {limit})"
            )
        if requested_at - not_before > self.skew:
            return (
                f"notBefore {shown} is more than {limit} in the past"
                f" (the provisioner's durations.skew is {limit})"
            )
        return None


class Validator(Protocol):
    """Checks a CSR against what the credential allowed; raises Forbidden if not."""

    def validate(self, csr: CSRInfo) -> None: ...


class TemplateModifier(Protocol):
    """Changes the certificate template (set names, usages, extensions)."""

    def modify(self, template: CertificateTemplate) -> CertificateTemplate: ...


@attrs.frozen
class CommonNameIs:
    """The CSR's common name, if it has one, must be exactly this."""

    common_name: str

    def validate(self, csr: CSRInfo) -> None:
        if csr.common_name is not None and csr.common_name != self.common_name:
            raise Forbidden(
                f"CSR common name {csr.common_name!r} does not match the authorized"
                f" subject {self.common_name!r}"
            )


@attrs.frozen
class SANsAre:
    """The CSR's SANs must be exactly this set (no more, no fewer)."""

    sans: frozenset[SAN]

    def validate(self, csr: CSRInfo) -> None:
        if csr.other_names:
            raise Forbidden("CSR names an otherName SAN, which this credential does not authorize")
        requested = frozenset(csr.sans)
        if requested != self.sans:
            extra = sorted(str(s) for s in requested - self.sans)
            missing = sorted(str(s) for s in self.sans - requested)
            parts = []
            if extra:
                parts.append(f"not authorized: {', '.join(extra)}")
            if missing:
                parts.append(f"missing: {', '.join(missing)}")
            raise Forbidden("CSR names do not match the token (" + "; ".join(parts) + ")")


@attrs.frozen
class CSRDigestIs:
    """The CSR must be exactly the one the token was bound to."""

    sha256: bytes

    def validate(self, csr: CSRInfo) -> None:
        if csr.sha256 != self.sha256:
            raise Forbidden("CSR does not match the token's CSR binding")


@attrs.frozen
class KeyTypeIn:
    """Only these key types may be certified."""

    allowed: frozenset[KeyType]

    def validate(self, csr: CSRInfo) -> None:
        if csr.key_type not in self.allowed:
            names = ", ".join(sorted(k.value for k in self.allowed))
            raise Forbidden(f"key type {csr.key_type.value} is not allowed; allowed: {names}")


@attrs.frozen
class SetSubjectAndSANs:
    """Write the authorized subject and SANs into the template."""

    common_name: str | None
    sans: tuple[SAN, ...]

    def modify(self, template: CertificateTemplate) -> CertificateTemplate:
        return template.evolve(subject=subject_with_common_name(self.common_name), sans=self.sans)


@attrs.frozen
class SignPolicy:
    """Everything the pipeline needs to know about one authorized request."""

    provisioner: ProvisionerRef
    issuer: str
    durations: DurationLimits = DurationLimits()
    backdate: timedelta = timedelta(minutes=1)
    validators: tuple[Validator, ...] = ()
    modifiers: tuple[TemplateModifier, ...] = ()
    # A hard upper bound on notAfter (an X5C token cannot outlive its leaf).
    not_after_limit: datetime | None = None
    # Facts about how the request was proven, stored beside the certificate.
    evidence: Mapping[str, Any] = attrs.field(factory=dict)
