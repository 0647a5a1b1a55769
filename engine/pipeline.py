"""The one signing pipeline every certificate goes through.

request -> provisioner authorization (a :class:`~engine.policy.SignPolicy`)
-> validators -> template -> template modifiers -> validity -> certificate.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID

from .csr import CSRInfo
from .errors import BadRequest, Forbidden
from .extensions import ProvisionerRef
from .fastcert import LeafEncoder
from .names import SAN
from .policy import SignPolicy
from .ports import Clock, Random
from .signer import Signer
from .template import CertificateTemplate, leaf_template_from_csr

SERIAL_BYTES = 20  # 159 bits of entropy once the sign bit is cleared


@attrs.frozen
class Issuer:
    """An intermediate CA that signs leaves: its certificate, signer and chain to the root."""

    name: str
    certificate: x509.Certificate
    signer: Signer
    # Certificates above this issuer's, up to but excluding the root.
    parents: tuple[x509.Certificate, ...] = ()
    authority_key_identifier: x509.AuthorityKeyIdentifier = attrs.field(init=False)

    # The same chain as PEM text, encoded once (every issuance answers with it).
    chain_pem: tuple[str, ...] = attrs.field(init=False, repr=False)
    # Leaves from a pre-encoded DER template; None where that would not give the
    # builder's bytes (checked once, here), and then the builder signs every leaf.
    leaf_encoder: LeafEncoder | None = attrs.field(init=False, eq=False, repr=False)

    @authority_key_identifier.default
    def _aki(self) -> x509.AuthorityKeyIdentifier:
        try:
            ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)
        except x509.ExtensionNotFound:
            return x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.signer.public_key  # type: ignore[arg-type]
            )

    @chain_pem.default
    def _chain_pem(self) -> tuple[str, ...]:
        return tuple(c.public_bytes(Encoding.PEM).decode() for c in self.chain)

    @leaf_encoder.default
    def _leaf_encoder(self) -> LeafEncoder | None:
        return LeafEncoder.for_issuer(
            self.certificate, self.signer, self.authority_key_identifier, builder_certificate
        )

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """The issuer's own certificate followed by its parents (root excluded)."""
        return (self.certificate, *self.parents)


@attrs.frozen
class SignRequest:
    csr: CSRInfo
    not_before: datetime | None = None
    not_after: datetime | None = None
    # When the client asked for these bounds (an ACME order's creation), if not now:
    # a requested notBefore must be within the provisioner's skew of that time.
    requested_at: datetime | None = None


def _sans_of(names: Iterable[x509.GeneralName]) -> tuple[SAN, ...]:
    """The names of a SubjectAlternativeName that are SANs (not otherName, directoryName)."""
    out = []
    for name in names:
        try:
            out.append(SAN.from_general_name(name))
        except BadRequest:
            continue
    return tuple(out)


@attrs.frozen(slots=False)
class IssuedCertificate:
    """A freshly signed certificate and the facts the store records about it.

    The facts (serial, names, validity, PEM) are computed once, on first use:
    storing, logging and answering all read them. The signing pipeline passes
    the ones it already knows (serial, validity, subject, names), so that the
    new certificate is parsed back only if someone asks for the object.
    """

    der: bytes
    issuer: Issuer
    provisioner: ProvisionerRef
    evidence: Mapping[str, Any] = attrs.field(factory=dict)
    # The certificate object; loaded from ``der`` on first use when not given.
    given_certificate: x509.Certificate | None = attrs.field(
        default=None, kw_only=True, alias="certificate", repr=False
    )
    # The general names the certificate's SubjectAlternativeName was built from, when
    # the caller has them (the pipeline does): saves parsing them back out of the DER.
    general_names: tuple[x509.GeneralName, ...] | None = attrs.field(default=None, kw_only=True)
    # What the pipeline put into the certificate; read from it when not given.
    serial_number: int | None = attrs.field(default=None, kw_only=True)
    validity: tuple[datetime, datetime] | None = attrs.field(default=None, kw_only=True)
    subject: x509.Name | None = attrs.field(default=None, kw_only=True)

    @functools.cached_property
    def certificate(self) -> x509.Certificate:
        if self.given_certificate is not None:
            return self.given_certificate
        return x509.load_der_x509_certificate(self.der)

    @property
    def serial(self) -> int:
        if self.serial_number is not None:
            return self.serial_number
        return self.certificate.serial_number

    @functools.cached_property
    def serial_hex(self) -> str:
        return format(self.serial, "x")

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        return (self.certificate, *self.issuer.chain)

    @functools.cached_property
    def sans(self) -> tuple[SAN, ...]:
        if self.general_names is not None:
            return _sans_of(self.general_names)
        try:
            ext = self.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return ()
        return _sans_of(ext.value)

    @functools.cached_property
    def san_texts(self) -> tuple[str, ...]:
        return tuple(str(s) for s in self.sans)

    @functools.cached_property
    def subject_text(self) -> str:
        """The subject as an RFC 4514 string."""
        subject = self.subject if self.subject is not None else self.certificate.subject
        return subject.rfc4514_string()

    @functools.cached_property
    def not_before(self) -> datetime:
        if self.validity is not None:
            return self.validity[0]
        return self.certificate.not_valid_before_utc

    @functools.cached_property
    def not_after(self) -> datetime:
        if self.validity is not None:
            return self.validity[1]
        return self.certificate.not_valid_after_utc

    @functools.cached_property
    def pem(self) -> str:
        return der_to_pem(self.der, "CERTIFICATE")


def der_to_pem(der: bytes, label: str) -> str:
    """PEM text (RFC 7468): base64 in lines of 64 characters between the markers."""
    text = base64.b64encode(der).decode("ascii")
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def random_serial(random: Random) -> int:
    """A positive serial with 159 random bits (CA/B Forum asks for at least 64)."""
    raw = bytearray(random.bytes(SERIAL_BYTES))
    raw[0] &= 0x7F
    serial = int.from_bytes(raw, "big")
    return serial or 1


def resolve_validity(
    policy: SignPolicy, request: SignRequest, now: datetime, issuer: Issuer
) -> tuple[datetime, datetime]:
    """Apply requested bounds, backdating and the policy's duration limits."""
    limits = policy.durations
    if request.not_before is not None:
        asked = request.requested_at if request.requested_at is not None else now
        refusal = limits.not_before_refusal(request.not_before, asked)
        if refusal is not None:
            raise BadRequest(refusal)
        not_before = request.not_before
        start = not_before
    else:
        start = now
        not_before = now - policy.backdate
    not_after = request.not_after if request.not_after is not None else start + limits.default
    if policy.not_after_limit is not None and not_after > policy.not_after_limit:
        if request.not_after is not None:
            raise Forbidden("requested notAfter is later than the credential allows")
        not_after = policy.not_after_limit
    if not_after <= not_before:
        raise BadRequest("notAfter must be later than notBefore")
    if not_after <= now:
        raise BadRequest("notAfter is in the past")
    duration = not_after - start
    if duration < limits.minimum and request.not_after is not None:
        raise Forbidden(
            f"requested duration {duration} is shorter than the minimum {limits.minimum}"
        )
    if duration > limits.maximum:
        raise Forbidden(
            f"requested duration {duration} is longer than the maximum {limits.maximum}"
        )
    if not_after > issuer.certificate.not_valid_after_utc:
        raise Forbidden("requested notAfter is later than the issuing CA's own expiry")
    if not_before < issuer.certificate.not_valid_before_utc:
        not_before = issuer.certificate.not_valid_before_utc
    return not_before, not_after


def require_identity(template: CertificateTemplate) -> None:
    if len(template.subject) == 0 and not template.sans and not template.extra_general_names:
        raise Forbidden("certificate would have neither a subject nor a subject alternative name")


def build_certificate(
    template: CertificateTemplate,
    public_key: Any,
    issuer: Issuer,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    provisioner: ProvisionerRef,
) -> x509.Certificate:
    """The leaf certificate for *template*, signed by *issuer*."""
    certificate, certificate_der = sign_certificate(
        template, public_key, issuer, serial, not_before, not_after, provisioner
    )
    return certificate or x509.load_der_x509_certificate(certificate_der)


def issue_own_certificate(
    template: CertificateTemplate,
    public_key: Any,
    issuer: Issuer,
    provisioner: ProvisionerRef,
    *,
    now: datetime,
    lifetime: timedelta,
    random: Random,
    evidence: Mapping[str, Any] | None = None,
) -> IssuedCertificate:
    """A certificate the CA issues for itself, with no CSR or sign policy (its server
    certificate, an admin client certificate, an AK certificate): backdated a minute,
    *lifetime* long, and never outside its issuer's validity."""
    ca = issuer.certificate
    not_before = max(now - timedelta(minutes=1), ca.not_valid_before_utc)
    not_after = min(now + lifetime, ca.not_valid_after_utc)
    cert = build_certificate(
        template, public_key, issuer, random_serial(random), not_before, not_after, provisioner
    )
    return IssuedCertificate(
        certificate=cert,
        der=cert.public_bytes(Encoding.DER),
        issuer=issuer,
        provisioner=provisioner,
        evidence=dict(evidence or {}),
    )


def sign_certificate(
    template: CertificateTemplate,
    public_key: Any,
    issuer: Issuer,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    provisioner: ProvisionerRef,
    *,
    spki: bytes | None = None,
) -> tuple[x509.Certificate | None, bytes]:
    """The leaf certificate's DER, and the certificate object when the builder made it:
    from the issuer's pre-encoded template where that gives the builder's bytes
    (:mod:`engine.fastcert`), else from the builder."""
    require_identity(template)
    encoder = issuer.leaf_encoder
    if encoder is not None:
        tbs = encoder.tbs(template, public_key, serial, not_before, not_after, provisioner, spki)
        if tbs is not None:
            return None, encoder.certificate(tbs)
    certificate = builder_certificate(
        template,
        public_key,
        issuer.certificate,
        issuer.signer,
        issuer.authority_key_identifier,
        serial,
        not_before,
        not_after,
        provisioner,
    )
    return certificate, certificate.public_bytes(Encoding.DER)


def builder_certificate(
    template: CertificateTemplate,
    public_key: Any,
    issuer_certificate: x509.Certificate,
    signer: Signer,
    authority_key_identifier: x509.AuthorityKeyIdentifier,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    provisioner: ProvisionerRef,
) -> x509.Certificate:
    """The reference path: cryptography's CertificateBuilder, field by field."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(template.subject)
        .issuer_name(issuer_certificate.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(template.key_usage_extension(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(authority_key_identifier, critical=False)
    )
    if template.extended_key_usage:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(list(template.extended_key_usage)), critical=False
        )
    names = template.general_names()
    if names:
        # RFC 5280 4.2.1.6: critical when the subject is empty.
        builder = builder.add_extension(
            x509.SubjectAlternativeName(names), critical=len(template.subject) == 0
        )
    else:
        require_identity(template)
    builder = builder.add_extension(provisioner.to_extension(), critical=False)
    for ext in template.extra_extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    return builder.sign(signer.private_key, signer.hash_algorithm)  # type: ignore[arg-type]


@attrs.frozen
class PreparedCertificate:
    """A request that passed every policy check; signing it can no longer be refused."""

    template: CertificateTemplate
    public_key: Any
    issuer: Issuer
    not_before: datetime
    not_after: datetime
    policy: SignPolicy
    # The key's SubjectPublicKeyInfo DER as the request carried it, when known.
    spki: bytes | None = None

    def sign(self, random: Random) -> IssuedCertificate:
        serial = random_serial(random)
        certificate, certificate_der = sign_certificate(
            self.template,
            self.public_key,
            self.issuer,
            serial,
            self.not_before,
            self.not_after,
            self.policy.provisioner,
            spki=self.spki,
        )
        return IssuedCertificate(
            certificate=certificate,
            der=certificate_der,
            issuer=self.issuer,
            provisioner=self.policy.provisioner,
            evidence=self.policy.evidence,
            general_names=tuple(self.template.general_names()),
            serial_number=serial,
            validity=(_utc_second(self.not_before), _utc_second(self.not_after)),
            subject=self.template.subject,
        )


def _utc_second(value: datetime) -> datetime:
    """*value* as the certificate holds it: UTC (naive means UTC, as for the builder),
    whole seconds."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.replace(microsecond=0)


def prepare_certificate(
    request: SignRequest, policy: SignPolicy, issuer: Issuer, clock: Clock
) -> PreparedCertificate:
    """Apply *policy* to *request*: validators, template, modifiers, validity."""
    if issuer.name != policy.issuer:
        raise Forbidden(f"policy names issuer {policy.issuer!r}, not {issuer.name!r}")
    for validator in policy.validators:
        validator.validate(request.csr)
    template = leaf_template_from_csr(request.csr)
    for modifier in policy.modifiers:
        template = modifier.modify(template)
    require_identity(template)
    not_before, not_after = resolve_validity(policy, request, clock.now(), issuer)
    return PreparedCertificate(
        template=template,
        public_key=request.csr.public_key,
        issuer=issuer,
        not_before=not_before,
        not_after=not_after,
        policy=policy,
        spki=request.csr.spki,
    )


def issue_certificate(
    request: SignRequest,
    policy: SignPolicy,
    issuer: Issuer,
    clock: Clock,
    random: Random,
) -> IssuedCertificate:
    """Apply *policy* to *request* and sign the result with *issuer*."""
    return prepare_certificate(request, policy, issuer, clock).sign(random)


_RECOMPUTED = {
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
}


def builder_renewal(
    current: x509.Certificate,
    issuer: Issuer,
    serial: int,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """The reference path of a renewal: cryptography's CertificateBuilder with *current*'s
    subject, key and extensions (its key identifiers made again for *issuer*)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(current.subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(current.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(current.public_key()), False)
        .add_extension(issuer.authority_key_identifier, critical=False)
    )
    for ext in current.extensions:
        if ext.oid not in _RECOMPUTED:
            builder = builder.add_extension(ext.value, critical=ext.critical)
    signer = issuer.signer
    return builder.sign(signer.private_key, signer.hash_algorithm)  # type: ignore[arg-type]


def renew_certificate(
    current: x509.Certificate,
    issuer: Issuer,
    clock: Clock,
    random: Random,
    *,
    backdate: timedelta = timedelta(minutes=1),
    not_after_limit: datetime | None = None,
    evidence: Mapping[str, Any] | None = None,
) -> IssuedCertificate:
    """A new certificate with the same names, key, extensions and lifetime as *current*.

    It ends no later than *not_after_limit* (e.g. the device certificate an account
    certificate depends on), and the store records *evidence* with it (default: only
    the serial it was renewed from).
    """
    provisioner = ProvisionerRef.from_certificate(current)
    if provisioner is None:
        raise Forbidden("certificate was not issued by a devid provisioner")
    if current.issuer != issuer.certificate.subject:
        raise Forbidden("certificate was not issued by this CA")
    lifetime = current.not_valid_after_utc - current.not_valid_before_utc
    now = clock.now()
    not_before = max(now - backdate, issuer.certificate.not_valid_before_utc)
    not_after = not_before + lifetime
    if not_after > issuer.certificate.not_valid_after_utc:
        raise Forbidden("renewed certificate would outlive the issuing CA")
    if not_after_limit is not None and not_after > not_after_limit:
        not_after = _utc_second(not_after_limit)
        if not_after <= now:
            raise Forbidden("the renewed certificate would already have expired")
    serial = random_serial(random)
    facts = (
        dict(evidence)
        if evidence is not None
        else {"renewed_from": format(current.serial_number, "x")}
    )
    encoder = issuer.leaf_encoder
    if encoder is not None:
        # The same certificate as the builder's below, from the current one's encodings.
        tbs = encoder.renewal_tbs(current.tbs_certificate_bytes, serial, not_before, not_after)
        if tbs is not None:
            return IssuedCertificate(
                der=encoder.certificate(tbs),
                issuer=issuer,
                provisioner=provisioner,
                evidence=facts,
                serial_number=serial,
                validity=(_utc_second(not_before), _utc_second(not_after)),
                subject=current.subject,
            )
    certificate = builder_renewal(current, issuer, serial, not_before, not_after)
    return IssuedCertificate(
        certificate=certificate,
        der=certificate.public_bytes(Encoding.DER),
        issuer=issuer,
        provisioner=provisioner,
        evidence=facts,
    )
